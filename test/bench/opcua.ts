// OPC UA costs (issue 4): start time and RSS of the simulator's OPC UA face and of the gateway's
// front, and read / write latency of one agent session (SignAndEncrypt, JWT) through the front vs
// directly against the simulator. The front runs with an allow-all CommandPipeline so the figure
// is the OPC UA path's own cost (front + upstream session); the enforcement chain's cost is in
// test/bench/policy.ts and the Modbus bench. Run after build:
//   node dist/test/bench/opcua.js [--quick]
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { JWK } from 'jose';
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  type ClientSession,
} from 'node-opcua';
import { systemClock } from '../../src/core/clock.js';
import type { Command, Decision } from '../../src/core/command.js';
import type { CommandPipeline } from '../../src/core/pipeline.js';
import { certificateThumbprint } from '../../src/identity/cert.js';
import { mintToken } from '../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks, verifyAccessToken } from '../../src/identity/verify.js';
import { loadPlant } from '../../src/sim/plant.js';
import { PlantRuntime } from '../../src/sim/runtime.js';
import { startOpcuaSimulator } from '../../src/sim/opcua-server.js';
import { createAppCert, writeAppCert } from '../../protocols/opcua/app-cert.js';
import { OpcuaFront } from '../../protocols/opcua/front.js';
import { createJwtSession } from '../../protocols/opcua/jwt-token.js';
import { OpcuaUpstream } from '../../protocols/opcua/upstream.js';

const quick = process.argv.includes('--quick');
const N = quick ? 200 : 2000;
const ROOT = path.resolve(import.meta.dirname, '../../..');
const DEV_ISSUER = 'https://issuer.dev.plantgate.local';
const AGENT = 'spiffe://plant.example/agent/bench';
const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;

const allowAll: CommandPipeline = {
  authorize: (): Decision => ({ effect: 'allow', reason: 'ALLOWED', ruleId: 'bench', bundleRevision: 1, durable: false }),
  refuse: (_s, _c: Command, reason): Decision => ({ effect: 'deny', reason, ruleId: '', bundleRevision: 1, durable: false }),
  outcome: () => undefined,
  sessionOpened: () => undefined,
  sessionClosed: () => undefined,
  violation: () => undefined,
};

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timeIt(label: string, op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 20; i++) await op();
  const us: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await op();
    us.push((performance.now() - t0) * 1000);
  }
  us.sort((a, b) => a - b);
  console.log(`${label.padEnd(28)} p50 ${pct(us, 50).toFixed(0).padStart(6)} µs   p99 ${pct(us, 99).toFixed(0).padStart(6)} µs   (${N} sequential)`);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-opcua-'));
  const rss0 = process.memoryUsage().rss;
  const runtime = new PlantRuntime(await loadPlant(path.join(ROOT, 'fixtures/plants/water-treatment.yaml')), systemClock);
  const [gwCert, agentCert] = await Promise.all([
    createAppCert({ applicationUri: 'urn:plantgate:gateway', commonName: 'gateway', hosts: ['127.0.0.1'] }),
    createAppCert({ applicationUri: AGENT, commonName: 'bench agent' }),
  ]);
  const gw = await writeAppCert(dir, 'gateway', gwCert);
  const agentFiles = await writeAppCert(dir, 'agent', agentCert);

  let t0 = performance.now();
  const sim = await startOpcuaSimulator({ runtime, pkiDir: path.join(dir, 'sim') });
  const simMs = performance.now() - t0;
  const rss1 = process.memoryUsage().rss;

  const frontPki = new OPCUACertificateManager({ rootFolder: path.join(dir, 'front-pki'), automaticallyAcceptUnknownCertificate: false });
  await frontPki.initialize();
  await frontPki.trustCertificate(agentCert.der);
  const issuers = trustedIssuersFromJwks([{ iss: DEV_ISSUER, jwks: JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.jwks.json'), 'utf8')) as { keys: JWK[] } }]);
  let upstream: OpcuaUpstream | undefined;
  t0 = performance.now();
  const front = new OpcuaFront({
    port: 0, certificateFile: gw.cert, privateKeyFile: gw.key, applicationUri: 'urn:plantgate:gateway', serverCertificateManager: frontPki,
    assets: sim.assets, pipeline: allowAll, clock: systemClock,
    verify: (jwt, who) => verifyAccessToken(jwt, { issuers, audience: 'plantgate-gw', expectedSub: who.workloadId, certThumbprint: who.certThumbprint, assurance: 'mtls+token', maxTtlSec: 900, clock: systemClock }),
    upstream: { write: (t, v) => upstream!.write(t, v), call: (o, m, i) => upstream!.call(o, m, i) },
  });
  await front.start();
  const frontMs = performance.now() - t0;
  const rss2 = process.memoryUsage().rss;
  upstream = new OpcuaUpstream({
    endpointUrl: sim.endpointUrl, certificateFile: gw.cert, privateKeyFile: gw.key, applicationUri: 'urn:plantgate:gateway',
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'up-pki'), automaticallyAcceptUnknownCertificate: true }),
    targets: front.pointTargets(), onValue: (t, v) => front.update(t, v),
  });
  await upstream.start();
  await upstream.whenUp();

  const jwt = await mintToken({
    privateJwk: JSON.parse(await readFile(path.join(ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK,
    iss: DEV_ISSUER, sub: AGENT, aud: 'plantgate-gw', owner: 'bench', task: { id: 'b', purpose: 'bench' }, scope: ['opcua'], ttlSec: 900,
    certThumbprint: certificateThumbprint(new X509Certificate(agentCert.der)),
  });
  const open = async (url: string, withJwt: boolean): Promise<{ client: OPCUAClient; session: ClientSession; ns: number }> => {
    const client = OPCUAClient.create({
      applicationUri: AGENT, securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
      certificateFile: agentFiles.cert, privateKeyFile: agentFiles.key, endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, `agent-pki-${withJwt}`), automaticallyAcceptUnknownCertificate: true }),
    });
    await client.connect(url);
    const session = withJwt ? await createJwtSession(client, jwt) : await client.createSession();
    return { client, session, ns: (await session.readNamespaceArray()).indexOf(sim.assets[0]!.namespaceUri) };
  };
  const direct = await open(sim.endpointUrl, false);
  const via = await open(front.endpointUrl, true);
  const read = (c: { session: ClientSession; ns: number }) => () => c.session.read({ nodeId: `ns=${c.ns};s=tank1.level`, attributeId: AttributeIds.Value });
  let v = 0;
  const write = (c: { session: ClientSession; ns: number }) => () =>
    c.session.write({ nodeId: `ns=${c.ns};s=tank1.setpoint`, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 40 + (v++ % 20) } } });

  console.log(`OPC UA start: sim face ${simMs.toFixed(0)} ms, front ${frontMs.toFixed(0)} ms`);
  console.log(`RSS: node-opcua loaded ${mb(rss0)}, + sim face ${mb(rss1)}, + front ${mb(rss2)}`);
  await timeIt('read  direct (sim)', read(direct));
  await timeIt('read  through front', read(via));
  await timeIt('write direct (sim)', write(direct));
  await timeIt('write through front', write(via));
  console.log(`RSS after load: ${mb(process.memoryUsage().rss)}`);

  for (const c of [direct, via]) {
    await c.session.close();
    await c.client.disconnect();
  }
  await upstream.close();
  await front.stop();
  await sim.close();
  runtime.stop();
  await rm(dir, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
