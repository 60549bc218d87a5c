// The rules section of the policy sources: each rule's subject, operations, targets (points, ranges,
// function codes, OPC UA node selectors), conditions and limits, then the cross-checks against
// assets and windows. Part of the rule compiler (src/policy/sources.ts).
import path from 'node:path';
import { isMap, isScalar, isSeq, type Node, type Pair } from 'yaml';
import type { ModbusTable } from '../../core/command.js';
import { parseRange } from '../../assets/plant.js';
import { RATE_KEYS, type KeyedRate, type RateKey } from '../rate.js';
import { parseRate } from '../../core/rate.js';
import type { WindowSpec } from '../windows.js';
import { pointGlob } from '../../core/glob.js';
import { OPCUA_ATTRIBUTES, type NodeSelectorDef, type ValueBounds } from '../opcua-nodes.js';
import { APPROVAL_EXCLUSIONS, ASSURANCES, MAX_APPROVERS, MODES, MODBUS_TABLES, RULE_OPERATIONS, type AddressRange, type ApprovalExclusion, type ApprovalRule, type BundleRule, type Bounds, type Mode, type RuleOperation } from '../payload.js';
import { ID_RE, SourceFile, type Entries } from './source-file.js';

const KEYED_RATE_KEYS = ['rate', 'per'];
const APPROVAL_KEYS = ['approvers', 'distinct_from', 'approve_within', 'execute_within'];
const RATE_KEYS_LEGACY = ['per_subject', 'per_asset'];
const RULE_KEYS = [
  'id',
  'description',
  'subject',
  'asset',
  'assets',
  'operations',
  'points',
  'nodes',
  'ranges',
  'function_codes',
  'sub_functions',
  'mei_types',
  'object_ids',
  'require_scope',
  'bounds',
  'max_step',
  'windows',
  'freezes',
  'rate_limit',
  'cross_zone',
  'approval',
  'mode',
];
const SUBJECT_KEYS = ['workload', 'owner', 'roles', 'scopes', 'act', 'assurance'];
const RANGE_KEYS = ['table', 'from', 'to'];
const BOUND_KEYS = ['min', 'max'];
const NODE_KEYS = ['node', 'path', 'attributes', 'bounds', 'arguments'];
const VALUE_BOUND_KEYS = ['min', 'max', 'max_step', 'enum', 'pattern', 'max_length', 'min_items', 'max_items'];
/** A NodeId glob: `nsu=<uri>;<identifier>` or a bare identifier, '*' anywhere in the identifier. */
const NODE_GLOB_RE = /^(?:nsu=[^;]+;)?(?:i|s|g|b)=.+$/s;
/** Which operation class each supported Modbus function code belongs to (for function_codes). */
const FUNCTION_CODE_OPERATION: ReadonlyMap<number, RuleOperation> = new Map([
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'write'],
  [6, 'write'],
  [15, 'write'],
  [16, 'write'],
  [22, 'write'],
  [23, 'write'],
  [7, 'diagnostic'],
  [8, 'diagnostic'],
  [11, 'diagnostic'],
  [12, 'diagnostic'],
  [17, 'diagnostic'],
  [43, 'diagnostic'],
]);
/** Function codes without register addresses: a rule covers them only by naming them (docs/policy.md). */
const UNADDRESSED_FUNCTION_CODES: ReadonlySet<number> = new Set([7, 8, 11, 12, 17, 43]);

