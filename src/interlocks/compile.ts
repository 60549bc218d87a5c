// The compile step for interlock sources: the `interlocks:` list of a policy entry file (or an
// included file) into the InterlockDef[] that goes into the signed bundle. Owns the source shape
// and every check a typo needs; reports every problem as file:line:col (never stops at the first),
// and never guesses a default that would let a command through that the author meant to stop.
//
//   interlocks:
//     - id: pump1-dry-run
//       description: never start the feed pump on a nearly empty tank
//       asset: plc1
//       guards: ["pump1.run := 1"]        # a point, or "point := value" (engineering units, true/false),
//                                         # or an OPC UA method of the asset by name (needs call below)
//       operations: [write]               # optional; write (default) and/or call
//       deny_when: tank1.level < 10 and not valve1.open
//       poll: 500ms                       # optional defaults for every input
//       max_age: 2s
//       inputs:                           # optional per-input overrides
//         tank1.level: { poll: 250ms, max_age: 1s }
//       confirm: 300ms                    # optional: read the inputs again before each guarded command
//       plausible:                        # optional: checks that fail closed (INTERLOCK_INPUT_IMPLAUSIBLE)
//         - { input: tank1.level, changes_within: 30s, while: pump1.running }
//         - { input: tank1.level, max_rate: 2 }          # engineering units per second
//         - { agree: [tank1.level, tank1.level_b], within: 2 }
import { parseDurationMs as parseDuration, POLL_DURATION } from '../core/duration.js';
import { isMap, isScalar, isSeq, Scalar, type LineCounter, type Node } from 'yaml';
import { SourceError } from '../core/errors.js';
import { readYaml, YamlFields } from '../core/yaml.js';
import type { BundleAsset, PointDef } from '../assets/bundle-asset.js';
import { ParseError, parseExpr, pointsOf, printExpr, type Expr } from '../assets/expr.js';
import {
  DEFAULT_MAX_AGE_MS,
  DEFAULT_POLL_MS,
  GUARDED_OPERATIONS,
  MAX_CONFIRM_MS,
  MIN_CONFIRM_MS,
  MIN_POLL_MS,
  type GuardedOperation,
  type InputRef,
  type InterlockDef,
  type InterlockGuard,
  type InterlockInput,
  type PlausibilityDef,
} from './payload.js';

/** Where the node came from: the display path used in messages, and the file's line counter. */
export interface SourceContext {
  file: string;
  lineCounter: LineCounter;
  /** The file's text: lets expression errors inside block scalars (`|`) point at the exact column. */
  text?: string;
}

const INTERLOCK_KEYS = ['id', 'description', 'asset', 'guards', 'operations', 'deny_when', 'poll', 'max_age', 'inputs', 'confirm', 'plausible'];
const PLAUSIBLE_KEYS = ['input', 'changes_within', 'while', 'max_rate', 'agree', 'within'];
const INPUT_KEYS = ['poll', 'max_age'];
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const WRITABLE_TABLES = new Set(['coil', 'holding']);

/** "250ms", "2s", "1m" → milliseconds; null for anything else (zero and negatives included). */
export function parseDurationMs(text: string): number | null {
  return parseDuration(text, POLL_DURATION);
}

/**
 * Compiles the value of an `interlocks:` key against the bundle's assets. `node` is the YAML node
 * (a sequence); absent or null means no interlocks. Problems come back as SourceErrors, never
 * thrown, so the policy compiler can report them with its own.
 */
