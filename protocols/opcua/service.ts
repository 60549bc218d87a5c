// The gateway's OPC UA face as one unit (docs/opcua.md): the front for agents and one upstream
// session per OPC UA asset, joined so that values flow up → front and allowed writes/calls flow
// front → the asset's upstream. The gateway wiring calls startOpcuaService with the active bundle's
// OPC UA assets and its config; nothing here decides policy (the pipeline does, per item, in the front).
//
// Two kinds of asset: one described by a plant file (points_from: its points and methods are the
// front's nodes, built at start), and one whose server describes itself (no point map: the
// upstream browses it and the front mirrors what it finds, again on every reconnection and model
// change). A later bundle that maps new plant-file points needs a restart to expose them; one that
// unmaps points denies them at once (no rule covers them).
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { OPCUACertificateManager, StatusCodes, type Variant } from 'node-opcua';
import type { Clock } from '../../src/core/clock.js';
import { silentLogger, type Logger } from '../../src/core/log.js';
import type { CommandPipeline } from '../../src/core/pipeline.js';
import { certificateThumbprint, identityFromCertificate, roleFromCertificate, type CertificateIdentity } from '../../src/identity/cert.js';
import { OpcuaFront, certificateSummary, type FrontAsset, type FrontMethod } from './front.js';
import type { JwtVerifier } from './jwt-token.js';
import { frontAssetFromMap, NodeMappingError, type OpcuaAssetMap } from './mapping.js';
import { OpcuaUpstream, type UpstreamSecurity } from './upstream.js';

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
  /**
   * A server that describes itself: where to browse (browse paths from Objects such as `/Line1`,
   * or canonical NodeIds); default `/` (every non-standard node under Objects).
   */
  browse?: string[];
  /** At most this many nodes are mirrored (default 10,000); the rest are logged as unmirrored. */
  maxNodes?: number;
}

export interface OpcuaServiceOptions {
  host: string;
  port: number;
  /** The gateway's RSA application certificate (app-cert.ts), used toward agents and PLCs alike. */
  certificateFile: string;
  privateKeyFile: string;
  applicationUri: string;
  /**
   * Agents' application certificates (PEM or DER files) allowed to open a secure channel. A bare
   * file: its URI SAN (applicationUri) is the agent's SPIFFE ID. `{ cert, workload }`: a pinned
   * certificate whose applicationUri is not a SPIFFE ID (a tool's own, e.g. open62541's) proves
   * `workload` (docs/opcua.md, "The applicationUri rule").
   */
  trustedAgentCertificates: (string | { cert: string; workload: string })[];
  /** Where the front's and the upstreams' certificate stores live (under the gateway's state dir). */
  pkiDir: string;
  upstreams: OpcuaUpstreamConfig[];
  /** The bundle's assets (only `protocol: opcua` ones are used). */
  assets: OpcuaAssetMap[];
  pipeline: CommandPipeline;
  verify: JwtVerifier;
  clock: Clock;
  /** Accept the JWT as a UserName password too (jwt-token.ts). */
  jwtAsPassword?: boolean;
  logger?: Logger;
}