/** A rule with the nodes needed to place cross-reference errors. */
export interface RuleDraft {
  rule: BundleRule;
  file: SourceFile;
  field: string;
  idNode: Node;
  assetNodes: Node[];
  pointNodes: Node[];
  /** Where `nodes:` is, when the rule has node selectors (OPC UA assets only). */
  nodesNode?: Node;
  boundNodes: Map<string, Node>;
  stepNodes: Map<string, Node>;
  windowRefs: { id: string; node: Node; field: string }[];
}
function compileNodeSelectors(f: SourceFile, node: Node, field: string, operations: RuleOperation[]): NodeSelectorDef[] | undefined {
  const items = f.seq(node, field, 'of { node, path, attributes, bounds, arguments }');
  if (items === undefined) return undefined;
  const out: NodeSelectorDef[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const sf = `${field}[${i}]`;
    const e = f.map(item, sf, NODE_KEYS, 'with node (NodeId glob) and/or path (browse path glob), attributes, bounds, arguments');
    if (e === undefined) return (ok = false);
    const sel: NodeSelectorDef = {};
    const nodeText = f.str(item!, e, 'node', `${sf}.node`, false);
    if (e.has('node') && nodeText === undefined) ok = false;
    if (nodeText !== undefined) {
      if (nodeText.startsWith('ns=')) {
        f.fail(f.valueNode(e.get('node')!), `${sf}.node`, `'${nodeText}' uses a namespace index (indexes differ between servers); write nsu=<namespace URI>;<identifier>`);
        ok = false;
      } else if (!NODE_GLOB_RE.test(nodeText)) {
        f.fail(f.valueNode(e.get('node')!), `${sf}.node`, `'${nodeText}' is not a NodeId (nsu=<namespace URI>;<identifier> or i=, s=, g=, b=; '*' globs)`);
        ok = false;
      } else sel.node = nodeText;
    }
    const pathText = f.str(item!, e, 'path', `${sf}.path`, false);
    if (e.has('path') && pathText === undefined) ok = false;
    if (pathText !== undefined) {
      if (!pathText.startsWith('/')) {
        f.fail(f.valueNode(e.get('path')!), `${sf}.path`, `'${pathText}' is not a browse path from the Objects folder (it starts with '/', e.g. /Line1/Speed)`);
        ok = false;
      } else sel.path = pathText;
    }
    if (!e.has('node') && !e.has('path')) {
      f.fail(item, sf, 'give node (a NodeId glob), path (a browse path glob), or both');
      ok = false;
    }
    const ap = e.get('attributes');
    if (ap) {
      const list = f.seq(f.valueNode(ap), `${sf}.attributes`, 'OPC UA attribute names');
      const attrs: string[] = [];
      (list ?? []).forEach((a, k) => {
        const v = f.oneOfNode(a, `${sf}.attributes[${k}]`, OPCUA_ATTRIBUTES, 'attribute');
        if (v === undefined) ok = false;
        else if (!attrs.includes(v)) attrs.push(v);
      });
      if (list === undefined || attrs.length === 0) {
        if (list !== undefined && list.length === 0) f.fail(f.valueNode(ap), `${sf}.attributes`, 'must name at least one attribute');
        ok = false;
      } else sel.attributes = attrs;
    }
    const bp = e.get('bounds');
    if (bp) {
      if (operations.length > 0 && !operations.includes('write')) {
        f.fail(bp.key, `${sf}.bounds`, 'bounds apply to written values, but the rule does not allow write');
        ok = false;
      }
      const b = compileValueBounds(f, f.valueNode(bp), `${sf}.bounds`, true);
      if (b === undefined) ok = false;
      else sel.bounds = b;
    }
    const gp = e.get('arguments');
    if (gp) {
      if (operations.length > 0 && !operations.includes('call')) {
        f.fail(gp.key, `${sf}.arguments`, 'arguments bound method calls, but the rule does not allow call');
        ok = false;
      }
      const ge = f.freeMap(f.valueNode(gp), `${sf}.arguments`, 'input argument name -> bounds');
      if (ge === undefined) ok = false;
      const args: Record<string, ValueBounds> = {};
      for (const [name, pair] of ge ?? []) {
        const b = compileValueBounds(f, f.valueNode(pair), `${sf}.arguments.${name}`, false);
        if (b === undefined) ok = false;
        else args[name] = b;
      }
      sel.arguments = args;
    }
    out.push(sel);
    return true;
  });
  return ok ? out : undefined;
}

/** Typed bounds (docs/policy.md, "OPC UA nodes"); `stepped`: max_step is allowed (node values, not arguments). */
function compileValueBounds(f: SourceFile, node: Node, field: string, stepped: boolean): ValueBounds | undefined {
  const e = f.map(node, field, VALUE_BOUND_KEYS, 'with min, max, max_step, enum, pattern, max_length, min_items, max_items');
  if (e === undefined) return undefined;
  let ok = true;
  const b: ValueBounds = {};
  for (const key of ['min', 'max', 'max_step'] as const) {
    if (!e.has(key)) continue;
    const v = f.num(e, key, `${field}.${key}`);
    if (v === undefined) ok = false;
    else if (key === 'max_step' && !stepped) {
      f.fail(e.get(key)!.key, `${field}.max_step`, 'max_step applies to node values, not method arguments');
      ok = false;
    } else if (key === 'max_step' && v < 0) {
      f.fail(f.valueNode(e.get(key)!), `${field}.max_step`, 'must be >= 0');
      ok = false;
    } else b[key] = v;
  }
  for (const key of ['max_length', 'min_items', 'max_items'] as const) {
    if (!e.has(key)) continue;
    const v = f.intNode(f.valueNode(e.get(key)!), `${field}.${key}`, 0, 2 ** 31 - 1);
    if (v === undefined) ok = false;
    else b[key] = v;
  }
  if (b.min !== undefined && b.max !== undefined && b.min > b.max) {
    f.fail(f.valueNode(e.get('max')!), `${field}.max`, `${b.max} is below min (${b.min})`);
    ok = false;
  }
  if (b.min_items !== undefined && b.max_items !== undefined && b.min_items > b.max_items) {
    f.fail(f.valueNode(e.get('max_items')!), `${field}.max_items`, `${b.max_items} is below min_items (${b.min_items})`);
    ok = false;
  }
  const ep = e.get('enum');
  if (ep) {
    const items = f.seq(f.valueNode(ep), `${field}.enum`, 'allowed values (strings, numbers, booleans)');
    const values: (string | number | boolean)[] = [];
    (items ?? []).forEach((it, k) => {
      const v = isScalar(it) ? it.value : undefined;
      if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) values.push(v);
      else {
        f.fail(it, `${field}.enum[${k}]`, 'must be a string, a finite number or a boolean');
        ok = false;
      }
    });
    if (items === undefined || items.length === 0) {
      if (items !== undefined) f.fail(f.valueNode(ep), `${field}.enum`, 'must list at least one value');
      ok = false;
    } else b.enum = values;
  }
  const pattern = f.str(node, e, 'pattern', `${field}.pattern`, false);
  if (e.has('pattern') && pattern === undefined) ok = false;
  if (pattern !== undefined) {
    try {
      new RegExp(pattern, 'u');
      b.pattern = pattern;
    } catch (err) {
      f.fail(f.valueNode(e.get('pattern')!), `${field}.pattern`, `not a regular expression: ${(err as Error).message}`);
      ok = false;
    }
  }
  if (ok && Object.keys(b).length === 0) {
    f.fail(node, field, 'give at least one bound');
    ok = false;
  }
  return ok ? b : undefined;
}