export function compileInterlocks(
  node: Node | null | undefined,
  ctx: SourceContext,
  assets: readonly BundleAsset[],
): { interlocks: InterlockDef[]; errors: SourceError[] } {
  const errors: SourceError[] = [];
  const interlocks: InterlockDef[] = [];
  const v = new YamlFields(ctx.file, ctx.lineCounter, errors);
  const fail = (n: Node | null | undefined, field: string, problem: string): undefined => v.fail(n, field, problem);
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) return { interlocks, errors };
  if (!isSeq(node)) {
    fail(node, 'interlocks', 'must be a list of interlocks');
    return { interlocks, errors };
  }
  const assetsById = new Map(assets.map((a) => [a.id, a]));
  const ids = new Set<string>();

  (node.items as (Node | null)[]).forEach((item, i) => {
    let field = `interlocks[${i}]`;
    if (!isMap(item)) return fail(item, field, 'must be a mapping (id, asset, guards, deny_when, ...)');
    const entries = v.entries(item, field, INTERLOCK_KEYS);
    const valueOf = (key: string): Node | undefined => {
      const pair = entries.get(key);
      return pair === undefined ? undefined : v.valueNode(pair);
    };
    const str = (key: string, required: boolean): string | undefined => {
      const n = valueOf(key);
      if (n === undefined) return required ? fail(item, `${field}.${key}`, 'is required') : undefined;
      if (!isScalar(n) || typeof n.value !== 'string' || n.value.trim() === '') return fail(n, `${field}.${key}`, 'must be a non-empty string');
      return n.value;
    };

    const id = str('id', true);
    if (id !== undefined) {
      field = `interlocks.${id}`;
      if (!ID_RE.test(id)) fail(valueOf('id'), `${field}.id`, `'${id}' is not a valid id (letters, digits, _ . : -)`);
      else if (ids.has(id)) fail(valueOf('id'), `${field}.id`, `duplicate interlock id '${id}'`);
      ids.add(id);
    }
    const description = str('description', false) ?? '';
    const assetId = str('asset', true);
    const asset = assetId === undefined ? undefined : assetsById.get(assetId);
    if (assetId !== undefined && asset === undefined) {
      fail(valueOf('asset'), `${field}.asset`, `unknown asset '${assetId}' (known: ${[...assetsById.keys()].join(', ') || 'none'})`);
    }

    // operations
    let operations: GuardedOperation[] = ['write'];
    const opsNode = valueOf('operations');
    if (opsNode !== undefined) {
      if (!isSeq(opsNode) || opsNode.items.length === 0) {
        fail(opsNode, `${field}.operations`, `must be a non-empty list of ${GUARDED_OPERATIONS.join(', ')}`);
      } else {
        operations = [];
        for (const op of opsNode.items as (Node | null)[]) {
          const v = isScalar(op) ? op.value : undefined;
          if (typeof v !== 'string' || !(GUARDED_OPERATIONS as readonly string[]).includes(v)) {
            fail(op, `${field}.operations`, `'${String(v)}' is not an operation an interlock guards (${GUARDED_OPERATIONS.join(', ')})`);
          } else if (!operations.includes(v as GuardedOperation)) operations.push(v as GuardedOperation);
        }
      }
    }

    // guards
    const guards: InterlockGuard[] = [];
    const guardsNode = valueOf('guards');
    if (guardsNode === undefined) fail(item, `${field}.guards`, 'is required (the commands this interlock guards, e.g. "pump1.run := 1")');
    else if (!isSeq(guardsNode) || guardsNode.items.length === 0) fail(guardsNode, `${field}.guards`, 'must be a non-empty list');
    else {
      for (const g of guardsNode.items as (Node | null)[]) {
        const guard = parseGuard(g, `${field}.guards`, asset, fail);
        if (guard === undefined) continue;
        // A method guard only ever matches a call: without `call` it would guard nothing, and the
        // author would believe the method is covered while it bypasses the interlock.
        if (asset?.methods?.[guard.point] !== undefined && !operations.includes('call')) {
          fail(g, `${field}.guards`, `'${guard.point}' is a method: add call to ${field}.operations (e.g. operations: [write, call])`);
          continue;
        }
        guards.push(guard);
      }
    }

    // durations
    const duration = (n: Node | null | undefined, f: string): number | undefined => {
      if (n === undefined) return undefined;
      const ms = isScalar(n) && typeof n.value === 'string' ? parseDurationMs(n.value) : null;
      if (ms === null) return fail(n, f, `must be a duration like 250ms, 2s or 1m`);
      return ms;
    };
    const defaultPoll = duration(valueOf('poll'), `${field}.poll`) ?? DEFAULT_POLL_MS;
    const defaultMaxAge = duration(valueOf('max_age'), `${field}.max_age`);
    const confirm = duration(valueOf('confirm'), `${field}.confirm`);
    if (confirm !== undefined && (confirm < MIN_CONFIRM_MS || confirm > MAX_CONFIRM_MS)) {
      fail(valueOf('confirm'), `${field}.confirm`, `${confirm}ms is outside ${MIN_CONFIRM_MS}ms..${MAX_CONFIRM_MS}ms (one PLC round trip; a command must never hang)`);
    }

    // deny_when
    let expr: Expr | undefined;
    const condNode = valueOf('deny_when');
    // `deny_when: true` is a YAML boolean, not a string: read it as the text it was written as.
    const cond = isScalar(condNode) && (typeof condNode.value === 'boolean' || typeof condNode.value === 'number') ? String(condNode.value) : str('deny_when', true);
    if (cond !== undefined && condNode !== undefined && condNode !== null) {
      try {
        expr = parseExpr(cond);
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        pushAt(errors, ctx, condNode, err.line, err.col, `${field}.deny_when`, err.problem);
      }
    }

    // inputs: every point the condition names, resolved, with its poll rate and freshness bound.
    const inputs: InterlockInput[] = [];
    const overrides = new Map<string, { node: Node; poll?: number; maxAge?: number; used: boolean }>();
    const inputsNode = valueOf('inputs');
    const overrideEntries = inputsNode === undefined ? undefined : v.freeMap(inputsNode, `${field}.inputs`, 'point name to { poll, max_age }');
    for (const [key, pair] of overrideEntries ?? []) {
      const f = `${field}.inputs.${key}`;
      const e = v.map(v.valueNode(pair), f, INPUT_KEYS, 'poll, max_age');
      if (e === undefined) continue;
      const o: { node: Node; poll?: number; maxAge?: number; used: boolean } = { node: pair.key, used: false };
      if (e.has('poll')) o.poll = duration(v.valueNode(e.get('poll')!), `${f}.poll`);
      if (e.has('max_age')) o.maxAge = duration(v.valueNode(e.get('max_age')!), `${f}.max_age`);
      overrides.set(qualify(key, assetId), o);
    }
    // Every input the condition (and the plausibility checks) name, with its poll rate and bound.
    const seen = new Set<string>();
    const addInput = (a: BundleAsset, name: string, where0: Node): void => {
      const key = `${a.id}/${name}`;
      if (seen.has(key)) return;
      seen.add(key);
      const o = overrides.get(key);
      if (o) o.used = true;
      const poll = o?.poll ?? defaultPoll;
      const maxAge = o?.maxAge ?? defaultMaxAge ?? Math.max(DEFAULT_MAX_AGE_MS, 3 * poll);
      const where = o?.node ?? where0;
      if (poll < MIN_POLL_MS) pushAt(errors, ctx, where, 1, 1, `${field}.inputs.${key}.poll`, `${poll}ms is faster than the minimum ${MIN_POLL_MS}ms`);
      // A bound tighter than the poll interval would make the input stale between every two polls.
      if (maxAge <= poll) pushAt(errors, ctx, where, 1, 1, `${field}.inputs.${key}.max_age`, `${maxAge}ms must be longer than the poll interval ${poll}ms`);
      inputs.push({ asset: a.id, point: name, poll_ms: poll, max_age_ms: maxAge });
    };
    /** The points of an expression, resolved against the assets; false (and errors) when one is unknown. */
    const resolvePoints = (e: Expr, node: Node, f: string): boolean => {
      let ok = true;
      const walk = (x: Expr): void => {
        if (x.kind === 'point') {
          const a = x.ref.asset === undefined ? asset! : assetsById.get(x.ref.asset);
          if (a === undefined) {
            ok = false;
            const hint = isPointOf(asset!, x.ref.asset!) ? ` (to divide, write '${x.ref.asset} / ${x.ref.name}' with spaces)` : '';
            pushAt(errors, ctx, node, x.line, x.col, f, `unknown asset '${x.ref.asset}' in '${x.ref.asset}/${x.ref.name}'${hint}`);
            return;
          }
          if (a.points[x.ref.name] === undefined) {
            ok = false;
            pushAt(errors, ctx, node, x.line, x.col, f, `asset '${a.id}' has no point '${x.ref.name}'`);
            return;
          }
          addInput(a, x.ref.name, node);
          return;
        }
        if (x.kind === 'neg' || x.kind === 'not') walk(x.operand);
        else if (x.kind === 'arith' || x.kind === 'cmp' || x.kind === 'and' || x.kind === 'or') {
          walk(x.left);
          walk(x.right);
        }
      };
      walk(e);
      return ok;
    };
    if (expr !== undefined && asset !== undefined && condNode) {
      if (!resolvePoints(expr, condNode, `${field}.deny_when`)) expr = undefined;
    }
    const plausible = asset === undefined ? [] : compilePlausible(valueOf('plausible'), `${field}.plausible`, asset, assetsById, v, resolvePoints, addInput, ctx, errors, duration);
    if (asset !== undefined) {
      for (const [key, o] of overrides) {
        if (!o.used) fail(o.node, `${field}.inputs.${key}`, `'${key}' is not used by deny_when or plausible`);
      }
    }

    if (id !== undefined && asset !== undefined && expr !== undefined && guards.length > 0 && pointsOf(expr).length > 0) {
      interlocks.push({
        id, description, asset: asset.id, operations, guards, deny_when: printExpr(expr), inputs,
        ...(confirm !== undefined ? { confirm_ms: confirm } : {}),
        ...(plausible !== undefined && plausible.length > 0 ? { plausible } : {}),
      });
    } else if (expr !== undefined && pointsOf(expr).length === 0) {
      fail(condNode, `${field}.deny_when`, 'names no point: an interlock must depend on live process values');
    }
    return undefined;
  });
  return { interlocks, errors };
}

