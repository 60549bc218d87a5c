// The agent-facing OPC UA server front (docs/opcua.md). Owns: the endpoints (Basic256Sha256 and
// Aes256_Sha256_RsaPss, Sign and SignAndEncrypt only, JWT user tokens via jwt-token.ts), an
// address space mirroring each asset's server under the server's own namespace URIs and NodeIds
// (mirror.ts: browse names, display names, data types, value ranks, access levels, properties,
// methods with their arguments), the status codes an OPC UA user expects for what the server
// itself would refuse (unknown node, read-only node, wrong type, wrong argument count), the reason
// code of a refused item in diagnostic info when the request asks for it, and turning
// every Read (Value), Write, Call, Browse and CreateMonitoredItems item into a Command asked of the
// pipeline. It never decides policy, and never lets an item through without an allow.
//
// Where the checkpoint sits: node-opcua's variable setters do not see the session, so the gate
// wraps the server engine's read/write/call/browse (whose context carries the session) and the
// CreateMonitoredItems service. Items without a session are in-process (node-opcua's own) and pass.
//
// Values: each variable answers from a copy the upstream feeds (subscription notifications); the
// gate answers an allowed Value read from that copy and forwards an allowed write to the upstream
// itself (node-opcua's read and write paths would reach the same copy and upstream with more work
// per item: docs/opcua.md, Costs). A write the server accepted replaces the copy at once and holds
// there until the server echoes it (a notification sampled before the write may arrive after its
// answer), so a read after a write returns the written value.
import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  AttributeIds,
  BrowseResult,
  CallMethodResult,
  CreateSessionRequest,
  DataType,
  DataValue,
  DiagnosticInfo,
  LocalizedText,
  MessageSecurityMode,
  MonitoredItemCreateResult,
  NodeId,
  QualifiedName,
  SecurityPolicy,
  ServiceFault,
  StatusCodes,
  TimestampsToReturn,
  Variant,
  VariantArrayType,
  coerceNodeId,
  sameVariant,
  type Argument,
  type BaseNode,
  type BrowseDescriptionOptions,
  type CallMethodRequest,
  type CallMethodResultOptions,
  type ISessionContext,
  type MonitoredItemCreateRequest,
  type Namespace,
  type OPCUACertificateManager,
  type ReadRequestOptions,
  type ServerSession,
  type StatusCode,
  type Subscription,
  type UAMethod,
  type UAObject,
  type UAVariable,
  type WriteValue,
} from 'node-opcua';
import type { Clock } from '../../src/core/clock.js';
import type { Command, Decision, Operation, Subject, Target, TypedValue } from '../../src/core/command.js';
import type { CommandPipeline, Session } from '../../src/core/pipeline.js';
import { opcuaStatusFor, type Reason } from '../../src/core/reasons.js';
import { certificateThumbprint, parseSubjectAltNames } from '../../src/identity/cert.js';
import { JwtOPCUAServer, jwtSessionIdentity, type JwtServerHooks, type JwtVerifier } from './jwt-token.js';
import { assetModel } from './mapping.js';
import { REF, type MirrorModel, type MirrorNode, type Unmirrored } from './mirror.js';

import type { FrontAsset } from '../../src/assets/opcua-face.js';

export type { PointDataType } from '../../src/assets/data-type.js';

// What an asset shows over OPC UA is part of the asset format (src/assets/opcua-face.ts).
export type { FrontAsset, FrontMethod, FrontMethodArgument, FrontPoint } from '../../src/assets/opcua-face.js';

/** Where allowed writes and calls go (the upstream session, or a test double of it). */
export interface FrontUpstream {
  /** Writes the Value (or `attributeId`) of a node; resolves with the server's status. */
  write(nodeId: string, value: Variant, attributeId?: number): Promise<StatusCode>;
  call(objectId: string, methodId: string, inputs: Variant[]): Promise<{ statusCode: StatusCode; outputs: Variant[]; inputArgumentResults?: StatusCode[] }>;
}

export interface OpcuaFrontOptions {
  port: number;
  host?: string;
  /** Application instance certificate and key (PEM files); the certificate's URI SAN is applicationUri. */
  certificateFile: string;
  privateKeyFile: string;
  applicationUri: string;
  /** Trust store for agents' application certificates (only trusted certificates may connect). */
  serverCertificateManager: OPCUACertificateManager;
  /** Assets described by a plant file; a browsed server's arrive later through setModel. */
  assets: FrontAsset[];
  pipeline: CommandPipeline;
  verify: JwtVerifier;
  upstream: FrontUpstream;
  clock: Clock;
  /**
   * Also accept the JWT as the password of a UserNameIdentityToken, for clients that cannot send
   * an IssuedIdentityToken (jwt-token.ts: encrypted, or on SignAndEncrypt only).
   */
  jwtAsPassword?: boolean;
  /** Agent application certificates refused at OpenSecureChannel (audited by the service). */
  onCertificateRefused?: (refusal: CertificateRefusal) => void;
  /** The workload an agent's application certificate proves (jwt-token.ts JwtServerHooks.identify). */
  identify?: JwtServerHooks['identify'];
}

/** An agent's application certificate refused while opening a secure channel. */
export interface CertificateRefusal {
  /** The certificate's status (BadCertificateUntrusted, BadCertificateTimeInvalid, …). */
  status: string;
  /** What the client was answered. */
  answered: string;
  remoteAddress: string;
  certificate: Buffer;
}

/** OPC UA binary encoding ids of the requests, kept as the Command's function code for the audit. */
const SERVICE_ID = { Read: 631, Write: 673, Call: 712, Browse: 527, CreateMonitoredItems: 751 } as const;
type Service = keyof typeof SERVICE_ID;

const NUMERIC = new Set([DataType.SByte, DataType.Byte, DataType.Int16, DataType.UInt16, DataType.Int32, DataType.UInt32, DataType.Int64, DataType.UInt64, DataType.Float, DataType.Double]);
const SIGNED = new Set([DataType.SByte, DataType.Int16, DataType.Int32, DataType.Int64]);
const UNSIGNED = new Set([DataType.Byte, DataType.UInt16, DataType.UInt32, DataType.UInt64]);
/** Abstract standard DataTypes (ns=0) and the built-in types a value of them may have. */
const ABSTRACT: Record<number, (t: DataType) => boolean> = {
  24: () => true, // BaseDataType
  26: (t) => NUMERIC.has(t), // Number
  27: (t) => SIGNED.has(t), // Integer
  28: (t) => UNSIGNED.has(t), // UInteger
};

/** One mirrored node on the front. */
interface FrontNode {
  assetId: string;
  mirror: MirrorNode;
  /** Canonical NodeId `nsu=<uri>;<identifier>`: the Command target. */
  target: string;
  /** Point name in Commands and the audit: the plant file's name, else the browse path. */
  point: string;
  ua: BaseNode;
  /** Variables: which built-in types a written value may have. */
  accepts?: (t: DataType) => boolean;
  /** Variables fed by the upstream: the value reads answer. */
  copy?: DataValue;
  /** Methods: the object they belong to (canonical). */
  objectTarget?: string;
  /** A signature of what the front built, to rebuild only what changed when the model changes. */
  shape: string;
}

/** The part of node-opcua's ServerSecureChannelLayer the certificate watch uses. */
interface WatchedChannel {
  remoteAddress?: string;
  remotePort?: number;
  checkCertificate(certificate: Buffer | null): Promise<StatusCode>;
}