export function collectRules(f: SourceFile, node: Node | null, out: RuleDraft[]): void {
  const items = f.seq(node, 'rules', 'of rules');
  for (const [i, item] of (items ?? []).entries()) {
    const d = compileRule(f, item, `rules[${i}]`);
    if (d) out.push(d);
  }
}

/** A rule's `bounds`: per written point, min and/or max in engineering units (with the nodes for later errors). */
function ruleBounds(f: SourceFile, e: Entries, field: string, operations: RuleOperation[], bad: () => undefined): { bounds: Record<string, Bounds>; boundNodes: Map<string, Node> } {
  const bounds: Record<string, Bounds> = {};
  const boundNodes = new Map<string, Node>();
  const bp = e.get('bounds');
  if (bp) {
    if (operations.length > 0 && !operations.includes('write')) {
      f.fail(bp.key, `${field}.bounds`, 'bounds apply to written values, but the rule does not allow write');
      bad();
    }
    const be = f.freeMap(f.valueNode(bp), `${field}.bounds`, 'point name -> { min, max }');
    if (be === undefined) bad();
    for (const [point, pair] of be ?? []) {
      const bf = `${field}.bounds.${point}`;
      const vn = f.valueNode(pair);
      const ve = f.map(vn, bf, BOUND_KEYS, 'with min and/or max in engineering units');
      if (ve === undefined) {
        bad();
        continue;
      }
      const min = f.num(ve, 'min', `${bf}.min`);
      const max = f.num(ve, 'max', `${bf}.max`);
      if ((ve.has('min') && min === undefined) || (ve.has('max') && max === undefined)) {
        bad();
        continue;
      }
      if (min === undefined && max === undefined) {
        f.fail(vn, bf, 'give min, max, or both');
        bad();
        continue;
      }
      if (min !== undefined && max !== undefined && min > max) {
        f.fail(ve.get('max')!.value, `${bf}.max`, `${max} is below min (${min})`);
        bad();
        continue;
      }
      const b: Bounds = {};
      if (min !== undefined) b.min = min;
      if (max !== undefined) b.max = max;
      bounds[point] = b;
      boundNodes.set(point, pair.key);
    }
  }
  return { bounds, boundNodes };
}

/** A rule's `max_step`: per written point, the largest change per write (with the nodes for later errors). */
function ruleMaxStep(f: SourceFile, e: Entries, field: string, operations: RuleOperation[], bad: () => undefined): { maxStep: Record<string, number>; stepNodes: Map<string, Node> } {
  const maxStep: Record<string, number> = {};
  const stepNodes = new Map<string, Node>();
  const msp = e.get('max_step');
  if (msp) {
    if (operations.length > 0 && !operations.includes('write')) {
      f.fail(msp.key, `${field}.max_step`, 'max_step applies to written values, but the rule does not allow write');
      bad();
    }
    const me = f.freeMap(f.valueNode(msp), `${field}.max_step`, 'point name -> largest change per write, engineering units');
    if (me === undefined) bad();
    for (const [point, pair] of me ?? []) {
      const vn = f.valueNode(pair);
      if (!isScalar(vn) || typeof vn.value !== 'number' || !Number.isFinite(vn.value) || vn.value < 0) {
        f.fail(vn, `${field}.max_step.${point}`, 'must be a number >= 0 (engineering units)');
        bad();
        continue;
      }
      maxStep[point] = vn.value;
      stepNodes.set(point, pair.key);
    }
  }
  return { maxStep, stepNodes };
}

