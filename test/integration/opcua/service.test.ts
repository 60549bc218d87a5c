// The gateway's OPC UA face as the wiring will run it (startOpcuaService), decided by the real
// PolicyEngine compiled from a YAML bundle with an OPC UA asset (namespace + node_ids): the test
// pipeline is the few lines the gateway's pipeline needs for OPC UA (resolveOpcua, the session's
// own Subject, engine.decide). The PLC is the simulator running both faces on one plant: the
// Modbus one (startSimulator) and the OPC UA one sharing its runtime.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JWK } from 'jose';
import { AttributeIds, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes, TimestampsToReturn, type ClientSession } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Decision, Subject } from '../../../src/core/command.js';
import { deny } from '../../../src/core/command.js';
import type { CommandPipeline, Session } from '../../../src/core/pipeline.js';
import type { Reason } from '../../../src/core/reasons.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks, verifyAccessToken } from '../../../src/identity/verify.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { startOpcuaSimulator, type OpcuaSimHandle } from '../../../src/sim/opcua-server.js';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import { startOpcuaService, type OpcuaService } from '../../../protocols/opcua/service.js';
import { resolveOpcua } from '../../resolve.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NS = 'urn:plantgate:sim:water-treatment:plc1';
const DEV_ISSUER = 'https://issuer.dev.plantgate.local';
const AGENT = 'spiffe://plant.example/agent/optimizer';

const bundleYaml = (plant: string, jwks: string) => `
bundle: { name: opcua-test, audience: plantgate-gw, valid_for: 1d }
limits: { max_token_ttl: 15m }
issuers:
  - iss: ${DEV_ISSUER}
    jwks_file: ${jwks}
assets:
  - id: plc1
    zone: treatment
    criticality: high
    protocol: opcua
    unit_id: 1
    namespace: ${NS}
    points_from: ${plant}
    node_ids:
      tank1.level: "nsu=${NS};s=tank1.level"
      tank1.setpoint: "nsu=${NS};s=tank1.setpoint"
      pump1.speed: "nsu=${NS};s=pump1.speed"
rules:
  - id: agents-read
    subject: { workload: "spiffe://plant.example/agent/*" }
    asset: plc1
    operations: [read, subscribe]
    points: ["*"]
  - id: optimizer-setpoint
    subject: { workload: ${AGENT} }
    asset: plc1
    operations: [write]
    points: [tank1.setpoint]
    bounds: { tank1.setpoint: { min: 20, max: 80 } }
`;

/** What EnforcementPipeline.decide needs for OPC UA, minus audit: resolve, session Subject, decide. */
class EnginePipeline implements CommandPipeline {
  readonly decisions: { cmd: Command; reason: Reason }[] = [];
  constructor(
    private readonly engine: PolicyEngine,
    private readonly clock: ManualClock,
  ) {}
  authorize(session: Session, cmd: Command): Decision {
    resolveOpcua(this.engine, cmd);
    const subject = (session as Session & { subject?: Subject }).subject;
    const d = subject === undefined ? deny('NO_TOKEN') : this.engine.decide(cmd, subject, this.clock.now());
    this.decisions.push({ cmd, reason: d.reason });
    return d;
  }
  refuse(_s: Session, cmd: Command, reason: Reason): Decision {
    this.decisions.push({ cmd, reason });
    return deny(reason);
  }
  outcome(): void {}
  sessionOpened(): void {}
  sessionClosed(): void {}
  violation(): void {}
}

