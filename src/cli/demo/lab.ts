// The whole system on loopback, built from the same parts a plant deploys: a development PKI, a
// policy-signing key, the demo bundle compiled and signed from rules/, the simulated plant, the SOC
// collector and the gateway (started from a real YAML config). Used by `plantgate demo` and by the
// end-to-end tests, so both exercise exactly what ships.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JWK } from 'jose';
import { systemClock, type Clock } from '../../core/clock.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { startCollector } from '../../collector/server.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { startGateway, type GatewayHandle } from '../../gateway/gateway.js';
import { certificateThumbprint } from '../../identity/cert.js';
import { generateSigningKey, writeSigningKey } from '../../identity/dev/keys.js';
import { mintOperatorToken, mintToken } from '../../identity/dev/mint.js';
import { initPki, type PkiPaths } from '../../identity/dev/pki.js';
import { signBundle, writeBundleFile } from '../../policy/bundle.js';
import { compileSources } from '../../policy/sources.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { verifierKey } from '../../audit/note.js';
import type { AgentCredentials } from './agent.js';

/** The repository (or installed package) root, where rules/ and fixtures/ live. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(dir: string): string {
  // Runs once at startup, from src/ in the source tree or from dist/src/ when built.
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'rules'))) return d;
  }
  throw new Error(`cannot find the plantgate package root above ${dir}`);
}

export const DEMO_AGENTS = {
  optimizer: 'spiffe://plant.example/agent/optimizer',
  reporter: 'spiffe://plant.example/agent/reporter',
  planner: 'spiffe://plant.example/agent/planner',
} as const;

/** The demo's plant operator: approves requests on the operator API (not the agents' owner). */
export const DEMO_OPERATOR = 'bob@plant.example';
export type DemoAgent = keyof typeof DEMO_AGENTS;

export const DEV_ISSUER = 'https://issuer.dev.plantgate.local';
export const LAB_GATEWAY_ID = 'demo-gateway';

export interface Lab {
  stateDir: string;
  pki: PkiPaths;
  bundleFile: string;
  configFile: string;
  audience: string;
  sim: SimHandle;
  collector: Awaited<ReturnType<typeof startCollector>>;
  collectorDir: string;
  gateway: GatewayHandle;
  credentials(agent: DemoAgent): Promise<AgentCredentials>;
  /** A token for the agent from the development issuer, bound to its certificate. */
  token(agent: DemoAgent, opts?: LabTokenOptions): Promise<string>;
  /** A token for the gateway's MCP front (aud = its resource URI); `bound` ties it to the agent's certificate. */
  mcpToken(agent: DemoAgent, opts?: LabTokenOptions & { bound?: boolean; aud?: string }): Promise<string>;
  operatorToken: LabFiles['operatorToken'];
  /** Where the gateway's audit spool is, and the verifier key of its checkpoints. */
  spoolDir: string;
  auditVerifierKey: string;
  /** Resolves once the collector has verified and stored every record the gateway has written so far. */
  waitShipped(timeoutMs?: number): Promise<{ records: number; file: string }>;
  /** Present when the lab runs with `opcua: true`: the gateway's OPC UA front and its agents. */
  opcua?: LabOpcua;
  close(): Promise<void>;
}

/** The OPC UA side of the lab: the simulator's OPC UA face behind the gateway's front. */
export interface LabOpcua {
  /** The gateway's agent-facing OPC UA endpoint. */
  endpointUrl: string;
  /** The simulated PLC's own OPC UA endpoint (what the gateway's upstream session talks to). */
  simEndpointUrl: string;
  /** Writes and calls that reached the simulated PLC over OPC UA. */
  served(): { service: string; nodeId: string; values: number[]; status: string }[];
  /** Each agent's OPC UA application certificate (URI SAN = its SPIFFE ID) and key. */
  agentFiles: Record<DemoAgent, { cert: string; key: string }>;
  /** The gateway's OPC UA application certificate (what an agent trusts for the front). */
  gatewayCert: string;
  /** The OPC UA asset of the demo bundle and its namespace URI. */
  asset: string;
  namespace: string;
  /** A token bound to the agent's OPC UA application certificate (cnf), from the development issuer. */
  token(agent: DemoAgent, opts?: LabTokenOptions): Promise<string>;
}

