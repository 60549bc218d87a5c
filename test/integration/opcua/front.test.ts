// The OPC UA front over real SignAndEncrypt sessions: node-opcua's client plays the agent with a
// JWT IssuedIdentityToken (our client helper), tokens are minted and verified for real
// (verifyAccessToken), and a small recording CommandPipeline stands in for the enforcement chain
// (the seam, not the thing under test). One server for the whole file: it costs ~2 s to start.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  AnonymousIdentityToken,
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
  Variant,
  type ClientSession,
  type StatusCode,
} from 'node-opcua';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Decision, Subject } from '../../../src/core/command.js';
import type { CommandPipeline, Outcome, Session } from '../../../src/core/pipeline.js';
import type { Reason } from '../../../src/core/reasons.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { generateSigningKey, type SigningKey } from '../../../src/identity/dev/keys.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks, verifyAccessToken } from '../../../src/identity/verify.js';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { OpcuaFront, type FrontAsset } from '../../../protocols/opcua/front.js';
import { JWT_ISSUED_TOKEN_TYPE, createJwtSession, rotateJwt } from '../../../protocols/opcua/jwt-token.js';

const NS = 'urn:plantgate:sim:water';
const AGENT = 'spiffe://plant.example/agent/optimizer';
/** An agent whose application certificate carries the Modbus/TCP Security role `operator`. */
const OPERATOR_AGENT = 'spiffe://plant.example/agent/shift-operator';
const ISS = 'https://issuer.plant.example';
const AUD = 'plantgate-gw';

const ASSET: FrontAsset = {
  assetId: 'plc1',
  namespaceUri: NS,
  folder: 'Plant',
  folderIdentifier: 's=plant',
  points: [
    { name: 'tank1.level', identifier: 's=tank1.level', dataType: 'Double', writable: false },
    { name: 'tank1.setpoint', identifier: 's=tank1.setpoint', dataType: 'Double', writable: true },
    { name: 'secret.recipe', identifier: 's=secret.recipe', dataType: 'Double', writable: true },
  ],
  methods: [{ name: 'pump1.start', identifier: 's=pump1.start', inputs: [{ name: 'speed', dataType: 'Double' }], outputs: [] }],
};

/** Allows what `allowed` names (point + operation), denies the rest; records every record call. */
class RecordingPipeline implements CommandPipeline {
  readonly decisions: { cmd: Command; reason: Reason }[] = [];
  readonly outcomes: Outcome[] = [];
  readonly opened: Session[] = [];
  readonly violations: { reason: Reason; message: string }[] = [];
  allowed = new Set(['read:tank1.level', 'read:tank1.setpoint', 'write:tank1.setpoint', 'call:pump1.start', 'browse:', 'subscribe:tank1.level']);
  /** Allowed only to a subject holding the role, as a policy rule with `roles: [...]` would. */
  needsRole = new Map([['write:secret.recipe', 'operator']]);
  authorize(s: Session, cmd: Command): Decision {
    const key = `${cmd.operation}:${cmd.points[0] ?? ''}`;
    const role = this.needsRole.get(key);
    let ok = role === undefined ? this.allowed.has(key) : ((s as Session & { subject?: Subject }).subject?.roles.includes(role) ?? false);
    // Bounds as the policy would check them: the setpoint only within 0..10, the pump 0..100.
    if (ok && cmd.values !== undefined) ok = Object.values(cmd.values).every((v) => v >= 0 && v <= (cmd.operation === 'call' ? 100 : 10));
    const reason: Reason = ok ? 'ALLOWED' : cmd.values !== undefined && (this.allowed.has(key) || role !== undefined) && this.withinRole(s, role) ? 'VALUE_OUT_OF_BOUNDS' : 'NO_MATCHING_RULE';
    this.decisions.push({ cmd, reason });
    return { effect: ok ? 'allow' : 'deny', reason, ruleId: ok ? 'r1' : '', bundleRevision: 1, durable: false };
  }
  private withinRole(s: Session, role: string | undefined): boolean {
    return role === undefined || ((s as Session & { subject?: Subject }).subject?.roles.includes(role) ?? false);
  }
  refuse(_s: Session, cmd: Command, reason: Reason): Decision {
    this.decisions.push({ cmd, reason });
    return { effect: 'deny', reason, ruleId: '', bundleRevision: 1, durable: false };
  }
  outcome(_s: Session, _c: Command, _d: Decision, o: Outcome): void {
    this.outcomes.push(o);
  }
  sessionOpened(s: Session): void {
    this.opened.push(s);
  }
  sessionClosed(): void {}
  violation(_s: unknown, reason: Reason, _code: string, message: string): void {
    this.violations.push({ reason, message });
  }
  last(): { cmd: Command; reason: Reason } {
    return this.decisions[this.decisions.length - 1]!;
  }
}

