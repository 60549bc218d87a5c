// The agent-facing OPC UA server front (DESIGN §8, issue 4). Owns: the endpoints (Basic256Sha256
// and Aes256_Sha256_RsaPss, Sign and SignAndEncrypt only, JWT user tokens via jwt-token.ts), an
// address space holding only the mapped points and methods under the upstream's namespace URIs and
// NodeIds, and turning every Read (Value), Write, Call, Browse and CreateMonitoredItems item into a
// Command asked of the pipeline. It never decides anything itself except refusals with a reason
// (expired session token, unsupported attribute) and never lets an item through without an allow.
//
// Where the checkpoint sits: node-opcua's variable setters do not see the session, so the gate
// wraps the server engine's read/write/call/browse (whose context carries the session) and the
// CreateMonitoredItems service. Items without a session are in-process (node-opcua's own) and pass.
import { performance } from 'node:perf_hooks';
import {
  AttributeIds,
  BrowseResult,
  CallMethodResult,
  DataType,
  DataValue,
  MessageSecurityMode,
  MonitoredItemCreateResult,
  SecurityPolicy,
  StatusCodes,
  Variant,
  VariantArrayType,
  coerceNodeId,
  type BrowseDescriptionOptions,
  type CallMethodRequest,
  type CallMethodResultOptions,
  type ISessionContext,
  type MonitoredItemCreateRequest,
  type NodeId,
  type OPCUACertificateManager,
  type ReadRequestOptions,
  type ServerSession,
  type StatusCode,
  type Subscription,
  type UAObject,
  type UAVariable,
  type WriteValue,
} from 'node-opcua';
import type { Clock } from '../../src/core/clock.js';
import type { Command, Decision, Operation, Subject, Target } from '../../src/core/command.js';
import type { CommandPipeline, Session } from '../../src/core/pipeline.js';
import type { Reason } from '../../src/core/reasons.js';
import { JwtOPCUAServer, jwtSessionIdentity, type JwtVerifier } from './jwt-token.js';

import type { PointDataType } from './data-type.js';

export type { PointDataType } from './data-type.js';

export interface FrontPoint {
  /** The asset's point name (policy and audit speak of points). */
  name: string;
  /** NodeId identifier part as on the upstream server, e.g. `s=tank1.level` or `i=1001`. */
  identifier: string;
  dataType: PointDataType;
  writable: boolean;
}

export interface FrontMethodArgument {
  name: string;
  dataType: PointDataType;
}

export interface FrontMethod {
  name: string;
  identifier: string;
  inputs: FrontMethodArgument[];
  outputs: FrontMethodArgument[];
}

export interface FrontAsset {
  assetId: string;
  namespaceUri: string;
  /** Browse name of the asset's folder under Objects (also the methods' parent object). */
  folder: string;
  /** NodeId identifier of that folder/object on the upstream, e.g. `s=plant`. */
  folderIdentifier: string;
  points: FrontPoint[];
  methods: FrontMethod[];
}

/** Where allowed writes and calls go (the upstream session, or a test double of it). */
export interface FrontUpstream {
  write(nodeId: string, value: Variant): Promise<StatusCode>;
  call(objectId: string, methodId: string, inputs: Variant[]): Promise<{ statusCode: StatusCode; outputs: Variant[] }>;
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
  assets: FrontAsset[];
  pipeline: CommandPipeline;
  verify: JwtVerifier;
  upstream: FrontUpstream;
  clock: Clock;
}

/** Session carries the JWT's Subject once core's Session has the optional field (lead's wiring). */
type SessionWithSubject = Session & { subject?: Subject };

/** OPC UA binary encoding ids of the requests, kept as the Command's function code for the audit. */
const SERVICE_ID = { Read: 631, Write: 673, Call: 712, Browse: 527, CreateMonitoredItems: 751 } as const;
type Service = keyof typeof SERVICE_ID;