/** A rule's `windows` and `freezes`: references to the entry file's windows, checked once all are known. */
function ruleWindows(f: SourceFile, e: Entries, field: string, bad: () => undefined): { windowRefs: RuleDraft['windowRefs']; windowLists: Partial<Record<'windows' | 'freezes', string[]>> } {
  const windowRefs: RuleDraft['windowRefs'] = [];
  const windowLists: Partial<Record<'windows' | 'freezes', string[]>> = {};
  for (const key of ['windows', 'freezes'] as const) {
    const wp = e.get(key);
    if (!wp) continue;
    const list = f.strList(f.valueNode(wp), `${field}.${key}`, 'window ids from the entry file');
    if (list === undefined || list.length === 0) {
      if (list) f.fail(f.valueNode(wp), `${field}.${key}`, 'must name at least one window');
      bad();
      continue;
    }
    windowLists[key] = list.map((w) => w.value);
    list.forEach((w, i) => windowRefs.push({ id: w.value, node: w.node, field: `${field}.${key}[${i}]` }));
  }
  const both = (windowLists.windows ?? []).filter((w) => (windowLists.freezes ?? []).includes(w));
  if (both.length > 0) {
    f.fail(e.get('freezes')!.value, `${field}.freezes`, `'${both[0]}' is both a window and a freeze of this rule: it can never allow`);
    bad();
  }
  return { windowRefs, windowLists };
}

/** A rule's `rate_limit`: the older { per_subject, per_asset } mapping, one { rate, per } or a list of them. */
function ruleRateLimits(f: SourceFile, e: Entries, field: string, bad: () => undefined): KeyedRate[] {
  const rateLimits: KeyedRate[] = [];
  const rlp = e.get('rate_limit');
  if (rlp) {
    const rn = f.valueNode(rlp);
    const legacy = isMap(rn) && (rn.items as Pair<Node, Node | null>[]).some((p) => isScalar(p.key) && (p.key.value === 'per_subject' || p.key.value === 'per_asset'));
    if (legacy) {
      const re = f.map(rn, `${field}.rate_limit`, RATE_KEYS_LEGACY, "with per_subject and/or per_asset, e.g. '10/m'");
      if (re === undefined) bad();
      for (const [key, per] of [['per_subject', ['workload']], ['per_asset', ['asset']]] as const) {
        const text = re === undefined ? undefined : f.str(rn, re, key, `${field}.rate_limit.${key}`, false);
        if (text === undefined) {
          if (re?.has(key)) bad();
          continue;
        }
        const spec = parseRate(text);
        if (spec === null) {
          f.fail(re!.get(key)!.value, `${field}.rate_limit.${key}`, `bad rate '${text}' (expected COUNT/PERIOD, e.g. 10/m, 5/30s, 100/1h)`);
          bad();
        } else rateLimits.push({ ...spec, per: [...per] });
      }
    } else {
      const items = isSeq(rn) ? (rn.items as (Node | null)[]) : [rn];
      if (items.length === 0) {
        f.fail(rn, `${field}.rate_limit`, 'give at least one { rate, per }');
        bad();
      }
      items.forEach((item, i) => {
        const lf = isSeq(rn) ? `${field}.rate_limit[${i}]` : `${field}.rate_limit`;
        const limit = compileKeyedRate(f, item, lf);
        if (limit === undefined) bad();
        else rateLimits.push(limit);
      });
    }
  }
  return rateLimits;
}

/** A rule's Modbus `ranges`: the plant file's form (holding[0..99]) or { table, from, to }, inclusive. */
function ruleRanges(f: SourceFile, e: Entries, field: string, bad: () => undefined): AddressRange[] {
  const ranges: AddressRange[] = [];
  const rgp = e.get('ranges');
  if (rgp) {
    const items = f.seq(f.valueNode(rgp), `${field}.ranges`, 'of holding[0..99] or { table, from, to }');
    if (items === undefined) bad();
    for (const [i, item] of (items ?? []).entries()) {
      const rf = `${field}.ranges[${i}]`;
      if (isScalar(item)) {
        // The plant file's form (src/assets/plant.ts): holding[0..99], coil[7].
        const r = typeof item.value === 'string' ? parseRange(item.value, false) : 'must be a range like holding[0..99] or { table, from, to }';
        if (typeof r === 'string') {
          f.fail(item, rf, r);
          bad();
        } else ranges.push({ table: r.table, from: r.from, to: r.to });
        continue;
      }
      const re = f.map(item, rf, RANGE_KEYS, 'with table, from, to (inclusive)');
      if (re === undefined) {
        bad();
        continue;
      }
      const table = f.oneOf<ModbusTable>(item!, re, 'table', `${rf}.table`, MODBUS_TABLES);
      const from = f.int(item!, re, 'from', `${rf}.from`, 0, 65535);
      const to = f.int(item!, re, 'to', `${rf}.to`, 0, 65535);
      if (table === undefined || from === undefined || to === undefined) {
        bad();
        continue;
      }
      if (from > to) {
        f.fail(re.get('to')!.value, `${rf}.to`, `${to} is below from (${from})`);
        bad();
        continue;
      }
      ranges.push({ table, from, to });
    }
  }
  return ranges;
}

type IdRanges = { from: number; to: number }[];

