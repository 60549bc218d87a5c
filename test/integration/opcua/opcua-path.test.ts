// The whole OPC UA path without the gateway's wiring: the simulator's OPC UA face (the PLC) ←
// the gateway's upstream session (SignAndEncrypt, the gateway's certificate) ← the front ← a
// node-opcua client agent on SignAndEncrypt with a JWT from the development issuer
// (fixtures/keys/), verified for real with verifyAccessToken. A small CommandPipeline that allows
// or denies by point and bounds stands in for the enforcement chain (the seam, not the thing under
// test). One simulator, one upstream and one front for the file: each OPC UA server costs ~2 s.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  Variant,
  type ClientSession,
  type DataValue,
  type UAObject,
} from 'node-opcua';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Decision } from '../../../src/core/command.js';
import type { CommandPipeline, Outcome, Session } from '../../../src/core/pipeline.js';
import type { Reason } from '../../../src/core/reasons.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks, verifyAccessToken } from '../../../src/identity/verify.js';
import { loadPlant } from '../../../src/assets/plant.js';
import { PlantRuntime } from '../../../src/sim/runtime.js';
import { startOpcuaSimulator, type OpcuaSimHandle } from '../../../src/sim/opcua-server.js';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { OpcuaFront, type FrontAsset } from '../../../protocols/opcua/front.js';
import { createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import { OpcuaUpstream } from '../../../protocols/opcua/upstream.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DEV_ISSUER = 'https://issuer.dev.plantgate.local';
const AGENT = 'spiffe://plant.example/agent/optimizer';
const AUD = 'plantgate-gw';
const GATEWAY_URI = 'urn:plantgate:gateway';
/** What the front exposes of the simulated PLC: no valve, no alarms (the policy maps none). */
const EXPOSED = new Set(['tank1.level', 'tank1.setpoint', 'pump1.speed', 'pump1.run', 'pump1.start', 'pump1.stop']);

/** Allows `operation:point` pairs within bounds, denies everything else; records what it saw. */
class PointPipeline implements CommandPipeline {
  readonly decisions: { cmd: Command; reason: Reason }[] = [];
  readonly outcomes: { cmd: Command; outcome: Outcome }[] = [];
  readonly allowed = new Set(['read:tank1.level', 'read:tank1.setpoint', 'read:pump1.run', 'write:tank1.setpoint', 'call:pump1.start', 'subscribe:tank1.level', 'subscribe:pump1.run', 'browse:']);
  readonly bounds: Record<string, [number, number]> = { 'tank1.setpoint': [0, 100], speed: [0, 3000] };
  authorize(_s: Session, cmd: Command): Decision {
    let reason: Reason = this.allowed.has(`${cmd.operation}:${cmd.points[0] ?? ''}`) ? 'ALLOWED' : 'NO_MATCHING_RULE';
    for (const [k, v] of Object.entries(cmd.values ?? {})) {
      const b = this.bounds[k];
      if (reason === 'ALLOWED' && b !== undefined && (v < b[0] || v > b[1])) reason = 'VALUE_OUT_OF_BOUNDS';
    }
    this.decisions.push({ cmd, reason });
    return { effect: reason === 'ALLOWED' ? 'allow' : 'deny', reason, ruleId: reason === 'ALLOWED' ? 'r1' : '', bundleRevision: 1, durable: false };
  }
  refuse(_s: Session, cmd: Command, reason: Reason): Decision {
    this.decisions.push({ cmd, reason });
    return { effect: 'deny', reason, ruleId: '', bundleRevision: 1, durable: false };
  }
  outcome(_s: Session, cmd: Command, _d: Decision, outcome: Outcome): void {
    this.outcomes.push({ cmd, outcome });
  }
  sessionOpened(): void {}
  sessionClosed(): void {}
  violation(): void {}
  last(): { cmd: Command; reason: Reason } {
    return this.decisions[this.decisions.length - 1]!;
  }
}

describe('OPC UA path: agent → front → upstream session → simulated PLC', () => {
  let dir: string;
  let runtime: PlantRuntime;
  let sim: OpcuaSimHandle;
  let simFiles: { cert: string; key: string };
  let upstream: OpcuaUpstream;
  let front: OpcuaFront;
  let asset: FrontAsset;
  let agent: OPCUAClient;
  let session: ClientSession;
  let ns: number;
  const pipeline = new PointPipeline();
  const clock = new ManualClock(Date.now());
  const seen: { target: string; value: DataValue }[] = [];
  const waiters: { match: (t: string, v: DataValue) => boolean; resolve: () => void }[] = [];
  const startup: Record<string, number> = {};

  const target = (identifier: string) => `nsu=${asset.namespaceUri};${identifier}`;
  const n = (identifier: string) => `ns=${ns};${identifier}`;
  /** Resolves when the upstream has fed the front a value matching `match` (an event, not a sleep). */
  /** A value the upstream feed carried, from the `from`-th on (a case waits for its own change, not an earlier case's). */
  const fed = (match: (t: string, v: DataValue) => boolean, from = 0): Promise<void> =>
    seen.slice(from).some((s) => match(s.target, s.value)) ? Promise.resolve() : new Promise((resolve) => waiters.push({ match, resolve }));
  const startSim = async (port = 0) => {
    const t0 = performance.now();
    sim = await startOpcuaSimulator({ runtime, port, certificateFile: simFiles.cert, privateKeyFile: simFiles.key, pkiDir: path.join(dir, 'sim') });
    startup.simMs = performance.now() - t0;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-path-'));
    const rss0 = process.memoryUsage().rss;
    runtime = new PlantRuntime(await loadPlant(path.join(ROOT, 'fixtures/plants/water-treatment.yaml')), new ManualClock(Date.UTC(2026, 0, 15, 12)));
    const [simCert, gwCert, agentCert] = await Promise.all([
      createAppCert({ applicationUri: 'urn:plantgate:sim:water-treatment', commonName: 'sim', hosts: ['127.0.0.1', 'localhost'] }),
      createAppCert({ applicationUri: GATEWAY_URI, commonName: 'gateway', hosts: ['127.0.0.1', 'localhost'] }),
      createAppCert({ applicationUri: AGENT, commonName: 'optimizer' }),
    ]);
    simFiles = await writeAppCert(dir, 'sim', simCert);
    const gwFiles = await writeAppCert(dir, 'gateway', gwCert);
    const agentFiles = await writeAppCert(dir, 'agent', agentCert);
    await startSim();
    const rss1 = process.memoryUsage().rss;
    asset = sim.assets[0]!;
    const exposed: FrontAsset = { ...asset, points: asset.points.filter((p) => EXPOSED.has(p.name)), methods: asset.methods.filter((m) => EXPOSED.has(m.name)) };

    // The gateway pins the PLC's certificate: its upstream trusts that one and no other.
    const upstreamPki = new OPCUACertificateManager({ rootFolder: path.join(dir, 'upstream-pki'), automaticallyAcceptUnknownCertificate: false });
    await upstreamPki.initialize();
    await upstreamPki.trustCertificate(simCert.der);
    const frontPki = new OPCUACertificateManager({ rootFolder: path.join(dir, 'front-pki'), automaticallyAcceptUnknownCertificate: false });
    await frontPki.initialize();
    await frontPki.trustCertificate(agentCert.der);

    const issuerJwks = JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.jwks.json'), 'utf8')) as { keys: JWK[] };
    const issuers = trustedIssuersFromJwks([{ iss: DEV_ISSUER, jwks: issuerJwks }]);
    let t0 = performance.now();
    front = new OpcuaFront({
      port: 0, certificateFile: gwFiles.cert, privateKeyFile: gwFiles.key, applicationUri: GATEWAY_URI, serverCertificateManager: frontPki,
      assets: [exposed], pipeline, clock,
      verify: (jwt, who) => verifyAccessToken(jwt, { issuers, audience: AUD, expectedSub: who.workloadId, certThumbprint: who.certThumbprint, assurance: 'mtls+token', maxTtlSec: 900, clock }),
      upstream: { write: (t, v) => upstream.write(t, v), call: (o, m, i) => upstream.call(o, m, i) },
    });
    await front.start();
    startup.frontMs = performance.now() - t0;
    const rss2 = process.memoryUsage().rss;
    t0 = performance.now();
    upstream = new OpcuaUpstream({
      endpointUrl: sim.endpointUrl, certificateFile: gwFiles.cert, privateKeyFile: gwFiles.key, applicationUri: GATEWAY_URI,
      clientCertificateManager: upstreamPki, targets: front.pointTargets(), timeoutMs: 1500, initialDelayMs: 100, maxDelayMs: 500,
      onValue: (t, v) => {
        front.update(t, v);
        seen.push({ target: t, value: v });
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.match(t, v)) waiters.splice(i, 1)[0]!.resolve();
        }
      },
    });
    await upstream.start();
    await upstream.whenUp();
    startup.upstreamMs = performance.now() - t0;

    const issuerKey = JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
    const jwt = await mintToken({
      privateJwk: issuerKey, iss: DEV_ISSUER, sub: AGENT, aud: AUD, owner: 'ops@plant', task: { id: 't-9', purpose: 'level tuning' }, scope: ['opcua'],
      certThumbprint: certificateThumbprint(new X509Certificate(agentCert.der)), now: clock.now(),
    });
    agent = OPCUAClient.create({
      applicationUri: AGENT, applicationName: 'optimizer', securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
      certificateFile: agentFiles.cert, privateKeyFile: agentFiles.key, endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'agent-pki'), automaticallyAcceptUnknownCertificate: true }),
    });
    await agent.connect(front.endpointUrl);
    session = await createJwtSession(agent, jwt);
    // Agent code finds the plant by namespace URI: the index differs between front and PLC.
    ns = (await session.readNamespaceArray()).indexOf(asset.namespaceUri);
    // Figures for docs/opcua.md (this process holds the sim face, the front and the clients).
    console.info(`opcua-path: sim face start ${startup.simMs!.toFixed(0)} ms, front start ${startup.frontMs!.toFixed(0)} ms, upstream connect ${startup.upstreamMs!.toFixed(0)} ms; RSS before ${(rss0 / 2 ** 20).toFixed(0)} MB, after sim ${(rss1 / 2 ** 20).toFixed(0)} MB, after front ${(rss2 / 2 ** 20).toFixed(0)} MB`);
  }, 60_000);

  afterAll(async () => {
    await agent?.disconnect().catch(() => undefined);
    await upstream?.close();
    await front?.stop();
    await sim?.close();
    runtime?.stop();
    await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('reads live plant values through the gateway, and answers BadUserAccessDenied for a mapped point the policy denies', async () => {
    const from = seen.length;
    runtime.write('tank1.setpoint', 42);
    await fed((t, v) => t === target('s=tank1.setpoint') && v.value.value === 42, from);
    const [setpoint, speed] = await session.read([
      { nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value },
      { nodeId: n('s=pump1.speed'), attributeId: AttributeIds.Value },
    ]);
    expect(setpoint!.statusCode).toBe(StatusCodes.Good);
    expect(setpoint!.value.value).toBe(42);
    expect(speed!.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.decisions.find((d) => d.cmd.points[0] === 'pump1.speed')).toMatchObject({ reason: 'NO_MATCHING_RULE', cmd: { operation: 'read', assetId: 'plc1' } });
  });

  it('exposes only the points and methods the policy maps: the valve is not there to browse, and reading it answers BadNodeIdUnknown (audited UNKNOWN_TARGET)', async () => {
    const browsed = await session.browse(n('s=plc1'));
    expect(browsed.references?.map((r) => r.browseName.name).sort()).toEqual([...EXPOSED].sort());
    const valve = await session.read({ nodeId: n('s=valve1.open'), attributeId: AttributeIds.Value });
    expect(valve.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    expect(pipeline.last()).toMatchObject({ reason: 'UNKNOWN_TARGET', cmd: { operation: 'read', points: [], targets: [{ nodeId: target('s=valve1.open') }] } });
  });

  it('forwards an allowed write to the PLC and keeps an out-of-bounds one from ever reaching it', async () => {
    const ok = await session.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 61.5 } } });
    expect(ok).toBe(StatusCodes.Good);
    expect(runtime.read('tank1.setpoint')).toBe(61.5);
    const reached = sim.served().length;
    const bad = await session.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 150 } } });
    expect(bad).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.last()).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', cmd: { operation: 'write', values: { 'tank1.setpoint': 150 } } });
    expect(sim.served().length).toBe(reached);
    expect(runtime.read('tank1.setpoint')).toBe(61.5);
    expect(pipeline.outcomes.at(-1)).toMatchObject({ cmd: { operation: 'write' }, outcome: { status: 'ok' } });
  });

  it('after an agent wrote a point, a change made on the PLC since reaches its next read', async () => {
    expect(await session.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 47.5 } } })).toBe(StatusCodes.Good);
    const from = seen.length;
    runtime.write('tank1.setpoint', 33);
    await fed((t, v) => t === target('s=tank1.setpoint') && v.value.value === 33, from);
    const [setpoint] = await session.read([{ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value }]);
    expect(setpoint!.value.value).toBe(33);
  });

  it('starts the pump through an allowed method call with its speed argument, and never reaches the PLC with a denied call', async () => {
    const served = sim.served().length;
    const ok = await session.call({ objectId: n('s=plc1'), methodId: n('s=pump1.start'), inputArguments: [new Variant({ dataType: DataType.Double, value: 1200 })] });
    expect(ok.statusCode).toBe(StatusCodes.Good);
    expect(runtime.read('pump1.run')).toBe(1);
    expect(runtime.read('pump1.speed')).toBe(1200);
    const stop = await session.call({ objectId: n('s=plc1'), methodId: n('s=pump1.stop'), inputArguments: [] });
    expect(stop.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(runtime.read('pump1.run')).toBe(1);
    expect(sim.served().slice(served).filter((s) => s.service === 'Call').map((s) => s.nodeId)).toEqual([target('s=pump1.start')]);
  });

  it('the simulator serves the same plant to a plain client, anonymous, on None and on SignAndEncrypt: live values, range-checked writes, alarm acknowledgement', async () => {
    for (const mode of [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt]) {
      const direct = OPCUAClient.create({
        applicationUri: 'urn:plantgate:test:direct', securityMode: mode, securityPolicy: mode === MessageSecurityMode.None ? SecurityPolicy.None : SecurityPolicy.Basic256Sha256,
        certificateFile: path.join(dir, 'agent.pem'), privateKeyFile: path.join(dir, 'agent.key'), endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
        clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, `direct-pki-${mode}`), automaticallyAcceptUnknownCertificate: true }),
      });
      await direct.connect(sim.endpointUrl);
      try {
        const s = await direct.createSession();
        const simNs = (await s.readNamespaceArray()).indexOf(asset.namespaceUri);
        runtime.write('tank1.level', 12.3);
        expect((await s.read({ nodeId: `ns=${simNs};s=tank1.level`, attributeId: AttributeIds.Value })).value.value).toBe(12.3);
        // uint16 × 0.1 holds at most 6553.5: the PLC refuses, never wraps.
        const tooBig = await s.write({ nodeId: `ns=${simNs};s=tank1.setpoint`, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 7000 } } });
        expect(tooBig).toBe(StatusCodes.BadOutOfRange);
        runtime.write('tank1.low_alarm', 1);
        const ack = await s.call({ objectId: `ns=${simNs};s=plc1`, methodId: `ns=${simNs};s=alarms.acknowledge`, inputArguments: [] });
        expect(ack.statusCode).toBe(StatusCodes.Good);
        expect(ack.outputArguments?.[0]?.value).toBe(1);
        await s.close();
      } finally {
        runtime.write('tank1.low_alarm', 0);
        await direct.disconnect();
      }
    }
  });

  it('answers BadTimeout when the PLC takes longer than the per-call timeout, instead of waiting for it', async () => {
    // A method that never returns, added to the simulated PLC only (a hung controller).
    const space = sim.server.engine.addressSpace!;
    const plcNs = space.getNamespace(asset.namespaceUri)!;
    const hang = plcNs.addMethod(space.findNode(`ns=${plcNs.index};s=plc1`) as UAObject, { nodeId: `ns=${plcNs.index};s=hang`, browseName: 'hang' });
    hang.bindMethod((_inputs: Variant[], _context: unknown) => new Promise(() => undefined));
    const r = await upstream.call(target('s=plc1'), target('s=hang'), []);
    expect(r.statusCode).toBe(StatusCodes.BadTimeout);
    expect(upstream.isUp).toBe(true);
  });

  it('answers quickly when the PLC is down and restores the feed after it restarts, the agent\'s subscription untouched', async () => {
    const sub = await session.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 600 });
    const item = await sub.monitor({ nodeId: n('s=tank1.level'), attributeId: AttributeIds.Value }, { samplingInterval: 100, queueSize: 10 }, TimestampsToReturn.Both);
    const notified: DataValue[] = [];
    const agentSees = (match: (v: DataValue) => boolean) =>
      new Promise<void>((resolve) => {
        const check = (v: DataValue) => {
          notified.push(v);
          if (match(v)) {
            item.off('changed', check);
            resolve();
          }
        };
        item.on('changed', check);
      });
    const first = agentSees((v) => v.value.value === 37.5);
    runtime.write('tank1.level', 37.5);
    await first;

    const port = sim.port;
    const down = agentSees((v) => v.statusCode === StatusCodes.BadServerNotConnected);
    await sim.close();
    await down;
    expect(upstream.isUp).toBe(false);
    // BadServerNotConnected, not BadTimeout: refused from the session state, not after waiting on the PLC.
    const refused = await session.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 50 } } });
    expect(refused).toBe(StatusCodes.BadServerNotConnected);
    expect(pipeline.outcomes.at(-1)).toMatchObject({ cmd: { operation: 'write' }, outcome: { status: 'upstream_unavailable', exceptionCode: StatusCodes.BadServerNotConnected.value } });

    await startSim(port);
    await upstream.whenUp();
    // A change made on the PLC after the restart reaches the agent: the upstream's subscription
    // was recreated on a new session, and the front's monitored item never noticed the gap.
    const back = agentSees((v) => v.statusCode === StatusCodes.Good && v.value.value === 44.4);
    runtime.write('tank1.level', 44.4);
    await back;
    expect(await session.write({ nodeId: n('s=tank1.setpoint'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 55 } } })).toBe(StatusCodes.Good);
    expect(runtime.read('tank1.setpoint')).toBe(55);
    await sub.terminate();
  }, 30_000);
});
