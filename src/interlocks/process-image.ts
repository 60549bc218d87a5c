// The gateway's process image: the live values that interlocks name, polled by the gateway itself
// on its own upstream connection (never an agent's), each stamped with the time it was read.
// Owns polling and decoding; decides nothing. Values live in flat typed arrays indexed by slot so
// the interlock check on the command path reads them without allocating.
//
// A value's time is the moment its read request was sent, not when the answer arrived: the PLC
// sampled it somewhere in between, and the earlier bound can only make it look older (fail closed).
// A failed poll (exception, timeout, no connection, undecodable) leaves the old value and time in
// place, so the value simply ages past its freshness bound and interlocks deny.
//
// OPC UA-only PLCs: an input of a point with a NodeId, whose asset has no Modbus endpoint, is read
// with one OPC UA Read per asset and rate through a NodeReader (the gateway's own upstream session,
// protocols/opcua/upstream.ts), with the same rules: stamped with the send time on the gateway's
// clock, and a node answered with a non-Good status (or no answer) keeps its old value and time.
// The server's SourceTimestamp is not used: many servers only move it when the value changes, so
// a steady, live value would look stale, and it runs on the PLC's clock, not the gateway's.
import type { Clock } from '../core/clock.js';
import type { ModbusTable } from '../core/command.js';
import { silentLogger, type Logger } from '../core/log.js';
import { MAX_READ_QUANTITY, type NodeReader, type RegisterReader } from '../core/readers.js';
import { pointWidth, type PointDef } from '../assets/bundle-asset.js';
import { decodePoint } from '../assets/values.js';

export interface ProcessInputSpec {
  asset: string;
  point: string;
  def: PointDef;
  pollMs: number;
  maxAgeMs: number;
}

/** Where an asset's PLC is reached: the image opens its own connection there. */
export interface ProcessEndpoint {
  host: string;
  port: number;
  unitId: number;
}

export interface ProcessImageOptions {
  inputs: readonly ProcessInputSpec[];
  /**
   * Modbus PLCs: where an asset is reached, and the protocol layer's reader for an endpoint
   * (protocols/modbus/register-reader.ts), opened once per asset and closed with the image.
   */
  modbus?: { endpoint(asset: string): ProcessEndpoint | undefined; connect(endpoint: ProcessEndpoint): RegisterReader };
  clock: Clock;
  logger?: Logger;
  /** Largest gap (registers or bits) bridged to read neighbouring points in one request. */
  maxGap?: number;
  /**
   * Called with every value read (engineering units) and the send time of its read: the step bases
   * of max_step come from here (docs/policy.md, max_step).
   */
  onValue?(asset: string, point: string, value: number, atMs: number): void;
  /**
   * The OPC UA reader of an asset. Inputs that have a NodeId (`def.node_id`, canonical
   * `nsu=<uri>;<identifier>`) and whose asset has no Modbus `endpoint` are read through it. Looked
   * up at every poll (the upstream session may start after the image); undefined = not reachable.
   */
  opcua?(asset: string): NodeReader | undefined;
}

export interface PollStatus {
  asset: string;
  table: ModbusTable;
  address: number;
  quantity: number;
  pollMs: number;
  /** The last poll's result: 'ok', 'exception 0x02', 'timeout', 'unavailable', 'no endpoint'. */
  last: string;
  /** Inputs read over OPC UA: their NodeIds (address is then -1, quantity the node count). */
  nodes?: string[];
}

interface Member {
  slot: number;
  offset: number;
  def: PointDef;
}

interface PollGroup {
  asset: string;
  table: ModbusTable;
  pollMs: number;
  address: number;
  quantity: number;
  members: Member[];
  nextDueMs: number;
  inFlight: Promise<void> | undefined;
  last: string;
  /** A confirming read in flight (readFresh), shared by commands that arrived before it was sent. */
  fresh?: { seq: number; promise: Promise<void> };
}

/** The inputs of one OPC UA asset read at one rate: one Read request per poll. */
interface NodeGroup {
  asset: string;
  table: ModbusTable;
  pollMs: number;
  targets: string[];
  /** Slot of each target, same order. */
  slots: Int32Array;
  nextDueMs: number;
  inFlight: Promise<void> | undefined;
  last: string;
}