/**
 * `plausible:` of one interlock: checks of its inputs that fail closed. Each names its points like
 * deny_when does (`tank1.level`, `plc2/level`); they become inputs the gateway polls. undefined
 * when the list has problems (they are reported).
 */
function compilePlausible(
  node: Node | null | undefined,
  field: string,
  asset: BundleAsset,
  assetsById: Map<string, BundleAsset>,
  v: YamlFields,
  resolvePoints: (e: Expr, node: Node, field: string) => boolean,
  addInput: (a: BundleAsset, name: string, where: Node) => void,
  ctx: SourceContext,
  errors: SourceError[],
  duration: (n: Node | null | undefined, f: string) => number | undefined,
): PlausibilityDef[] | undefined {
  const fail = (n: Node | null | undefined, f: string, problem: string): undefined => v.fail(n, f, problem);
  if (node === undefined || node === null) return [];
  if (!isSeq(node)) return fail(node, field, 'must be a list of checks, e.g. { input: tank1.level, changes_within: 30s, while: pump1.running }');
  const out: PlausibilityDef[] = [];
  let ok = true;
  const ref = (n: Node | null | undefined, f: string): InputRef | undefined => {
    const text = isScalar(n) && typeof n.value === 'string' ? n.value.trim() : undefined;
    const m = text === undefined ? null : /^(?:([A-Za-z0-9][A-Za-z0-9_.:-]*)\/)?([A-Za-z_][A-Za-z0-9_.]*)$/.exec(text);
    if (m === null) return fail(n, f, 'must be a point name (tank1.level) or asset/point (plc2/header.pressure)');
    const a = m[1] === undefined ? asset : assetsById.get(m[1]);
    if (a === undefined) return fail(n, f, `unknown asset '${m[1]}'`);
    if (a.points[m[2]!] === undefined) return fail(n, f, `asset '${a.id}' has no point '${m[2]}'`);
    addInput(a, m[2]!, n!);
    return { asset: a.id, point: m[2]! };
  };
  (node.items as (Node | null)[]).forEach((item, i) => {
    const f = `${field}[${i}]`;
    if (!isMap(item)) {
      ok = fail(item, f, 'must be a mapping: { input, changes_within, while } or { input, max_rate } or { agree: [a, b], within }') ?? false;
      return;
    }
    const before = errors.length;
    const e = new Map([...v.entries(item, f, PLAUSIBLE_KEYS)].map(([key, pair]) => [key, v.valueNode(pair)]));
    if (errors.length !== before) ok = false;
    const num = (key: string, positive: boolean, what: string): number | undefined => {
      const n = e.get(key);
      if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value) || n.value < 0 || (positive && n.value === 0)) {
        return fail(n, `${f}.${key}`, `must be a number ${positive ? '> 0' : '>= 0'} (${what})`);
      }
      return n.value;
    };
    if (e.has('agree')) {
      const list = e.get('agree')!;
      if (!isSeq(list) || list.items.length !== 2) {
        ok = fail(list, `${f}.agree`, 'must name exactly two points (two sensors of one quantity)') ?? false;
        return;
      }
      const a = ref(list.items[0] as Node, `${f}.agree[0]`);
      const b = ref(list.items[1] as Node, `${f}.agree[1]`);
      const within = num('within', false, 'engineering units');
      if (e.has('input') || e.has('changes_within') || e.has('max_rate') || e.has('while')) ok = fail(item, f, 'agree takes only within') ?? false;
      if (a === undefined || b === undefined || within === undefined) ok = false;
      else out.push({ kind: 'agree', inputs: [a, b], within });
      return;
    }
    const input = e.has('input') ? ref(e.get('input'), `${f}.input`) : fail(item, `${f}.input`, 'is required (or agree: [a, b])');
    if (input === undefined) {
      ok = false;
      return;
    }
    if (e.has('changes_within') === e.has('max_rate')) {
      ok = fail(item, f, 'give one of changes_within (a stuck sensor) or max_rate (a jumping one)') ?? false;
      return;
    }
    if (e.has('max_rate')) {
      const rate = num('max_rate', true, 'engineering units per second');
      if (e.has('while') || e.has('within')) ok = fail(item, f, 'max_rate takes no while or within') ?? false;
      if (rate === undefined) ok = false;
      else out.push({ kind: 'rate', input, max_per_sec: rate });
      return;
    }
    const within = duration(e.get('changes_within'), `${f}.changes_within`);
    if (within === undefined) {
      ok = false;
      return;
    }
    let whileText: string | undefined;
    const wn = e.get('while');
    if (wn !== undefined) {
      const text = isScalar(wn) && (typeof wn.value === 'string' || typeof wn.value === 'boolean') ? String(wn.value) : undefined;
      if (text === undefined) {
        ok = fail(wn, `${f}.while`, 'must be a condition like deny_when (pump1.running or valve1.open)') ?? false;
        return;
      }
      try {
        const w = parseExpr(text);
        if (!resolvePoints(w, wn, `${f}.while`)) ok = false;
        else whileText = printExpr(w);
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        pushAt(errors, ctx, wn, err.line, err.col, `${f}.while`, err.problem);
        ok = false;
        return;
      }
    }
    out.push({ kind: 'changes', input, within_ms: within, ...(whileText !== undefined ? { while: whileText } : {}) });
  });
  return ok ? out : undefined;
}