/** A rule's `function_codes` (each of a class among its operations) and the selectors of the unaddressed ones (sub_functions, mei_types, object_ids). */
function ruleFunctionCodes(
  f: SourceFile,
  e: Entries,
  field: string,
  operations: RuleOperation[],
  bad: () => undefined,
): { functionCodes: number[] | undefined; selectors: Partial<Record<'sub_functions' | 'mei_types' | 'object_ids', IdRanges>> } {
  let functionCodes: number[] | undefined;
  const fcp = e.get('function_codes');
  if (fcp) {
    const items = f.seq(f.valueNode(fcp), `${field}.function_codes`, 'Modbus function codes');
    if (items === undefined) bad();
    else {
      functionCodes = [];
      items.forEach((item, i) => {
        const ff = `${field}.function_codes[${i}]`;
        const fc = f.intNode(item, ff, 1, 127);
        if (fc === undefined) return bad();
        const cls = FUNCTION_CODE_OPERATION.get(fc);
        if (cls === undefined) {
          f.fail(item, ff, `unsupported function code ${fc} (supported: ${[...FUNCTION_CODE_OPERATION.keys()].join(', ')})`);
          return bad();
        }
        if (operations.length > 0 && !operations.includes(cls)) {
          f.fail(item, ff, `function code ${fc} is a ${cls}, but the rule's operations are ${operations.join(', ')}`);
          return bad();
        }
        functionCodes!.push(fc);
      });
    }
  }

  // Selectors of the function codes without addresses: each needs its function code named.
  const selectors: Partial<Record<'sub_functions' | 'mei_types' | 'object_ids', IdRanges>> = {};
  for (const [key, fc, max] of [['sub_functions', 8, 0xffff], ['mei_types', 43, 0xff], ['object_ids', 43, 0xff]] as const) {
    const sp = e.get(key);
    if (sp === undefined) continue;
    const list = compileIdList(f, f.valueNode(sp), `${field}.${key}`, max);
    if (list === undefined) bad();
    else if (!(functionCodes ?? []).includes(fc)) {
      f.fail(sp.key, `${field}.${key}`, `selects function code ${fc}, which the rule's function_codes must name`);
      bad();
    } else selectors[key] = list;
  }
  if (selectors.object_ids !== undefined && selectors.mei_types !== undefined && !selectors.mei_types.some((r) => r.from <= 14 && 14 <= r.to)) {
    f.fail(e.get('object_ids')!.key, `${field}.object_ids`, 'object ids are read by MEI type 14 (Read Device Identification), which mei_types leaves out');
    bad();
  }
  return { functionCodes, selectors };
}

/** A rule's `subject`: who it is for (workload, owner, roles, scopes, act, assurance). */
function ruleSubject(f: SourceFile, n: Node, e: Entries, field: string, bad: () => undefined): BundleRule['subject'] | undefined {
  let subject: BundleRule['subject'] | undefined;
  const sp = e.get('subject');
  if (sp === undefined) {
    f.fail(n, `${field}.subject`, 'is required (at least { workload: ... })');
    bad();
  } else {
    const sn = f.valueNode(sp);
    const se = f.map(sn, `${field}.subject`, SUBJECT_KEYS, 'with workload, owner, roles, scopes, act, assurance');
    if (se === undefined) bad();
    else {
      const workload = f.str(sn, se, 'workload', `${field}.subject.workload`, true);
      if (workload !== undefined && !/^[a-z][a-z0-9+.-]*:/.test(workload) && workload !== '**') {
        f.fail(se.get('workload')!.value, `${field}.subject.workload`, `'${workload}' is not a SPIFFE ID or glob (spiffe://trust-domain/path)`);
        bad();
      } else if (workload === undefined) bad();
      const owner = f.str(sn, se, 'owner', `${field}.subject.owner`, false);
      const rp = se.get('roles');
      const roles = rp ? f.strList(f.valueNode(rp), `${field}.subject.roles`, 'role names, all required') : [];
      if (roles === undefined) bad();
      const scp = se.get('scopes');
      const scopes = scp ? f.strList(f.valueNode(scp), `${field}.subject.scopes`, 'scopes, all required') : [];
      if (scopes === undefined) bad();
      const act = f.str(sn, se, 'act', `${field}.subject.act`, false);
      if (se.has('act') && act === undefined) bad();
      if (act !== undefined && workload !== undefined && workload.startsWith('user:')) {
        f.fail(se.get('act')!.value, `${field}.subject.act`, `a human principal ('${workload}') never acts for another: this rule can never match`);
        bad();
      }
      let assurance: (typeof ASSURANCES)[number] | undefined;
      if (se.has('assurance')) {
        assurance = f.oneOfNode(f.valueNode(se.get('assurance')!), `${field}.subject.assurance`, ASSURANCES, 'assurance level');
        if (assurance === undefined) bad();
      }
      if (workload !== undefined) {
        subject = { workload, roles: (roles ?? []).map((r) => r.value) };
        if (owner !== undefined) subject.owner = owner;
        if (scopes && scopes.length > 0) subject.scopes = scopes.map((x) => x.value);
        if (act !== undefined) subject.act = act;
        if (assurance !== undefined) subject.assurance = assurance;
      }
    }
  }
  return subject;
}