/** The part of node-opcua's ServerSecureChannelLayer the CreateSession refusal watch uses. */
interface AnsweringChannel {
  remoteAddress?: string;
  remotePort?: number;
  clientCertificate?: Buffer | null;
  send_response(msgType: string, response: unknown, message: { request?: unknown }, callback?: unknown): void;
}

/** `address:port` of a channel's peer. */
function peerOf(channel: { remoteAddress?: string; remotePort?: number } | null | undefined): string {
  if (!channel) return '';
  return channel.remotePort ? `${channel.remoteAddress ?? ''}:${channel.remotePort}` : (channel.remoteAddress ?? '');
}

/**
 * What the audit says of an application certificate: its x5t#S256 thumbprint, subject and
 * applicationUri (URI SAN); never the certificate's key or the token.
 */
export function certificateSummary(der: Buffer): string {
  try {
    const c = new X509Certificate(der);
    const uris = (parseSubjectAltNames(c.subjectAltName ?? '') ?? []).filter((e) => e.kind === 'URI').map((e) => e.value);
    return `thumbprint ${certificateThumbprint(c)}, subject '${c.subject.split('\n').join(', ')}', applicationUri '${uris.join(' ') || '(none)'}'`;
  } catch {
    return `(${der.length} bytes that are not an X.509 certificate)`;
  }
}

/** One Command's way through the gate: its decision (sync or durable) and where it came from. */
interface Gated {
  cmd: Command;
  decision: Decision | Promise<Decision>;
}

/** What the front answers for a refused item: the status for the reason (the reason goes to the audit). */
function refusedStatus(reason: Reason, operation: string): StatusCode {
  return (StatusCodes as unknown as Record<string, StatusCode>)[opcuaStatusFor(reason, operation)] ?? StatusCodes.BadUserAccessDenied;
}

/** A 64-bit integer as node-opcua carries it ([high, low] 32-bit words) as a bigint. */
function int64Of(v: unknown, signed: boolean): bigint | undefined {
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const n = (BigInt(v[0] as number) << 32n) | BigInt((v[1] as number) >>> 0);
  return signed ? BigInt.asIntN(64, n) : BigInt.asUintN(64, n);
}

/** One element of a Variant as policy sees it; undefined for what policy cannot judge (structures). */
function typedScalar(t: DataType, v: unknown): TypedValue | undefined {
  if (v === null || v === undefined) return undefined;
  switch (t) {
    case DataType.Boolean:
      return Boolean(v);
    case DataType.Int64:
    case DataType.UInt64:
      return int64Of(v, t === DataType.Int64);
    case DataType.String:
    case DataType.XmlElement:
    case DataType.Guid:
      return String(v);
    case DataType.DateTime:
      return v instanceof Date ? v : undefined;
    case DataType.ByteString:
      return Buffer.isBuffer(v) ? v : undefined;
    case DataType.LocalizedText:
      return (v as LocalizedText).text ?? '';
    case DataType.QualifiedName:
      return (v as QualifiedName).name ?? '';
    case DataType.NodeId:
    case DataType.ExpandedNodeId:
      return String(v);
    case DataType.StatusCode:
      return (v as StatusCode).value;
    default:
      return NUMERIC.has(t) && typeof v === 'number' ? v : undefined;
  }
}

/** A written Variant as policy sees it (arrays and matrices as flat arrays). */
export function typedValueOf(v: Variant): TypedValue | undefined {
  if (v.arrayType === VariantArrayType.Scalar) return typedScalar(v.dataType, v.value);
  const out: TypedValue[] = [];
  for (const x of Array.from(v.value as ArrayLike<unknown>)) {
    const t = typedScalar(v.dataType, x);
    if (t === undefined) return undefined;
    out.push(t);
  }
  return out;
}

/** A scalar number (booleans 1/0, 64-bit integers as numbers): what numeric bounds and the audit's values take. */
function numberOf(t: TypedValue | undefined): number | undefined {
  if (typeof t === 'number') return Number.isFinite(t) ? t : undefined;
  if (typeof t === 'boolean') return t ? 1 : 0;
  if (typeof t === 'bigint') return Number(t);
  return undefined;
}

/** Does a Variant's shape fit a ValueRank (OPC 10000-3 §5.6.2)? */
function rankFits(valueRank: number, v: Variant): boolean {
  switch (valueRank) {
    case -2:
      return true;
    case -3:
      return v.arrayType !== VariantArrayType.Matrix;
    case -1:
      return v.arrayType === VariantArrayType.Scalar;
    case 0:
      return v.arrayType !== VariantArrayType.Scalar;
    case 1:
      return v.arrayType === VariantArrayType.Array;
    default:
      return v.arrayType === VariantArrayType.Matrix;
  }
}

/**
 * How long a written value holds in the front's copy against other values from the server, at the
 * most (docs/opcua.md, "Read your writes"): ten of the upstream's 100 ms publishing cycles.
 */
const WRITE_HOLD_MS = 1000;

/** Operation-level bits of RequestHeader.returnDiagnostics (OPC 10000-4 §7.29) the front answers. */
const DIAG_SYMBOLIC_ID = 0x20;
const DIAG_ADDITIONAL_INFO = 0x80;
/** The namespace of the symbolic ids in diagnostic infos: plantgate's reason codes (docs/opcua.md, Status codes). */
const REASON_NAMESPACE = 'urn:plantgate:reason';

const CURRENT_READ = 0x01;
const CURRENT_WRITE = 0x02;

/** Whether a read names a data encoding (structures only; none of the copies' built-in values has one). */
function hasEncoding(e: unknown): boolean {
  if (e === undefined || e === null) return false;
  return typeof e === 'string' ? e !== '' : Boolean((e as { name?: string | null }).name);
}

/** A read answered from the copy, with the timestamps the request asked for (OPC 10000-4 §7.40). */
function answer(copy: DataValue, ts: TimestampsToReturn | undefined, now: Date): DataValue {
  const source = ts === TimestampsToReturn.Source || ts === TimestampsToReturn.Both;
  const server = ts === TimestampsToReturn.Server || ts === TimestampsToReturn.Both;
  return new DataValue({
    value: copy.value,
    statusCode: copy.statusCode,
    ...(source && copy.sourceTimestamp ? { sourceTimestamp: copy.sourceTimestamp, sourcePicoseconds: copy.sourcePicoseconds } : {}),
    ...(server ? { serverTimestamp: now } : {}),
  });
}
/** WriteMask bits per attribute (OPC 10000-3 §8.60) for the attributes an agent might write. */
const WRITE_MASK_BIT: Partial<Record<number, number>> = {
  [AttributeIds.AccessLevel]: 1 << 0,
  [AttributeIds.ArrayDimensions]: 1 << 1,
  [AttributeIds.BrowseName]: 1 << 2,
  [AttributeIds.ContainsNoLoops]: 1 << 3,
  [AttributeIds.DataType]: 1 << 4,
  [AttributeIds.Description]: 1 << 5,
  [AttributeIds.DisplayName]: 1 << 6,
  [AttributeIds.EventNotifier]: 1 << 7,
  [AttributeIds.Executable]: 1 << 8,
  [AttributeIds.Historizing]: 1 << 9,
  [AttributeIds.InverseName]: 1 << 10,
  [AttributeIds.IsAbstract]: 1 << 11,
  [AttributeIds.MinimumSamplingInterval]: 1 << 12,
  [AttributeIds.NodeClass]: 1 << 13,
  [AttributeIds.NodeId]: 1 << 14,
  [AttributeIds.Symmetric]: 1 << 15,
  [AttributeIds.UserAccessLevel]: 1 << 16,
  [AttributeIds.UserExecutable]: 1 << 17,
  [AttributeIds.UserWriteMask]: 1 << 18,
  [AttributeIds.ValueRank]: 1 << 19,
  [AttributeIds.WriteMask]: 1 << 20,
  [AttributeIds.DataTypeDefinition]: 1 << 22,
  [AttributeIds.RolePermissions]: 1 << 23,
  [AttributeIds.AccessRestrictions]: 1 << 24,
  [AttributeIds.AccessLevelEx]: 1 << 25,
};
const ATTRIBUTE_NAME: Record<number, string> = Object.fromEntries(Object.entries(AttributeIds).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));