const DATA_TYPE: Record<PointDataType, DataType> = {
  Boolean: DataType.Boolean,
  Int16: DataType.Int16,
  UInt16: DataType.UInt16,
  Int32: DataType.Int32,
  UInt32: DataType.UInt32,
  Float: DataType.Float,
  Double: DataType.Double,
};

interface MappedNode {
  asset: FrontAsset;
  /** Expanded form `nsu=<uri>;<identifier>`: independent of namespace indexes (the Command target). */
  target: string;
  point?: FrontPoint;
  method?: FrontMethod;
}

/** One Command's way through the gate: its decision (sync or durable) and where it came from. */
interface Gated {
  cmd: Command;
  decision: Decision | Promise<Decision>;
}

const ACCESS_DENIED = StatusCodes.BadUserAccessDenied;

function numberOf(v: Variant | undefined): number | undefined {
  if (v === undefined || v.arrayType !== VariantArrayType.Scalar) return undefined;
  if (typeof v.value === 'number' && Number.isFinite(v.value)) return v.value;
  if (typeof v.value === 'boolean') return v.value ? 1 : 0;
  return undefined;
}

export class OpcuaFront {
  readonly server: JwtOPCUAServer;
  private readonly opts: OpcuaFrontOptions;
  /** Key: node-opcua NodeId.toString() of the front's own node (ns index of the front). */
  private readonly nodes = new Map<string, MappedNode>();
  private readonly variables = new Map<string, UAVariable>();
  /** Values of writable points: their variables are bound (the setter forwards upstream). */
  private readonly cache = new Map<string, DataValue>();
  private readonly namespaceIndexes = new Set<number>();
  private readonly sessions = new WeakMap<ServerSession, Session>();
  private readonly deniedItems = new WeakMap<MonitoredItemCreateRequest, StatusCode>();
  private readonly gatedSubscriptions = new WeakSet<Subscription>();
  private sessionSeq = 0;