/** What a lab token says beyond the demo's defaults (owner alice@plant.example, task demo-<agent>, no act). */
export interface LabTokenOptions {
  ttlSec?: number;
  scope?: string[];
  now?: number;
  owner?: string;
  /** Delegation chain, outermost actor first. */
  act?: string[];
  taskId?: string;
}

export interface LabOptions {
  stateDir: string;
  /** Clock of the simulated plant (a ManualClock steps the process model by hand). */
  clock?: Clock;
  /** Clock of the gateway (token expiry, bundle validity). */
  gatewayClock?: Clock;
  logger?: Logger;
  /** Plant file and policy entry file, relative to the package root; default the demo plant. */
  plant?: string;
  rules?: string;
  /** `monitor`: the demo bundle in shadow mode (denies reported, not enforced), e.g. to observe traffic. */
  bundleMode?: 'monitor';
  /** Edits the generated gateway config before it is loaded (tests of limits and failures). */
  patchConfig?: (yaml: string) => string;
  /**
   * Also serve the plant over OPC UA (the simulator's OPC UA face) behind the gateway's OPC UA
   * front (asset plc1-ua). Costs ~2 s and ~100 MB: node-opcua is loaded only then.
   */
  opcua?: boolean;
}

/** The demo bundle's OPC UA asset (rules/demo/bundle.yaml) and the simulator's namespace for it. */
export const LAB_OPCUA_ASSET = 'plc1-ua';
export const LAB_OPCUA_NAMESPACE = 'urn:plantgate:sim:water-treatment:plc1';
export const LAB_GATEWAY_OPCUA_URI = `urn:plantgate:gateway:${LAB_GATEWAY_ID}`;

/** Files every way of running the lab needs: PKI, policy key, signed bundle, issuer key. */
export interface LabFiles {
  stateDir: string;
  pki: PkiPaths;
  ca: Buffer;
  bundleFile: string;
  policyJwks: string;
  /** Ed25519 key that signs the gateway's audit checkpoints, and its C2SP verifier key. */
  auditKeyFile: string;
  auditVerifierKey: string;
  audience: string;
  credentials(agent: DemoAgent): Promise<AgentCredentials>;
  token(agent: DemoAgent, opts?: LabTokenOptions): Promise<string>;
  /** An operator bearer token (role operator) for the operator API. */
  operatorToken(opts?: { sub?: string; roles?: string[]; now?: number }): Promise<string>;
  /** The gateway config for a simulator and a collector at these ports (0 = ephemeral listeners). */
  gatewayYaml(p: GatewayYamlPorts): string;
  /** Mints a development token for the agent, bound to the certificate given (DER or PEM; none: a bearer token). */
  mintFor(agent: DemoAgent, cert: Buffer | string | undefined, opts?: LabTokenOptions & { aud?: string }): Promise<string>;
  /** A collector config writing under the state dir. */
  collectorYaml(port: number): string;
}