/**
 * Convenience for tests and tools: compiles the `interlocks:` key of a YAML text. The policy
 * compiler calls compileInterlocks with the node it already parsed.
 */
export function compileInterlocksText(text: string, file: string, assets: readonly BundleAsset[]): { interlocks: InterlockDef[]; errors: SourceError[] } {
  const read = readYaml(text, file);
  if (!read.ok) return { interlocks: [], errors: read.errors };
  const root = read.doc.contents as Node | null;
  const node = isMap(root) ? (root.get('interlocks', true) as Node | undefined) : undefined;
  return compileInterlocks(node, { file, lineCounter: read.lc, text }, assets);
}

function qualify(key: string, assetId: string | undefined): string {
  const slash = key.indexOf('/');
  return slash === -1 ? `${assetId ?? ''}/${key}` : key;
}

/** `tank1.level/pump1.speed` reads as a qualified point; say how to divide instead. */
function isPointOf(asset: BundleAsset, name: string): boolean {
  return asset.points[name] !== undefined;
}

function parseGuard(
  g: Node | null,
  field: string,
  asset: BundleAsset | undefined,
  fail: (n: Node | null | undefined, field: string, problem: string) => undefined,
): InterlockGuard | undefined {
  let point: string | undefined;
  let valueText: string | undefined;
  if (isScalar(g) && typeof g.value === 'string') {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?::=\s*(\S.*?))?\s*$/.exec(g.value);
    if (!m) return fail(g, field, `'${g.value}' is not a guard: write a point name, or "point := value"`);
    point = m[1];
    valueText = m[2];
  } else {
    return fail(g, field, 'each guard is a string: a point name, or "point := value"');
  }
  if (asset === undefined) return undefined;
  const def: PointDef | undefined = asset.points[point!];
  if (def === undefined && asset.methods?.[point!] !== undefined) {
    // An OPC UA method that changes the process (pump1.start) is guarded as a whole: any call.
    if (valueText !== undefined) return fail(g, field, `'${point}' is a method: guard it by name alone (any call), without ':= value'`);
    return { point: point! };
  }
  if (def === undefined) return fail(g, field, `asset '${asset.id}' has no point${asset.methods === undefined ? '' : ' or method'} '${point}'`);
  if (!WRITABLE_TABLES.has(def.table)) return fail(g, field, `'${point}' is a read-only ${def.table} point: no command can write it`);
  if (valueText === undefined) return { point: point! };
  let value: number;
  if (valueText === 'true' || valueText === 'false') value = valueText === 'true' ? 1 : 0;
  else if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(valueText)) value = Number(valueText);
  else return fail(g, field, `'${valueText}' is not a value: write a number in engineering units, true or false`);
  if (def.type === 'bool' && value !== 0 && value !== 1) return fail(g, field, `'${point}' is a bool point: guard value must be 0, 1, true or false`);
  return { point: point!, value };
}

