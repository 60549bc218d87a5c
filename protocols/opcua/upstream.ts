// The gateway's client session to one real OPC UA server (a PLC, or the simulator's OPC UA face)
// (docs/opcua.md). Owns: the secure channel with the gateway's own application certificate,
// reconnection (node-opcua's, with subscriptions and monitored items recreated on a new session;
// guarded by test/integration/opcua/opcua-path.test.ts), reading the server's model under the
// configured roots (mirror.ts) on every (re)connection and whenever the server announces a model
// change (BaseModelChangeEventType events on the Server object), one subscription feeding every
// mirrored variable's value to the front, and executing allowed writes and calls with a per-call
// timeout. It never decides anything: it runs only what the front hands it after an allow.
//
// While the server is unreachable, writes and calls answer BadServerNotConnected at once (never a
// hang), and every fed point is marked BadServerNotConnected (with its last value) so agents see
// that the value is not live; a call that outlasts its timeout answers BadTimeout.
import {
  AttributeIds,
  ClientSubscription,
  constructEventFilter,
  ofType,
  DataValue,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
  VariantArrayType,
  type ClientMonitoredItemGroup,
  type ClientSession,
  type OPCUACertificateManager,
  type StatusCode,
  type Variant,
} from 'node-opcua';
import { silentLogger, type Logger } from '../../src/core/log.js';
import type { NodeReader } from '../../src/core/readers.js';
import type { FrontUpstream } from './front.js';
import { readModel, type MirrorModel, type MirrorOptions } from './mirror.js';

export type UpstreamSecurity = 'SignAndEncrypt' | 'Sign' | 'None';

export interface OpcuaUpstreamOptions {
  endpointUrl: string;
  /** Default SignAndEncrypt with Basic256Sha256 (use None only for a PLC that supports nothing else). */
  security?: UpstreamSecurity;
  securityPolicy?: SecurityPolicy;
  /** The gateway's application certificate and key (PEM) and its URI SAN. */
  certificateFile: string;
  privateKeyFile: string;
  applicationUri: string;
  /** Trust store for the server's certificate. */
  clientCertificateManager: OPCUACertificateManager;
  /** Command targets (`nsu=<uri>;<identifier>`) of the points to subscribe to (a browsed server: set from its model). */
  targets: string[];
  /**
   * Browse the server (roots, max nodes) on every (re)connection and model change; `onModel`
   * receives the model and answers the targets to subscribe to.
   */
  mirror?: MirrorOptions & { onModel: (model: MirrorModel) => string[] };
  /** Called with every value change of a subscribed point (front.update). */
  onValue: (target: string, value: DataValue) => void;
  /** Per write/call; default 2000 ms. */
  timeoutMs?: number;
  samplingIntervalMs?: number;
  /** Reconnection backoff bounds; default 250 ms .. 5 s, forever. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  logger?: Logger;
}

/** ns=0: the Server object and the model change event type (OPC 10000-5). */
const SERVER_OBJECT = 'i=2253';
const BASE_MODEL_CHANGE_EVENT_TYPE = 'i=2132';
const MODEL_CHANGE_DEBOUNCE_MS = 100;

const MODE: Record<UpstreamSecurity, MessageSecurityMode> = {
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
  Sign: MessageSecurityMode.Sign,
  None: MessageSecurityMode.None,
};

/** Splits `nsu=<uri>;<identifier>` (the front's target form); undefined when it is not one. */
export function parseTarget(target: string): { uri: string; identifier: string } | undefined {
  if (!target.startsWith('nsu=')) return undefined;
  const semi = target.indexOf(';', 4);
  if (semi < 0) return undefined;
  return { uri: target.slice(4, semi), identifier: target.slice(semi + 1) };
}

/** A Good scalar number or boolean as a number (booleans 1/0); NaN for anything else. */
function numericValue(dv: DataValue | undefined): number {
  if (dv === undefined || !dv.statusCode.isGood()) return NaN;
  const v = dv.value;
  if (v.arrayType !== VariantArrayType.Scalar) return NaN;
  if (typeof v.value === 'boolean') return v.value ? 1 : 0;
  return typeof v.value === 'number' && Number.isFinite(v.value) ? v.value : NaN;
}

export class OpcuaUpstream implements FrontUpstream, NodeReader {
  private readonly opts: OpcuaUpstreamOptions;
  private readonly client: OPCUAClient;
  private readonly logger: Logger;
  private session: ClientSession | undefined;
  private subscription: ClientSubscription | undefined;
  private group: ClientMonitoredItemGroup | undefined;
  private targets: string[];
  private remirrorTimer: NodeJS.Timeout | undefined;
  private mirroring: Promise<void> = Promise.resolve();
  private mirrored = false;
  private readonly mirrorWaiters: (() => void)[] = [];
  /** Namespace URI → index on the server, read on each (re)connection. */
  private namespaces = new Map<string, number>();
  /** Last value per target, re-sent with a bad status when the server goes away. */
  private readonly last = new Map<string, DataValue>();
  private connected = false;
  private closed = false;
  private reconnects = 0;
  private readonly upWaiters: (() => void)[] = [];