export async function prepareLabFiles(opts: Pick<LabOptions, 'stateDir' | 'rules' | 'gatewayClock' | 'bundleMode'>): Promise<LabFiles> {
  const stateDir = path.resolve(opts.stateDir);
  await mkdir(stateDir, { recursive: true });
  const pki = await initPki(path.join(stateDir, 'pki'), {
    agents: Object.entries(DEMO_AGENTS).map(([name, spiffeId]) => ({ name, spiffeId })),
    overwrite: true,
  });
  const policyKey = await generateSigningKey({ alg: 'EdDSA', name: 'policy' });
  const policyKeyFiles = await writeSigningKey(path.join(stateDir, 'keys'), 'policy', policyKey);
  const payload = await compileSources(path.join(PACKAGE_ROOT, opts.rules ?? 'rules/demo/bundle.yaml'), { now: (opts.gatewayClock ?? systemClock).now(), revision: 1 });
  if (opts.bundleMode !== undefined) payload.mode = opts.bundleMode;
  const bundleFile = path.join(stateDir, 'bundle.jws');
  await writeBundleFile(bundleFile, await signBundle(payload, policyKey.privateJwk, policyKey.kid));
  const issuerKey = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
  const ca = await readFile(pki.ca.cert);
  const auditKey = await generateSigningKey({ alg: 'EdDSA', name: 'audit' });
  const auditKeyFile = (await writeSigningKey(path.join(stateDir, 'keys'), 'audit', auditKey)).privateJwkPath;
  const auditVerifierKey = verifierKey(`plantgate/${LAB_GATEWAY_ID}`, createPrivateKey({ key: auditKey.privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' }));

  const mintFor: LabFiles['mintFor'] = (agent, cert, t = {}) =>
    mintToken({
      privateJwk: issuerKey,
      iss: DEV_ISSUER,
      sub: DEMO_AGENTS[agent],
      aud: t.aud ?? payload.audience,
      owner: t.owner ?? 'alice@plant.example',
      ...(t.act !== undefined ? { act: t.act } : {}),
      task: { id: t.taskId ?? `demo-${agent}`, purpose: { optimizer: 'optimize tank level setpoint', reporter: 'shift report', planner: 'plan a tank drain' }[agent] },
      scope: t.scope ?? (agent === 'reporter' ? ['read'] : ['read', 'write']),
      ttlSec: t.ttlSec ?? 300,
      ...(cert !== undefined ? { certThumbprint: certificateThumbprint(new X509Certificate(cert)) } : {}),
      now: t.now,
    });
  const credentials = async (agent: DemoAgent): Promise<AgentCredentials> => {
    const files = pki.agents[agent];
    const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
    return { ca, cert, key };
  };
  return {
    stateDir,
    pki,
    ca,
    bundleFile,
    policyJwks: policyKeyFiles.jwksPath,
    auditKeyFile,
    auditVerifierKey,
    audience: payload.audience,
    credentials,
    mintFor,
    token: async (agent, t = {}) => mintFor(agent, (await credentials(agent)).cert, t),
    operatorToken: (o = {}) =>
      mintOperatorToken({ privateJwk: issuerKey, iss: DEV_ISSUER, sub: o.sub ?? DEMO_OPERATOR, aud: payload.audience, roles: o.roles ?? ['operator'], ttlSec: 600, now: o.now }),
    gatewayYaml: (p) => gatewayYaml({ pki, bundleFile, policyJwks: policyKeyFiles.jwksPath, auditKeyFile, ...p }),
    collectorYaml: (port) =>
      `listen: { host: 127.0.0.1, port: ${port} }\ntls: { ca: ${JSON.stringify(pki.ca.cert)}, cert: ${JSON.stringify(pki.collector.cert)}, key: ${JSON.stringify(pki.collector.key)} }\nout_dir: ${JSON.stringify(path.join(stateDir, 'collector'))}\n`,
  };
}

export async function startLab(opts: LabOptions): Promise<Lab> {
  const logger = opts.logger ?? silentLogger;
  const files = await prepareLabFiles(opts);
  const { stateDir, pki, ca, bundleFile } = files;

  const sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, opts.plant ?? 'fixtures/plants/water-treatment.yaml'), host: '127.0.0.1', port: 0, clock: opts.clock, logger });

  const collectorDir = path.join(stateDir, 'collector');
  const [collectorCert, collectorKey] = await Promise.all([readFile(pki.collector.cert), readFile(pki.collector.key)]);
  // Like a default collector, it writes the OCSF export too (docs/audit.md, Collector output); one file
  // per gateway (layout single) rather than per day, so the demo can name the file it prints.
  const collector = await startCollector({ host: '127.0.0.1', port: 0, tls: { ca, cert: collectorCert, key: collectorKey }, outDir: collectorDir, output: { layout: 'single', ocsf: true }, logger });

  let collectedSeq = -1;
  let shippedWaiters: Array<() => void> = [];
  collector.on('record', (_gatewayId: string, record: { seq?: number | { toNumber(): number } }) => {
    collectedSeq = Number(record.seq ?? -1);
    const waiters = shippedWaiters;
    shippedWaiters = [];
    for (const w of waiters) w();
  });

  let opcua: { files: LabOpcuaFiles; sim: import('../../sim/opcua-server.js').OpcuaSimHandle } | undefined;
  if (opts.opcua) {
    try {
      const ua = await prepareOpcuaFiles(path.join(stateDir, 'opcua'));
      // Loaded only here: node-opcua costs ~1 s and ~100 MB, and the Modbus demo does not need it.
      const { startOpcuaSimulator } = await import('../../sim/opcua-server.js');
      const uaSim = await startOpcuaSimulator({ runtime: sim.runtime, faults: sim.faultSet, host: '127.0.0.1', port: 0, security: 'secure', certificateFile: ua.sim.cert, privateKeyFile: ua.sim.key, pkiDir: path.join(stateDir, 'opcua', 'sim-pki') });
      opcua = { files: ua, sim: uaSim };
    } catch (err) {
      await collector.close();
      await sim.close();
      throw err;
    }
  }

  const configFile = path.join(stateDir, 'gateway.yaml');
  const yaml = files.gatewayYaml({
    simPort: sim.port,
    collectorPort: collector.port,
    ...(opcua ? { opcua: { endpointUrl: opcua.sim.endpointUrl, gateway: opcua.files.gateway, simCert: opcua.files.sim.cert, agentCerts: Object.values(opcua.files.agents).map((a) => a.cert) } } : {}),
  });
  await writeFile(configFile, opts.patchConfig ? opts.patchConfig(yaml) : yaml);
  const config = await loadGatewayConfig(configFile);
  let gateway: GatewayHandle;
  try {
    gateway = await startGateway(config, { clock: opts.gatewayClock, logger });
  } catch (err) {
    await opcua?.sim.close();
    await collector.close();
    await sim.close();
    throw err;
  }
  if (gateway.policy.engine === undefined) {
    await gateway.close();
    throw new Error('the gateway refused the demo bundle it was just given (see the log)');
  }
  await gateway.upstreamsReady();
  let labOpcua: LabOpcua | undefined;
  if (opcua !== undefined) {
    const ua = opcua;
    if (gateway.opcua === undefined) throw new Error('the gateway did not start its OPC UA front');
    labOpcua = {
      endpointUrl: gateway.opcua.endpointUrl,
      simEndpointUrl: ua.sim.endpointUrl,
      served: () => ua.sim.served(),
      agentFiles: ua.files.agents,
      gatewayCert: ua.files.gateway.cert,
      asset: LAB_OPCUA_ASSET,
      namespace: LAB_OPCUA_NAMESPACE,
      token: async (agent, t) => files.mintFor(agent, await readFile(ua.files.agents[agent].cert), t),
    };
  }

  return {
    stateDir,
    pki,
    bundleFile,
    configFile,
    audience: files.audience,
    sim,
    collector,
    collectorDir,
    gateway,
    credentials: files.credentials,
    token: files.token,
    mcpToken: async (agent, t = {}) =>
      files.mintFor(agent, t.bound ? (await files.credentials(agent)).cert : undefined, { ...t, aud: t.aud ?? gateway.mcp?.resource ?? '' }),
    operatorToken: files.operatorToken,
    spoolDir: config.audit.spool_dir,
    auditVerifierKey: files.auditVerifierKey,
    waitShipped: async (timeoutMs = 10_000) => {
      const target = gateway.audit.nextSeq - 1;
      const deadline = Date.now() + timeoutMs;
      while (collectedSeq < target) {
        if (Date.now() > deadline) throw new Error(`the collector has records up to ${collectedSeq}, the gateway wrote up to ${target}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now());
          shippedWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return { records: target + 1, file: path.join(collectorDir, `${LAB_GATEWAY_ID}.ndjson`) };
    },
    ...(labOpcua ? { opcua: labOpcua } : {}),
    close: async () => {
      await gateway.close();
      await opcua?.sim.close();
      await collector.close();
      await sim.close();
    },
  };
}

interface GatewayYamlPorts {
  simPort: number;
  collectorPort: number;
  modbusPort?: number;
  agentApiPort?: number;
  opsPort?: number;
  mcpPort?: number;
  /** The OPC UA front and its upstream to the simulator's OPC UA face. */
  opcua?: { endpointUrl: string; gateway: { cert: string; key: string }; simCert: string; agentCerts: string[]; port?: number };
}

interface LabOpcuaFiles {
  gateway: { cert: string; key: string };
  sim: { cert: string; key: string };
  agents: Record<DemoAgent, { cert: string; key: string }>;
}

/**
 * OPC UA application certificates (RSA 2048): the gateway's (used toward agents and the PLC), the
 * simulated PLC's, and one per demo agent whose URI SAN is the agent's SPIFFE ID (its identity).
 */
async function prepareOpcuaFiles(dir: string): Promise<LabOpcuaFiles> {
  const { createAppCert, writeAppCert } = await import('../../../protocols/opcua/app-cert.js');
  await mkdir(dir, { recursive: true });
  const names = Object.keys(DEMO_AGENTS) as DemoAgent[];
  const [gw, sim, ...agents] = await Promise.all([
    createAppCert({ applicationUri: LAB_GATEWAY_OPCUA_URI, commonName: LAB_GATEWAY_ID, hosts: ['127.0.0.1', 'localhost'] }),
    createAppCert({ applicationUri: 'urn:plantgate:sim:water-treatment', commonName: 'water-treatment simulator', hosts: ['127.0.0.1', 'localhost'] }),
    ...names.map((n) => createAppCert({ applicationUri: DEMO_AGENTS[n], commonName: n })),
  ]);
  const out = { gateway: await writeAppCert(dir, 'gateway', gw!), sim: await writeAppCert(dir, 'sim', sim!), agents: {} as LabOpcuaFiles['agents'] };
  for (const [i, n] of names.entries()) out.agents[n] = await writeAppCert(dir, `agent-${n}`, agents[i]!);
  return out;
}

function opcuaYaml(o: NonNullable<GatewayYamlPorts['opcua']>): string {
  return `opcua:
  application_uri: ${JSON.stringify(LAB_GATEWAY_OPCUA_URI)}
  cert: ${JSON.stringify(o.gateway.cert)}
  key: ${JSON.stringify(o.gateway.key)}
  trusted_agent_certs: [${o.agentCerts.map((c) => JSON.stringify(c)).join(', ')}]
opcua_upstreams:
  - asset: ${LAB_OPCUA_ASSET}
    endpoint_url: ${JSON.stringify(o.endpointUrl)}
    security: SignAndEncrypt
    server_cert: ${JSON.stringify(o.simCert)}
    timeout_ms: 2000
`;
}

function gatewayYaml(p: { pki: PkiPaths; bundleFile: string; policyJwks: string; auditKeyFile: string } & GatewayYamlPorts): string {
  return `# Generated by plantgate demo: a gateway on loopback in front of the simulated plant.
gateway_id: ${LAB_GATEWAY_ID}
state_dir: ${JSON.stringify(path.join(path.dirname(p.bundleFile), 'gateway-state'))}
tls:
  ca: ${JSON.stringify(p.pki.ca.cert)}
  cert: ${JSON.stringify(p.pki.gateway.cert)}
  key: ${JSON.stringify(p.pki.gateway.key)}
listeners:
  modbus_tls: { host: 127.0.0.1, port: ${p.modbusPort ?? 0} }
  agent_api: { host: 127.0.0.1, port: ${p.agentApiPort ?? 0} }
  operator_api: { host: 127.0.0.1, port: 0 }
  ops: { host: 127.0.0.1, port: ${p.opsPort ?? 0} }
  mcp: { host: 127.0.0.1, port: ${p.mcpPort ?? 0} }
${p.opcua ? `  opcua: { host: 127.0.0.1, port: ${p.opcua.port ?? 0} }\n` : ''}upstreams:
  - asset: plc1
    host: 127.0.0.1
    port: ${p.simPort}
    connections: 2
    timeout_ms: 1000
${
  p.opcua
    ? ''
    : `  # Without the OPC UA front, the OPC UA asset's interlock inputs are polled over the same PLC's
  # Modbus face (unit 1); with it, they are read on the gateway's OPC UA upstream session.
  - asset: ${LAB_OPCUA_ASSET}
    host: 127.0.0.1
    port: ${p.simPort}
    unit_id: 1
    connections: 1
    timeout_ms: 1000
`
}policy:
  bundle_file: ${JSON.stringify(p.bundleFile)}
  trusted_keys: [${JSON.stringify(p.policyJwks)}]
audit:
  spool_dir: ${JSON.stringify(path.join(path.dirname(p.bundleFile), 'spool'))}
  key_file: ${JSON.stringify(p.auditKeyFile)}
  checkpoint_every_records: 16
  checkpoint_every_ms: 5000
  collector: { host: 127.0.0.1, port: ${p.collectorPort}, server_name: localhost }
${p.opcua ? opcuaYaml(p.opcua) : ''}`;
}