describe('OPC UA front: JWT sessions and per-item enforcement', () => {
  let dir: string;
  let front: OpcuaFront;
  let clock: ManualClock;
  let key: SigningKey;
  let pipeline: RecordingPipeline;
  let agentThumbprint: string;
  let agentCertFile: string;
  let agentKeyFile: string;
  let operatorFiles: { cert: string; key: string };
  let operatorThumbprint: string;
  const writes: { nodeId: string; value: unknown }[] = [];
  const calls: { methodId: string; inputs: unknown[] }[] = [];
  const clients: OPCUAClient[] = [];
  let clientsOpened = 0;

  const mint = (over: { ttlSec?: number; thumb?: string; sub?: string } = {}) =>
    mintToken({
      privateJwk: key.privateJwk, iss: ISS, sub: over.sub ?? AGENT, aud: AUD, owner: 'ops@plant', task: { id: 't-1', purpose: 'tune' },
      scope: ['opcua'], ttlSec: over.ttlSec ?? 300, certThumbprint: over.thumb ?? agentThumbprint, now: clock.now(),
    });

  async function connect(mode = MessageSecurityMode.SignAndEncrypt, policy = SecurityPolicy.Basic256Sha256, as = { uri: AGENT, cert: agentCertFile, key: agentKeyFile }): Promise<OPCUAClient> {
    const clientPki = new OPCUACertificateManager({ rootFolder: path.join(dir, `client-pki-${clientsOpened++}`), automaticallyAcceptUnknownCertificate: true });
    const client = OPCUAClient.create({
      applicationUri: as.uri, applicationName: 'optimizer', securityMode: mode, securityPolicy: policy,
      certificateFile: as.cert, privateKeyFile: as.key, clientCertificateManager: clientPki,
      endpointMustExist: false, connectionStrategy: { maxRetry: 0 }, requestedSessionTimeout: 60_000,
    });
    clients.push(client);
    await client.connect(front.endpointUrl);
    return client;
  }

  /** A JWT session; `n(id)` addresses the plant namespace by its URI, as agent code must. */
  let ns = -1;
  const n = (identifier: string) => `ns=${ns};${identifier}`;
  async function session(jwt?: string): Promise<ClientSession> {
    const s = await createJwtSession(await connect(), jwt ?? (await mint()));
    await s.readNamespaceArray();
    ns = s.getNamespaceIndex(NS);
    return s;
  }

  // A case's clients end with it: the sessions of earlier cases must not count against the
  // server's session limit in a later one.
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.disconnect().catch(() => undefined)));
  });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-'));
    clock = new ManualClock(Date.now());
    key = await generateSigningKey({ alg: 'EdDSA', name: 'issuer' });
    const issuers = trustedIssuersFromJwks([{ iss: ISS, jwks: { keys: [key.publicJwk] } }]);
    const gw = await createAppCert({ applicationUri: 'urn:plantgate:gateway', commonName: 'plantgate gateway', hosts: ['127.0.0.1', 'localhost'] });
    const agent = await createAppCert({ applicationUri: AGENT, commonName: 'optimizer' });
    const gwFiles = await writeAppCert(dir, 'gateway', gw);
    const agentFiles = await writeAppCert(dir, 'optimizer', agent);
    agentCertFile = agentFiles.cert;
    agentKeyFile = agentFiles.key;
    agentThumbprint = certificateThumbprint(new X509Certificate(agent.der));
    const operator = await createAppCert({ applicationUri: OPERATOR_AGENT, commonName: 'shift operator', role: 'operator' });
    operatorFiles = await writeAppCert(dir, 'operator', operator);
    operatorThumbprint = certificateThumbprint(new X509Certificate(operator.der));
    const serverPki = new OPCUACertificateManager({ rootFolder: path.join(dir, 'server-pki'), automaticallyAcceptUnknownCertificate: false });
    await serverPki.initialize();
    await serverPki.trustCertificate(agent.der);
    await serverPki.trustCertificate(operator.der);
    pipeline = new RecordingPipeline();
    front = new OpcuaFront({
      port: 0, certificateFile: gwFiles.cert, privateKeyFile: gwFiles.key, applicationUri: 'urn:plantgate:gateway',
      serverCertificateManager: serverPki, assets: [ASSET], pipeline, clock,
      verify: (jwt, who) =>
        // As src/gateway/gateway.ts verifies an OPC UA agent's token (certRole: the certificate's role).
        verifyAccessToken(jwt, { issuers, audience: AUD, expectedSub: who.workloadId, certThumbprint: who.certThumbprint, certRole: who.certRole, assurance: 'mtls+token', maxTtlSec: 900, clock }),
      upstream: {
        write: async (nodeId, value) => {
          writes.push({ nodeId, value: value.value });
          return StatusCodes.Good;
        },
        call: async (_o, methodId, inputs) => {
          calls.push({ methodId, inputs: inputs.map((v) => v.value) });
          return { statusCode: StatusCodes.Good, outputs: [] };
        },
      },
    });
    await front.start();
    front.update(`nsu=${NS};s=tank1.level`, { value: new Variant({ dataType: DataType.Double, value: 4.2 }), statusCode: StatusCodes.Good, sourceTimestamp: new Date() } as never);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
    await front?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('advertises only the JWT user token policy, on Sign and SignAndEncrypt endpoints only', async () => {
    const client = await connect();
    const endpoints = await client.getEndpoints();
    const secure = endpoints.filter((e) => e.securityMode !== MessageSecurityMode.None);
    expect(new Set(secure.map((e) => `${e.securityMode}:${e.securityPolicyUri}`))).toEqual(
      new Set([MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt].flatMap((m) => [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes256_Sha256_RsaPss].map((p) => `${m}:${p}`))),
    );
    for (const e of secure) {
      expect(e.userIdentityTokens?.map((t) => [t.tokenType, t.issuedTokenType])).toEqual([[UserTokenType.IssuedToken, JWT_ISSUED_TOKEN_TYPE]]);
    }
  });

  it('activates a JWT session on Aes256_Sha256_RsaPss with Sign only (the token travels encrypted to the server)', async () => {
    const s = await createJwtSession(await connect(MessageSecurityMode.Sign, SecurityPolicy.Aes256_Sha256_RsaPss), await mint());
    const ns2 = (await s.readNamespaceArray()).indexOf(NS);
    expect((await s.read({ nodeId: `ns=${ns2};s=tank1.level`, attributeId: AttributeIds.Value })).value.value).toBe(4.2);
  });

  it('refuses an anonymous session', async () => {
    const client = await connect();
    // node-opcua's client will not even try: the server offers no anonymous policy.
    await expect(client.createSession()).rejects.toThrow();
    // Send one anyway, as a hostile client would, under the policy id node-opcua would use.
    (client as unknown as { createUserIdentityToken: unknown }).createUserIdentityToken = (_c: unknown, _i: unknown, cb: (e: null, d: unknown) => void) =>
      cb(null, { userIdentityToken: new AnonymousIdentityToken({ policyId: 'anonymous' }), userTokenSignature: {} });
    await expect(client.createSession()).rejects.toThrow(/BadIdentityToken/);
    expect(pipeline.violations.at(-1)?.reason).toBe('NO_TOKEN');
  });

  it('refuses a malformed JWT and a token bound to another certificate with TOKEN_INVALID / TOKEN_BINDING_MISMATCH', async () => {
    await expect(createJwtSession(await connect(), 'not.a.jwt')).rejects.toThrow(/BadIdentityTokenRejected/);
    expect(pipeline.violations.at(-1)?.reason).toBe('TOKEN_INVALID');
    await expect(createJwtSession(await connect(), await mint({ thumb: 'A'.repeat(43) }))).rejects.toThrow(/BadIdentityTokenRejected/);
    expect(pipeline.violations.at(-1)?.reason).toBe('TOKEN_BINDING_MISMATCH');
  });

  it('reads an allowed point and answers BadUserAccessDenied for a point the policy denies', async () => {
    const s = await session();
    const from = pipeline.decisions.length;
    const [level, secret] = await s.read([
      { nodeId: n('s=tank1.level'), attributeId: AttributeIds.Value },
      { nodeId: n('s=secret.recipe'), attributeId: AttributeIds.Value },
    ]);
    expect(level!.statusCode).toBe(StatusCodes.Good);
    expect(level!.value.value).toBe(4.2);
    expect(secret!.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    const denied = pipeline.decisions.slice(from).find((d) => d.cmd.points[0] === 'secret.recipe')!;
    expect(denied.cmd).toMatchObject({ protocol: 'opcua', operation: 'read', assetId: 'plc1', service: 'Read', targets: [{ nodeId: `nsu=${NS};s=secret.recipe` }] });
    expect(pipeline.opened.at(-1)).toMatchObject({ protocol: 'opcua', workloadId: AGENT, certThumbprint: agentThumbprint, assurance: 'mtls+token' });
  });

  it('forwards an allowed write within bounds and denies one out of bounds before it reaches the upstream', async () => {
    const s = await session();
    const ok = await s.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 7.5 } } });
    expect(ok).toBe(StatusCodes.Good);
    expect(writes).toContainEqual({ nodeId: `nsu=${NS};s=tank1.setpoint`, value: 7.5 });
    const before = writes.length;
    const bad = await s.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 99 } } });
    expect(bad).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.last()).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', cmd: { operation: 'write', values: { 'tank1.setpoint': 99 } } });
    expect(writes.length).toBe(before);
  });

  it("reads back a written value even when the server's notification of the value before it arrives after the write's answer, and the server's own value at once when it differs", async () => {
    const s = await session();
    const target = `nsu=${NS};s=tank1.setpoint`;
    const fromServer = (value: number) => ({ value: new Variant({ dataType: DataType.Double, value }), statusCode: StatusCodes.Good, sourceTimestamp: new Date() }) as never;
    const readSetpoint = async () => (await s.read({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value })).value.value as number;
    const write = (value: number) => s.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value } } });
    expect(await write(3)).toBe(StatusCodes.Good);
    front.update(target, fromServer(3)); // the server's echo
    expect(await readSetpoint()).toBe(3);
    expect(await write(5)).toBe(StatusCodes.Good);
    // Sampled before the write, published after its answer (the server's publishing cycle).
    front.update(target, fromServer(3));
    expect(await readSetpoint()).toBe(5);
    // The server's echo of the write, then a change of its own: reads follow the server again.
    front.update(target, fromServer(5));
    front.update(target, fromServer(6));
    expect(await readSetpoint()).toBe(6);
    // A server that keeps another value than the one written (clamped), or a change made on the PLC
    // since the write: neither the written value nor the one before it, so it is the PLC's newer
    // value and reads show it at once.
    expect(await write(9)).toBe(StatusCodes.Good);
    front.update(target, fromServer(8));
    expect(await readSetpoint()).toBe(8);
    // Quick successive writes: a late notification of any value from before them is held back.
    expect(await write(7)).toBe(StatusCodes.Good);
    expect(await write(2)).toBe(StatusCodes.Good);
    front.update(target, fromServer(8));
    front.update(target, fromServer(7));
    expect(await readSetpoint()).toBe(2);
    // A bad status from the server (unreachable) is shown at once, hold or not.
    expect(await write(4)).toBe(StatusCodes.Good);
    front.update(target, { value: new Variant({ dataType: DataType.Null }), statusCode: StatusCodes.BadServerNotConnected } as never);
    expect((await s.read({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value })).statusCode).toBe(StatusCodes.BadServerNotConnected);
    await s.close(); // the front's session limit is shared by the file's tests
  });

  it('calls an allowed method with its arguments checked, and denies an out-of-bounds argument', async () => {
    const s = await session();
    const ok = await s.call({ objectId: n('s=plant'), methodId: n('s=pump1.start'), inputArguments: [new Variant({ dataType: DataType.Double, value: 40 })] });
    expect(ok.statusCode).toBe(StatusCodes.Good);
    expect(calls.at(-1)).toEqual({ methodId: `nsu=${NS};s=pump1.start`, inputs: [40] });
    const bad = await s.call({ objectId: n('s=plant'), methodId: n('s=pump1.start'), inputArguments: [new Variant({ dataType: DataType.Double, value: 400 })] });
    expect(bad.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.last()).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', cmd: { operation: 'call', values: { speed: 400 } } });
    expect(calls.length).toBe(1);
  });

  it('browses the asset folder when allowed and answers BadUserAccessDenied when denied', async () => {
    const s = await session();
    const ok = await s.browse(n('s=plant'));
    expect(ok.statusCode).toBe(StatusCodes.Good);
    expect(ok.references?.map((r) => r.browseName.name).sort()).toEqual(['pump1.start', 'secret.recipe', 'tank1.level', 'tank1.setpoint']);
    pipeline.allowed.delete('browse:');
    try {
      const denied = await s.browse(n('s=plant'));
      expect(denied.statusCode).toBe(StatusCodes.BadUserAccessDenied);
      expect(pipeline.last()).toMatchObject({ reason: 'NO_MATCHING_RULE', cmd: { operation: 'browse' } });
    } finally {
      pipeline.allowed.add('browse:');
    }
  });

  it('subscribes to an allowed point and refuses the monitored item of a denied one', async () => {
    const s = await session();
    const sub = await s.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100 });
    const group = await sub.monitorItems(
      [
        { nodeId: n('s=tank1.level'), attributeId: AttributeIds.Value },
        { nodeId: n('s=secret.recipe'), attributeId: AttributeIds.Value },
      ],
      { samplingInterval: 100, queueSize: 1, discardOldest: true },
      TimestampsToReturn.Both,
    );
    const statuses = group.monitoredItems.map((m) => (m as unknown as { statusCode: StatusCode }).statusCode);
    expect(statuses).toEqual([StatusCodes.Good, StatusCodes.BadUserAccessDenied]);
    expect(pipeline.decisions.filter((d) => d.cmd.operation === 'subscribe').map((d) => d.reason).slice(-2)).toEqual(['ALLOWED', 'NO_MATCHING_RULE']);
    await sub.terminate();
  });

  it('denies commands with TOKEN_EXPIRED once the session token expires, until re-activation with a fresh token', async () => {
    const s = await session(await mint({ ttlSec: 60 }));
    const read = () => s.read({ nodeId: n('s=tank1.level'), attributeId: AttributeIds.Value });
    expect((await read()).statusCode).toBe(StatusCodes.Good);
    clock.advance(61_000);
    expect((await read()).statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.last().reason).toBe('TOKEN_EXPIRED');
    const jti = (await rotateJwt(s, await mint({ ttlSec: 300 })));
    expect(jti).toBe(StatusCodes.Good);
    expect((await read()).statusCode).toBe(StatusCodes.Good);
  });

  it('gives an agent the role its application certificate carries: a write that needs the role is allowed for it and denied to an agent without it', async () => {
    const value = { value: { dataType: DataType.Double, value: 3 } };
    const plain = await session();
    expect(await plain.write({ nodeId: n('s=secret.recipe'), attributeId: AttributeIds.Value, value })).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.last()).toMatchObject({ reason: 'NO_MATCHING_RULE', cmd: { operation: 'write', points: ['secret.recipe'] } });
    expect((pipeline.opened.at(-1) as Session & { subject?: Subject }).subject?.roles).not.toContain('operator');

    const jwt = await mint({ sub: OPERATOR_AGENT, thumb: operatorThumbprint });
    const op = await createJwtSession(await connect(undefined, undefined, { uri: OPERATOR_AGENT, ...operatorFiles }), jwt);
    expect(await op.write({ nodeId: n('s=secret.recipe'), attributeId: AttributeIds.Value, value })).toBe(StatusCodes.Good);
    expect(pipeline.last()).toMatchObject({ reason: 'ALLOWED', cmd: { operation: 'write', points: ['secret.recipe'] } });
    expect(writes.at(-1)).toEqual({ nodeId: `nsu=${NS};s=secret.recipe`, value: 3 });
    // The token itself names no role: the role is the certificate's.
    const opened = pipeline.opened.at(-1) as Session & { subject?: Subject };
    expect(opened).toMatchObject({ workloadId: OPERATOR_AGENT, certThumbprint: operatorThumbprint });
    expect(opened.subject?.roles).toEqual(['operator']);
  });

  it('keeps the session on a refused rotation and reports the reason', async () => {
    const s = await session();
    expect(await rotateJwt(s, await mint({ sub: 'spiffe://plant.example/agent/other' }))).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.violations.at(-1)?.reason).toBe('TOKEN_INVALID');
    expect((await s.read({ nodeId: n('s=tank1.level'), attributeId: AttributeIds.Value })).statusCode).toBe(StatusCodes.Good);
  });
});