  constructor(opts: OpcuaUpstreamOptions) {
    this.opts = opts;
    this.targets = opts.targets;
    this.logger = opts.logger ?? silentLogger;
    const security = opts.security ?? 'SignAndEncrypt';
    this.client = OPCUAClient.create({
      applicationName: 'plantgate gateway',
      applicationUri: opts.applicationUri,
      securityMode: MODE[security],
      securityPolicy: security === 'None' ? SecurityPolicy.None : (opts.securityPolicy ?? SecurityPolicy.Basic256Sha256),
      certificateFile: opts.certificateFile,
      privateKeyFile: opts.privateKeyFile,
      clientCertificateManager: opts.clientCertificateManager,
      endpointMustExist: false,
      keepSessionAlive: true,
      requestedSessionTimeout: 60_000,
      connectionStrategy: { maxRetry: -1, initialDelay: opts.initialDelayMs ?? 250, maxDelay: opts.maxDelayMs ?? 5000, randomisationFactor: 0 },
      // The transport's own request timeout bounds what our per-call race leaves running.
      defaultTransactionTimeout: Math.max(opts.timeoutMs ?? 2000, 1000) * 2,
    });
    this.client.on('connection_lost', () => this.down('connection lost'));
    this.client.on('start_reconnection', () => this.down('reconnecting'));
    this.client.on('connection_reestablished', () => {
      this.reconnects++;
      this.logger.info({ endpoint: opts.endpointUrl }, 'OPC UA upstream channel re-established');
    });
  }

  /** True while a session is usable. */
  get isUp(): boolean {
    return this.connected;
  }

  reconnectCount(): number {
    return this.reconnects;
  }

  /**
   * Connects and subscribes. Resolves once the first session is up; if the server is not reachable
   * yet, keeps trying in the background and resolves at once (commands answer BadServerNotConnected).
   */
  async start(): Promise<void> {
    const first = this.client.connect(this.opts.endpointUrl).then(() => this.open());
    first.catch((err: unknown) => this.logger.warn({ endpoint: this.opts.endpointUrl, err: (err as Error).message }, 'OPC UA upstream not connected yet'));
    await Promise.race([first.catch(() => undefined), new Promise((r) => setTimeout(r, this.opts.timeoutMs ?? 2000).unref())]);
  }

  /** Resolves once the server's model has been read and handed to the front (a browsed server only). */
  whenMirrored(): Promise<void> {
    if (this.mirrored || this.opts.mirror === undefined) return Promise.resolve();
    return new Promise((resolve) => this.mirrorWaiters.push(resolve));
  }

  /** Resolves when a session is up (tests and readiness). */
  whenUp(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.upWaiters.push(resolve));
  }

