// The interlock check on the command path (docs/safety.md, Interlocks): does this command touch
// a guarded point, and if so, does the live process image say it must not run? Owns matching
// commands to interlocks, judging freshness (and, with `confirm`, asking for a read sent after the
// command arrived) and plausibility (stuck, jumping, disagreeing sensors). Indexed by asset and
// point at load, so a command no interlock guards costs two Map lookups; allocates only when it
// trips. Never forwards on doubt: a stale, never-read, unconfirmed or undecodable input denies
// INTERLOCK_INPUT_STALE, an implausible one INTERLOCK_INPUT_IMPLAUSIBLE, a condition that cannot
// be evaluated (division by zero) denies INTERLOCK.
import type { Command, Operation } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import type { BundleAsset } from '../assets/bundle-asset.js';
import { ParseError, compileExpr, parseExpr, type Evaluator } from '../assets/expr.js';
import type { InputRef, InterlockDef } from './payload.js';
import type { ProcessInputSpec } from './process-image.js';

export interface TripInput {
  /** "asset/point" */
  point: string;
  /** Engineering units; NaN when never read or undecodable. */
  value: number;
  /** Age of the value when the command was checked; -1 when it was never read. */
  ageMs: number;
  maxAgeMs: number;
}

export interface InterlockTrip {
  reason: 'INTERLOCK' | 'INTERLOCK_INPUT_STALE' | 'INTERLOCK_INPUT_IMPLAUSIBLE';
  interlockId: string;
  /** The guarded point of the command that matched. */
  point: string;
  /** Every input of the condition as it stood: what the audit record and the operator see. */
  inputs: TripInput[];
  /** One line for logs and the audit detail: condition and inputs. */
  detail: string;
}

/** What the engine reads: the process image's arrays (see ProcessImage). */
export interface ProcessValues {
  readonly values: Float64Array;
  readonly readAtMs: Float64Array;
  readonly maxAgeMs: Float64Array;
  readonly names: readonly string[];
  /** Plausibility history (ProcessImage.record keeps it). */
  readonly changedAtMs: Float64Array;
  readonly previousValues: Float64Array;
  readonly previousReadAtMs: Float64Array;
  /** The number of the request that read each value. */
  readonly readSeq: Float64Array;
  slot(asset: string, point: string): number;
  /** The number of the last request sent. */
  readsSent(): number;
  /** Reads these slots again; resolves when answered or after timeoutMs. */
  readFresh?(slots: readonly number[], timeoutMs: number, after: number): Promise<void>;
  /** Calls the listener after every poll answer (plausibility tracking between commands). */
  onUpdate?(listener: (atMs: number) => void): void;
}

/** A stuck-sensor check: the input must change within `withinMs` while `running` holds. */
interface ChangesCheck {
  kind: 'changes';
  slot: number;
  withinMs: number;
  whileText: string | undefined;
  running: Evaluator | null;
  whileSlots: Int32Array;
  /** Since when `running` has held without a break (NaN: it does not hold now). */
  runningSinceMs: number;
  /** When the check tripped; it stays tripped until the input changes after that (NaN: not tripped). */
  trippedAtMs: number;
  /** How long the input had not changed when it tripped. */
  stillForMs: number;
}

type PlausibilityCheck =
  | ChangesCheck
  | { kind: 'rate'; slot: number; maxPerSec: number }
  | { kind: 'agree'; a: number; b: number; within: number };

export class InterlockError extends PlantgateError {
  readonly interlockId: string;
  constructor(interlockId: string, message: string) {
    // A bundle whose interlocks cannot be built is not loaded: the gateway stays on what it had.
    super('BUNDLE_UNAVAILABLE', `interlock '${interlockId}': ${message}`);
    this.interlockId = interlockId;
  }
}

interface Compiled {
  id: string;
  condition: string;
  operations: ReadonlySet<Operation>;
  /** Guard value per guarded point name; NaN = any value. */
  guardValue: ReadonlyMap<string, number>;
  /** Every input: the condition's, the plausibility checks' and their `while` conditions'. */
  slots: Int32Array;
  evaluate: Evaluator;
  /** `confirm`: the inputs must have been read after the command arrived (NaN: no such wait). */
  confirmMs: number;
  plausible: PlausibilityCheck[];
}

