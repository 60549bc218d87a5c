// The interlock check on the command path (docs/safety.md, Interlocks): does this command touch a guarded point,
// and if so, does the live process image say it must not run? Owns matching commands to
// interlocks and judging freshness. Indexed by asset and point at load, so a command no interlock
// guards costs two Map lookups; allocates only when it trips. Never forwards on doubt: a stale,
// never-read or undecodable input denies INTERLOCK_INPUT_STALE, a condition that cannot be
// evaluated (division by zero) denies INTERLOCK.
import type { Command, Operation } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import type { BundleAsset } from '../policy/payload.js';
import { ParseError, compileExpr, parseExpr, type Evaluator } from './expr.js';
import type { InterlockDef } from './payload.js';
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
  reason: 'INTERLOCK' | 'INTERLOCK_INPUT_STALE';
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
  slot(asset: string, point: string): number;
}

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
  slots: Int32Array;
  evaluate: Evaluator;
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
      const compiled: Compiled = {
        id: d.id,
        condition: d.deny_when,
        operations: new Set(d.operations),
        guardValue: new Map(d.guards.map((g) => [g.point, g.value ?? NaN])),
        slots: Int32Array.from(slots),
        evaluate,
      };
      let byPoint = this.index.get(d.asset);
      if (byPoint === undefined) this.index.set(d.asset, (byPoint = new Map()));
      for (const g of d.guards) {
        let list = byPoint.get(g.point);
        if (list === undefined) byPoint.set(g.point, (list = []));
        if (!list.includes(compiled)) list.push(compiled);
      }
    }
    this.count = defs.length;
  }

  /** undefined: no interlock objects. Otherwise the first trip, with the inputs as they stood. */
  check(cmd: Command, nowMs: number): InterlockTrip | undefined {
    const byPoint = this.index.get(cmd.assetId);
    if (byPoint === undefined) return undefined;
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
        const trip = this.evaluate(il, points[i]!, nowMs);
        if (trip !== undefined) return trip;
      }
    }
    return undefined;
  }

  private evaluate(il: Compiled, point: string, nowMs: number): InterlockTrip | undefined {
    const { values, readAtMs, maxAgeMs } = this.image;
    let stale = false;
    for (let k = 0; k < il.slots.length; k++) {
      const s = il.slots[k]!;
      const age = nowMs - readAtMs[s]!;
      // NaN (never read) fails `<=` as well: one comparison covers both.
      if (!(age <= maxAgeMs[s]!) || Number.isNaN(values[s]!)) {
        stale = true;
        break;
      }
    }
    if (!stale && il.evaluate(values) === 0) return undefined;
    return this.trip(il, point, nowMs, stale ? 'INTERLOCK_INPUT_STALE' : 'INTERLOCK');
  }

  private trip(il: Compiled, point: string, nowMs: number, reason: InterlockTrip['reason']): InterlockTrip {
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
        : `interlock ${il.id}: inputs not fresh, cannot prove '${il.condition}' is false; ${shown}`;
    return { reason, interlockId: il.id, point, inputs, detail };
  }
}