  private async open(): Promise<void> {
    const session = await this.client.createSession({ type: UserTokenType.Anonymous });
    this.session = session;
    session.on('session_restored', () => {
      // node-opcua has re-activated or recreated the session and its subscription; the namespace
      // indexes may have changed with a restarted server.
      const before = [...this.namespaces].join();
      this.readNamespaces()
        .then(async () => {
          // A restarted server may serve another model: read it again.
          if (this.opts.mirror !== undefined) await this.remirror(session);
          // Monitored items were recreated with the old indexes: with new ones, subscribe afresh.
          else if ([...this.namespaces].join() !== before) {
            await this.subscription?.terminate().catch(() => undefined);
            await this.subscribe(session);
          }
        })
        .then(
          () => this.up(),
          // Stays down (commands answer BadServerNotConnected) until the next restoration.
          (err: unknown) => this.logger.warn({ err: (err as Error).message }, 'OPC UA upstream namespace array unreadable after reconnection'),
        );
    });
    await this.readNamespaces();
    if (this.opts.mirror !== undefined) await this.remirror(session);
    else await this.subscribe(session);
    this.up();
  }

  /** Reads the model, hands it to the front and subscribes to what it answers (one at a time). */
  private remirror(session: ClientSession): Promise<void> {
    const m = this.opts.mirror!;
    this.mirroring = this.mirroring.then(async () => {
      const model = await readModel(session, m);
      if (model.unmirrored.length > 0) this.logger.warn({ endpoint: this.opts.endpointUrl, unmirrored: model.unmirrored.slice(0, 20), count: model.unmirrored.length }, 'OPC UA upstream: nodes the gateway does not mirror');
      this.targets = m.onModel(model);
      await this.subscription?.terminate().catch(() => undefined);
      this.subscription = undefined;
      await this.subscribe(session);
      this.mirrored = true;
      for (const w of this.mirrorWaiters.splice(0)) w();
    });
    return this.mirroring;
  }

  /** A model change event: browse again soon (changes come in bursts; one browse covers a burst). */
  private modelChanged(session: ClientSession): void {
    if (this.remirrorTimer !== undefined || this.closed) return;
    this.remirrorTimer = setTimeout(() => {
      this.remirrorTimer = undefined;
      this.remirror(session).catch((err: unknown) => this.logger.warn({ endpoint: this.opts.endpointUrl, err: (err as Error).message }, 'OPC UA upstream: model change not mirrored'));
    }, MODEL_CHANGE_DEBOUNCE_MS);
  }

  private async readNamespaces(): Promise<void> {
    const array = await this.session!.readNamespaceArray();
    this.namespaces = new Map(array.map((uri, i) => [uri, i]));
  }

  private nodeId(target: string): string | undefined {
    const t = parseTarget(target);
    if (t === undefined) return undefined;
    const ns = this.namespaces.get(t.uri);
    return ns === undefined ? undefined : `ns=${ns};${t.identifier}`;
  }

  private async subscribe(session: ClientSession): Promise<void> {
    const targets = this.targets.filter((t) => this.nodeId(t) !== undefined);
    for (const t of this.targets) if (!targets.includes(t)) this.logger.warn({ target: t }, 'OPC UA upstream does not serve the namespace of this point');
    if (targets.length === 0 && this.opts.mirror === undefined) return;
    this.subscription = await session.createSubscription2({
      requestedPublishingInterval: this.opts.samplingIntervalMs ?? 100,
      requestedMaxKeepAliveCount: 10,
      requestedLifetimeCount: 60,
      publishingEnabled: true,
      priority: 1,
    });
    const subscription = this.subscription;
    if (this.opts.mirror !== undefined) {
      // The Server object notifies model changes (OPC 10000-3 §9.32): follow them.
      const item = await subscription.monitor(
        { nodeId: SERVER_OBJECT, attributeId: AttributeIds.EventNotifier },
        { samplingInterval: 0, queueSize: 10, discardOldest: true, filter: constructEventFilter(['EventType'], ofType(BASE_MODEL_CHANGE_EVENT_TYPE)) },
        TimestampsToReturn.Neither,
      );
      item.on('changed', () => this.modelChanged(session));
    }
    if (targets.length === 0) return;
    this.group = await subscription.monitorItems(
      targets.map((t) => ({ nodeId: this.nodeId(t)!, attributeId: AttributeIds.Value })),
      { samplingInterval: this.opts.samplingIntervalMs ?? 100, queueSize: 1, discardOldest: true },
      TimestampsToReturn.Both,
    );
    this.group.on('changed', (_item, value: DataValue, index: number) => {
      const target = targets[index];
      if (target === undefined) return;
      this.last.set(target, value);
      this.opts.onValue(target, value);
    });
  }