export class ProcessImage {
  /** Engineering units per slot; NaN until read, or when the last read could not be decoded. */
  readonly values: Float64Array;
  /** Time each value was read (ms since the epoch); NaN = never read. */
  readonly readAtMs: Float64Array;
  /** Freshness bound per slot. */
  readonly maxAgeMs: Float64Array;
  /**
   * History for plausibility checks: when each value last changed (the read that first showed
   * the new value; NaN until read), and the value and time of the read before the current one.
   */
  readonly changedAtMs: Float64Array;
  readonly previousValues: Float64Array;
  readonly previousReadAtMs: Float64Array;
  /**
   * The number of the request that read each value (requests are numbered as they are sent): a
   * confirming read is known to be newer than a command by number, whatever the clock's resolution.
   */
  readonly readSeq: Float64Array;
  private sentRequests = 0;
  /** "asset/point" per slot, for trip records. */
  readonly names: readonly string[];
  private readonly specs: readonly ProcessInputSpec[];
  private readonly slots = new Map<string, number>();
  /** Called after every poll answer that set values (the send time of that read): plausibility tracking. */
  private readonly updateListeners: ((atMs: number) => void)[] = [];
  private readonly groups: PollGroup[] = [];
  private readonly nodeGroups: NodeGroup[] = [];
  private readonly readers = new Map<string, RegisterReader | undefined>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly logger: Logger;

  constructor(private readonly opts: ProcessImageOptions) {
    this.logger = opts.logger ?? silentLogger;
    // One slot per distinct point; the strictest bound and fastest rate win when interlocks share one.
    const merged = new Map<string, ProcessInputSpec>();
    for (const inp of opts.inputs) {
      const key = `${inp.asset}/${inp.point}`;
      const prev = merged.get(key);
      merged.set(key, prev === undefined ? { ...inp } : { ...prev, pollMs: Math.min(prev.pollMs, inp.pollMs), maxAgeMs: Math.min(prev.maxAgeMs, inp.maxAgeMs) });
    }
    const specs = [...merged.values()];
    this.specs = specs;
    const n = specs.length;
    this.values = new Float64Array(n).fill(NaN);
    this.readAtMs = new Float64Array(n).fill(NaN);
    this.changedAtMs = new Float64Array(n).fill(NaN);
    this.previousValues = new Float64Array(n).fill(NaN);
    this.previousReadAtMs = new Float64Array(n).fill(NaN);
    this.readSeq = new Float64Array(n).fill(NaN);
    this.maxAgeMs = new Float64Array(n);
    this.names = specs.map((s) => `${s.asset}/${s.point}`);
    specs.forEach((s, i) => {
      this.slots.set(this.names[i]!, i);
      this.maxAgeMs[i] = s.maxAgeMs;
    });
    // Decided once, from the configuration: an asset with a Modbus endpoint keeps being polled
    // over Modbus exactly as before, even when its points also have NodeIds.
    const overOpcua = (e: { spec: ProcessInputSpec }) => opts.opcua !== undefined && e.spec.def.node_id !== undefined && opts.modbus?.endpoint(e.spec.asset) === undefined;
    const entries = specs.map((spec, slot) => ({ spec, slot }));
    this.planGroups(
      entries.filter((e) => !overOpcua(e)),
      opts.maxGap ?? 16,
    );
    this.planNodeGroups(entries.filter(overOpcua));
  }

  /** Slot of a point, or -1 when the image does not poll it. */
  slot(asset: string, point: string): number {
    return this.slots.get(`${asset}/${point}`) ?? -1;
  }

  get size(): number {
    return this.values.length;
  }