describe('OPC UA service: front + upstream sessions from a bundle, decided by the policy engine', () => {
  let dir: string;
  let modbusSim: SimHandle;
  let opcuaSim: OpcuaSimHandle;
  let service: OpcuaService;
  let pipeline: EnginePipeline;
  let agent: OPCUAClient;
  let session: ClientSession;
  let ns: number;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-svc-'));
    const plantFile = path.join(ROOT, 'fixtures/plants/water-treatment.yaml');
    await writeFile(path.join(dir, 'bundle.yaml'), bundleYaml(plantFile, path.join(ROOT, 'fixtures/keys/dev-issuer.jwks.json')));
    const payload = await compileSources(path.join(dir, 'bundle.yaml'), { now: clock.now(), revision: 1 });
    const engine = PolicyEngine.fromPayload(payload);
    pipeline = new EnginePipeline(engine, clock);

    const [simCert, gwCert, agentCert] = await Promise.all([
      createAppCert({ applicationUri: 'urn:plantgate:sim:water-treatment', commonName: 'sim', hosts: ['127.0.0.1'] }),
      createAppCert({ applicationUri: 'urn:plantgate:gateway', commonName: 'gateway', hosts: ['127.0.0.1'] }),
      createAppCert({ applicationUri: AGENT, commonName: 'optimizer' }),
    ]);
    const simFiles = await writeAppCert(dir, 'sim', simCert);
    const gwFiles = await writeAppCert(dir, 'gateway', gwCert);
    const agentFiles = await writeAppCert(dir, 'agent', agentCert);
    modbusSim = await startSimulator({ plant: plantFile, clock: new ManualClock(Date.UTC(2026, 0, 15, 12)) });
    opcuaSim = await startOpcuaSimulator({ runtime: modbusSim.runtime, certificateFile: simFiles.cert, privateKeyFile: simFiles.key, pkiDir: path.join(dir, 'sim') });

    const issuers = trustedIssuersFromJwks(engine.issuers());
    service = await startOpcuaService({
      host: '127.0.0.1', port: 0, certificateFile: gwFiles.cert, privateKeyFile: gwFiles.key, applicationUri: 'urn:plantgate:gateway',
      trustedAgentCertificates: [agentFiles.cert], pkiDir: path.join(dir, 'gw-pki'),
      upstreams: [{ asset: 'plc1', endpointUrl: opcuaSim.endpointUrl, security: 'SignAndEncrypt', serverCertificate: simFiles.cert }],
      assets: payload.assets, pipeline, clock,
      verify: (jwt, who) =>
        verifyAccessToken(jwt, { issuers, audience: engine.audience, expectedSub: who.workloadId, certThumbprint: who.certThumbprint, assurance: 'mtls+token', maxTtlSec: engine.maxTokenTtlSec, clock }),
    });
    await service.upstreams.get('plc1')!.whenUp();

    const jwt = await mintToken({
      privateJwk: JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK,
      iss: DEV_ISSUER, sub: AGENT, aud: 'plantgate-gw', owner: 'ops@plant', task: { id: 't-1', purpose: 'tune' }, scope: ['read', 'subscribe', 'write'],
      certThumbprint: certificateThumbprint(new X509Certificate(agentCert.der)), now: clock.now(),
    });
    agent = OPCUAClient.create({
      applicationUri: AGENT, securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Aes256_Sha256_RsaPss,
      certificateFile: agentFiles.cert, privateKeyFile: agentFiles.key, endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'agent-pki'), automaticallyAcceptUnknownCertificate: true }),
    });
    await agent.connect(service.endpointUrl);
    session = await createJwtSession(agent, jwt);
    ns = (await session.readNamespaceArray()).indexOf(NS);
  }, 60_000);

  afterAll(async () => {
    await agent?.disconnect().catch(() => undefined);
    await service?.close();
    await opcuaSim?.close();
    await modbusSim?.close();
    await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('exposes only the points the bundle maps to NodeIds', async () => {
    const browse = await session.browse({ nodeId: `ns=${ns};s=plc1`, resultMask: 63 });
    // Browsing is its own operation; this bundle grants none, so the folder is denied ...
    expect(browse.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    // ... while the mapped points answer and an unmapped one does not exist on the front.
    const [level, valve] = await session.read([
      { nodeId: `ns=${ns};s=tank1.level`, attributeId: AttributeIds.BrowseName },
      { nodeId: `ns=${ns};s=valve1.open`, attributeId: AttributeIds.BrowseName },
    ]);
    expect(level!.statusCode).toBe(StatusCodes.Good);
    expect(valve!.statusCode).toBe(StatusCodes.BadNodeIdUnknown);
  });

  it('writes the setpoint within the rule bounds to the PLC (seen on its Modbus face too) and denies one outside with VALUE_OUT_OF_BOUNDS', async () => {
    const write = (nodeId: string, value: number) => session.write({ nodeId, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value } } });
    expect(await write(`ns=${ns};s=tank1.setpoint`, 65)).toBe(StatusCodes.Good);
    expect(modbusSim.read('tank1.setpoint')).toBe(65);
    expect(await write(`ns=${ns};s=tank1.setpoint`, 95)).toBe(StatusCodes.BadUserAccessDenied);
    expect(pipeline.decisions.at(-1)).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', cmd: { assetId: 'plc1', points: ['tank1.setpoint'] } });
    // pump1.speed is a UInt16 on the PLC and on the gateway: written with its own type, policy decides.
    expect(await session.write({ nodeId: `ns=${ns};s=pump1.speed`, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.UInt16, value: 1000 } } })).toBe(
      StatusCodes.BadUserAccessDenied,
    );
    expect(pipeline.decisions.at(-1)).toMatchObject({ reason: 'NO_MATCHING_RULE', cmd: { points: ['pump1.speed'] } });
    expect(modbusSim.read('tank1.setpoint')).toBe(65);
    expect(modbusSim.read('pump1.speed')).toBe(1500);
  });

  it('an engine-allowed subscription and read follow a value the PLC changed', async () => {
    const sub = await session.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100 });
    const item = await sub.monitor({ nodeId: `ns=${ns};s=tank1.level`, attributeId: AttributeIds.Value }, { samplingInterval: 100, queueSize: 1 }, TimestampsToReturn.Both);
    const seen = new Promise<void>((resolve) => item.on('changed', (v) => v.value.value === 71.2 && resolve()));
    modbusSim.write('tank1.level', 71.2);
    await seen;
    expect(pipeline.decisions.find((d) => d.cmd.operation === 'subscribe')).toMatchObject({ reason: 'ALLOWED', cmd: { points: ['tank1.level'] } });
    const dv = await session.read({ nodeId: `ns=${ns};s=tank1.level`, attributeId: AttributeIds.Value });
    expect(dv.value.value).toBe(71.2);
    expect(pipeline.decisions.at(-1)).toMatchObject({ reason: 'ALLOWED', cmd: { operation: 'read', points: ['tank1.level'] } });
    await sub.terminate();
  });
});