/**
 * The inputs the process image must poll for these interlocks. The compiled bundle has already
 * checked every reference; a point missing here is a bundle the gateway refuses.
 */
export function processInputs(defs: readonly InterlockDef[], assets: readonly BundleAsset[]): ProcessInputSpec[] {
  const byId = new Map(assets.map((a) => [a.id, a]));
  const out: ProcessInputSpec[] = [];
  for (const d of defs) {
    for (const inp of d.inputs) {
      const def = byId.get(inp.asset)?.points[inp.point];
      if (def === undefined) throw new InterlockError(d.id, `input '${inp.asset}/${inp.point}' is not a point of the bundle`);
      out.push({ asset: inp.asset, point: inp.point, def, pollMs: inp.poll_ms, maxAgeMs: inp.max_age_ms });
    }
  }
  return out;
}

const EQ_TOLERANCE = 1e-9;

export class InterlockEngine {
  /** asset id → guarded point name → interlocks guarding it. */
  private readonly index = new Map<string, Map<string, Compiled[]>>();
  /** Interlocks with a stuck-sensor check, moved on by every poll. */
  private readonly tracked: Compiled[] = [];
  readonly count: number;

  constructor(
    defs: readonly InterlockDef[],
    assets: readonly BundleAsset[],
    private readonly image: ProcessValues,
  ) {
    const assetIds = new Set(assets.map((a) => a.id));
    for (const d of defs) {
      if (!assetIds.has(d.asset)) throw new InterlockError(d.id, `unknown asset '${d.asset}'`);
      let evaluate: Evaluator;
      const slots: number[] = [];
      try {
        evaluate = compileExpr(parseExpr(d.deny_when), (ref) => {
          const asset = ref.asset ?? d.asset;
          const slot = image.slot(asset, ref.name);
          if (slot < 0) throw new InterlockError(d.id, `input '${asset}/${ref.name}' is not polled by the process image`);
          if (!slots.includes(slot)) slots.push(slot);
          return slot;
        });
      } catch (err) {
        if (err instanceof ParseError) throw new InterlockError(d.id, `deny_when ${err.message}`);
        throw err;
      }
      const slotOf = (ref: InputRef): number => {
        const slot = image.slot(ref.asset, ref.point);
        if (slot < 0) throw new InterlockError(d.id, `input '${ref.asset}/${ref.point}' is not polled by the process image`);
        if (!slots.includes(slot)) slots.push(slot);
        return slot;
      };
      const plausible: PlausibilityCheck[] = (d.plausible ?? []).map((p): PlausibilityCheck => {
        if (p.kind === 'rate') return { kind: 'rate', slot: slotOf(p.input), maxPerSec: p.max_per_sec };
        if (p.kind === 'agree') return { kind: 'agree', a: slotOf(p.inputs[0]), b: slotOf(p.inputs[1]), within: p.within };
        const slot = slotOf(p.input);
        const whileSlots: number[] = [];
        let running: Evaluator | null = null;
        if (p.while !== undefined) {
          try {
            running = compileExpr(parseExpr(p.while), (ref) => {
              const s = slotOf({ asset: ref.asset ?? d.asset, point: ref.name });
              if (!whileSlots.includes(s)) whileSlots.push(s);
              return s;
            });
          } catch (err) {
            if (err instanceof ParseError) throw new InterlockError(d.id, `plausible while ${err.message}`);
            throw err;
          }
        }
        return {
          kind: 'changes', slot, withinMs: p.within_ms, whileText: p.while, running, whileSlots: Int32Array.from(whileSlots),
          runningSinceMs: NaN, trippedAtMs: NaN, stillForMs: 0,
        };
      });
      const compiled: Compiled = {
        id: d.id,
        condition: d.deny_when,
        operations: new Set(d.operations),
        guardValue: new Map(d.guards.map((g) => [g.point, g.value ?? NaN])),
        slots: Int32Array.from(slots),
        evaluate,
        confirmMs: d.confirm_ms ?? NaN,
        plausible,
      };
      if (plausible.some((p) => p.kind === 'changes')) this.tracked.push(compiled);
      let byPoint = this.index.get(d.asset);
      if (byPoint === undefined) this.index.set(d.asset, (byPoint = new Map()));
      for (const g of d.guards) {
        let list = byPoint.get(g.point);
        if (list === undefined) byPoint.set(g.point, (list = []));
        if (!list.includes(compiled)) list.push(compiled);
      }
    }
    this.count = defs.length;
    // A stuck sensor is seen between commands: every poll answer moves the checks on.
    if (this.tracked.length > 0) image.onUpdate?.((atMs) => this.track(atMs));
  }

