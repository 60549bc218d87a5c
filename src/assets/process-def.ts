// Owns the `process:` list of a PLC in a plant file: small process blocks (valve travel, PID loop,
// first-order lag, counter, alarm with hysteresis, measurement noise) wired to the PLC's points by
// name. Parses and validates only (errors name file:line:column and field); process.ts runs them.
import { isMap, isScalar, isSeq, type Node, type Pair, type YAMLMap } from 'yaml';
import type { PointDef, SourcePos, Validator } from './plant.js';

type ParamKind = 'point' | 'bool-point' | 'number' | 'positive' | 'action';

interface ParamSpec {
  kind: ParamKind;
  required: boolean;
  dflt?: number | string;
  /** Which tables a point parameter may live in (the block writes it, or reads it). */
  writes?: boolean;
}

/** Each block kind and its parameters; the YAML keys are these names. */
export const BLOCK_PARAMS = {
  valve: {
    command: { kind: 'point', required: true },
    position: { kind: 'point', required: true, writes: true },
    travel_s: { kind: 'positive', required: true },
    open_limit: { kind: 'bool-point', required: false, writes: true },
    closed_limit: { kind: 'bool-point', required: false, writes: true },
  },
  pid: {
    pv: { kind: 'point', required: true },
    setpoint: { kind: 'point', required: true },
    output: { kind: 'point', required: true, writes: true },
    kp: { kind: 'number', required: true },
    ki: { kind: 'number', required: false, dflt: 0 },
    kd: { kind: 'number', required: false, dflt: 0 },
    out_min: { kind: 'number', required: false, dflt: 0 },
    out_max: { kind: 'number', required: false, dflt: 100 },
    action: { kind: 'action', required: false, dflt: 'reverse' },
    enable: { kind: 'bool-point', required: false },
  },
  lag: {
    input: { kind: 'point', required: true },
    output: { kind: 'point', required: true, writes: true },
    gain: { kind: 'number', required: false, dflt: 1 },
    bias: { kind: 'number', required: false, dflt: 0 },
    tau_s: { kind: 'positive', required: true },
  },
  counter: {
    input: { kind: 'bool-point', required: true },
    count: { kind: 'point', required: true, writes: true },
    reset: { kind: 'bool-point', required: false, writes: true },
  },
  alarm: {
    input: { kind: 'point', required: true },
    alarm: { kind: 'bool-point', required: true, writes: true },
    above: { kind: 'number', required: false },
    below: { kind: 'number', required: false },
    hysteresis: { kind: 'number', required: false, dflt: 0 },
  },
  noise: {
    point: { kind: 'point', required: true, writes: true },
    stddev: { kind: 'positive', required: true },
  },
} as const satisfies Record<string, Record<string, ParamSpec>>;

export type BlockKind = keyof typeof BLOCK_PARAMS;
export const BLOCK_KINDS = Object.keys(BLOCK_PARAMS) as BlockKind[];

/** One parsed block: its kind, points by parameter name, numbers/strings by parameter name. */
export interface ProcessBlockDef {
  kind: BlockKind;
  points: Record<string, PointDef>;
  numbers: Record<string, number>;
  strings: Record<string, string>;
  /** `process[i].<kind>`, for messages. */
  field: string;
  source: SourcePos;
}

function paramList(kind: BlockKind): [string, ParamSpec][] {
  return Object.entries(BLOCK_PARAMS[kind]) as [string, ParamSpec][];
}

