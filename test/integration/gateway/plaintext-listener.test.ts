// The plaintext Modbus listener with static source-address identities (docs/identity.md, "Legacy plaintext Modbus")
// over real sockets through the whole lab: identity from the exact source address, tokens bound to
// "no certificate", the weaker assurance on every decision record, and no crossing between a
// token registered for the mTLS identity and one registered for the static identity.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { JWK } from 'jose';
import { FrameDecoder, encodeFrame, type Frame } from '../../../protocols/modbus/codec.js';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { callOperatorApi } from '../../../src/cli/commands/approvals.js';
import { DEMO_AGENTS, DEV_ISSUER, PACKAGE_ROOT, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { TokenError } from '../../../src/identity/token-error.js';
import { parseGatewayConfig } from '../../../src/gateway/config.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { auditRecords, authenticate, within } from './harness.js';

const OPTIMIZER = DEMO_AGENTS.optimizer;
const READ_IR0 = [0x04, 0x00, 0x00, 0x00, 0x01];

interface PlainAgent {
  socket: net.Socket;
  closed: Promise<void>;
  request(pdu: number[]): Promise<Frame>;
}

/** A plaintext Modbus/TCP connection from a chosen loopback source address. */
async function plainAgent(port: number, localAddress = '127.0.0.1'): Promise<PlainAgent> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  socket.on('error', () => undefined);
  const frames: Frame[] = [];
  let waiter: (() => void) | undefined;
  const decoder = new FrameDecoder(
    (f) => {
      frames.push({ ...f, pdu: Buffer.from(f.pdu) });
      waiter?.();
    },
    () => undefined,
  );
  socket.on('data', (c: Buffer) => decoder.push(c));
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      waiter?.();
      resolve();
    }),
  );
  let tid = 0;
  return {
    socket,
    closed,
    async request(pdu) {
      socket.write(encodeFrame(++tid, 1, Buffer.from(pdu)));
      while (frames.length === 0) {
        if (socket.destroyed) throw new Error('connection closed before an answer');
        await within(new Promise<void>((r) => (waiter = r)), 5000, 'an answer');
      }
      return frames.shift() as Frame;
    },
  };
}

/** 0 for a normal answer, else the Modbus exception code. */
const exceptionOf = (f: Frame): number => ((f.pdu[0] & 0x80) !== 0 ? f.pdu[1] : 0);

