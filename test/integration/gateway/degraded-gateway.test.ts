// The gateway when what it depends on cannot be proven: a tampered policy bundle (on reload, and
// at boot with no last-known-good), an audit spool that is full, a PLC that is gone. In each case
// the command does not reach the PLC, the agent gets the mapped exception, and what can still be
// audited is.
import { X509Certificate, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { decodeRequest } from '../../../protocols/modbus/codec.js';
import { connectModbusAgent, exceptionCodeOf, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { DEMO_AGENTS, LAB_GATEWAY_ID, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { readSpool } from '../../../src/audit/offline.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Session } from '../../../src/core/pipeline.js';
import { loadGatewayConfig } from '../../../src/gateway/config.js';
import { startGateway, type GatewayHandle } from '../../../src/gateway/gateway.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { auditRecords, authenticate, within } from './harness.js';
import { untilEvent } from '../../events.js';

async function modbusError(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return exceptionCodeOf(err);
  }
  throw new Error('expected a Modbus exception, the command succeeded');
}

/** The bundle with one character of its JWS payload changed: well-formed, wrongly signed. */
function tamper(jws: string): string {
  const [header, payload, signature] = jws.trim().split('.');
  const i = Math.floor(payload.length / 2);
  const flipped = payload[i] === 'A' ? 'B' : 'A';
  return `${header}.${payload.slice(0, i)}${flipped}${payload.slice(i + 1)}.${signature}\n`;
}

describe('a tampered policy bundle', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let optimizer: ModbusAgent;
  let second: GatewayHandle | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bundle-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()) });
    await authenticate(lab, 'optimizer', clock.now());
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  });

  afterAll(async () => {
    await optimizer?.close();
    await second?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is refused on reload; the bundle already active keeps deciding', async () => {
    const original = await readFile(lab.bundleFile, 'utf8');
    const engine = lab.gateway.policy.engine;
    const from = lab.gateway.audit.nextSeq;
    await writeFile(lab.bundleFile, tamper(original));
    try {
      expect(await lab.gateway.reloadBundle()).toBe(false);
    } finally {
      await writeFile(lab.bundleFile, original);
    }
    expect(lab.gateway.policy.engine).toBe(engine);
    const bundles = (await auditRecords(lab.gateway.audit, from)).flatMap((r) => (r.bundle ? [r.bundle] : []));
    expect(bundles).toHaveLength(1);
    expect(bundles[0].kind).toBe('rejected');
    expect(bundles[0].reason).toBe('BUNDLE_UNAVAILABLE');
    // Old rules still apply: an allowed write goes through, an out-of-bounds one is still refused.
    await optimizer.client.writeRegister(0, 650);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(65, 5);
    expect(await modbusError(optimizer.client.writeRegister(0, 990))).toBe(0x03);
  });

  it('at boot with no last-known-good: every command is denied BUNDLE_UNAVAILABLE with 0x01 and the SOC sees the rejection', async () => {
    // A second gateway on the same plant, with its own fresh state (so no last-known-good), fed the
    // tampered bundle. It ships to the lab's collector under its own gateway id.
    const tamperedFile = path.join(dir, 'tampered.jws');
    await writeFile(tamperedFile, tamper(await readFile(lab.bundleFile, 'utf8')));
    const yaml = (await readFile(lab.configFile, 'utf8'))
      .replace(/^gateway_id: .*$/m, 'gateway_id: tampered-gateway')
      .replace(/^state_dir: .*$/m, `state_dir: ${JSON.stringify(path.join(dir, 'tampered-state'))}`)
      .replace(/^( {2}spool_dir: ).*$/m, `$1${JSON.stringify(path.join(dir, 'tampered-spool'))}`)
      .replace(/^( {2}bundle_file: ).*$/m, `$1${JSON.stringify(tamperedFile)}`);
    const configFile = path.join(dir, 'tampered-gateway.yaml');
    await writeFile(configFile, yaml);
    second = await startGateway(await loadGatewayConfig(configFile), { clock });
    expect(second.policy.engine).toBeUndefined();
    await second.upstreamsReady();

    const before = lab.sim.read('tank1.setpoint');
    const agent = await connectModbusAgent(second.modbus.host, second.modbus.port, await lab.credentials('optimizer'));
    try {
      expect(await modbusError(agent.client.readInputRegisters(0, 1))).toBe(0x01);
      expect(await modbusError(agent.client.writeRegister(0, 600))).toBe(0x01);
      expect(await modbusError(agent.client.writeCoil(0, true))).toBe(0x01);
    } finally {
      await agent.close();
    }
    expect(lab.sim.read('tank1.setpoint')).toBe(before);
    expect(lab.sim.read('pump1.run')).toBe(0);

    const records = await auditRecords(second.audit);
    const rejected = records.flatMap((r) => (r.bundle ? [r.bundle] : []));
    expect(rejected.map((b) => b.kind)).toEqual(['rejected']);
    expect(rejected[0].detail).toMatch(/^[A-Z_]+: /);
    const reasons = records.flatMap((r) => (r.decision?.decision ? [r.decision.decision.reason] : []));
    expect(reasons).toEqual(['BUNDLE_UNAVAILABLE', 'BUNDLE_UNAVAILABLE', 'BUNDLE_UNAVAILABLE']);
    expect(records.some((r) => r.outcome)).toBe(false);

    // The SOC's copy: the collector wrote the rejection into this gateway's NDJSON.
    const ndjson = path.join(lab.collectorDir, 'tampered-gateway.ndjson');
    await within(
      untilEvent(lab.collector, 'record', async () => {
        const text = await readFile(ndjson, 'utf8').catch(() => '');
        const lines = text.trim() === '' ? [] : text.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; bundle?: { kind?: string } });
        if (lines.length < records.length) return false;
        // The session close may land after we read the log: the NDJSON holds at least ours, in order.
        expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i));
        expect(lines.some((l) => l.bundle?.kind === 'rejected')).toBe(true);
        return true;
      }),
      10_000,
      'the collector to store the tampered gateway’s records',
    );
  });
});