  constructor(opts: OpcuaFrontOptions) {
    this.opts = opts;
    const front = this;
    this.server = new (class extends JwtOPCUAServer {
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
        onActivated: (s) => this.sessionFor(s),
        onRejected: (s, reason, message) =>
          opts.pipeline.violation({ id: this.sessions.get(s)?.id, protocol: 'opcua', remoteAddress: s.channel?.remoteAddress ?? '' }, reason, 'ActivateSession', message),
      },
    });
  }

  async start(): Promise<void> {
    await this.server.initialize();
    this.buildAddressSpace();
    this.installGate();
    this.server.on('session_closed', (s: ServerSession) => {
      const session = this.sessions.get(s);
      if (session !== undefined) this.opts.pipeline.sessionClosed(session, 'closed');
    });
    await this.server.start();
  }

  async stop(): Promise<void> {
    await this.server.shutdown(0);
  }

  get endpointUrl(): string {
    const host = this.opts.host ?? '127.0.0.1';
    return `opc.tcp://${host}:${this.server.endpoints[0]!.port}`;
  }

  /** Pushes a value from the upstream into the front's copy (feeds reads and monitored items). */
  update(target: string, value: DataValue): void {
    const v = this.variables.get(target);
    if (v === undefined) return;
    if (this.cache.has(target)) this.cache.set(target, value);
    else v.setValueFromSource(value.value, value.statusCode, value.sourceTimestamp ?? undefined);
  }

  /** The Command targets (expanded NodeIds) of every mapped point, for the upstream to subscribe. */
  pointTargets(): string[] {
    return [...this.variables.keys()];
  }

  // ------------------------------------------------------------ address space

  private buildAddressSpace(): void {
    const addressSpace = this.server.engine.addressSpace!;
    for (const asset of this.opts.assets) {
      const ns = addressSpace.getNamespace(asset.namespaceUri) ?? addressSpace.registerNamespace(asset.namespaceUri);
      this.namespaceIndexes.add(ns.index);
      const folder: UAObject = ns.addObject({
        nodeId: `ns=${ns.index};${asset.folderIdentifier}`,
        browseName: asset.folder,
        organizedBy: addressSpace.rootFolder.objects,
      });
      this.mapNode(folder.nodeId, asset, asset.folderIdentifier);
      for (const p of asset.points) {
        const v = ns.addVariable({
          componentOf: folder,
          nodeId: `ns=${ns.index};${p.identifier}`,
          browseName: p.name,
          dataType: DATA_TYPE[p.dataType],
          accessLevel: p.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
          userAccessLevel: p.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
          minimumSamplingInterval: 100,
        });
        // Until the upstream has spoken, a point has no value: reads say so, never a made-up zero.
        v.setValueFromSource(new Variant({ dataType: DATA_TYPE[p.dataType], value: p.dataType === 'Boolean' ? false : 0 }), StatusCodes.UncertainInitialValue);
        const mapped = this.mapNode(v.nodeId, asset, p.identifier, { point: p });
        this.variables.set(mapped.target, v);
        if (p.writable) {
          this.cache.set(mapped.target, new DataValue({ value: v.readValue().value, statusCode: StatusCodes.UncertainInitialValue }));
          v.bindVariable(
            {
              timestamped_get: () => this.cache.get(mapped.target)!,
              set: (variant: Variant, callback: (err: Error | null, status?: StatusCode) => void) => {
                // Reached only through the gated engine.write: the pipeline has allowed it.
                this.opts.upstream.write(mapped.target, variant).then(
                  (status) => callback(null, status),
                  () => callback(null, StatusCodes.BadCommunicationError),
                );
              },
            } as never,
            true,
          );
        }
      }
      for (const m of asset.methods) {
        const method = ns.addMethod(folder, {
          nodeId: `ns=${ns.index};${m.identifier}`,
          browseName: m.name,
          inputArguments: m.inputs.map((a) => ({ name: a.name, dataType: DATA_TYPE[a.dataType] })),
          outputArguments: m.outputs.map((a) => ({ name: a.name, dataType: DATA_TYPE[a.dataType] })),
        });
        const mapped = this.mapNode(method.nodeId, asset, m.identifier, { method: m });
        const objectTarget = `nsu=${asset.namespaceUri};${asset.folderIdentifier}`;
        method.bindMethod(async (inputs: Variant[], _context: unknown) => {
          try {
            const r = await this.opts.upstream.call(objectTarget, mapped.target, inputs);
            return { statusCode: r.statusCode, outputArguments: r.outputs };
          } catch {
            return { statusCode: StatusCodes.BadCommunicationError };
          }
        });
      }
    }
  }

  private mapNode(nodeId: NodeId, asset: FrontAsset, identifier: string, extra: Partial<MappedNode> = {}): MappedNode {
    const mapped: MappedNode = { asset, target: `nsu=${asset.namespaceUri};${identifier}`, ...extra };
    this.nodes.set(nodeId.toString(), mapped);
    return mapped;
  }

  // ------------------------------------------------------------ sessions

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
    // pipeline decides on this session's own token: `Session.subject` (see docs/opcua.md, wiring).
    const first = (session as SessionWithSubject).subject === undefined;
    (session as SessionWithSubject).subject = identity.subject;
    if (first) this.opts.pipeline.sessionOpened(session);
    return session;
  }

  // ------------------------------------------------------------ the gate

  private isOurs(nodeId: NodeId | undefined): boolean {
    return nodeId !== undefined && this.namespaceIndexes.has(nodeId.namespace);
  }

  private command(session: Session, service: Service, operation: Operation, nodeId: NodeId): Command {
    const mapped = this.nodes.get(nodeId.toString());
    const target: Target = { nodeId: mapped?.target ?? nodeId.toString() };
    const points: string[] = [];
    if (mapped?.point) points.push(mapped.point.name);
    if (mapped?.method) points.push(mapped.method.name);
    return {
      sessionId: session.id,
      protocol: 'opcua',
      assetId: mapped?.asset.assetId ?? '',
      operation,
      functionCode: SERVICE_ID[service],
      service,
      targets: [target],
      points,
    };
  }

  /**
   * Asks for one item. A session without a JWT identity never gets here through node-opcua (it
   * cannot activate), but if it did, it is refused; an expired token is refused before policy.
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
    if (refuse !== undefined) return { cmd: c, decision: this.opts.pipeline.refuse(session, c, refuse, {}) };
    if (identity.subject.expiresAtMs <= this.opts.clock.now()) {
      return { cmd: c, decision: this.opts.pipeline.refuse(session, c, 'TOKEN_EXPIRED', {}) };
    }
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
      out[i] = d === undefined ? undefined : d instanceof Promise ? await d.catch(() => ({ effect: 'deny' }) as Decision) : d;
    }
    return out;
  }

  private installGate(): void {
    const engine = this.server.engine;
    const read = engine.read.bind(engine);
    const write = engine.write.bind(engine);
    const call = engine.call.bind(engine);
    const browse = engine.browse.bind(engine);

    engine.read = async (context: ISessionContext, req: ReadRequestOptions): Promise<DataValue[]> => {
      const items = req.nodesToRead ?? [];
      const gates = items.map((it) => {
        const nodeId = coerceNodeId(it.nodeId ?? 'i=0');
        // Metadata (browse name, data type, access level) of exposed nodes is not process data.
        if (!this.isOurs(nodeId) || (it.attributeId ?? AttributeIds.Value) !== AttributeIds.Value) return undefined;
        return this.ask(context, (s) => this.command(s, 'Read', 'read', nodeId));
      });
      const decisions = await OpcuaFront.decided(gates);
      const allowedIdx: number[] = [];
      for (let i = 0; i < items.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const t0 = performance.now();
      const values = allowedIdx.length === 0 ? [] : await read(context, { ...req, nodesToRead: allowedIdx.map((i) => items[i]!) } as ReadRequestOptions);
      const out: DataValue[] = items.map(() => new DataValue({ statusCode: ACCESS_DENIED }));
      allowedIdx.forEach((i, k) => {
        out[i] = values[k]!;
        const g = gates[i];
        if (g !== undefined) this.outcome(context, g, decisions[i]!, values[k]!.statusCode, t0);
      });
      return out;
    };

    engine.write = async (context: ISessionContext, nodesToWrite: WriteValue[]): Promise<StatusCode[]> => {
      const mismatch: boolean[] = new Array(nodesToWrite.length).fill(false);
      const gates = nodesToWrite.map((w, i) => {
        const nodeId = coerceNodeId(w.nodeId);
        const nonValue = w.attributeId !== AttributeIds.Value;
        // The point's type is the PLC's: a value of another type is refused before policy, as the
        // PLC itself would refuse it (BadTypeMismatch), and audited as a protocol violation.
        const point = this.nodes.get(nodeId.toString())?.point;
        mismatch[i] = !nonValue && point !== undefined && w.value?.value?.dataType !== DATA_TYPE[point.dataType];
        return this.ask(
          context,
          (s) => {
            const c = this.command(s, 'Write', 'write', nodeId);
            const n = numberOf(w.value?.value);
            if (n !== undefined) {
              c.rawValues = [n];
              if (c.points.length === 1) c.values = { [c.points[0]!]: n };
            }
            return c;
          },
          // Only Value writes of one scalar number are commands we can check against bounds.
          nonValue ? 'UNSUPPORTED_FUNCTION' : mismatch[i] || w.indexRange?.isDefined?.() || numberOf(w.value?.value) === undefined ? 'PROTOCOL_VIOLATION' : undefined,
        );
      });
      const decisions = await OpcuaFront.decided(gates);
      const allowedIdx: number[] = [];
      for (let i = 0; i < nodesToWrite.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const t0 = performance.now();
      const statuses = allowedIdx.length === 0 ? [] : await write(context, allowedIdx.map((i) => nodesToWrite[i]!));
      const out: StatusCode[] = nodesToWrite.map((_w, i) => (mismatch[i] ? StatusCodes.BadTypeMismatch : ACCESS_DENIED));
      allowedIdx.forEach((i, k) => {
        out[i] = statuses[k]!;
        const g = gates[i];
        if (g !== undefined) this.outcome(context, g, decisions[i]!, statuses[k]!, t0);
      });
      return out;
    };

    engine.call = async (context: ISessionContext, methodsToCall: CallMethodRequest[]): Promise<CallMethodResultOptions[]> => {
      const gates = methodsToCall.map((m) => {
        const methodId = coerceNodeId(m.methodId);
        const mapped = this.nodes.get(methodId.toString());
        const args = m.inputArguments ?? [];
        const nums = args.map(numberOf);
        const bad = mapped?.method !== undefined && (args.length !== mapped.method.inputs.length || nums.some((n) => n === undefined));
        return this.ask(
          context,
          (s) => {
            const c = this.command(s, 'Call', 'call', methodId);
            if (!bad && mapped?.method) {
              c.rawValues = nums as number[];
              c.values = Object.fromEntries(mapped.method.inputs.map((a, i) => [a.name, nums[i] as number]));
            }
            return c;
          },
          bad ? 'PROTOCOL_VIOLATION' : undefined,
        );
      });
      const decisions = await OpcuaFront.decided(gates);
      const allowedIdx: number[] = [];
      for (let i = 0; i < methodsToCall.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const t0 = performance.now();
      const results = allowedIdx.length === 0 ? [] : await call(context, allowedIdx.map((i) => methodsToCall[i]!));
      const out: CallMethodResultOptions[] = methodsToCall.map(() => new CallMethodResult({ statusCode: ACCESS_DENIED }));
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
        // asset folders, whose contents are gated.
        if (!this.isOurs(nodeId)) return undefined;
        return this.ask(context, (s) => this.command(s, 'Browse', 'browse', nodeId));
      });
      const decisions = await OpcuaFront.decided(gates);
      const allowedIdx: number[] = [];
      for (let i = 0; i < nodesToBrowse.length; i++) if (gates[i] === undefined || decisions[i]!.effect === 'allow') allowedIdx.push(i);
      const results = allowedIdx.length === 0 ? [] : await browse(context, allowedIdx.map((i) => nodesToBrowse[i]!));
      const out: BrowseResult[] = nodesToBrowse.map(() => new BrowseResult({ statusCode: ACCESS_DENIED, references: [] }));
      allowedIdx.forEach((i, k) => {
        out[i] = results[k]!;
      });
      return out;
    };
  }

  /**
   * Decides each item of a CreateMonitoredItems request before node-opcua creates them; the
   * subscription then answers denied items BadUserAccessDenied instead of creating them.
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
      if (!this.isOurs(nodeId)) return undefined;
      return this.ask(context, (ses) => this.command(ses, 'CreateMonitoredItems', 'subscribe', nodeId));
    });
    const decisions = await OpcuaFront.decided(gates);
    items.forEach((it, i) => {
      const g = gates[i];
      if (g === undefined) {
        // Events and standard nodes: nothing of the process. Value items elsewhere are not ours.
        if (it.itemToMonitor.attributeId === AttributeIds.Value && !this.isOurs(it.itemToMonitor.nodeId) && it.itemToMonitor.nodeId.namespace !== 0) {
          this.deniedItems.set(it, ACCESS_DENIED);
        }
        return;
      }
      if (decisions[i]!.effect !== 'allow') this.deniedItems.set(it, ACCESS_DENIED);
    });
  }
}
