// The served-request log: every Modbus request that reached the simulated PLC and what became of
// it — the ground truth a harness asserts on ("the gateway forwarded nothing it should not have").
// Bounded ring (oldest dropped first, counted); subscribers see each entry as it is recorded.
// Entries are cheap on the hot path: the decoded request is kept as is and point names are
// resolved only when asked for.
import type { Request } from '../../protocols/modbus/codec.js';
import { requestRanges } from './faults.js';
import type { PlantRuntime } from './runtime.js';

export type Outcome =
  /** Executed and answered normally. */
  | 'ok'
  /** Answered with exception `exception` (nothing was written). */
  | 'exception'
  /** Received and never answered (a timeout or offline fault, or an unserved unit id). */
  | 'no-answer'
  /** The connection was closed instead of answering. */
  | 'disconnected'
  /** Executed, then answered with a broken frame. */
  | 'malformed'
  /** Executed, then the answer was lost (a lost-answer fault): the client cannot know it ran. */
  | 'answer-lost'
  /** Not a request: the bytes broke MBAP framing (or named function code 0 / ≥ 0x80); the connection was closed. */
  | 'framing-error';

/** Outcomes after which the request was executed (a write is in the PLC's memory). */
const EXECUTED: ReadonlySet<Outcome> = new Set(['ok', 'malformed', 'answer-lost']);

const WRITE_FCS = new Set([5, 6, 15, 16, 22, 23]);

export class ServedRequest {
  constructor(
    /** 1, 2, 3, … since the plant started (gaps show entries the ring dropped). */
    readonly seq: number,
    /** Plant clock time the request arrived. */
    readonly atMs: number,
    readonly peer: string,
    readonly transactionId: number,
    readonly unitId: number,
    readonly fc: number,
    /** Undefined when the codec refused the PDU (then outcome is an exception). */
    readonly request: Request | undefined,
    readonly outcome: Outcome,
    readonly exception: number | undefined,
    /** The fault that decided the outcome, if any. */
    readonly faultId: string | undefined,
    private readonly runtime: PlantRuntime,
    /** A write that was executed left some value different from before (false: it wrote what was there). */
    readonly changed: boolean,
    /** For a framing error: its code (BAD_PROTOCOL_ID, BAD_LENGTH, ...) and message. */
    readonly error: { code: string; message: string } | undefined,
  ) {}

  /** True for a function code that writes (5, 6, 15, 16, 22, 23), whatever the outcome. */
  get isWrite(): boolean {
    return WRITE_FCS.has(this.fc);
  }

  /**
   * True when the write was executed: the PLC's memory holds the written values now (whether or
   * not they differ from before: see `changed`), also when its answer was broken or lost.
   */
  get wrote(): boolean {
    return this.isWrite && EXECUTED.has(this.outcome);
  }

  /** Names of the points the request touched ("plcId/name"), resolved on demand. */
  get points(): string[] {
    if (this.request === undefined) return [];
    const tables = this.runtime.byUnit[this.unitId];
    if (tables === undefined) return [];
    const out: string[] = [];
    for (const r of requestRanges(this.request)) {
      for (const p of tables.plc.points) {
        if (p.table === r.table && p.address < r.end && r.start < p.address + p.words) {
          const name = `${tables.plc.id}/${p.name}`;
          if (!out.includes(name)) out.push(name);
        }
      }
    }
    return out;
  }

  toJSON(): Record<string, unknown> {
    const req = this.request as (Record<string, unknown> & { data?: Buffer }) | undefined;
    let request: Record<string, unknown> | undefined;
    if (req !== undefined) {
      request = { ...req };
      if (req.data !== undefined) request.data = req.data.toString('hex');
    }
    return {
      seq: this.seq,
      atMs: this.atMs,
      at: new Date(this.atMs).toISOString(),
      peer: this.peer,
      transactionId: this.transactionId,
      unitId: this.unitId,
      fc: this.fc,
      request,
      points: this.points,
      outcome: this.outcome,
      exception: this.exception ?? null,
      faultId: this.faultId ?? null,
      wrote: this.wrote,
      changed: this.changed,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }
}

export const DEFAULT_LOG_CAPACITY = 10_000;

export class RequestLog {
  private readonly ring: (ServedRequest | undefined)[];
  private seq = 0;
  private readonly listeners = new Set<(r: ServedRequest) => void>();

  constructor(
    private readonly runtime: PlantRuntime,
    readonly capacity = DEFAULT_LOG_CAPACITY,
  ) {
    this.ring = new Array<ServedRequest | undefined>(Math.max(capacity, 0));
  }

  /** Total requests recorded since start (including those the ring has dropped). */
  get total(): number {
    return this.seq;
  }

  record(
    peer: string,
    transactionId: number,
    unitId: number,
    fc: number,
    request: Request | undefined,
    outcome: Outcome,
    exception: number | undefined,
    faultId: string | undefined,
    extra?: { changed?: boolean; error?: { code: string; message: string } },
  ): void {
    this.seq++;
    if (this.ring.length === 0 && this.listeners.size === 0) return;
    const entry = new ServedRequest(
      this.seq, this.runtime.clock.now(), peer, transactionId, unitId, fc, request, outcome, exception, faultId, this.runtime,
      extra?.changed ?? false, extra?.error,
    );
    if (this.ring.length > 0) this.ring[this.seq % this.ring.length] = entry;
    for (const l of this.listeners) l(entry);
  }

  /** The last `n` entries still in the ring, oldest first. */
  tail(n: number): ServedRequest[] {
    return this.entries(Math.max(0, this.seq - n));
  }

  /** Entries still in the ring with seq > afterSeq, oldest first, at most limit. */
  entries(afterSeq = 0, limit = Number.POSITIVE_INFINITY): ServedRequest[] {
    const out: ServedRequest[] = [];
    const n = this.ring.length;
    if (n === 0) return out;
    const first = Math.max(afterSeq + 1, this.seq - n + 1, 1);
    for (let s = first; s <= this.seq && out.length < limit; s++) {
      const e = this.ring[s % n];
      if (e !== undefined && e.seq === s) out.push(e);
    }
    return out;
  }

  /** Forgets recorded entries (seq keeps counting), e.g. between test cases. */
  clear(): void {
    this.ring.fill(undefined);
  }

  subscribe(listener: (r: ServedRequest) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