/** A rule's `asset` or `assets`: the ids, with the nodes that name them (for later errors). */
function ruleAssets(f: SourceFile, n: Node, e: Entries, field: string, bad: () => undefined): { assets: string[]; assetNodes: Node[] } {
  const assetNodes: Node[] = [];
  const assets: string[] = [];
  const ap = e.get('asset');
  const asp = e.get('assets');
  if (ap && asp) {
    f.fail(asp.key, `${field}.assets`, "give either 'asset' or 'assets', not both");
    bad();
  } else if (ap) {
    const v = f.strNode(f.valueNode(ap), `${field}.asset`);
    if (v === undefined) bad();
    else {
      assets.push(v);
      assetNodes.push(f.valueNode(ap));
    }
  } else if (asp) {
    const list = f.strList(f.valueNode(asp), `${field}.assets`, 'asset ids');
    if (list === undefined || list.length === 0) {
      if (list) f.fail(f.valueNode(asp), `${field}.assets`, 'must name at least one asset');
      bad();
    } else {
      for (const a of list) {
        assets.push(a.value);
        assetNodes.push(a.node);
      }
    }
  } else {
    f.fail(n, `${field}.asset`, "is required ('asset: ID' or 'assets: [..]')");
    bad();
  }
  return { assets, assetNodes };
}

/** A rule's `operations`, each once. */
function ruleOperations(f: SourceFile, n: Node, e: Entries, field: string, bad: () => undefined): RuleOperation[] {
  const operations: RuleOperation[] = [];
  const op = e.get('operations');
  if (op === undefined) {
    f.fail(n, `${field}.operations`, `is required (any of ${RULE_OPERATIONS.join(', ')})`);
    bad();
  } else {
    const items = f.seq(f.valueNode(op), `${field}.operations`, `any of ${RULE_OPERATIONS.join(', ')}`);
    if (items === undefined || items.length === 0) {
      if (items) f.fail(f.valueNode(op), `${field}.operations`, 'must name at least one operation');
      bad();
    } else {
      items.forEach((item, i) => {
        const v = f.oneOfNode(item, `${field}.operations[${i}]`, RULE_OPERATIONS, 'operation');
        if (v === undefined) bad();
        else if (!operations.includes(v)) operations.push(v);
      });
    }
  }
  return operations;
}

function compileRule(f: SourceFile, node: Node | null, field: string): RuleDraft | undefined {
  const e = f.map(node, field, RULE_KEYS, 'a rule with id, subject, asset, operations, points or ranges');
  if (e === undefined) return undefined;
  const n = node!;
  let ok = true;
  const bad = (): undefined => {
    ok = false;
    return undefined;
  };

  let id = f.str(n, e, 'id', `${field}.id`, true);
  if (id !== undefined && !ID_RE.test(id)) id = f.fail(e.get('id')!.value, `${field}.id`, `'${id}' must match ${ID_RE.source}`);
  if (id === undefined) bad();
  const description = f.str(n, e, 'description', `${field}.description`, false) ?? '';

  const subject = ruleSubject(f, n, e, field, bad);
  const { assets, assetNodes } = ruleAssets(f, n, e, field, bad);
  const operations = ruleOperations(f, n, e, field, bad);

  // points:
  const pointNodes: Node[] = [];
  const points: string[] = [];
  const pp = e.get('points');
  if (pp) {
    const list = f.strList(f.valueNode(pp), `${field}.points`, 'point names or globs');
    if (list === undefined) bad();
    for (const p of list ?? []) {
      points.push(p.value);
      pointNodes.push(p.node);
    }
  }

  const ranges = ruleRanges(f, e, field, bad);
  const rgp = e.get('ranges');
  // nodes: (OPC UA)
  let nodes: NodeSelectorDef[] | undefined;
  const np = e.get('nodes');
  if (np) {
    nodes = compileNodeSelectors(f, f.valueNode(np), `${field}.nodes`, operations);
    if (nodes === undefined) bad();
  }
  const unaddressed = () => {
    const list = e.get('function_codes');
    return list !== undefined && isSeq(list.value) && list.value.items.some((i) => isScalar(i) && UNADDRESSED_FUNCTION_CODES.has(Number(i.value)));
  };
  if (pp === undefined && rgp === undefined && np === undefined && !unaddressed()) {
    f.fail(n, field, `covers nothing: give points, ranges or nodes, or function_codes naming one of ${[...UNADDRESSED_FUNCTION_CODES].join(', ')}`);
    bad();
  }

  const { functionCodes, selectors } = ruleFunctionCodes(f, e, field, operations, bad);

  const requireScope = f.str(n, e, 'require_scope', `${field}.require_scope`, false);
  if (e.has('require_scope') && requireScope === undefined) bad();

  const { bounds, boundNodes } = ruleBounds(f, e, field, operations, bad);

  const { maxStep, stepNodes } = ruleMaxStep(f, e, field, operations, bad);

  const { windowRefs, windowLists } = ruleWindows(f, e, field, bad);

  const rateLimits = ruleRateLimits(f, e, field, bad);

  // cross_zone:
  let crossZone: string[] | undefined;
  const czp = e.get('cross_zone');
  if (czp) {
    const list = f.strList(f.valueNode(czp), `${field}.cross_zone`, "zones a subject may come from, or '*'");
    if (list === undefined || list.length === 0) {
      if (list) f.fail(f.valueNode(czp), `${field}.cross_zone`, 'must name at least one zone');
      bad();
    } else crossZone = list.map((z) => z.value);
  }

  let approval: BundleRule['approval'];
  if (e.has('approval')) {
    approval = compileApproval(f, f.valueNode(e.get('approval')!), `${field}.approval`);
    if (approval === undefined) bad();
  }
  let mode: Mode | undefined;
  if (e.has('mode')) {
    mode = f.oneOfNode(f.valueNode(e.get('mode')!), `${field}.mode`, MODES, 'mode');
    if (mode === undefined) bad();
  }

  if (!ok || id === undefined || subject === undefined) return undefined;
  const rule: BundleRule = { id, description, subject, assets, operations, points, ranges, bounds };
  if (nodes !== undefined) rule.nodes = nodes;
  if (functionCodes) rule.function_codes = functionCodes;
  if (selectors.sub_functions) rule.sub_functions = expandIds(selectors.sub_functions);
  if (selectors.mei_types) rule.mei_types = expandIds(selectors.mei_types);
  if (selectors.object_ids) rule.object_ids = selectors.object_ids;
  if (requireScope !== undefined) rule.require_scope = requireScope;
  if (Object.keys(maxStep).length > 0) rule.max_step = maxStep;
  if (windowLists.windows) rule.windows = windowLists.windows;
  if (windowLists.freezes) rule.freezes = windowLists.freezes;
  if (rateLimits.length > 0) rule.rate_limits = rateLimits;
  if (crossZone) rule.cross_zone = crossZone;
  if (approval) rule.approval = approval;
  if (mode === 'monitor') rule.mode = mode;
  return { rule, file: f, field, idNode: e.get('id')!.value!, assetNodes, pointNodes, ...(np ? { nodesNode: np.key } : {}), boundNodes, stepNodes, windowRefs };
}

