// What policy remembers between commands (docs/policy.md, "Decide, then commit"): the rate-limit
// budgets and the PLC values max_step measures from. The engine only reads it while deciding, so a
// decision is a pure function of (bundle, subject, command, this memory). It changes only when the
// gateway reports what became of a decided command:
//   forwarded    the final gate said yes: its tokens are spent and its written values are in flight;
//   returned     a gate after policy refused it after all (interlock, approval, audit): tokens back;
//   settled      the PLC answered: an acknowledged write moves the base to the written value.
// And when the PLC tells a value, from the gateway's own reads (process image) or an agent's read
// it relayed (PolicyEngine.observeRead): `observe` (docs/policy.md, max_step and its base).
// Owns that bookkeeping only: it never decides, never does I/O, and stays bounded (budgets in LRUs,
// bases one per point of the bundles seen).
import { LRUCache } from 'lru-cache';
import { TokenBucket, type RateSpec } from '../core/rate.js';

/** Budgets per rate limit: subjects are authenticated, but still bounded. */
const MAX_BUDGETS_PER_LIMIT = 10_000;
const MAX_LIMITS = 20_000;
/** A write whose outcome never came back stops counting as in flight; its point's base is then unknown. */
const MAX_IN_FLIGHT_MS = 120_000;

/** One budget a forwarded command spends a token of. */
export interface Charge {
  /** The rate limit (rule, position, rate and keys): PolicyMemory keeps its budgets apart. */
  limit: string;
  /** The budget within the limit: the command's values of the limit's keys. */
  key: string;
  spec: RateSpec;
}

interface InFlight {
  value: number;
  sinceMs: number;
}

/** What the gateway knows of one point's PLC value: the base max_step measures from. */
export interface PointMemory {
  /** Engineering units; NaN = unknown. */
  value: number;
  /** When the PLC held `value`: a read's send time, or the acknowledgement of a write. NaN = never. */
  atMs: number;
  /** Reads sent before this are older than what the gateway last learnt (e.g. a write of unknown outcome). */
  notBeforeMs: number;
  /** Forwarded writes the PLC has not answered yet: a new step is measured from each of them too. */
  inFlight: InFlight[];
}

interface PlannedWrite {
  asset: string;
  point: string;
  value: number;
  memory?: PointMemory;
  flight?: InFlight;
}

/**
 * What committing one decided command changes: the budgets it spends when forwarded and the
 * values it writes (the base of max_step once the PLC acknowledges them). Built by the engine,
 * carried on the decision, applied by PolicyMemory; each step happens at most once.
 */
export class Forwarding {
  readonly charges: Charge[] = [];
  readonly writes: PlannedWrite[] = [];
  state: 'planned' | 'forwarded' | 'returned' | 'settled' = 'planned';

  get empty(): boolean {
    return this.charges.length === 0 && this.writes.length === 0;
  }
}

export type WriteResult = 'acknowledged' | 'refused' | 'unknown';

export class PolicyMemory {
  private readonly budgets = new LRUCache<string, LRUCache<string, TokenBucket>>({ max: MAX_LIMITS });
  private readonly points = new Map<string, Map<string, PointMemory>>();

  /** Whether the budget holds a token at `nowMs` (no budget yet = a full one). Changes nothing. */
  hasToken(limit: string, key: string, nowMs: number): boolean {
    const b = this.budgets.peek(limit)?.peek(key);
    return b === undefined || b.tokensAt(nowMs) >= 1;
  }

  /** The point's memory, or undefined when nothing is known of it. Changes nothing. */
  point(asset: string, point: string): PointMemory | undefined {
    return this.points.get(asset)?.get(point);
  }

  /**
   * A value the PLC held at `atMs` (the send time of the read that returned it). Older than what is
   * known already: ignored, so a late answer never rolls a base back.
   */
  observe(asset: string, point: string, value: number, atMs: number): void {
    if (!Number.isFinite(value) || !Number.isFinite(atMs)) return;
    const m = this.pointFor(asset, point);
    if (atMs < m.notBeforeMs || atMs < m.atMs) return;
    m.value = value;
    m.atMs = atMs;
  }

  /** The command passed the last gate and goes to the PLC: spend its tokens, note its writes in flight. */
  forwarded(plan: Forwarding, nowMs: number): void {
    if (plan.state !== 'planned') return;
    plan.state = 'forwarded';
    for (const c of plan.charges) {
      let budgets = this.budgets.get(c.limit);
      if (budgets === undefined) this.budgets.set(c.limit, (budgets = new LRUCache({ max: MAX_BUDGETS_PER_LIMIT })));
      let b = budgets.get(c.key);
      if (b === undefined) budgets.set(c.key, (b = new TokenBucket(c.spec, nowMs)));
      b.take(nowMs);
    }
    for (const w of plan.writes) {
      const m = (w.memory = this.pointFor(w.asset, w.point));
      this.expireInFlight(m, nowMs);
      w.flight = { value: w.value, sinceMs: nowMs };
      m.inFlight.push(w.flight);
    }
  }

  /** A gate after policy refused the command after all: it spent nothing and writes nothing. */
  returned(plan: Forwarding): void {
    if (plan.state !== 'forwarded') return;
    plan.state = 'returned';
    for (const c of plan.charges) this.budgets.peek(c.limit)?.peek(c.key)?.give();
    for (const w of plan.writes) dropFlight(w);
  }

  /**
   * The PLC answered a forwarded command. Acknowledged: each written value is the point's base from
   * now. Refused (an exception): nothing changed. Unknown (timeout, connection lost): the PLC may or
   * may not hold the value, so the base is unknown until a read sent after now answers.
   */
  settled(plan: Forwarding, result: WriteResult, nowMs: number): void {
    if (plan.state !== 'forwarded') return;
    plan.state = 'settled';
    for (const w of plan.writes) {
      dropFlight(w);
      const m = w.memory!;
      if (result === 'acknowledged') {
        if (!(nowMs < m.atMs)) {
          m.value = w.value;
          m.atMs = nowMs;
        }
      } else if (result === 'unknown') {
        m.value = NaN;
        m.atMs = NaN;
        m.notBeforeMs = nowMs;
      }
    }
  }

  private pointFor(asset: string, point: string): PointMemory {
    let byPoint = this.points.get(asset);
    if (byPoint === undefined) this.points.set(asset, (byPoint = new Map()));
    let m = byPoint.get(point);
    if (m === undefined) byPoint.set(point, (m = { value: NaN, atMs: NaN, notBeforeMs: -Infinity, inFlight: [] }));
    return m;
  }

  /** A write whose outcome never came back: no longer in flight, and the base is unknown. */
  private expireInFlight(m: PointMemory, nowMs: number): void {
    if (m.inFlight.length === 0 || !(nowMs - m.inFlight[0]!.sinceMs > MAX_IN_FLIGHT_MS)) return;
    m.inFlight = m.inFlight.filter((f) => !(nowMs - f.sinceMs > MAX_IN_FLIGHT_MS));
    m.value = NaN;
    m.atMs = NaN;
    m.notBeforeMs = nowMs;
  }
}

function dropFlight(w: PlannedWrite): void {
  const list = w.memory?.inFlight;
  if (list === undefined || w.flight === undefined) return;
  const i = list.indexOf(w.flight);
  if (i !== -1) list.splice(i, 1);
}

/** The memory of an engine asked without one (tools, tests): knows nothing; decide never changes it. */
export const NO_MEMORY = new PolicyMemory();