export class OpcuaFront {
  readonly server: JwtOPCUAServer;
  private readonly opts: OpcuaFrontOptions;
  /** Key: node-opcua NodeId.toString() of the front's own node. */
  private readonly nodes = new Map<string, FrontNode>();
  /** Key: canonical NodeId (the Command target). */
  private readonly byTarget = new Map<string, FrontNode>();
  /** Per asset, its nodes in model order (parents first). */
  private readonly assetNodes = new Map<string, FrontNode[]>();
  /** Namespace URI → the asset whose server owns it (two servers cannot share one on the front). */
  private readonly namespaceOwner = new Map<string, string>();
  /** Front namespace indexes of mirrored namespaces: the items the gate asks about. */
  private readonly namespaceIndexes = new Set<number>();
  private readonly sessions = new WeakMap<ServerSession, Session>();
  private readonly deniedItems = new WeakMap<MonitoredItemCreateRequest, StatusCode>();
  private readonly gatedSubscriptions = new WeakSet<Subscription>();
  private readonly watchedChannels = new WeakSet<AnsweringChannel>();
  /** Written values held in the copy until the server echoes them (at most one per node). */
  /** Per node: the value an agent wrote, the values before it (the only ones a late notification can carry), the newest held back. */
  private readonly holds = new Map<string, { written: Variant; before: Variant[]; latest?: DataValue; timer: NodeJS.Timeout }>();
  /**
   * The reasons of a batch's refused items (undefined for items that went through), keyed by the
   * request's item array; kept only for batches with a refusal, read when the response leaves.
   */
  private readonly refusals = new WeakMap<object, (Reason | undefined)[]>();
  private sessionSeq = 0;