const ID_RANGE_RE = /^(0x[0-9a-fA-F]+|[0-9]+)\.\.(0x[0-9a-fA-F]+|[0-9]+)$/;

/** A list of ids, each an integer or an inclusive range `a..b` (decimal or 0x hex), in 0..max. */
function compileIdList(f: SourceFile, node: Node, field: string, max: number): { from: number; to: number }[] | undefined {
  const items = f.seq(node, field, `integers or ranges like 0..2, in 0..${max}`);
  if (items === undefined) return undefined;
  if (items.length === 0) return f.fail(node, field, 'must name at least one id');
  const out: { from: number; to: number }[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const v = isScalar(item) ? item.value : undefined;
    const m = typeof v === 'string' ? ID_RANGE_RE.exec(v.trim()) : null;
    const from = typeof v === 'number' ? v : m !== null ? Number(m[1]) : NaN;
    const to = typeof v === 'number' ? v : m !== null ? Number(m[2]) : NaN;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > max || from > to) {
      ok = f.fail(item, `${field}[${i}]`, `must be an integer or a range a..b with 0 <= a <= b <= ${max}`) ?? false;
    } else out.push({ from, to });
  });
  return ok ? out : undefined;
}

function expandIds(ranges: { from: number; to: number }[]): number[] {
  const out = new Set<number>();
  for (const r of ranges) for (let v = r.from; v <= r.to; v++) out.add(v);
  return [...out].sort((a, b) => a - b);
}

/** `{ rate: 6/m, per: [workload, asset] }`: one budget per distinct value of the keys (none: one for the rule). */
function compileKeyedRate(f: SourceFile, n: Node | null, field: string): KeyedRate | undefined {
  const e = f.map(n, field, KEYED_RATE_KEYS, `with rate (e.g. 6/m) and per (any of ${RATE_KEYS.join(', ')})`);
  if (e === undefined) return undefined;
  const text = f.str(n!, e, 'rate', `${field}.rate`, true);
  if (text === undefined) return undefined;
  const spec = parseRate(text);
  if (spec === null) return f.fail(f.valueNode(e.get('rate')!), `${field}.rate`, `bad rate '${text}' (expected COUNT/PERIOD, e.g. 10/m, 5/30s, 100/1h)`);
  const per: RateKey[] = [];
  const pp = e.get('per');
  if (pp === undefined) return f.fail(n, `${field}.per`, `is required: what the limit counts by (any of ${RATE_KEYS.join(', ')}; [] for one budget for the whole rule)`);
  const items = f.seq(f.valueNode(pp), `${field}.per`, `any of ${RATE_KEYS.join(', ')}`);
  if (items === undefined) return undefined;
  let ok = true;
  items.forEach((item, i) => {
    const k = f.oneOfNode(item, `${field}.per[${i}]`, RATE_KEYS, 'key');
    if (k === undefined) ok = false;
    else if (per.includes(k)) ok = f.fail(item, `${field}.per[${i}]`, `'${k}' is named twice`) ?? false;
    else per.push(k);
  });
  return ok ? { ...spec, per } : undefined;
}

