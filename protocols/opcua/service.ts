// The gateway's OPC UA face as one unit (issue 4): the front for agents and one upstream session
// per OPC UA asset, joined so that values flow up → front and allowed writes/calls flow front → the
// asset's upstream. The gateway wiring calls startOpcuaService with the active bundle's OPC UA
// assets and its config; nothing here decides policy (the pipeline does, per item, in the front).
// The address space is built from the bundle active at start: a later bundle that maps new points
// needs a restart to expose them; one that unmaps points denies them at once (no rule covers them).
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { OPCUACertificateManager, StatusCodes, type Variant } from 'node-opcua';
import type { Clock } from '../../src/core/clock.js';
import { silentLogger, type Logger } from '../../src/core/log.js';
import type { CommandPipeline } from '../../src/core/pipeline.js';
import { OpcuaFront, type FrontAsset, type FrontMethod } from './front.js';
import type { JwtVerifier } from './jwt-token.js';
import { frontAssetFromMap, NodeMappingError, type OpcuaAssetMap } from './mapping.js';
import { OpcuaUpstream, parseTarget, type UpstreamSecurity } from './upstream.js';

export interface OpcuaUpstreamConfig {
  asset: string;
  endpointUrl: string;
  security: UpstreamSecurity;
  /** The PLC's application certificate (PEM or DER file): the only server certificate trusted. */
  serverCertificate: string;
  timeoutMs?: number;
  /** NodeId identifier of the asset's object on the PLC (methods' parent); default `s=<asset>`. */
  folderIdentifier?: string;
  methods?: FrontMethod[];
}

export interface OpcuaServiceOptions {
  host: string;
  port: number;
  /** The gateway's RSA application certificate (app-cert.ts), used toward agents and PLCs alike. */
  certificateFile: string;
  privateKeyFile: string;
  applicationUri: string;
  /** Agents' application certificates (PEM or DER files) allowed to open a secure channel. */
  trustedAgentCertificates: string[];
  /** Where the front's and the upstreams' certificate stores live (under the gateway's state dir). */
  pkiDir: string;
  upstreams: OpcuaUpstreamConfig[];
  /** The bundle's assets (only `protocol: opcua` ones are used). */
  assets: OpcuaAssetMap[];
  pipeline: CommandPipeline;
  verify: JwtVerifier;
  clock: Clock;
  logger?: Logger;
}

export interface OpcuaService {
  front: OpcuaFront;
  upstreams: Map<string, OpcuaUpstream>;
  endpointUrl: string;
  close(): Promise<void>;
}

async function der(file: string): Promise<Buffer> {
  const bytes = await readFile(file);
  const text = bytes.toString('latin1');
  return text.includes('-----BEGIN CERTIFICATE-----') ? Buffer.from(new X509Certificate(bytes).raw) : bytes;
}

/** Builds the front's assets from the bundle and the upstream config; refuses a half-configured asset. */
export function serviceAssets(assets: OpcuaAssetMap[], upstreams: OpcuaUpstreamConfig[]): FrontAsset[] {
  const out: FrontAsset[] = [];
  const namespaces = new Map<string, string>();
  for (const u of upstreams) {
    const a = assets.find((x) => x.id === u.asset);
    if (a === undefined) throw new NodeMappingError(`opcua_upstreams: asset '${u.asset}' is not in the policy bundle`);
    const f = frontAssetFromMap(a, { folderIdentifier: u.folderIdentifier, methods: u.methods });
    // A namespace names one server's nodes: two assets sharing one could not be told apart.
    const other = namespaces.get(f.namespaceUri);
    if (other !== undefined) throw new NodeMappingError(`assets '${other}' and '${u.asset}' share namespace '${f.namespaceUri}'`);
    namespaces.set(f.namespaceUri, u.asset);
    out.push(f);
  }
  return out;
}

export async function startOpcuaService(opts: OpcuaServiceOptions): Promise<OpcuaService> {
  const logger = opts.logger ?? silentLogger;
  const assets = serviceAssets(opts.assets, opts.upstreams);
  const frontPki = new OPCUACertificateManager({ rootFolder: path.join(opts.pkiDir, 'front'), automaticallyAcceptUnknownCertificate: false });
  await frontPki.initialize();
  for (const f of opts.trustedAgentCertificates) await frontPki.trustCertificate(await der(f));

  const byNamespace = new Map<string, OpcuaUpstream>();
  const upstreams = new Map<string, OpcuaUpstream>();
  const route = (target: string): OpcuaUpstream | undefined => {
    const t = parseTarget(target);
    return t === undefined ? undefined : byNamespace.get(t.uri);
  };
  const front = new OpcuaFront({
    host: opts.host,
    port: opts.port,
    certificateFile: opts.certificateFile,
    privateKeyFile: opts.privateKeyFile,
    applicationUri: opts.applicationUri,
    serverCertificateManager: frontPki,
    assets,
    pipeline: opts.pipeline,
    verify: opts.verify,
    clock: opts.clock,
    upstream: {
      write: async (target: string, value: Variant) => (await route(target)?.write(target, value)) ?? StatusCodes.BadNodeIdUnknown,
      call: async (objectTarget: string, methodTarget: string, inputs: Variant[]) =>
        (await route(methodTarget)?.call(objectTarget, methodTarget, inputs)) ?? { statusCode: StatusCodes.BadNodeIdUnknown, outputs: [] },
    },
  });
  await front.start();

  try {
    for (const [i, u] of opts.upstreams.entries()) {
      const asset = assets[i]!;
      const pki = new OPCUACertificateManager({ rootFolder: path.join(opts.pkiDir, `upstream-${u.asset}`), automaticallyAcceptUnknownCertificate: false });
      await pki.initialize();
      await pki.trustCertificate(await der(u.serverCertificate));
      const prefix = `nsu=${asset.namespaceUri};`;
      const upstream = new OpcuaUpstream({
        endpointUrl: u.endpointUrl,
        security: u.security,
        certificateFile: opts.certificateFile,
        privateKeyFile: opts.privateKeyFile,
        applicationUri: opts.applicationUri,
        clientCertificateManager: pki,
        targets: front.pointTargets().filter((t) => t.startsWith(prefix)),
        onValue: (t, v) => front.update(t, v),
        timeoutMs: u.timeoutMs,
        logger,
      });
      byNamespace.set(asset.namespaceUri, upstream);
      upstreams.set(u.asset, upstream);
      // Does not wait for the PLC: an unreachable one answers BadServerNotConnected until it is up.
      await upstream.start();
    }
  } catch (err) {
    for (const up of upstreams.values()) await up.close();
    await front.stop();
    throw err;
  }
  logger.info({ endpoint: front.endpointUrl, assets: assets.map((a) => a.assetId) }, 'OPC UA front listening');
  return {
    front,
    upstreams,
    endpointUrl: front.endpointUrl,
    close: async () => {
      for (const up of upstreams.values()) await up.close();
      await front.stop();
    },
  };
}