  /** Groups points of one asset, table and rate into as few reads as the PDU limits allow. */
  private planGroups(entries: { spec: ProcessInputSpec; slot: number }[], maxGap: number): void {
    const buckets = new Map<string, { spec: ProcessInputSpec; slot: number }[]>();
    entries.forEach(({ spec, slot }) => {
      const key = `${spec.asset}\u0000${spec.def.table}\u0000${spec.pollMs}`;
      let b = buckets.get(key);
      if (b === undefined) buckets.set(key, (b = []));
      b.push({ spec, slot });
    });
    for (const bucket of buckets.values()) {
      bucket.sort((a, b) => a.spec.def.address - b.spec.def.address);
      const { asset, pollMs } = bucket[0]!.spec;
      const table = bucket[0]!.spec.def.table;
      let start = -1;
      let end = -1;
      let members: Member[] = [];
      const flush = () => {
        if (members.length === 0) return;
        this.groups.push({ asset, table, pollMs, address: start, quantity: end - start, members, nextDueMs: 0, inFlight: undefined, last: 'not polled yet' });
        members = [];
      };
      for (const { spec, slot } of bucket) {
        const a = spec.def.address;
        const w = table === 'coil' || table === 'discrete' ? 1 : pointWidth(spec.def);
        if (members.length > 0 && (a - end > maxGap || a + w - start > MAX_READ_QUANTITY[table])) flush();
        if (members.length === 0) start = a;
        end = Math.max(end, a + w);
        members.push({ slot, offset: a - start, def: spec.def });
      }
      flush();
    }
  }

  /** One Read per OPC UA asset and rate (node-opcua splits it further if the server asks). */
  private planNodeGroups(entries: { spec: ProcessInputSpec; slot: number }[]): void {
    const buckets = new Map<string, { spec: ProcessInputSpec; slot: number }[]>();
    for (const e of entries) {
      const key = `${e.spec.asset}\u0000${e.spec.pollMs}`;
      let b = buckets.get(key);
      if (b === undefined) buckets.set(key, (b = []));
      b.push(e);
    }
    for (const bucket of buckets.values()) {
      const { asset, pollMs, def } = bucket[0]!.spec;
      this.nodeGroups.push({
        asset,
        table: def.table,
        pollMs,
        targets: bucket.map((e) => e.spec.def.node_id!),
        slots: Int32Array.from(bucket.map((e) => e.slot)),
        nextDueMs: 0,
        inFlight: undefined,
        last: 'not polled yet',
      });
    }
  }

  private readerFor(asset: string): RegisterReader | undefined {
    if (this.readers.has(asset)) return this.readers.get(asset);
    const modbus = this.opts.modbus;
    const ep = modbus?.endpoint(asset);
    const reader = ep === undefined ? undefined : modbus!.connect(ep);
    this.readers.set(asset, reader);
    return reader;
  }

  /** Opens the connections and starts polling on a timer (production); tests call pollNow instead. */
  start(): void {
    for (const g of this.groups) this.readerFor(g.asset);
    if ((this.groups.length === 0 && this.nodeGroups.length === 0) || this.timer !== undefined) return;
    const fastest = Math.min(...this.groups.map((g) => g.pollMs), ...this.nodeGroups.map((g) => g.pollMs));
    this.timer = setInterval(() => void this.pollDue(), Math.max(10, Math.floor(fastest / 4)));
    this.timer.unref();
    void this.pollDue();
  }

  /** Resolves once every PLC the image polls has a live connection. */
  async ready(): Promise<void> {
    const readers = new Set<RegisterReader>();
    for (const g of this.groups) {
      const r = this.readerFor(g.asset);
      if (r) readers.add(r);
    }
    await Promise.all([...readers].map((r) => r.ready()));
  }

  /** Polls every group whose interval has passed on the clock; resolves when their answers are in. */
  pollDue(): Promise<void> {
    const now = this.opts.clock.now();
    const pending: Promise<void>[] = [];
    for (const g of this.groups) {
      if (g.inFlight !== undefined || g.nextDueMs > now) continue;
      pending.push(this.poll(g, now));
    }
    for (const g of this.nodeGroups) {
      if (g.inFlight !== undefined || g.nextDueMs > now) continue;
      pending.push(this.pollNodes(g, now));
    }
    return Promise.all(pending).then(() => undefined);
  }