export interface OpcuaService {
  front: OpcuaFront;
  upstreams: Map<string, OpcuaUpstream>;
  endpointUrl: string;
  /** Resolves once every upstream is connected and every browsed server mirrored (tests, readiness). */
  whenReady(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_MAX_NODES = 10_000;

async function der(file: string): Promise<Buffer> {
  const bytes = await readFile(file);
  const text = bytes.toString('latin1');
  return text.includes('-----BEGIN CERTIFICATE-----') ? Buffer.from(new X509Certificate(bytes).raw) : bytes;
}

/** An upstream's asset: described by a plant file (a FrontAsset) or by its browsed server. */
type ServiceAsset = { kind: 'plant'; asset: FrontAsset } | { kind: 'browsed'; assetId: string; namespaceUri: string };

/** Matches the upstream config to the bundle's assets; refuses a half-configured one. */
export function serviceAssets(assets: OpcuaAssetMap[], upstreams: OpcuaUpstreamConfig[]): ServiceAsset[] {
  const out: ServiceAsset[] = [];
  const namespaces = new Map<string, string>();
  for (const u of upstreams) {
    const a = assets.find((x) => x.id === u.asset);
    if (a === undefined) throw new NodeMappingError(`opcua_upstreams: asset '${u.asset}' is not in the policy bundle`);
    if (a.protocol !== 'opcua') throw new NodeMappingError(`opcua_upstreams: asset '${u.asset}' is ${a.protocol}, not opcua`);
    const browsed = Object.keys(a.points).length === 0 && (a.methods === undefined || Object.keys(a.methods).length === 0);
    if (browsed && (a.namespace === undefined || a.namespace === '')) throw new NodeMappingError(`OPC UA asset '${a.id}' has no namespace`);
    const s: ServiceAsset = browsed ? { kind: 'browsed', assetId: a.id, namespaceUri: a.namespace! } : { kind: 'plant', asset: frontAssetFromMap(a, { folderIdentifier: u.folderIdentifier, methods: u.methods }) };
    // A namespace names one server's nodes: two assets sharing one could not be told apart.
    const uri = s.kind === 'plant' ? s.asset.namespaceUri : s.namespaceUri;
    const other = namespaces.get(uri);
    if (other !== undefined) throw new NodeMappingError(`assets '${other}' and '${u.asset}' share namespace '${uri}'`);
    namespaces.set(uri, u.asset);
    out.push(s);
  }
  return out;
}

export async function startOpcuaService(opts: OpcuaServiceOptions): Promise<OpcuaService> {
  const logger = opts.logger ?? silentLogger;
  const assets = serviceAssets(opts.assets, opts.upstreams);
  const frontPki = new OPCUACertificateManager({ rootFolder: path.join(opts.pkiDir, 'front'), automaticallyAcceptUnknownCertificate: false });
  await frontPki.initialize();
  // Certificates pinned to a workload by the operator, by thumbprint.
  const assigned = new Map<string, string>();
  for (const entry of opts.trustedAgentCertificates) {
    const bytes = await der(typeof entry === 'string' ? entry : entry.cert);
    await frontPki.trustCertificate(bytes);
    if (typeof entry !== 'string') assigned.set(certificateThumbprint(new X509Certificate(bytes)), entry.workload);
  }
  const identify = (cert: X509Certificate): CertificateIdentity => {
    const workloadId = assigned.get(certificateThumbprint(cert));
    if (workloadId === undefined) return identityFromCertificate(cert);
    // An unreadable role extension throws NO_IDENTITY here too (never "no role").
    const role = roleFromCertificate(cert);
    return { workloadId, thumbprint: certificateThumbprint(cert), ...(role !== undefined ? { role } : {}) };
  };

  const upstreams = new Map<string, OpcuaUpstream>();
  // A node belongs to the asset whose server the front mirrored it from.
  const route = (target: string): OpcuaUpstream | undefined => {
    const asset = front.assetOf(target);
    return asset === undefined ? undefined : upstreams.get(asset);
  };
  const front: OpcuaFront = new OpcuaFront({
    host: opts.host,
    port: opts.port,
    certificateFile: opts.certificateFile,
    privateKeyFile: opts.privateKeyFile,
    applicationUri: opts.applicationUri,
    serverCertificateManager: frontPki,
    assets: assets.flatMap((a) => (a.kind === 'plant' ? [a.asset] : [])),
    pipeline: opts.pipeline,
    verify: opts.verify,
    clock: opts.clock,
    jwtAsPassword: opts.jwtAsPassword === true,
    identify,
    onCertificateRefused: (r) =>
      opts.pipeline.violation(
        { protocol: 'opcua', remoteAddress: r.remoteAddress },
        'NO_IDENTITY',
        'OpenSecureChannel',
        `application certificate refused (${r.status}; the client was answered ${r.answered}): ${certificateSummary(r.certificate)}`,
      ),
    upstream: {
      write: async (target: string, value: Variant, attributeId?: number) => (await route(target)?.write(target, value, attributeId)) ?? StatusCodes.BadNodeIdUnknown,
      call: async (objectTarget: string, methodTarget: string, inputs: Variant[]) =>
        (await route(methodTarget)?.call(objectTarget, methodTarget, inputs)) ?? { statusCode: StatusCodes.BadNodeIdUnknown, outputs: [] },
    },
  });
  await front.start();

  try {
    for (const [i, u] of opts.upstreams.entries()) {
      const asset = assets[i]!;
      const assetId = asset.kind === 'plant' ? asset.asset.assetId : asset.assetId;
      const pki = new OPCUACertificateManager({ rootFolder: path.join(opts.pkiDir, `upstream-${u.asset}`), automaticallyAcceptUnknownCertificate: false });
      await pki.initialize();
      await pki.trustCertificate(await der(u.serverCertificate));
      const upstream = new OpcuaUpstream({
        endpointUrl: u.endpointUrl,
        security: u.security,
        certificateFile: opts.certificateFile,
        privateKeyFile: opts.privateKeyFile,
        applicationUri: opts.applicationUri,
        clientCertificateManager: pki,
        targets: asset.kind === 'plant' ? front.pointTargets(assetId) : [],
        ...(asset.kind === 'browsed'
          ? {
              mirror: {
                roots: u.browse ?? ['/'],
                maxNodes: u.maxNodes ?? DEFAULT_MAX_NODES,
                onModel: (model) => {
                  const unmirrored = front.setModel(assetId, model);
                  if (unmirrored.length > 0) logger.warn({ asset: assetId, unmirrored: unmirrored.slice(0, 20), count: unmirrored.length }, 'OPC UA front: nodes it cannot reproduce');
                  logger.info({ asset: assetId, nodes: model.nodes.length - unmirrored.length }, 'OPC UA server mirrored');
                  return front.pointTargets(assetId);
                },
              },
            }
          : {}),
        onValue: (t, v) => front.update(t, v),
        timeoutMs: u.timeoutMs,
        logger,
      });
      upstreams.set(u.asset, upstream);
      // Does not wait for the PLC: an unreachable one answers BadServerNotConnected until it is up.
      await upstream.start();
    }
  } catch (err) {
    for (const up of upstreams.values()) await up.close();
    await front.stop();
    throw err;
  }
  logger.info({ endpoint: front.endpointUrl, assets: opts.upstreams.map((u) => u.asset) }, 'OPC UA front listening');
  return {
    front,
    upstreams,
    endpointUrl: front.endpointUrl,
    whenReady: async () => {
      for (const up of upstreams.values()) {
        await up.whenUp();
        await up.whenMirrored();
      }
    },
    close: async () => {
      for (const up of upstreams.values()) await up.close();
      await front.stop();
    },
  };
}