/** `approval: required`, or `{ approvers: N, distinct_from: [owner, requester], approve_within, execute_within }`. */
function compileApproval(f: SourceFile, n: Node, field: string): BundleRule['approval'] | undefined {
  if (isScalar(n)) return f.oneOfNode(n, field, ['required'] as const, 'approval');
  const e = f.map(n, field, APPROVAL_KEYS, 'required, or { approvers, distinct_from, approve_within, execute_within }');
  if (e === undefined) return undefined;
  let ok = true;
  const approvers = e.has('approvers') ? f.int(n, e, 'approvers', `${field}.approvers`, 1, MAX_APPROVERS) : 1;
  if (approvers === undefined) ok = false;
  let distinct: ApprovalExclusion[] = [...APPROVAL_EXCLUSIONS];
  const dp = e.get('distinct_from');
  if (dp !== undefined) {
    const items = f.seq(f.valueNode(dp), `${field}.distinct_from`, `any of ${APPROVAL_EXCLUSIONS.join(', ')}`);
    if (items === undefined) ok = false;
    distinct = [];
    (items ?? []).forEach((item, i) => {
      const v = f.oneOfNode(item, `${field}.distinct_from[${i}]`, APPROVAL_EXCLUSIONS, 'exclusion');
      if (v === undefined) ok = false;
      else if (!distinct.includes(v)) distinct.push(v);
    });
    // An agent approving its own command is never a check: the requester is always excluded.
    if (!distinct.includes('requester')) {
      f.fail(f.valueNode(dp), `${field}.distinct_from`, "must include requester (an agent, or the human it acts for, never approves its own command)");
      ok = false;
    }
  }
  const rule: ApprovalRule = { approvers: approvers ?? 1, distinct_from: distinct };
  for (const [key, out] of [['approve_within', 'approve_within_sec'], ['execute_within', 'execute_within_sec']] as const) {
    if (!e.has(key)) continue;
    const sec = f.duration(n, e, key, `${field}.${key}`);
    if (sec === undefined) ok = false;
    else rule[out] = sec;
  }
  return ok ? rule : undefined;
}

/** Checks across rules and against the assets: unique ids, known assets, globs that match. */
export function checkRules(drafts: RuleDraft[], assetPoints: Map<string, string[]>, windows: Map<string, WindowSpec>, opcuaAssets: ReadonlySet<string>): void {
  const ids = new Map<string, RuleDraft>();
  for (const d of drafts) {
    const { rule, file: f, field } = d;
    for (const ref of d.windowRefs) {
      if (!windows.has(ref.id)) {
        f.fail(ref.node, ref.field, `unknown window '${ref.id}' (known: ${[...windows.keys()].join(', ') || 'none; define them under windows: in the entry file'})`);
      }
    }
    const prev = ids.get(rule.id);
    if (prev) f.fail(d.idNode, `${field}.id`, `duplicate rule id '${rule.id}' (first at ${prev.file.where(prev.idNode)})`);
    else ids.set(rule.id, d);

    const known: string[][] = [];
    rule.assets.forEach((a, i) => {
      const pts = assetPoints.get(a);
      if (pts === undefined) {
        const af = d.assetNodes.length > 1 || d.rule.assets.length > 1 ? `${field}.assets[${i}]` : `${field}.asset`;
        f.fail(d.assetNodes[i], af, `unknown asset '${a}' (known: ${[...assetPoints.keys()].join(', ') || 'none'})`);
      } else {
        known.push(pts);
      }
    });
    if (known.length !== rule.assets.length) continue; // the asset error says it all
    if (d.nodesNode !== undefined) {
      const modbus = rule.assets.filter((a) => !opcuaAssets.has(a));
      if (modbus.length > 0) f.fail(d.nodesNode, `${field}.nodes`, `nodes select OPC UA nodes, but asset '${modbus[0]}' is not an OPC UA asset`);
    }
    const all = known.flat();
    const matched = new Set<string>();
    rule.points.forEach((g, i) => {
      const re = pointGlob(g);
      const hits = all.filter((p) => re.test(p));
      if (hits.length === 0) {
        f.fail(d.pointNodes[i], `${field}.points[${i}]`, `'${g}' matches no point of ${rule.assets.map((a) => `asset '${a}'`).join(', ')}`);
      }
      for (const h of hits) matched.add(h);
    });
    for (const [point, node] of d.boundNodes) {
      if (!matched.has(point)) {
        f.fail(node, `${field}.bounds.${point}`, `'${point}' is not one of the rule's points (${[...matched].join(', ') || 'none'})`);
      }
    }
    for (const [point, node] of d.stepNodes) {
      if (!matched.has(point)) {
        f.fail(node, `${field}.max_step.${point}`, `'${point}' is not one of the rule's points (${[...matched].join(', ') || 'none'})`);
      }
    }
  }
}