  /** Polls every group now (waiting for reads already in flight); resolves when all answers are in. */
  pollNow(): Promise<void> {
    const now = this.opts.clock.now();
    return Promise.all([...this.groups.map((g) => g.inFlight ?? this.poll(g, now)), ...this.nodeGroups.map((g) => g.inFlight ?? this.pollNodes(g, now))]).then(() => undefined);
  }

  /** One Read of the group's nodes; `scheduled` false: a confirming read outside the poll schedule. */
  private pollNodes(g: NodeGroup, now: number, scheduled = true): Promise<void> {
    if (scheduled) g.nextDueMs = now + g.pollMs;
    let reader: NodeReader | undefined;
    try {
      reader = this.closed ? undefined : this.opts.opcua?.(g.asset);
    } catch {
      // A wiring that cannot name the reader yet is the same as no reader: the values age.
      reader = undefined;
    }
    if (reader === undefined) {
      g.last = 'no endpoint';
      return Promise.resolve();
    }
    let call: Promise<Float64Array | string>;
    const seq = ++this.sentRequests;
    try {
      call = reader.readValues(g.targets);
    } catch {
      call = Promise.resolve('failed');
    }
    const p = call.then(
      (result) => this.onNodeValues(g, result, now, seq),
      // A reader must not reject; if one does, it is a failed poll like any other.
      () => this.onNodeValues(g, 'failed', now, seq),
    );
    if (!scheduled) return p;
    g.inFlight = p;
    return p.finally(() => {
      g.inFlight = undefined;
    });
  }

  private onNodeValues(g: NodeGroup, result: Float64Array | string, sentAtMs: number, seq: number): void {
    if (typeof result === 'string') {
      if (g.last !== result) this.logger.warn({ asset: g.asset, nodes: g.targets.length, result }, 'process image OPC UA read failed');
      g.last = result;
      return;
    }
    let bad = 0;
    for (let i = 0; i < g.slots.length; i++) {
      const v = result[i];
      // Not Good (or missing): keep the old value and time, so it ages past its bound.
      if (v === undefined || Number.isNaN(v)) {
        bad++;
        continue;
      }
      this.record(g.slots[i]!, v, sentAtMs, seq);
    }
    g.last = bad === 0 ? 'ok' : `${bad} of ${g.slots.length} nodes not Good`;
    this.updated(sentAtMs);
  }

  private poll(g: PollGroup, now: number): Promise<void> {
    g.nextDueMs = now + g.pollMs;
    const reader = this.closed ? undefined : this.readerFor(g.asset);
    if (reader === undefined) {
      g.last = 'no endpoint';
      return Promise.resolve();
    }
    const seq = ++this.sentRequests;
    const p = this.read(reader, g).then((result) => {
      g.inFlight = undefined;
      this.onResult(g, result, now, seq);
    });
    g.inFlight = p;
    return p;
  }

  /** A reader must not reject or throw; if one does, it is a failed poll like any other. */
  private read(reader: RegisterReader, g: PollGroup): Promise<ArrayLike<number> | string> {
    try {
      return reader.readRegisters(g.table, g.address, g.quantity).catch(() => 'failed');
    } catch {
      return Promise.resolve('failed');
    }
  }

  private onResult(g: PollGroup, words: ArrayLike<number> | string, sentAtMs: number, seq: number): void {
    if (typeof words === 'string') {
      // Exceptions are the PLC's answer, said once in the status; a lost connection is logged.
      if (g.last !== words && !words.startsWith('exception') && words !== 'undecodable') this.logger.warn({ asset: g.asset, table: g.table, address: g.address, result: words }, 'process image poll failed');
      g.last = words;
      return;
    }
    g.last = 'ok';
    for (const m of g.members) {
      const second = pointWidth(m.def) === 2 ? (words[m.offset + 1] ?? NaN) : 0;
      const v = decodePoint(m.def, words[m.offset]!, second);
      if (Number.isNaN(v)) {
        // An undecodable value keeps no timestamp: it must not count as fresh.
        this.values[m.slot] = NaN;
        this.readAtMs[m.slot] = NaN;
      } else this.record(m.slot, v, sentAtMs, seq);
    }
    this.updated(sentAtMs);
  }