  /** The interlocks that guard this command, with the guarded point each matched on. */
  private guarding(cmd: Command, visit: (il: Compiled, point: string) => boolean): void {
    const byPoint = this.index.get(cmd.assetId);
    if (byPoint === undefined) return;
    const points = cmd.points;
    for (let i = 0; i < points.length; i++) {
      const list = byPoint.get(points[i]!);
      if (list === undefined) continue;
      for (let j = 0; j < list.length; j++) {
        const il = list[j]!;
        if (!il.operations.has(cmd.operation)) continue;
        const want = il.guardValue.get(points[i]!)!;
        if (!Number.isNaN(want)) {
          const written = cmd.values?.[points[i]!];
          // A written value the gateway could not decode cannot prove it differs: the guard applies.
          if (written !== undefined && Math.abs(written - want) > EQ_TOLERANCE * Math.max(1, Math.abs(want))) continue;
        }
        if (visit(il, points[i]!)) return;
      }
    }
  }

  /**
   * With `confirm`: a read of the guarding interlocks' inputs, sent after the command arrived;
   * `done` resolves when answered or after the shortest confirm time. undefined when no guarding
   * interlock asks for one. Check the command afterwards with `after`: only values read by a later
   * request count as confirmed.
   */
  confirm(cmd: Command): { done: Promise<void>; after: number } | undefined {
    let slots: number[] | undefined;
    let timeoutMs = Infinity;
    this.guarding(cmd, (il) => {
      if (Number.isNaN(il.confirmMs)) return false;
      slots ??= [];
      for (const s of il.slots) if (!slots.includes(s)) slots.push(s);
      timeoutMs = Math.min(timeoutMs, il.confirmMs);
      return false;
    });
    if (slots === undefined) return undefined;
    const after = this.image.readsSent();
    // An image that cannot read on demand leaves the values as they are: unconfirmed, so denied.
    return { done: this.image.readFresh?.(slots, timeoutMs, after) ?? Promise.resolve(), after };
  }

  /**
   * undefined: no interlock objects. Otherwise the first trip, with the inputs as they stood.
   * `after` (from confirm): an interlock with `confirm` needs inputs read by a request sent later.
   */
  check(cmd: Command, nowMs: number, after = Infinity): InterlockTrip | undefined {
    let trip: InterlockTrip | undefined;
    this.guarding(cmd, (il, point) => {
      trip = this.evaluate(il, point, nowMs, after);
      return trip !== undefined;
    });
    return trip;
  }

  private evaluate(il: Compiled, point: string, nowMs: number, after: number): InterlockTrip | undefined {
    const { values, readAtMs, maxAgeMs, readSeq } = this.image;
    const confirming = !Number.isNaN(il.confirmMs);
    let stale = false;
    for (let k = 0; k < il.slots.length; k++) {
      const s = il.slots[k]!;
      const age = nowMs - readAtMs[s]!;
      // NaN (never read) fails `<=` as well: one comparison covers both.
      if (!(age <= maxAgeMs[s]!) || Number.isNaN(values[s]!) || (confirming && !(readSeq[s]! > after))) {
        stale = true;
        break;
      }
    }
    if (stale) return this.trip(il, point, nowMs, 'INTERLOCK_INPUT_STALE');
    // Values that cannot be trusted decide nothing, whatever the condition says about them.
    const implausible = il.plausible.length > 0 ? this.implausible(il, nowMs) : undefined;
    if (implausible !== undefined) return this.trip(il, point, nowMs, 'INTERLOCK_INPUT_IMPLAUSIBLE', implausible);
    if (il.evaluate(values) === 0) return undefined;
    return this.trip(il, point, nowMs, 'INTERLOCK');
  }

  /** Moves the stuck-sensor checks on to `atMs` (every poll answer, and every check). */
  private track(atMs: number): void {
    for (const il of this.tracked) for (const p of il.plausible) if (p.kind === 'changes') this.trackChanges(p, atMs);
  }