  private up(): void {
    if (this.closed) return;
    this.connected = true;
    for (const w of this.upWaiters.splice(0)) w();
  }

  private down(why: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.logger.warn({ endpoint: this.opts.endpointUrl, why }, 'OPC UA upstream down');
    // Fail closed for readers: the last value stays visible but says it is not live.
    for (const [target, v] of this.last) {
      this.opts.onValue(target, new DataValue({ value: v.value, statusCode: StatusCodes.BadServerNotConnected, sourceTimestamp: v.sourceTimestamp, serverTimestamp: new Date() }));
    }
  }

  /** Runs `op` if connected, bounded by the per-call timeout. */
  private async bounded<T>(op: (session: ClientSession) => Promise<T>, unavailable: () => T, failed: () => T, timedOut: () => T): Promise<T> {
    const session = this.session;
    if (!this.connected || session === undefined) return unavailable();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<T>((resolve) => {
      timer = setTimeout(() => resolve(timedOut()), this.opts.timeoutMs ?? 2000);
    });
    try {
      return await Promise.race([op(session).catch(() => (this.connected ? failed() : unavailable())), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Reads the Value of each target in one Read request, for the process image (interlock inputs of
   * an OPC UA-only PLC): engineering units as the server presents them, booleans 1/0, NaN for a
   * node that is unknown, not Good, or not a finite scalar number. When nothing can be read, a
   * word: 'unavailable' (no session), 'timeout', 'failed'. Never rejects (NodeReader).
   */
  async readValues(targets: readonly string[]): Promise<Float64Array | string> {
    const ids = targets.map((t) => this.nodeId(t));
    const known: number[] = [];
    ids.forEach((id, i) => {
      if (id !== undefined) known.push(i);
    });
    return this.bounded<Float64Array | string>(
      async (s) => {
        const out = new Float64Array(targets.length).fill(NaN);
        if (known.length === 0) return out;
        const values = await s.read(known.map((i) => ({ nodeId: ids[i]!, attributeId: AttributeIds.Value })));
        known.forEach((i, k) => {
          out[i] = numericValue(values[k]);
        });
        return out;
      },
      () => 'unavailable',
      () => 'failed',
      () => 'timeout',
    );
  }

  async write(target: string, value: Variant, attributeId: number = AttributeIds.Value): Promise<StatusCode> {
    const nodeId = this.nodeId(target);
    if (nodeId === undefined) return this.connected ? StatusCodes.BadNodeIdUnknown : StatusCodes.BadServerNotConnected;
    return this.bounded(
      (s) => s.write({ nodeId, attributeId, value: { value } }),
      () => StatusCodes.BadServerNotConnected,
      () => StatusCodes.BadCommunicationError,
      () => StatusCodes.BadTimeout,
    );
  }

  async call(objectTarget: string, methodTarget: string, inputs: Variant[]): Promise<{ statusCode: StatusCode; outputs: Variant[]; inputArgumentResults?: StatusCode[] }> {
    const objectId = this.nodeId(objectTarget);
    const methodId = this.nodeId(methodTarget);
    if (objectId === undefined || methodId === undefined) return { statusCode: this.connected ? StatusCodes.BadNodeIdUnknown : StatusCodes.BadServerNotConnected, outputs: [] };
    type Result = { statusCode: StatusCode; outputs: Variant[]; inputArgumentResults?: StatusCode[] };
    return this.bounded<Result>(
      async (s) => {
        const r = await s.call({ objectId, methodId, inputArguments: inputs });
        return { statusCode: r.statusCode, outputs: r.outputArguments ?? [], ...(r.inputArgumentResults && r.inputArgumentResults.length > 0 ? { inputArgumentResults: r.inputArgumentResults } : {}) };
      },
      () => ({ statusCode: StatusCodes.BadServerNotConnected, outputs: [] }),
      () => ({ statusCode: StatusCodes.BadCommunicationError, outputs: [] }),
      () => ({ statusCode: StatusCodes.BadTimeout, outputs: [] }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.remirrorTimer);
    this.connected = false;
    await this.subscription?.terminate().catch(() => undefined);
    await this.session?.close().catch(() => undefined);
    await this.client.disconnect().catch(() => undefined);
  }
}