  constructor(opts: OpcuaFrontOptions) {
    this.opts = opts;
    const front = this;
    this.server = new (class extends JwtOPCUAServer {
      // Every Read, Write and Call response leaves through the sendResponse given here: the place
      // to add the reason codes of refused items when the request asked for diagnostics.
      protected override _apply_on_SessionObject(...[ResponseClass, message, channel, action]: Parameters<JwtOPCUAServer['_apply_on_SessionObject']>): Promise<void> {
        return super._apply_on_SessionObject(ResponseClass, message, channel, (session, sendResponse, sendError) =>
          action(session, (response) => sendResponse(front.withDiagnostics(message.request, response)), sendError),
        );
      }
      protected override _on_CreateSessionRequest(...[message, channel]: Parameters<JwtOPCUAServer['_on_CreateSessionRequest']>): Promise<void> {
        front.watchSessionRefusals(channel as unknown as AnsweringChannel);
        return super._on_CreateSessionRequest(message, channel);
      }
      protected override _on_CreateMonitoredItemsRequest(message: Parameters<JwtOPCUAServer['_on_CreateMonitoredItemsRequest']>[0], channel: Parameters<JwtOPCUAServer['_on_CreateMonitoredItemsRequest']>[1]): void {
        front.gateSubscribe(message as unknown as { session?: ServerSession; request: { subscriptionId: number; itemsToCreate?: MonitoredItemCreateRequest[] } }).then(
          () => super._on_CreateMonitoredItemsRequest(message, channel),
          () => super._on_CreateMonitoredItemsRequest(message, channel),
        );
      }
    })({
      port: opts.port,
      host: opts.host ?? '127.0.0.1',
      hostname: opts.host ?? '127.0.0.1',
      certificateFile: opts.certificateFile,
      privateKeyFile: opts.privateKeyFile,
      serverCertificateManager: opts.serverCertificateManager,
      serverInfo: { applicationUri: opts.applicationUri, productUri: 'urn:plantgate:gateway', applicationName: { text: 'plantgate OPC UA front' } },
      securityPolicies: [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes256_Sha256_RsaPss],
      securityModes: [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
      // Many agents behind one gateway; node-opcua's default (10) closes channels under load.
      maxConnectionsPerEndpoint: 200,
      // The restricted None endpoint answers GetEndpoints only: clients need it to fetch the
      // server certificate; no session can be created on it.
      jwt: {
        verify: opts.verify,
        passwordToken: opts.jwtAsPassword === true,
        ...(opts.identify !== undefined ? { identify: opts.identify } : {}),
        onActivated: (s) => this.sessionFor(s),
        onRejected: (s, reason, message) => {
          const cert = s.channel?.clientCertificate;
          opts.pipeline.violation(
            { id: this.sessions.get(s)?.id, protocol: 'opcua', remoteAddress: peerOf(s.channel) },
            reason,
            'ActivateSession',
            cert ? `${message}; application certificate ${certificateSummary(cert)}` : message,
          );
        },
      },
    });
  }

  async start(): Promise<void> {
    await this.server.initialize();
    for (const asset of this.opts.assets) this.setModel(asset.assetId, assetModel(asset), 'plant');
    this.installGate();
    this.server.on('session_closed', (s: ServerSession) => {
      const session = this.sessions.get(s);
      if (session !== undefined) this.opts.pipeline.sessionClosed(session, 'closed');
    });
    await this.server.start();
    this.watchCertificates();
  }

  async stop(): Promise<void> {
    await this.server.shutdown(0);
  }

  get endpointUrl(): string {
    const host = this.opts.host ?? '127.0.0.1';
    return `opc.tcp://${host}:${this.server.endpoints[0]!.port}`;
  }

  /** The asset whose server serves a node (canonical NodeId), if the front has the node. */
  assetOf(target: string): string | undefined {
    return this.byTarget.get(target)?.assetId;
  }

  /**
   * Pushes a value from the upstream into the front's copy (feeds reads and monitored items). After
   * an accepted write the copy holds the written value until the server's notification of it
   * arrives (holdWritten): a notification the server sampled before the write may still be waiting
   * for its publishing cycle and arrive after the write's answer, and must not undo it. Only the
   * value from before the write can be such a notification: any other value is a change made on the
   * PLC since (an operator at the HMI, the PLC's own logic) and ends the hold at once — an agent must
   * never read its own write back over the plant's newer value.
   */
  update(target: string, value: DataValue): void {
    const n = this.byTarget.get(target);
    if (n === undefined || n.copy === undefined) return;
    // node-opcua clones what a getter returns: the copy must be a real DataValue.
    const dv = value instanceof DataValue ? value : new DataValue(value);
    const hold = this.holds.get(target);
    if (hold !== undefined) {
      // A bad status (the server unreachable) is news at once; another value waits for the hold's end.
      if (dv.statusCode.isGood() && !sameVariant(hold.written, dv.value) && hold.before.some((b) => sameVariant(b, dv.value))) {
        hold.latest = dv;
        return;
      }
      clearTimeout(hold.timer);
      this.holds.delete(target);
    }
    n.copy = dv;
  }

  /**
   * Holds a written value in the copy until the server echoes it, or for at most WRITE_HOLD_MS:
   * then the last value the server sent meanwhile (its own value, e.g. clamped) takes over.
   */
  private holdWritten(n: FrontNode, written: Variant): void {
    const now = new Date();
    const target = n.target;
    const previous = this.holds.get(target);
    if (previous !== undefined) clearTimeout(previous.timer);
    // What a late notification may still carry: the value before this write and, after quick
    // successive writes, the values written before it (bounded: a hold lasts WRITE_HOLD_MS).
    const before = previous !== undefined ? [...previous.before, previous.written].slice(-8) : n.copy?.value !== undefined ? [n.copy.value] : [];
    n.copy = new DataValue({ value: written, statusCode: StatusCodes.Good, sourceTimestamp: now, serverTimestamp: now });
    const timer = setTimeout(() => {
      const hold = this.holds.get(target);
      if (hold?.timer !== timer) return;
      this.holds.delete(target);
      const node = this.byTarget.get(target);
      if (hold.latest !== undefined && node?.copy !== undefined) node.copy = hold.latest;
    }, WRITE_HOLD_MS);
    timer.unref();
    this.holds.set(target, { written, before, timer });
  }

  /** The Command targets (canonical NodeIds) of the variables the upstream feeds, optionally of one asset. */
  pointTargets(assetId?: string): string[] {
    const out: string[] = [];
    for (const n of assetId === undefined ? this.byTarget.values() : (this.assetNodes.get(assetId) ?? [])) if (n.copy !== undefined) out.push(n.target);
    return out;
  }

  // ------------------------------------------------------------ address space

  /**
   * (Re)builds one asset's nodes from its model: nodes that disappeared or changed shape are
   * deleted, new ones added, unchanged ones keep their value copy. Returns the nodes the front could
   * not reproduce (with why), to be logged. `plant`: point names are the plant file's.
   */
  setModel(assetId: string, model: MirrorModel, kind: 'plant' | 'browsed' = 'browsed'): Unmirrored[] {
    const addressSpace = this.server.engine.addressSpace!;
    const unmirrored: Unmirrored[] = [];
    const old = this.assetNodes.get(assetId) ?? [];
    const wanted = new Map(model.nodes.map((n) => [n.nodeId, n]));
    // Namespaces in the server's own order, so the front's indexes match the server's where they can.
    for (const uri of model.namespaceArray.slice(1)) {
      if (!model.nodes.some((n) => n.namespaceUri === uri || n.browseName.namespaceUri === uri)) continue;
      const owner = this.namespaceOwner.get(uri);
      if (owner !== undefined && owner !== assetId) continue;
      const ns = addressSpace.getNamespace(uri) ?? addressSpace.registerNamespace(uri);
      this.namespaceOwner.set(uri, assetId);
      this.namespaceIndexes.add(ns.index);
    }
    // Delete what is gone or changed, children first.
    const kept = new Map<string, FrontNode>();
    for (let i = old.length - 1; i >= 0; i--) {
      const n = old[i]!;
      const m = wanted.get(n.target);
      if (m !== undefined && shapeOf(m) === n.shape && kept.has(m.parent ?? '') === (m.parent !== undefined)) {
        kept.set(n.target, n);
        continue;
      }
      this.forget(n);
      if (addressSpace.findNode(n.ua.nodeId) !== null) addressSpace.deleteNode(n.ua.nodeId);
    }
    // Children were visited before parents above: re-check that every kept node's parent is kept.
    for (const [target, n] of [...kept]) {
      if (n.mirror.parent !== undefined && !kept.has(n.mirror.parent)) {
        kept.delete(target);
        this.forget(n);
        if (addressSpace.findNode(n.ua.nodeId) !== null) addressSpace.deleteNode(n.ua.nodeId);
      }
    }
    const list: FrontNode[] = [];
    const built = new Map<string, FrontNode>();
    for (const m of model.nodes) {
      const keep = kept.get(m.nodeId);
      if (keep !== undefined) {
        keep.mirror = m;
        list.push(keep);
        built.set(m.nodeId, keep);
        continue;
      }
      const why = this.buildNode(assetId, m, built, kind, list);
      if (why !== undefined) unmirrored.push({ nodeId: m.nodeId, browsePath: m.browsePath, why });
    }
    this.assetNodes.set(assetId, list);
    return unmirrored;
  }

  private forget(n: FrontNode): void {
    clearTimeout(this.holds.get(n.target)?.timer);
    this.holds.delete(n.target);
    this.nodes.delete(n.ua.nodeId.toString());
    this.byTarget.delete(n.target);
  }

  /** Adds one node under its (already built) parent; returns why it cannot be, or undefined. */
  private buildNode(assetId: string, m: MirrorNode, built: Map<string, FrontNode>, kind: 'plant' | 'browsed', list: FrontNode[]): string | undefined {
    const addressSpace = this.server.engine.addressSpace!;
    if (this.namespaceOwner.get(m.namespaceUri) !== assetId) return `namespace '${m.namespaceUri}' is already served by another asset's server`;
    if (this.byTarget.has(m.nodeId)) return 'the NodeId is already on the front';
    const ns = addressSpace.getNamespace(m.namespaceUri) as Namespace;
    const bns = addressSpace.getNamespace(m.browseName.namespaceUri);
    if (bns === null) return `browse name namespace '${m.browseName.namespaceUri}' is not on the front`;
    const parent = m.parent === undefined ? undefined : built.get(m.parent);
    if (m.parent !== undefined && parent === undefined) return 'its parent is not mirrored';
    const base = {
      nodeId: coerceNodeId(`ns=${ns.index};${m.identifier}`),
      browseName: new QualifiedName({ namespaceIndex: bns.index, name: m.browseName.name }),
      displayName: m.displayName,
      ...(m.description !== undefined ? { description: m.description } : {}),
      ...this.placement(m, parent),
    };
    let ua: BaseNode;
    let accepts: FrontNode['accepts'];
    let copy: DataValue | undefined;
    let objectTarget: string | undefined;
    try {
      if (m.nodeClass === 'Object') {
        ua = ns.addObject({ ...base, ...(m.typeDefinition !== undefined ? { typeDefinition: coerceNodeId(m.typeDefinition) } : {}) } as never);
      } else if (m.nodeClass === 'Variable') {
        const dataType = addressSpace.findDataType(coerceNodeId(m.dataType!));
        if (dataType === null) return `data type i=${m.dataType} is not a standard one`;
        const basic = dataType.basicDataType;
        accepts = ABSTRACT[m.dataType!] ?? ((t) => t === basic);
        // node-opcua types a property itself (PropertyType) and refuses another type definition for one.
        const typeDefinition = m.property || m.typeDefinition === undefined ? {} : { typeDefinition: coerceNodeId(m.typeDefinition) };
        const v: UAVariable = ns.addVariable({
          ...base,
          dataType: dataType.nodeId,
          valueRank: m.valueRank ?? -1,
          ...(m.arrayDimensions !== undefined ? { arrayDimensions: m.arrayDimensions } : {}),
          accessLevel: m.accessLevel ?? 1,
          userAccessLevel: m.accessLevel ?? 1,
          minimumSamplingInterval: m.minimumSamplingInterval ?? -1,
          historizing: m.historizing ?? false,
          ...typeDefinition,
        } as never);
        ua = v;
        if (m.property) {
          // A property is part of the model (EURange, EngineeringUnits, …): its value as mirrored.
          if (m.value !== undefined) v.setValueFromSource(m.value.value, m.value.statusCode);
        } else {
          // Until the server has spoken, a value is unknown: reads say so, never a made-up zero.
          copy = m.value ?? new DataValue({ statusCode: StatusCodes.UncertainInitialValue });
          const target = m.nodeId;
          v.bindVariable(
            {
              timestamped_get: () => this.byTarget.get(target)?.copy ?? new DataValue({ statusCode: StatusCodes.BadNodeIdUnknown }),
              // The gate forwards allowed writes itself (forwardWrite); whatever reaches node-opcua's
              // own write path for a mirrored node went around the gate: refused (fail closed).
              set: (_variant: Variant, callback: (err: Error | null, status?: StatusCode) => void) => callback(null, StatusCodes.BadUserAccessDenied),
            } as never,
            true,
          );
        }
      } else {
        if (parent === undefined || parent.mirror.nodeClass !== 'Object') return 'a method hangs from an object on the front';
        for (const a of [...(m.inputArguments ?? []), ...(m.outputArguments ?? [])]) {
          if (a.dataType.namespace !== 0 || addressSpace.findDataType(a.dataType) === null) return `argument '${a.name ?? ''}' has the server's own data type ${a.dataType.toString()}`;
        }
        const method: UAMethod = ns.addMethod(parent.ua as UAObject, {
          nodeId: base.nodeId,
          browseName: base.browseName,
          displayName: base.displayName,
          ...(m.description !== undefined ? { description: m.description } : {}),
          inputArguments: m.inputArguments ?? [],
          outputArguments: m.outputArguments ?? [],
        } as never);
        ua = method;
        objectTarget = parent.target;
        const methodTarget = m.nodeId;
        const objTarget = parent.target;
        method.bindMethod(async (inputs: Variant[], _context: unknown) => {
          try {
            const r = await this.opts.upstream.call(objTarget, methodTarget, inputs);
            return { statusCode: r.statusCode, outputArguments: r.outputs, ...(r.inputArgumentResults ? { inputArgumentResults: r.inputArgumentResults } : {}) };
          } catch {
            return { statusCode: StatusCodes.BadCommunicationError };
          }
        });
      }
    } catch (err) {
      return `the front could not create it: ${(err as Error).message.split('\n')[0] || (err as Error).stack?.split('\n')[1]?.trim() || 'node-opcua refused it'}`;
    }
    // A plant file names its points (its object is no point); a browsed server's nodes are named by browse path.
    const point = kind === 'plant' ? (m.parent !== undefined ? m.browseName.name : '') : m.browsePath;
    const node: FrontNode = { assetId, mirror: m, target: m.nodeId, point, ua, shape: shapeOf(m) };
    if (accepts !== undefined) node.accepts = accepts;
    if (copy !== undefined) node.copy = copy;
    if (objectTarget !== undefined) node.objectTarget = objectTarget;
    this.nodes.set(ua.nodeId.toString(), node);
    this.byTarget.set(m.nodeId, node);
    built.set(m.nodeId, node);
    list.push(node);
    return undefined;
  }

  /** How a node hangs from its parent on the front (the server's reference type where standard). */
  private placement(m: MirrorNode, parent: FrontNode | undefined): Record<string, unknown> {
    if (parent === undefined) return { organizedBy: this.server.engine.addressSpace!.rootFolder.objects };
    switch (m.referenceType) {
      case REF.Organizes:
        return { organizedBy: parent.ua };
      case REF.HasProperty:
        return { propertyOf: parent.ua };
      case REF.HasComponent:
        return { componentOf: parent.ua };
      default:
        return { references: [{ referenceType: coerceNodeId(m.referenceType), isForward: false, nodeId: parent.ua.nodeId }] };
    }
  }

  // ------------------------------------------------------------ sessions and certificates

  private sessionFor(s: ServerSession): Session | undefined {
    let session = this.sessions.get(s);
    const identity = jwtSessionIdentity(s);
    if (identity === undefined) return undefined;
    if (session === undefined) {
      session = {
        id: `opcua-${++this.sessionSeq}`,
        protocol: 'opcua',
        workloadId: identity.workloadId,
        certThumbprint: identity.certThumbprint,
        remoteAddress: identity.remoteAddress,
        assurance: 'mtls+token',
      };
      this.sessions.set(s, session);
    }
    // The verified token travels with the session (replaced on each re-activation), so the
    // pipeline decides on this session's own token (Session.subject).
    const first = session.subject === undefined;
    session.subject = identity.subject;
    if (first) this.opts.pipeline.sessionOpened(session);
    return session;
  }

  /**
   * node-opcua refuses an untrusted application certificate at OpenSecureChannel and answers
   * BadSecurityChecksFailed (OPC 10000-4 §5.5.2 forbids telling the client more) without telling
   * anyone; each new channel's certificate check is watched here (node-opcua 2.182 checks it with
   * `channel.checkCertificate`, right after the endpoint pre-registers the channel:
   * test/unit/opcua/node-opcua-guard.test.ts) so the SOC sees every refused certificate with its peer.
   */
  private watchCertificates(): void {
    for (const ep of this.server.endpoints) {
      const endpoint = ep as unknown as { _preregisterChannel(channel: WatchedChannel): void };
      const preregister = endpoint._preregisterChannel.bind(endpoint);
      endpoint._preregisterChannel = (channel) => {
        const check = channel.checkCertificate.bind(channel);
        channel.checkCertificate = async (certificate) => {
          const status = await check(certificate);
          if (certificate && certificate.length > 0 && !status.isGood()) {
            this.opts.onCertificateRefused?.({
              status: status.name,
              // What node-opcua answers for every refusal but four warnings (server_secure_channel_layer).
              answered: status === StatusCodes.BadCertificateTimeInvalid || status === StatusCodes.BadCertificateUseNotAllowed || status === StatusCodes.BadCertificateRevocationUnknown || status === StatusCodes.BadCertificateIssuerRevocationUnknown ? status.name : 'BadSecurityChecksFailed',
              remoteAddress: peerOf(channel),
              certificate,
            });
          }
          return status;
        };
        preregister(channel);
      };
    }
  }

  /**
   * node-opcua refuses a CreateSession (an applicationUri other than the certificate's, too many
   * sessions, a reused nonce, an endpoint the channel does not match) with a ServiceFault on the
   * channel and tells no one: each channel that asks for a session has its answers watched here
   * (one instanceof per answer) so the SOC sees every refused session with its peer, the
   * applicationUri the client announced and its certificate.
   */
  watchSessionRefusals(channel: AnsweringChannel): void {
    if (this.watchedChannels.has(channel)) return;
    this.watchedChannels.add(channel);
    const send = channel.send_response.bind(channel);
    channel.send_response = (msgType, response, message, callback) => {
      if (response instanceof ServiceFault && message.request instanceof CreateSessionRequest) {
        const status = response.responseHeader.serviceResult;
        // A server shutting down refuses everyone: nothing about this client to record.
        if (status !== StatusCodes.BadServerHalted) {
          const reason: Reason = status === StatusCodes.BadCertificateUriInvalid ? 'NO_IDENTITY' : status === StatusCodes.BadTooManySessions ? 'RATE_LIMITED' : 'PROTOCOL_VIOLATION';
          const cert = channel.clientCertificate;
          this.opts.pipeline.violation(
            { protocol: 'opcua', remoteAddress: peerOf(channel) },
            reason,
            'CreateSession',
            `session refused (${status.name}); the client announced applicationUri '${message.request.clientDescription?.applicationUri ?? ''}'${cert ? `; application certificate ${certificateSummary(cert)}` : ''}`,
          );
        }
      }
      return send(msgType, response, message, callback);
    };
  }

  // ------------------------------------------------------------ the gate

  private isOurs(nodeId: NodeId | undefined): boolean {
    return nodeId !== undefined && this.namespaceIndexes.has(nodeId.namespace);
  }

  /**
   * Nodes node-opcua made itself in a mirrored namespace (a method's InputArguments and
   * OutputArguments properties): part of the model, not of the process, so not Commands.
   */
  private isMetadata(nodeId: NodeId): boolean {
    return !this.nodes.has(nodeId.toString()) && this.server.engine.addressSpace!.findNode(nodeId) !== null;
  }

  private command(session: Session, service: Service, operation: Operation, nodeId: NodeId, attributeId?: number): Command {
    const node = this.nodes.get(nodeId.toString());
    const target: Target = { nodeId: node?.target ?? this.canonical(nodeId) };
    if (node !== undefined) target.browsePath = node.mirror.browsePath;
    if (attributeId !== undefined && attributeId !== AttributeIds.Value) target.attribute = ATTRIBUTE_NAME[attributeId] ?? String(attributeId);
    return {
      sessionId: session.id,
      protocol: 'opcua',
      assetId: node?.assetId ?? '',
      operation,
      functionCode: SERVICE_ID[service],
      service,
      targets: [target],
      points: node === undefined || node.point === '' ? [] : [node.point],
    };
  }

  /** `nsu=<uri>;<identifier>` of a front NodeId (also for nodes the front does not have). */
  private canonical(nodeId: NodeId): string {
    const uri = this.server.engine.addressSpace!.getNamespaceUri(nodeId.namespace);
    const text = nodeId.toString();
    return `nsu=${uri};${text.slice(text.indexOf(';') + 1)}`;
  }

  /**
   * Asks for one item. A session without a JWT identity never gets here through node-opcua (it
   * cannot activate), but if it did, it is refused; an expired token is refused before policy; a
   * `refuse` reason (what the server itself would refuse) is recorded as the decision.
   */
  private ask(context: ISessionContext, cmd: (session: Session) => Command, refuse?: Reason): Gated | undefined {
    const s = (context as { session?: ServerSession }).session;
    if (s === undefined) return undefined;
    const session = this.sessionFor(s);
    const identity = jwtSessionIdentity(s);
    if (session === undefined || identity === undefined) {
      const anon: Session = { id: 'opcua-unidentified', protocol: 'opcua', workloadId: '', certThumbprint: '', remoteAddress: '', assurance: 'none' };
      const c = cmd(anon);
      return { cmd: c, decision: this.opts.pipeline.refuse(anon, c, 'NO_TOKEN', {}) };
    }
    const c = cmd(session);
    if (identity.subject.expiresAtMs <= this.opts.clock.now()) {
      return { cmd: c, decision: this.opts.pipeline.refuse(session, c, 'TOKEN_EXPIRED', {}) };
    }
    if (refuse !== undefined) return { cmd: c, decision: this.opts.pipeline.refuse(session, c, refuse, {}) };
    try {
      return { cmd: c, decision: this.opts.pipeline.authorize(session, c, {}) };
    } catch {
      return { cmd: c, decision: this.opts.pipeline.refuse(session, c, 'PROTOCOL_VIOLATION', {}) };
    }
  }

  private outcome(context: ISessionContext, g: Gated, d: Decision, status: StatusCode, t0: number): void {
    const session = this.sessions.get((context as { session?: ServerSession }).session!);
    if (session === undefined) return;
    this.opts.pipeline.outcome(session, g.cmd, d, {
      status: status.isGood()
        ? 'ok'
        : status === StatusCodes.BadCommunicationError || status === StatusCodes.BadServerNotConnected
          ? 'upstream_unavailable'
          : status === StatusCodes.BadTimeout
            ? 'upstream_timeout'
            : 'exception',
      exceptionCode: status.isGood() ? undefined : status.value,
      latencyUs: Math.round((performance.now() - t0) * 1000),
    });
  }

  /** Awaits the decisions of a batch (only when one of them must first be durable). */
  private static async decided(gates: (Gated | undefined)[]): Promise<(Decision | undefined)[]> {
    const out: (Decision | undefined)[] = new Array(gates.length);
    for (let i = 0; i < gates.length; i++) {
      const d = gates[i]?.decision;
      // A pipeline must never reject; if it does, that item is denied.
      out[i] = d === undefined ? undefined : d instanceof Promise ? await d.catch(() => ({ effect: 'deny', reason: 'AUDIT_UNAVAILABLE' }) as Decision) : d;
    }
    return out;
  }

  /** Keeps the reasons of a batch's refused items for the response's diagnostics (nothing when all went through). */
  private noteRefusals(items: object, decisions: (Decision | undefined)[]): void {
    let reasons: (Reason | undefined)[] | undefined;
    for (let i = 0; i < decisions.length; i++) {
      const d = decisions[i];
      if (d !== undefined && d.effect !== 'allow') (reasons ??= new Array<Reason | undefined>(decisions.length).fill(undefined))[i] = d.reason;
    }
    if (reasons !== undefined) this.refusals.set(items, reasons);
  }

  /**
   * A Read, Write or Call response with the reason code of each refused item in its diagnostic
   * infos, when the request asked for operation-level diagnostics (RequestHeader.returnDiagnostics,
   * OPC 10000-4 §7.29): the symbolic id (a string-table entry in the namespace
   * urn:plantgate:reason) and/or the additional info; the status code alone stays what an OPC UA
   * user expects. Items that went through get an empty DiagnosticInfo (the array matches results).
   */
  withDiagnostics<R>(request: unknown, response: R): R {
    const r = request as { requestHeader?: { returnDiagnostics?: number }; nodesToRead?: object | null; nodesToWrite?: object | null; methodsToCall?: object | null };
    const mask = r.requestHeader?.returnDiagnostics ?? 0;
    if ((mask & (DIAG_SYMBOLIC_ID | DIAG_ADDITIONAL_INFO)) === 0) return response;
    const items = r.nodesToRead ?? r.nodesToWrite ?? r.methodsToCall;
    const reasons = items ? this.refusals.get(items) : undefined;
    const res = response as { results?: unknown[] | null; diagnosticInfos?: DiagnosticInfo[] | null; responseHeader?: { stringTable?: string[] | null } };
    if (reasons === undefined || res.responseHeader === undefined || !Array.isArray(res.results) || res.results.length !== reasons.length) return response;
    const table = [...(res.responseHeader.stringTable ?? [])];
    const entry = (text: string): number => {
      const at = table.indexOf(text);
      return at >= 0 ? at : table.push(text) - 1;
    };
    res.diagnosticInfos = reasons.map((reason) =>
      reason === undefined
        ? new DiagnosticInfo()
        : new DiagnosticInfo({
            ...((mask & DIAG_SYMBOLIC_ID) !== 0 ? { namespaceURI: entry(REASON_NAMESPACE), symbolicId: entry(reason) } : {}),
            ...((mask & DIAG_ADDITIONAL_INFO) !== 0 ? { additionalInfo: `plantgate reason ${reason}` } : {}),
          }),
    );
    res.responseHeader.stringTable = table;
    return response;
  }

  /** The status a denied item answers: the server's own code for what it would refuse, else BadUserAccessDenied. */
  private static denied(d: Decision | undefined, operation: string): StatusCode {
    return refusedStatus(d?.reason ?? 'NO_MATCHING_RULE', operation);
  }

  /** Why a write of this item is refused before policy, as the server itself would, or undefined. */
  private writeProblem(node: FrontNode | undefined, w: WriteValue): Reason | undefined {
    if (node === undefined) return this.isMetadata(w.nodeId) ? 'NOT_WRITABLE' : 'UNKNOWN_TARGET';
    const m = node.mirror;
    if (w.attributeId !== AttributeIds.Value) {
      const bit = WRITE_MASK_BIT[w.attributeId];
      return bit !== undefined && (m.writeMask & bit) !== 0 ? undefined : 'NOT_WRITABLE';
    }
    if (m.nodeClass !== 'Variable' || m.property) return 'NOT_WRITABLE';
    if (((m.accessLevel ?? 0) & CURRENT_WRITE) === 0) return 'NOT_WRITABLE';
    const v = w.value?.value;
    if (v === undefined || v === null || !node.accepts!(v.dataType) || !rankFits(m.valueRank ?? -1, v)) return 'TYPE_MISMATCH';
    // Partial array writes would need bounds on the array they change: refused like a server without them.
    if (w.indexRange?.isDefined?.()) return 'UNSUPPORTED_FUNCTION';
    return undefined;
  }

  /**
   * An allowed write to the node's server, straight from the gate (node-opcua's write path would
   * only hand it to the same upstream): a Value the server accepted replaces the copy at once, so
   * a read right after it answers the written value (read your writes).
   */
  private async forwardWrite(context: ISessionContext, g: Gated, d: Decision, w: WriteValue): Promise<StatusCode> {
    const target = g.cmd.targets[0]!.nodeId!;
    const variant = w.value!.value!;
    const t0 = performance.now();
    let status: StatusCode;
    try {
      status = await this.opts.upstream.write(target, variant, w.attributeId);
    } catch {
      status = StatusCodes.BadCommunicationError;
    }
    if (status.isGood() && w.attributeId === AttributeIds.Value) {
      const n = this.byTarget.get(target);
      if (n?.copy !== undefined) this.holdWritten(n, variant);
    }
    this.outcome(context, g, d, status, t0);
    return status;
  }

  /** Why a call is refused before policy (unknown method, argument count or types), or undefined. */
  private callProblem(objectId: NodeId, node: FrontNode | undefined, inputs: Variant[]): { reason: Reason; operation: string; argumentResults?: StatusCode[] } | undefined {
    if (node === undefined || node.mirror.nodeClass !== 'Method') return { reason: 'UNKNOWN_TARGET', operation: 'call' };
    if (node.objectTarget !== this.nodes.get(objectId.toString())?.target) {
      // An object the front does not have is unknown; a known one that has no such method: BadMethodInvalid.
      return { reason: 'UNKNOWN_TARGET', operation: this.nodes.has(objectId.toString()) ? 'call' : 'read' };
    }
    const defs = node.mirror.inputArguments ?? [];
    if (inputs.length < defs.length) return { reason: 'ARGUMENTS_MISSING', operation: 'call' };
    if (inputs.length > defs.length) return { reason: 'TOO_MANY_ARGUMENTS', operation: 'call' };
    const results = defs.map((a, i) => (argumentFits(this.server, a, inputs[i]!) ? StatusCodes.Good : StatusCodes.BadTypeMismatch));
    if (results.some((r) => r !== StatusCodes.Good)) return { reason: 'TYPE_MISMATCH', operation: 'call', argumentResults: results };
    return undefined;
  }

  private installGate(): void {
    const engine = this.server.engine;
    const read = engine.read.bind(engine);
    const write = engine.write.bind(engine);
    const call = engine.call.bind(engine);
    const browse = engine.browse.bind(engine);

    engine.read = async (context: ISessionContext, req: ReadRequestOptions): Promise<DataValue[]> => {
      const items = req.nodesToRead ?? [];
      const gates: (Gated | undefined)[] = new Array(items.length);
      const nodes: (FrontNode | undefined)[] = new Array(items.length);
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        const nodeId = coerceNodeId(it.nodeId ?? 'i=0');
        // Metadata (browse name, data type, access level, …) is not process data: only Values are Commands.
        if (!this.isOurs(nodeId) || (it.attributeId ?? AttributeIds.Value) !== AttributeIds.Value || this.isMetadata(nodeId)) continue;
        const node = this.nodes.get(nodeId.toString());
        // Objects and methods have no Value (BadAttributeIdInvalid), an unreadable variable none to
        // give (BadNotReadable): node-opcua answers, nothing is read.
        if (node !== undefined && (node.mirror.nodeClass !== 'Variable' || ((node.mirror.accessLevel ?? 1) & CURRENT_READ) === 0)) continue;
        nodes[i] = node;
        gates[i] = this.ask(context, (s) => this.command(s, 'Read', 'read', nodeId), node === undefined ? 'UNKNOWN_TARGET' : undefined);
      }
      const decisions = await OpcuaFront.decided(gates);
      this.noteRefusals(items, decisions);
      const out: DataValue[] = new Array(items.length);
      const engineIdx: number[] = [];
      const now = new Date();
      for (let i = 0; i < items.length; i++) {
        const g = gates[i];
        if (g === undefined) {
          engineIdx.push(i);
          continue;
        }
        const d = decisions[i]!;
        if (d.effect !== 'allow') {
          out[i] = new DataValue({ statusCode: OpcuaFront.denied(d, 'read') });
          continue;
        }
        const node = nodes[i]!;
        const it = items[i]!;
        // A part of an array or another encoding: node-opcua cuts it from the same copy.
        if (node.copy === undefined || it.indexRange?.isDefined?.() || hasEncoding(it.dataEncoding)) {
          engineIdx.push(i);
          continue;
        }
        out[i] = answer(node.copy, req.timestampsToReturn, now);
        // A read is one record (docs/audit.md): the allow stands for a Good answer from the copy;
        // only an answer that is not Good (the server unreachable, a bad value) adds its outcome.
        if (!node.copy.statusCode.isGood()) this.outcome(context, g, d, node.copy.statusCode, performance.now());
      }
      if (engineIdx.length > 0) {
        const t0 = performance.now();
        const values = await read(context, { ...req, nodesToRead: engineIdx.map((i) => items[i]!) } as ReadRequestOptions);
        engineIdx.forEach((i, k) => {
          out[i] = values[k]!;
          const g = gates[i];
          if (g !== undefined) this.outcome(context, g, decisions[i]!, values[k]!.statusCode, t0);
        });
      }
      return out;
    };

    engine.write = async (context: ISessionContext, nodesToWrite: WriteValue[]): Promise<StatusCode[]> => {
      const gates = nodesToWrite.map((w) => {
        const nodeId = coerceNodeId(w.nodeId);
        if (!this.isOurs(nodeId)) return undefined;
        const node = this.nodes.get(nodeId.toString());
        return this.ask(
          context,
          (s) => {
            const c = this.command(s, 'Write', 'write', nodeId, w.attributeId);
            const typed = w.value?.value ? typedValueOf(w.value.value) : undefined;
            if (typed !== undefined && c.points.length === 1) {
              const name = c.points[0]!;
              c.typedValues = { [name]: typed };
              const n = numberOf(typed);
              if (n !== undefined) c.values = { [name]: n };
            }
            return c;
          },
          this.writeProblem(node, w),
        );
      });
      const decisions = await OpcuaFront.decided(gates);
      this.noteRefusals(nodesToWrite, decisions);
      const out: StatusCode[] = nodesToWrite.map((_w, i) => OpcuaFront.denied(decisions[i], 'write'));
      const engineIdx: number[] = [];
      const forwards: Promise<void>[] = [];
      for (let i = 0; i < nodesToWrite.length; i++) {
        const g = gates[i];
        if (g === undefined) engineIdx.push(i);
        else if (decisions[i]!.effect === 'allow') forwards.push(this.forwardWrite(context, g, decisions[i]!, nodesToWrite[i]!).then((s) => void (out[i] = s)));
      }
      if (engineIdx.length > 0) {
        const statuses = await write(context, engineIdx.map((i) => nodesToWrite[i]!));
        engineIdx.forEach((i, k) => (out[i] = statuses[k]!));
      }
      await Promise.all(forwards);
      return out;
    };

    engine.call = async (context: ISessionContext, methodsToCall: CallMethodRequest[]): Promise<CallMethodResultOptions[]> => {
      const problems: ({ reason: Reason; operation: string; argumentResults?: StatusCode[] } | undefined)[] = [];
      const gates = methodsToCall.map((m, i) => {
        const methodId = coerceNodeId(m.methodId);
        const objectId = coerceNodeId(m.objectId);
        if (!this.isOurs(methodId) && !this.isOurs(objectId)) return undefined;
        const node = this.nodes.get(methodId.toString());
        const args = m.inputArguments ?? [];
        const problem = this.callProblem(objectId, node, args);
        problems[i] = problem;
        return this.ask(
          context,
          (s) => {
            const c = this.command(s, 'Call', 'call', methodId);
            if (problem === undefined && node !== undefined) {
              const typed: Record<string, TypedValue> = {};
              const nums: Record<string, number> = {};
              (node.mirror.inputArguments ?? []).forEach((a, k) => {
                const t = typedValueOf(args[k]!);
                if (t === undefined) return;
                const name = a.name ?? `#${k}`;
                typed[name] = t;
                const n = numberOf(t);
                if (n !== undefined) nums[name] = n;
              });
              c.typedValues = typed;
              c.values = nums;
            }
            return c;
          },
          problem?.reason,
        );
      });
      const decisions = await OpcuaFront.decided(gates);
      this.noteRefusals(methodsToCall, decisions);
      const allowedIdx: number[] = [];
      for (let i = 0; i < methodsToCall.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const t0 = performance.now();
      const results = allowedIdx.length === 0 ? [] : await call(context, allowedIdx.map((i) => methodsToCall[i]!));
      const out: CallMethodResultOptions[] = methodsToCall.map((_m, i) => {
        const p = problems[i];
        const d = decisions[i];
        // Expired tokens and policy denials answer for the item; a server-side problem keeps its own code.
        const status = p !== undefined && d?.reason === p.reason ? refusedStatus(p.reason, p.operation) : OpcuaFront.denied(d, 'call');
        return new CallMethodResult({ statusCode: status, ...(p?.argumentResults && d?.reason === p.reason ? { inputArgumentResults: p.argumentResults } : {}) });
      });
      allowedIdx.forEach((i, k) => {
        out[i] = results[k]!;
        const g = gates[i];
        if (g !== undefined) this.outcome(context, g, decisions[i]!, (results[k]!.statusCode as StatusCode) ?? StatusCodes.Good, t0);
      });
      return out;
    };

    engine.browse = async (context: ISessionContext, nodesToBrowse: BrowseDescriptionOptions[]): Promise<BrowseResult[]> => {
      const gates = nodesToBrowse.map((b) => {
        const nodeId = coerceNodeId(b.nodeId ?? 'i=0');
        // The standard folders (ns=0) are the map every client reads first; they only lead to the
        // mirrored roots, whose contents are gated.
        if (!this.isOurs(nodeId) || this.isMetadata(nodeId)) return undefined;
        return this.ask(context, (s) => this.command(s, 'Browse', 'browse', nodeId), this.nodes.has(nodeId.toString()) ? undefined : 'UNKNOWN_TARGET');
      });
      const decisions = await OpcuaFront.decided(gates);
      const allowedIdx: number[] = [];
      for (let i = 0; i < nodesToBrowse.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const results = allowedIdx.length === 0 ? [] : await browse(context, allowedIdx.map((i) => nodesToBrowse[i]!));
      const out: BrowseResult[] = nodesToBrowse.map((_b, i) => new BrowseResult({ statusCode: OpcuaFront.denied(decisions[i], 'browse'), references: [] }));
      allowedIdx.forEach((i, k) => {
        out[i] = results[k]!;
      });
      return out;
    };
  }

  /**
   * Decides each item of a CreateMonitoredItems request before node-opcua creates them; the
   * subscription then answers denied items with their status instead of creating them.
   */
  async gateSubscribe(message: { session?: ServerSession; request: { subscriptionId: number; itemsToCreate?: MonitoredItemCreateRequest[] } }): Promise<void> {
    const s = message.session;
    const items = message.request.itemsToCreate ?? [];
    if (s === undefined || items.length === 0) return;
    const sub = s.getSubscription(message.request.subscriptionId);
    if (sub === null) return;
    if (!this.gatedSubscriptions.has(sub)) {
      this.gatedSubscriptions.add(sub);
      const pre = sub.preCreateMonitoredItem.bind(sub);
      sub.preCreateMonitoredItem = (addressSpace, ts, req) => {
        const denied = this.deniedItems.get(req);
        if (denied === undefined) return pre(addressSpace, ts, req);
        return { monitoredItemCreateRequest: req, createResult: new MonitoredItemCreateResult({ statusCode: denied }) };
      };
    }
    const context = { session: s } as unknown as ISessionContext;
    const gates = items.map((it) => {
      const nodeId = it.itemToMonitor.nodeId;
      // Events (EventNotifier) and metadata attributes are not process values.
      if (!this.isOurs(nodeId) || it.itemToMonitor.attributeId !== AttributeIds.Value || this.isMetadata(nodeId)) return undefined;
      const node = this.nodes.get(nodeId.toString());
      if (node !== undefined && node.mirror.nodeClass !== 'Variable') return undefined;
      return this.ask(context, (ses) => this.command(ses, 'CreateMonitoredItems', 'subscribe', nodeId), node === undefined ? 'UNKNOWN_TARGET' : undefined);
    });
    const decisions = await OpcuaFront.decided(gates);
    items.forEach((it, i) => {
      const g = gates[i];
      if (g === undefined) {
        // Value items of namespaces that are neither standard nor mirrored: nothing of ours to show.
        if (it.itemToMonitor.attributeId === AttributeIds.Value && !this.isOurs(it.itemToMonitor.nodeId) && it.itemToMonitor.nodeId.namespace !== 0) {
          this.deniedItems.set(it, StatusCodes.BadUserAccessDenied);
        }
        return;
      }
      if (decisions[i]!.effect !== 'allow') this.deniedItems.set(it, OpcuaFront.denied(decisions[i], 'subscribe'));
    });
  }
}

/** Everything about a node the front builds from: a change means delete and re-add. */
function shapeOf(m: MirrorNode): string {
  const { value: _value, displayName, description, inputArguments, outputArguments, ...rest } = m;
  return JSON.stringify([rest, displayName?.text, description?.text, inputArguments?.map(argShape), outputArguments?.map(argShape)]);
}

function argShape(a: Argument): string {
  return `${a.name ?? ''}:${a.dataType.toString()}:${a.valueRank}`;
}

/** Does an input argument Variant fit its Argument definition (built-in type and value rank)? */
function argumentFits(server: JwtOPCUAServer, a: Argument, v: Variant): boolean {
  const numeric = a.dataType.namespace === 0 ? (a.dataType.value as number) : -1;
  const abstract = ABSTRACT[numeric];
  if (abstract !== undefined) return abstract(v.dataType) && rankFits(a.valueRank ?? -1, v);
  const dt = server.engine.addressSpace!.findDataType(a.dataType);
  return dt !== null && dt.basicDataType === v.dataType && rankFits(a.valueRank ?? -1, v);
}