  /**
   * A value read at `atMs` (its request's send time). An answer older than what the slot holds (a
   * slow poll overtaken by a confirming read) is ignored: time never runs backwards for a slot.
   */
  record(slot: number, value: number, atMs: number, seq = ++this.sentRequests): void {
    if (atMs < this.readAtMs[slot]! || seq < this.readSeq[slot]!) return;
    this.readSeq[slot] = seq;
    const prev = this.values[slot]!;
    if (!Number.isNaN(this.readAtMs[slot]!)) {
      this.previousValues[slot] = prev;
      this.previousReadAtMs[slot] = this.readAtMs[slot]!;
    }
    if (Number.isNaN(this.changedAtMs[slot]!) || prev !== value) this.changedAtMs[slot] = atMs;
    this.values[slot] = value;
    this.readAtMs[slot] = atMs;
    this.told(slot, value, atMs);
  }

  /** Registers a listener called after each poll answer that set values. */
  onUpdate(listener: (atMs: number) => void): void {
    this.updateListeners.push(listener);
  }

  /** Tells the listeners a poll answer set values (polls call it; a harness feeding record() too). */
  updated(atMs: number): void {
    for (const l of this.updateListeners) {
      try {
        l(atMs);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'process image listener failed');
      }
    }
  }

  /** The number of the last request sent: a value with a higher readSeq was read after this moment. */
  readsSent(): number {
    return this.sentRequests;
  }

  /**
   * Reads the groups holding these slots again, whatever their schedule (a confirming read for a
   * guarded command, docs/safety.md): resolves when the answers are in or after `timeoutMs`,
   * whichever is first; never rejects. A confirming read sent after request number `after` is
   * shared rather than sent again.
   */
  readFresh(slots: readonly number[], timeoutMs: number, after = this.sentRequests): Promise<void> {
    const now = this.opts.clock.now();
    const pending: Promise<void>[] = [];
    for (const g of this.groups) if (g.members.some((m) => slots.includes(m.slot))) pending.push(this.freshRead(g, now, after));
    for (const g of this.nodeGroups) if (Array.prototype.some.call(g.slots, (x: number) => slots.includes(x))) pending.push(this.pollNodes(g, now, false));
    if (pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      void Promise.all(pending).then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private freshRead(g: PollGroup, now: number, after: number): Promise<void> {
    if (g.fresh !== undefined && g.fresh.seq > after) return g.fresh.promise;
    const reader = this.closed ? undefined : this.readerFor(g.asset);
    if (reader === undefined) return Promise.resolve();
    const seq = ++this.sentRequests;
    const promise = this.read(reader, g).then((result) => this.onResult(g, result, now, seq));
    const fresh = { seq, promise };
    g.fresh = fresh;
    void promise.then(() => {
      if (g.fresh === fresh) g.fresh = undefined;
    });
    return promise;
  }

  private told(slot: number, value: number, atMs: number): void {
    const onValue = this.opts.onValue;
    if (onValue === undefined) return;
    const spec = this.specs[slot]!;
    try {
      onValue(spec.asset, spec.point, value, atMs);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'process image listener failed');
    }
  }

  /** Age of a slot's value at `nowMs`; Infinity when never read. */
  ageMs(slot: number, nowMs: number): number {
    const t = this.readAtMs[slot]!;
    return Number.isNaN(t) ? Infinity : nowMs - t;
  }

  /** What each poll did last: for the operator and the health endpoint. */
  status(): PollStatus[] {
    return this.groups.map((g) => ({
      asset: g.asset,
      table: g.table,
      address: g.address,
      quantity: g.quantity,
      pollMs: g.pollMs,
      last: g.last,
    })).concat(
      this.nodeGroups.map((g) => ({ asset: g.asset, table: g.table, address: -1, quantity: g.targets.length, pollMs: g.pollMs, last: g.last, nodes: g.targets.slice() })),
    );
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const r of this.readers.values()) r?.close();
    this.readers.clear();
  }
}