// Its own lab: the PLC it stops stays gone for the rest of the file.
describe('a PLC that is gone', () => {
  let dir: string;
  let lab: Lab;
  let optimizer: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-plc-gone-'));
    const clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()) });
    await authenticate(lab, 'optimizer', clock.now());
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  });

  afterAll(async () => {
    await optimizer?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers 0x0A to reads and writes once the PLC is gone, and audits upstream_unavailable', async () => {
    const from = lab.gateway.audit.nextSeq;
    const setpoint = lab.sim.read('tank1.setpoint');
    await lab.sim.stopModbus();
    expect(await modbusError(optimizer.client.readInputRegisters(0, 1))).toBe(0x0a);
    expect(await modbusError(optimizer.client.writeRegister(0, 610))).toBe(0x0a);
    const records = await auditRecords(lab.gateway.audit, from);
    // The read's outcome is inside its decision record; the write's is a record of its own.
    const statuses = records.flatMap((r) => (r.decision?.outcome ? [r.decision.outcome.status] : r.outcome ? [r.outcome.status] : []));
    expect(statuses).toEqual(['upstream_unavailable', 'upstream_unavailable']);
    expect(lab.sim.read('tank1.setpoint')).toBe(setpoint);
  });
});

describe('a full audit spool', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let optimizer: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-spool-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({
      stateDir: dir,
      gatewayClock: clock,
      clock: new ManualClock(Date.now()),
      // The smallest spool config check accepts; the collector is stopped below, so nothing is
      // acknowledged or deleted and reads fill it.
      patchConfig: (yaml) => yaml.replace('\naudit:\n', '\naudit:\n  max_bytes: 262144\n'),
    });
    await authenticate(lab, 'optimizer', clock.now());
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  });

  afterAll(async () => {
    await optimizer?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('denies commands it cannot audit with 0x01 and AUDIT_UNAVAILABLE, the PLC untouched, the refusals on record and what it shipped still valid', async () => {
    // Reads are audited too: fill the spool with them until the gateway refuses one.
    await lab.waitShipped();
    await lab.collector.close();
    let refusedAfter = -1;
    for (let i = 0; i < 5000; i++) {
      const code = await optimizer.client.readInputRegisters(0, 1).then(() => undefined, exceptionCodeOf);
      // A read refused for another reason on a loaded machine does not make the spool full: go on.
      if (code !== undefined && lab.gateway.audit.isFull()) {
        expect(code).toBe(0x01);
        refusedAfter = i;
        break;
      }
    }
    expect(refusedAfter).toBeGreaterThan(0);
    const before = lab.sim.read('tank1.setpoint');
    expect(await modbusError(optimizer.client.writeRegister(0, 700))).toBe(0x01);
    expect(lab.sim.read('tank1.setpoint')).toBe(before);
    expect(await modbusError(optimizer.client.writeCoil(0, true))).toBe(0x01);
    expect(lab.sim.read('pump1.run')).toBe(0);

    // The reason, asked of the same pipeline the listener uses, for the same write from a session
    // like the agent's: "full" means this record does not fit, so it must be no smaller than the
    // agent's (a session id of the same length, the largest transaction id).
    const { cert } = await lab.credentials('optimizer');
    const session: Session = {
      id: randomUUID(),
      protocol: 'modbus',
      workloadId: DEMO_AGENTS.optimizer,
      certThumbprint: certificateThumbprint(new X509Certificate(cert)),
      remoteAddress: '127.0.0.1:0',
      assurance: 'mtls+token',
    };
    // Nothing in flight: the spool's byte count is exact (see the report on in-flight batches).
    await lab.gateway.audit.sync();
    const cmd = commandFromRequest(session.id, 1, decodeRequest(Buffer.from([0x06, 0x00, 0x00, 0x02, 0xbc])));
    const decision = await lab.gateway.pipeline.authorize(session, cmd, { unitId: 1, transactionId: 0xffff });
    expect(decision.effect).toBe('deny');
    expect(decision.reason).toBe('AUDIT_UNAVAILABLE');

    // What was shipped before the collector went away stays valid in the SOC's NDJSON, and the
    // refusals are on record in the spool.
    const lines = (await readFile(path.join(lab.collectorDir, `${LAB_GATEWAY_ID}.ndjson`), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; prevHash: string; hash: string; decision?: { decision?: { reason?: string }; command?: { rawValues?: number[] } } });
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i));
    for (let i = 1; i < lines.length; i++) expect(lines[i].prevHash).toBe(lines[i - 1].hash);
    // Commands were audited until the spool filled, and the refused write (700) is on record, as a
    // refusal, in the room a full spool keeps for denials.
    await lab.gateway.audit.sync();
    const { records } = await readSpool(lab.spoolDir);
    expect(records.some((r) => r.record?.decision?.decision?.reason === 'ALLOWED')).toBe(true);
    const write700 = records.flatMap((r) => (r.record?.decision?.command?.rawValues?.[0] === 700 ? [r.record.decision.decision?.reason] : []));
    expect(write700.length).toBeGreaterThan(0);
    expect(write700.every((r) => r === 'AUDIT_UNAVAILABLE')).toBe(true);
  });
});