/** Parses a PLC's `process:` list against its points; reports problems through the validator. */
export function parseProcess(v: Validator, node: Node | null, field: string, points: readonly PointDef[]): ProcessBlockDef[] | undefined {
  if (!isSeq(node)) return v.fail(node, field, 'must be a list of process blocks (one of: ' + BLOCK_KINDS.join(', ') + ')');
  const byName = new Map(points.map((p) => [p.name, p]));
  const out: ProcessBlockDef[] = [];
  let ok = true;
  (node.items as (Node | null)[]).forEach((item, i) => {
    const bf = `${field}[${i}]`;
    if (!isMap(item) || item.items.length !== 1) {
      v.fail(item, bf, `must be a mapping with exactly one key, the block kind (one of: ${BLOCK_KINDS.join(', ')})`);
      ok = false;
      return;
    }
    const pair = item.items[0] as Pair<Node, Node | null>;
    const kind = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof kind !== 'string' || !(BLOCK_KINDS as string[]).includes(kind)) {
      v.fail(pair.key, bf, `unknown process block ${JSON.stringify(kind)} (one of: ${BLOCK_KINDS.join(', ')})`);
      ok = false;
      return;
    }
    const block = parseBlock(v, kind as BlockKind, pair.value, `${bf}.${kind}`, byName);
    if (block === undefined) ok = false;
    else out.push(block);
  });
  return ok ? out : undefined;
}

function parseBlock(v: Validator, kind: BlockKind, node: Node | null, field: string, byName: Map<string, PointDef>): ProcessBlockDef | undefined {
  if (!isMap(node)) return v.fail(node, field, `must be a mapping of ${paramList(kind).map(([k]) => k).join(', ')}`);
  const specs = paramList(kind);
  const e = v.entries(node, field, specs.map(([k]) => k));
  const before = v.errorCount();
  const block: ProcessBlockDef = { kind, points: {}, numbers: {}, strings: {}, field, source: v.pos(node) };
  for (const [key, spec] of specs) {
    const pf = `${field}.${key}`;
    const pair = e.get(key);
    if (pair === undefined) {
      if (spec.required) v.fail(node, pf, 'is required');
      else if (typeof spec.dflt === 'number') block.numbers[key] = spec.dflt;
      else if (typeof spec.dflt === 'string') block.strings[key] = spec.dflt;
      continue;
    }
    const n = pair.value;
    const value = isScalar(n) ? n.value : undefined;
    switch (spec.kind) {
      case 'point':
      case 'bool-point': {
        const p = typeof value === 'string' ? byName.get(value) : undefined;
        if (p === undefined) {
          v.fail(n ?? pair.key, pf, `${JSON.stringify(value ?? null)} is not a point of this PLC`);
        } else if (spec.kind === 'bool-point' && p.type !== 'bool') {
          v.fail(n, pf, `point ${p.name} must be bool (a coil or discrete input), not ${p.type}`);
        } else if (spec.writes === true && p.table === 'coil' && key !== 'reset' && kind !== 'noise') {
          // The block owns this value; a coil is the client's to command.
          v.fail(n, pf, `point ${p.name} is a coil; the process writes this value, so use a discrete, input or holding point`);
        } else {
          block.points[key] = p;
        }
        break;
      }
      case 'number':
      case 'positive':
        if (typeof value !== 'number' || !Number.isFinite(value)) v.fail(n ?? pair.key, pf, 'must be a finite number');
        else if (spec.kind === 'positive' && value <= 0) v.fail(n, pf, `must be greater than 0, not ${value}`);
        else block.numbers[key] = value;
        break;
      case 'action': {
        const action = v.oneOfNode(v.valueNode(pair), pf, ['reverse', 'direct'], 'action');
        if (action !== undefined) block.strings[key] = action;
        break;
      }
    }
  }
  if (kind === 'alarm' && e.has('above') === e.has('below')) {
    v.fail(node, field, 'needs exactly one of above or below');
  }
  if (kind === 'pid' && block.numbers.out_min !== undefined && block.numbers.out_max !== undefined && block.numbers.out_min >= block.numbers.out_max) {
    v.fail((node as YAMLMap).get('out_min', true) as Node | undefined ?? node, `${field}.out_min`, 'must be below out_max');
  }
  return v.errorCount() === before ? block : undefined;
}