/** Places a position inside an expression scalar at its file position. */
function pushAt(errors: SourceError[], ctx: SourceContext, node: Node, line: number, col: number, field: string, problem: string): void {
  const start = node.range?.[0] ?? 0;
  const base = ctx.lineCounter.linePos(start);
  let p = { line: base.line, col: base.col };
  const type = isScalar(node) ? (node as Scalar).type : undefined;
  if (type === Scalar.BLOCK_LITERAL) {
    // Content starts on the line after the `|` header, indented; expression lines map one to one.
    const fileLine = base.line + line;
    // The block's indentation is that of its first content line (YAML strips it from every line).
    const indent = ctx.text === undefined ? 0 : (/^ */.exec(ctx.text.split('\n')[base.line] ?? '')?.[0].length ?? 0);
    p = { line: fileLine, col: indent + col };
  } else if (line === 1 && (type === Scalar.PLAIN || type === Scalar.QUOTE_DOUBLE || type === Scalar.QUOTE_SINGLE)) {
    const shift = type === Scalar.PLAIN ? 0 : 1;
    const q = ctx.lineCounter.linePos(start + shift + col - 1);
    // Only exact when the scalar sits on one line; a folded scalar keeps its start position.
    if (q.line === base.line) p = { line: q.line, col: q.col };
  }
  errors.push(new SourceError(ctx.file, p.line, p.col, field, problem));
}