describe('plaintext Modbus listener with static source-address identities', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let issuerKey: JWK;

  const staticToken = (opts: { cnf?: string; sub?: string } = {}) =>
    mintToken({
      privateJwk: issuerKey,
      iss: DEV_ISSUER,
      sub: opts.sub ?? OPTIMIZER,
      aud: lab.audience,
      owner: 'alice@plant.example',
      task: { id: 'legacy-hmi', purpose: 'read the tank level for the legacy HMI' },
      scope: ['read', 'write'],
      ttlSec: 300,
      now: clock.now(),
      ...(opts.cnf !== undefined ? { certThumbprint: opts.cnf } : {}),
    });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-plain-'));
    clock = new ManualClock(Date.now());
    issuerKey = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
    lab = await startLab({
      stateDir: dir,
      gatewayClock: clock,
      // The optimizer's SPIFFE ID is also a static identity, so crossing between the two is tested.
      patchConfig: (yaml) =>
        yaml.replace(
          /^listeners:\n/m,
          `listeners:\n  modbus_plain:\n    host: 127.0.0.1\n    port: 0\n    identities:\n      - { address: 127.0.0.1, workload: "${OPTIMIZER}" }\n`,
        ),
    });
  });

  // Each case starts with no token bound to the optimizer (a workload has one binding, whichever of
  // its mTLS or static tokens came last), so no case depends on what an earlier one registered.
  beforeEach(() => {
    lab.gateway.tokens.remove(OPTIMIZER);
  });

  afterAll(async () => {
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an address range as a static identity, naming file, line and field', () => {
    const file = '/etc/plantgate/gateway.yaml';
    const bad = `listeners:\n  modbus_plain:\n    host: 127.0.0.1\n    port: 0\n    identities:\n      - { address: 10.0.0.0/8, workload: "${OPTIMIZER}" }\n`;
    let err: unknown;
    try {
      parseGatewayConfig(bad, file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SourceErrors);
    expect(String((err as Error).message)).toMatch(/gateway\.yaml:6:\d+: listeners\.modbus_plain\.identities\[0\]\.address: must be a single IPv4 or IPv6 address/);
    expect(lab.gateway.modbusPlain?.port).toBeGreaterThan(0);
  });

  it('closes a connection from an unlisted source address and audits NO_IDENTITY', async () => {
    const from = lab.gateway.audit.nextSeq;
    const agent = await plainAgent(lab.gateway.modbusPlain!.port, '127.0.0.2');
    await within(agent.closed, 5000, 'the gateway to close the connection');
    const violations = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.violation);
    expect(violations.some((r) => (r.violation!.detail ?? '').includes('127.0.0.2') && (r.violation!.detail ?? '').includes('NO_IDENTITY'))).toBe(true);
  });

  it('denies a listed address without a token (exception 0x01)', async () => {
    const agent = await plainAgent(lab.gateway.modbusPlain!.port);
    expect(exceptionOf(await agent.request(READ_IR0))).toBe(0x01);
    agent.socket.destroy();
  });

  it('never lets a token registered for the mTLS identity serve the plaintext session', async () => {
    await authenticate(lab, 'optimizer', clock.now());
    const from = lab.gateway.audit.nextSeq;
    const agent = await plainAgent(lab.gateway.modbusPlain!.port);
    expect(exceptionOf(await agent.request(READ_IR0))).toBe(0x01);
    agent.socket.destroy();
    const decisions = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision);
    expect(decisions.map((r) => r.decision!.decision!.reason)).toEqual(['TOKEN_BINDING_MISMATCH']);
  });

  it('refuses to register a static token that carries cnf, or names a workload that is not static', async () => {
    await expect(lab.gateway.registerStaticToken!(OPTIMIZER, await staticToken({ cnf: 'A'.repeat(43) }))).rejects.toMatchObject({
      reason: 'TOKEN_BINDING_MISMATCH',
      detail: 'CNF_UNVERIFIABLE',
    });
    await expect(lab.gateway.registerStaticToken!(DEMO_AGENTS.reporter, await staticToken({ sub: DEMO_AGENTS.reporter }))).rejects.toMatchObject({
      reason: 'NO_IDENTITY',
    });
    await expect(lab.gateway.registerStaticToken!(OPTIMIZER, await staticToken({ sub: DEMO_AGENTS.reporter }))).rejects.toBeInstanceOf(TokenError);
  });

  it('serves a static identity with the token an operator registered, and every decision record says static-ip+token', async () => {
    const api = lab.gateway.operatorApi!;
    const creds = await lab.credentials('optimizer');
    const target = (token: string) => ({ api: `https://${api.host}:${api.port}/`, token, ca: creds.ca });
    const path = `v1/static-tokens/${encodeURIComponent(OPTIMIZER)}`;
    // Only the operator role may register a device token.
    const byOwner = await callOperatorApi(target(await lab.operatorToken({ roles: ['owner'], now: clock.now() })), 'PUT', path, await staticToken());
    expect(byOwner.status).toBe(403);
    const registeredFrom = lab.gateway.audit.nextSeq;
    const answer = await callOperatorApi(target(await lab.operatorToken({ now: clock.now() })), 'PUT', path, await staticToken());
    expect(answer.status).toBe(200);
    expect(answer.body.sub).toBe(OPTIMIZER);
    const from = lab.gateway.audit.nextSeq;
    const agent = await plainAgent(lab.gateway.modbusPlain!.port);
    expect(exceptionOf(await agent.request(READ_IR0))).toBe(0);
    // The demo bounds hold on this listener as on the TLS one: setpoint 95 % is refused.
    expect(exceptionOf(await agent.request([0x06, 0x00, 0x00, 0x00, 95]))).not.toBe(0);
    agent.socket.destroy();
    const decisions = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision);
    expect(decisions.length).toBe(2);
    expect(decisions[0].decision!.decision!.reason).toBe('ALLOWED');
    for (const d of decisions) {
      expect(d.decision!.subject!.assurance).toBe('static-ip+token');
      expect(d.decision!.subject!.certThumbprint).toBe('');
    }
    const token = (await auditRecords(lab.gateway.audit, registeredFrom)).filter((r) => r.token?.subject?.assurance === 'static-ip+token');
    expect(token.length).toBe(1);
  });

  it('never lets a token registered for the static identity serve an mTLS session', async () => {
    await lab.gateway.registerStaticToken!(OPTIMIZER, await staticToken());
    let mtls: ModbusAgent | undefined;
    try {
      mtls = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
      const from = lab.gateway.audit.nextSeq;
      let code: number | undefined;
      try {
        await mtls.client.readInputRegisters(0, 1);
      } catch (err) {
        code = exceptionCodeOf(err);
      }
      expect(code).toBe(0x01);
      const decisions = (await auditRecords(lab.gateway.audit, from)).filter((r) => r.decision);
      expect(decisions.map((r) => r.decision!.decision!.reason)).toEqual(['TOKEN_BINDING_MISMATCH']);
    } finally {
      await mtls?.close();
    }
  });
});