  private trackChanges(c: ChangesCheck, atMs: number): void {
    const { values, readAtMs, changedAtMs } = this.image;
    if (Number.isNaN(readAtMs[c.slot]!)) return;
    // A trip holds until the input changes after it: a sensor that was stuck stays suspect.
    if (!Number.isNaN(c.trippedAtMs) && changedAtMs[c.slot]! > c.trippedAtMs) c.trippedAtMs = NaN;
    let running = true;
    if (c.running !== null) {
      for (const s of c.whileSlots) if (Number.isNaN(values[s]!)) running = false;
      running = running && c.running(values) !== 0;
    }
    if (!running) {
      c.runningSinceMs = NaN;
      return;
    }
    if (Number.isNaN(c.runningSinceMs)) c.runningSinceMs = atMs;
    const since = Math.max(c.runningSinceMs, changedAtMs[c.slot]!);
    if (Number.isNaN(c.trippedAtMs) && atMs - since > c.withinMs) {
      c.trippedAtMs = atMs;
      c.stillForMs = atMs - changedAtMs[c.slot]!;
    }
  }

  /** Why the interlock's inputs cannot be trusted now, or undefined. */
  private implausible(il: Compiled, nowMs: number): string | undefined {
    const { values, readAtMs, previousValues, previousReadAtMs, names } = this.image;
    for (const p of il.plausible) {
      if (p.kind === 'changes') {
        this.trackChanges(p, nowMs);
        if (!Number.isNaN(p.trippedAtMs)) {
          const when = p.whileText === undefined ? '' : ` while '${p.whileText}' held`;
          return `${names[p.slot]} did not change for ${Math.round(p.stillForMs / 1000)}s${when} (plausible within ${p.withinMs / 1000}s): a stuck sensor`;
        }
      } else if (p.kind === 'rate') {
        const dt = (readAtMs[p.slot]! - previousReadAtMs[p.slot]!) / 1000;
        const dv = Math.abs(values[p.slot]! - previousValues[p.slot]!);
        // No earlier read yet: nothing to compare. Two reads at one instant that differ: implausible.
        if (Number.isNaN(dv) || Number.isNaN(dt)) continue;
        if (dt <= 0 ? dv > 0 : dv / dt > p.maxPerSec) return `${names[p.slot]} changed by ${+dv.toPrecision(6)} in ${dt}s (plausible at most ${p.maxPerSec}/s)`;
      } else {
        const d = Math.abs(values[p.a]! - values[p.b]!);
        if (!(d <= p.within)) return `${names[p.a]}=${values[p.a]} and ${names[p.b]}=${values[p.b]} differ by ${+d.toPrecision(6)} (plausible within ${p.within})`;
      }
    }
    return undefined;
  }

  private trip(il: Compiled, point: string, nowMs: number, reason: InterlockTrip['reason'], why?: string): InterlockTrip {
    const { values, readAtMs, maxAgeMs, names } = this.image;
    const inputs: TripInput[] = [];
    for (const s of il.slots) {
      const t = readAtMs[s]!;
      inputs.push({ point: names[s]!, value: values[s]!, ageMs: Number.isNaN(t) ? -1 : nowMs - t, maxAgeMs: maxAgeMs[s]! });
    }
    const shown = inputs
      .map((x) => `${x.point}=${Number.isNaN(x.value) ? '?' : x.value} (${x.ageMs < 0 ? 'never read' : `${x.ageMs}ms old`}${x.ageMs < 0 || x.ageMs > x.maxAgeMs ? `, max ${x.maxAgeMs}ms` : ''})`)
      .join(', ');
    const detail =
      reason === 'INTERLOCK'
        ? `interlock ${il.id}: '${il.condition}' holds; ${shown}`
        : reason === 'INTERLOCK_INPUT_IMPLAUSIBLE'
          ? `interlock ${il.id}: ${why}; cannot prove '${il.condition}' is false; ${shown}`
          : `interlock ${il.id}: inputs not fresh${Number.isNaN(il.confirmMs) ? '' : ` (or not read again within ${il.confirmMs}ms of the command)`}, cannot prove '${il.condition}' is false; ${shown}`;
    return { reason, interlockId: il.id, point, inputs, detail };
  }
}
