// Owns the `logic:` list of a PLC in a plant file: PLC logic as a few lines of expressions that set
// points from points every tick ("stop the pump at the high alarm"), in the interlock expression
// language (src/interlocks/expr.ts, never eval). Parses and validates only, against the PLC's
// points (errors name file:line:column and field); the simulator runs it (src/sim/logic.ts).
import { isMap, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { ParseError, parseExpr, parseValue, pointsOf, type Expr } from './expr.js';
import type { PointDef, SourcePos, Validator } from './plant.js';

/** One rung: while `when` holds (always, without it), each point is set to its expression's value. */
export interface LogicDef {
  when?: Expr;
  sets: { point: PointDef; value: Expr }[];
  /** Every point the rung reads, by name (for binding values). */
  reads: PointDef[];
  /** `logic[i]`, for messages. */
  field: string;
  source: SourcePos;
}

const RUNG_KEYS = ['when', 'set'];

/** Parses a PLC's `logic:` list against its points; reports problems through the validator. */
export function parseLogic(v: Validator, node: Node | null, field: string, points: readonly PointDef[]): LogicDef[] | undefined {
  if (!isSeq(node) || node.items.length === 0) return v.fail(node, field, 'must be a list of { when, set } rungs');
  const byName = new Map(points.map((p) => [p.name, p]));
  const before = v.errorCount();
  const out: LogicDef[] = [];
  (node.items as (Node | null)[]).forEach((item, i) => {
    const rf = `${field}[${i}]`;
    if (!isMap(item)) {
      v.fail(item, rf, 'must be a mapping { when: condition, set: { point: value or expression } }');
      return;
    }
    const e = v.entries(item, rf, RUNG_KEYS);
    const reads = new Map<string, PointDef>();
    const expr = (n: Node | null | undefined, f: string, parse: (src: string) => Expr): Expr | undefined => {
      const raw = isScalar(n) ? n.value : undefined;
      const src = typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : raw;
      if (typeof src !== 'string' || src.trim() === '') return v.fail(n, f, 'must be a number or an expression over points of this PLC');
      let parsed: Expr;
      try {
        parsed = parse(src);
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        return v.fail(n, f, err.problem);
      }
      for (const ref of pointsOf(parsed)) {
        const p = ref.asset === undefined ? byName.get(ref.name) : undefined;
        if (p === undefined) return v.fail(n, f, `${ref.asset !== undefined ? `${ref.asset}/` : ''}${ref.name} is not a point of this PLC`);
        if (p.type === 'string') return v.fail(n, f, `${p.name} is a string; logic computes with numbers`);
        reads.set(p.name, p);
      }
      return parsed;
    };
    const whenPair = e.get('when');
    const when = whenPair === undefined ? undefined : expr(whenPair.value, `${rf}.when`, parseExpr);
    const setPair = e.get('set');
    const sets: LogicDef['sets'] = [];
    if (setPair === undefined || !isMap(setPair.value) || setPair.value.items.length === 0) {
      v.fail(setPair?.value ?? item, `${rf}.set`, 'is required: { point: value or expression, ... }');
    } else {
      for (const pair of setPair.value.items as Pair<Node, Node | null>[]) {
        const name = isScalar(pair.key) ? String(pair.key.value) : '';
        const sf = `${rf}.set.${name}`;
        const p = byName.get(name);
        if (p === undefined) {
          v.fail(pair.key, sf, `${JSON.stringify(name)} is not a point of this PLC`);
          continue;
        }
        if (p.type === 'string') {
          v.fail(pair.key, sf, 'logic sets numbers and bools, not strings');
          continue;
        }
        const value = expr(pair.value, sf, parseValue);
        if (value !== undefined) sets.push({ point: p, value });
      }
    }
    if (v.errorCount() === before && (whenPair === undefined || when !== undefined)) {
      const rung: LogicDef = { sets, reads: [...reads.values()], field: rf, source: v.pos(item) };
      if (when !== undefined) rung.when = when;
      out.push(rung);
    }
  });
  return v.errorCount() === before ? out : undefined;
}
