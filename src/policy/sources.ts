// The rule compiler: YAML policy sources (an entry file plus its includes, the plant files they
// name, the issuers' JWKS files) into one BundlePayload. Owns the source format and every check
// a human's typo needs. Must never sign, never guess a default that widens access, and never stop
// at the first problem: a build run reports every problem it can find, each as file:line:col.
import { readFile } from 'node:fs/promises';
import { compileInterlocks } from '../interlocks/compile.js';
import { parseDurationMs, POLL_DURATION } from '../core/duration.js';
import type { InterlockDef } from '../interlocks/payload.js';
import path from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import type { ModbusTable } from '../core/command.js';
import { SourceError, SourceErrors } from '../core/errors.js';
import { loadPlant, parseRange, rangeSyntaxHint, type Plant } from '../assets/plant.js';
import { describeOpcua } from '../assets/opcua-face.js';
import { nodeIdProblem } from '../assets/node-id.js';
import { parseDurationSec } from './duration.js';
import { parseRate, RATE_KEYS, type KeyedRate, type RateKey } from './rate.js';
import { WEEKDAYS, isValidTimeZone, parseHhmm, parseLocalDateTime, windowProblem, type Weekday, type WindowSpec } from './windows.js';
import { pointGlob } from '../core/glob.js';
import { OPCUA_ATTRIBUTES, type NodeSelectorDef, type ValueBounds } from './opcua-nodes.js';
import { isSpiffeId } from '../identity/spiffe.js';
import { isHumanPrincipal, type BundleRevocation } from '../identity/revocation.js';
import {
  APPROVAL_EXCLUSIONS,
  ARGUMENT_TYPES,
  ASSURANCES,
  BUNDLE_FORMAT,
  CRITICALITIES,
  MAX_APPROVERS,
  MODES,
  MODBUS_TABLES,
  RULE_OPERATIONS,
  type AddressRange,
  type ApprovalExclusion,
  type ApprovalRule,
  type BundleAsset,
  type BundleFreeze,
  type BundleIssuer,
  type BundlePayload,
  type BundleRule,
  type Bounds,
  type MethodArgument,
  type MethodDef,
  type Mode,
  type PointDef,
  type RuleOperation,
} from './payload.js';

export interface CompileOptions {
  /** Build time, ms since the epoch (issued_at, not_before, and the base of valid_for). */
  now: number;
  revision: number;
}

const ENTRY_KEYS = ['bundle', 'limits', 'issuers', 'assets', 'windows', 'freezes', 'include', 'rules', 'interlocks', 'revocations'];
const FREEZE_KEYS = ['window', 'assets', 'operations'];
/** What a change freeze stops when it does not say: everything that changes the process. */
const FREEZE_DEFAULT_OPERATIONS: RuleOperation[] = ['write', 'call', 'diagnostic'];
const STEP_BASE_KEYS = ['max_age', 'poll'];
const KEYED_RATE_KEYS = ['rate', 'per'];
const APPROVAL_KEYS = ['approvers', 'distinct_from', 'approve_within', 'execute_within'];
const REVOCATION_KEYS = ['jti', 'sub', 'owner', 'reason', 'revoked_at'];
const INCLUDE_KEYS = ['rules', 'interlocks'];
const BUNDLE_KEYS = ['name', 'audience', 'valid_for', 'mode'];
const LIMIT_KEYS = ['max_token_ttl', 'step_base'];
const ISSUER_KEYS = ['iss', 'jwks_file'];
const ASSET_KEYS = ['id', 'zone', 'criticality', 'protocol', 'unit_id', 'plc', 'namespace', 'points_from', 'node_ids', 'object_node', 'methods'];
const METHOD_KEYS = ['node_id', 'inputs', 'outputs'];
const ARGUMENT_KEYS = ['name', 'type', 'min', 'max'];
const WINDOW_KEYS = ['id', 'time_zone', 'days', 'from', 'to', 'start', 'end'];
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
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

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

/** Paths in messages are relative to the working directory when below it, so they are clickable. */
function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

type Entries = Map<string, Pair<Node, Node | null>>;

/** One parsed source file and the problems found in it. */
class SourceFile {
  readonly display: string;
  constructor(
    readonly abs: string,
    readonly lc: LineCounter,
    private readonly errors: SourceError[],
    readonly text = '',
  ) {
    this.display = displayPath(abs);
  }

  fail(node: Node | null | undefined, field: string, problem: string): undefined {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    this.errors.push(new SourceError(this.display, p.line, p.col, field, problem));
    return undefined;
  }

  where(node: Node | null | undefined): string {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    return `${this.display}:${p.line}:${p.col}`;
  }

  /** A mapping's entries; unknown keys are reported, never ignored (a typo must not pass). */
  map(node: Node | null | undefined, field: string, allowed: readonly string[], what: string): Entries | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    const out: Entries = new Map();
    for (const item of node.items as Pair<Node, Node | null>[]) {
      const key = item.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, field, 'keys must be strings');
        continue;
      }
      if (!allowed.includes(key.value)) {
        const f = field === '' ? key.value : `${field}.${key.value}`;
        this.fail(key, f, `unknown field '${key.value}' (expected ${allowed.join(', ')})`);
        continue;
      }
      out.set(key.value, item);
    }
    return out;
  }

  /** A mapping with arbitrary string keys (bounds by point name). */
  freeMap(node: Node | null | undefined, field: string, what: string): Entries | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    const out: Entries = new Map();
    for (const item of node.items as Pair<Node, Node | null>[]) {
      if (!isScalar(item.key) || typeof item.key.value !== 'string') {
        this.fail(item.key, field, 'keys must be strings');
        continue;
      }
      out.set(item.key.value, item);
    }
    return out;
  }

  seq(node: Node | null | undefined, field: string, what: string): (Node | null)[] | undefined {
    if (!isSeq(node)) return this.fail(node, field, `must be a list (${what})`);
    return node.items as (Node | null)[];
  }

  valueNode(pair: Pair<Node, Node | null>): Node {
    return pair.value ?? pair.key;
  }

  str(parent: Node, e: Entries, key: string, field: string, required: boolean): string | undefined {
    const pair = e.get(key);
    if (pair === undefined) return required ? this.fail(parent, field, 'is required') : undefined;
    return this.strNode(this.valueNode(pair), field);
  }

  strNode(n: Node | null, field: string): string | undefined {
    if (!isScalar(n) || typeof n.value !== 'string' || n.value === '') {
      return this.fail(n, field, 'must be a non-empty string');
    }
    return n.value;
  }

  int(parent: Node, e: Entries, key: string, field: string, min: number, max: number): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return this.fail(parent, field, 'is required');
    return this.intNode(this.valueNode(pair), field, min, max);
  }

  intNode(n: Node | null, field: string, min: number, max: number): number | undefined {
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isInteger(n.value)) {
      return this.fail(n, field, `must be an integer in ${min}..${max}`);
    }
    if (n.value < min || n.value > max) return this.fail(n, field, `${n.value} is outside ${min}..${max}`);
    return n.value;
  }

  num(e: Entries, key: string, field: string): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return undefined;
    const n = this.valueNode(pair);
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value)) {
      return this.fail(n, field, 'must be a finite number');
    }
    return n.value;
  }

  oneOf<T extends string>(parent: Node, e: Entries, key: string, field: string, options: readonly T[]): T | undefined {
    const pair = e.get(key);
    if (pair === undefined) return this.fail(parent, field, `is required (one of ${options.join(', ')})`);
    return this.oneOfNode(this.valueNode(pair), field, options, 'value');
  }

  oneOfNode<T extends string>(n: Node | null, field: string, options: readonly T[], what: string): T | undefined {
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      const shown = isScalar(n) ? `'${String(n.value)}'` : 'a collection';
      return this.fail(n, field, `unknown ${what} ${shown} (expected ${options.join(', ')})`);
    }
    return v as T;
  }

  duration(parent: Node, e: Entries, key: string, field: string): number | undefined {
    const s = this.str(parent, e, key, field, true);
    if (s === undefined) return undefined;
    const sec = parseDurationSec(s);
    if (sec === null) {
      return this.fail(this.valueNode(e.get(key)!), field, `bad duration '${s}' (expected a positive number followed by s, m, h or d, e.g. 15m)`);
    }
    return sec;
  }

  /** A string or a list of strings (globs, roles); a single string is accepted where a list is. */
  strList(n: Node | null, field: string, what: string): { value: string; node: Node }[] | undefined {
    const items = this.seq(n, field, what);
    if (items === undefined) return undefined;
    const out: { value: string; node: Node }[] = [];
    items.forEach((item, i) => {
      const v = this.strNode(item, `${field}[${i}]`);
      if (v !== undefined) out.push({ value: v, node: item! });
    });
    return out;
  }
}

interface Parsed {
  file: SourceFile;
  root: Node | null;
}

async function parseFile(abs: string, errors: SourceError[], from?: { file: SourceFile; node: Node; field: string }): Promise<Parsed | undefined> {
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (from) return from.file.fail(from.node, from.field, `cannot read '${displayPath(abs)}' (${code})`);
    errors.push(new SourceError(displayPath(abs), 1, 1, 'file', `cannot read policy source (${code})`));
    return undefined;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const file = new SourceFile(abs, lc, errors, text);
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      errors.push(new SourceError(file.display, p.line, p.col, 'yaml', e.message.split('\n')[0]! + rangeSyntaxHint(text.split('\n', p.line)[p.line - 1])));
    }
    return undefined;
  }
  return { file, root: doc.contents as Node | null };
}

/** A rule with the nodes needed to place cross-reference errors. */
interface RuleDraft {
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

/**
 * Compiles the policy sources rooted at `entryFile` into a bundle payload. Throws SourceErrors
 * listing every problem found across all files.
 */
export async function compileSources(entryFile: string, opts: CompileOptions): Promise<BundlePayload> {
  const errors: SourceError[] = [];
  const entryAbs = path.resolve(entryFile);
  const entry = await parseFile(entryAbs, errors);
  if (entry === undefined) throw new SourceErrors(errors);
  const f = entry.file;
  const dir = path.dirname(entryAbs);
  const top = f.map(entry.root, '', ENTRY_KEYS, 'with bundle, limits, issuers, assets, include, rules');
  if (top === undefined) throw new SourceErrors(errors);
  const rootNode = entry.root!;

  // bundle:
  let name: string | undefined;
  let audience: string | undefined;
  let validForSec: number | undefined;
  let mode: Mode | undefined;
  const bundlePair = top.get('bundle');
  if (bundlePair === undefined) {
    f.fail(rootNode, 'bundle', 'is required (name, audience, valid_for)');
  } else {
    const n = f.valueNode(bundlePair);
    const e = f.map(n, 'bundle', BUNDLE_KEYS, 'with name, audience, valid_for');
    if (e) {
      name = f.str(n, e, 'name', 'bundle.name', true);
      audience = f.str(n, e, 'audience', 'bundle.audience', true);
      validForSec = f.duration(n, e, 'valid_for', 'bundle.valid_for');
      if (e.has('mode')) mode = f.oneOfNode(f.valueNode(e.get('mode')!), 'bundle.mode', MODES, 'mode');
    }
  }

  // limits:
  let maxTtlSec: number | undefined;
  let stepBase: { max_age_ms?: number; poll_ms?: number } = {};
  const limitsPair = top.get('limits');
  if (limitsPair === undefined) {
    f.fail(rootNode, 'limits', 'is required (max_token_ttl)');
  } else {
    const n = f.valueNode(limitsPair);
    const e = f.map(n, 'limits', LIMIT_KEYS, 'with max_token_ttl, step_base');
    if (e) maxTtlSec = f.duration(n, e, 'max_token_ttl', 'limits.max_token_ttl');
    const sb = e?.get('step_base');
    if (sb) stepBase = compileStepBase(f, f.valueNode(sb));
  }

  const issuers = await compileIssuers(f, top, dir, rootNode);
  const { assets, points } = await compileAssets(f, top, dir, rootNode, errors);
  // Interlocks (src/interlocks owns their language): from the entry file and each include.
  const interlocks: InterlockDef[] = [];
  const interlockIds = new Map<string, string>();
  const collectInterlocks = (file: SourceFile, node: Node | null | undefined) => {
    const out = compileInterlocks(node, { file: file.display, lineCounter: file.lc, text: file.text }, assets);
    errors.push(...out.errors);
    for (const il of out.interlocks) {
      const first = interlockIds.get(il.id);
      if (first !== undefined) file.fail(node, 'interlocks', `duplicate interlock id '${il.id}' (first in ${first})`);
      else interlockIds.set(il.id, file.display);
      interlocks.push(il);
    }
  };
  const interlocksPair = top.get('interlocks');
  if (interlocksPair) collectInterlocks(f, f.valueNode(interlocksPair));

  // rules: from the entry file and each include, in order (order is the evaluation order).
  const drafts: RuleDraft[] = [];
  const rulesPair = top.get('rules');
  if (rulesPair) collectRules(f, f.valueNode(rulesPair), drafts);
  const includePair = top.get('include');
  if (includePair) {
    const list = f.strList(f.valueNode(includePair), 'include', 'file names relative to this file');
    for (const [i, inc] of (list ?? []).entries()) {
      const abs = path.resolve(dir, inc.value);
      const parsed = await parseFile(abs, errors, { file: f, node: inc.node, field: `include[${i}]` });
      if (parsed === undefined) continue;
      const e = parsed.file.map(parsed.root, '', INCLUDE_KEYS, 'an included file holds rules');
      const rp = e?.get('rules');
      const ip = e?.get('interlocks');
      if (e && rp === undefined && ip === undefined) parsed.file.fail(parsed.root, 'rules', 'an included file holds rules or interlocks');
      if (rp) collectRules(parsed.file, parsed.file.valueNode(rp), drafts);
      if (ip) collectInterlocks(parsed.file, parsed.file.valueNode(ip));
    }
  }
  const windows = compileWindowSources(f, top);
  checkRules(drafts, points, windows, new Set(assets.filter((a) => a.protocol === 'opcua').map((a) => a.id)));
  const freezes = compileFreezes(f, top, windows, new Set(assets.map((a) => a.id)));
  const revocations = compileRevocations(f, top);

  if (errors.length > 0) throw new SourceErrors(errors);
  const issuedAt = Math.floor(opts.now / 1000);
  return {
    format: BUNDLE_FORMAT,
    name: name!,
    revision: opts.revision,
    issued_at: issuedAt,
    not_before: issuedAt,
    expires_at: issuedAt + validForSec!,
    audience: audience!,
    limits: {
      max_token_ttl_sec: maxTtlSec!,
      ...(stepBase.max_age_ms !== undefined ? { step_base_max_age_ms: stepBase.max_age_ms } : {}),
      ...(stepBase.poll_ms !== undefined ? { step_base_poll_ms: stepBase.poll_ms } : {}),
    },
    issuers,
    assets,
    rules: drafts.map((d) => d.rule),
    ...(mode === 'monitor' ? { mode } : {}),
    ...(windows.size > 0 ? { windows: [...windows.values()] } : {}),
    ...(freezes.length > 0 ? { freezes } : {}),
    ...(interlocks.length > 0 ? { interlocks } : {}),
    ...(revocations.length > 0 ? { revocations } : {}),
  };
}

/** `limits.step_base: { max_age, poll }`: how old the PLC value max_step measures from may be, and how often it is read. */
function compileStepBase(f: SourceFile, n: Node): { max_age_ms?: number; poll_ms?: number } {
  const e = f.map(n, 'limits.step_base', STEP_BASE_KEYS, 'with max_age and/or poll, e.g. { max_age: 5s, poll: 1s }');
  if (e === undefined) return {};
  const out: { max_age_ms?: number; poll_ms?: number } = {};
  for (const [key, field] of [['max_age', 'max_age_ms'], ['poll', 'poll_ms']] as const) {
    const text = f.str(n, e, key, `limits.step_base.${key}`, false);
    if (text === undefined) continue;
    const ms = parseDurationMs(text, POLL_DURATION);
    if (ms === null) f.fail(f.valueNode(e.get(key)!), `limits.step_base.${key}`, `bad duration '${text}' (expected e.g. 500ms, 5s, 1m)`);
    else out[field] = ms;
  }
  if (out.poll_ms !== undefined && out.poll_ms < 50) f.fail(f.valueNode(e.get('poll')!), 'limits.step_base.poll', `${out.poll_ms}ms is faster than the minimum 50ms`);
  const age = out.max_age_ms ?? 5000;
  const poll = out.poll_ms ?? 1000;
  // A bound no longer than the poll interval would make every stepped write wait for a lucky read.
  if (age <= poll) f.fail(n, 'limits.step_base.max_age', `${age}ms must be longer than the poll interval ${poll}ms`);
  return out;
}

/**
 * `freezes:` in the entry file: change freezes of the plant or of some assets. While the window is
 * open, every command of the freeze's operations on its assets is denied CHANGE_FREEZE, whatever
 * rule would allow it.
 */
function compileFreezes(f: SourceFile, top: Entries, windows: Map<string, WindowSpec>, assetIds: Set<string>): BundleFreeze[] {
  const out: BundleFreeze[] = [];
  const pair = top.get('freezes');
  if (pair === undefined) return out;
  const items = f.seq(f.valueNode(pair), 'freezes', "of { window, assets, operations }, e.g. { window: year-end, assets: ['*'] }");
  const seen = new Set<string>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `freezes[${i}]`;
    const e = f.map(item, field, FREEZE_KEYS, "with window, assets (ids or '*') and optionally operations");
    if (e === undefined) continue;
    let ok = true;
    const window = f.str(item!, e, 'window', `${field}.window`, true);
    if (window === undefined) ok = false;
    else if (!windows.has(window)) {
      f.fail(f.valueNode(e.get('window')!), `${field}.window`, `unknown window '${window}' (known: ${[...windows.keys()].join(', ') || 'none; define them under windows:'})`);
      ok = false;
    } else if (seen.has(window)) {
      f.fail(f.valueNode(e.get('window')!), `${field}.window`, `window '${window}' is already a freeze`);
      ok = false;
    }
    const ap = e.get('assets');
    const assets = ap === undefined ? f.fail(item, `${field}.assets`, "is required (asset ids, or ['*'] for the whole plant)") : f.strList(f.valueNode(ap), `${field}.assets`, "asset ids, or '*'");
    if (assets === undefined || assets.length === 0) {
      if (assets) f.fail(f.valueNode(ap!), `${field}.assets`, "must name at least one asset, or '*'");
      ok = false;
    } else {
      for (const [k, a] of assets.entries()) {
        if (a.value !== '*' && !assetIds.has(a.value)) {
          f.fail(a.node, `${field}.assets[${k}]`, `unknown asset '${a.value}' (known: ${[...assetIds].join(', ') || 'none'})`);
          ok = false;
        }
      }
    }
    let operations = FREEZE_DEFAULT_OPERATIONS;
    const op = e.get('operations');
    if (op !== undefined) {
      const list = f.seq(f.valueNode(op), `${field}.operations`, `any of ${RULE_OPERATIONS.join(', ')}`);
      if (list === undefined || list.length === 0) {
        if (list) f.fail(f.valueNode(op), `${field}.operations`, 'must name at least one operation');
        ok = false;
      } else {
        operations = [];
        for (const [k, o] of list.entries()) {
          const v = f.oneOfNode(o, `${field}.operations[${k}]`, RULE_OPERATIONS, 'operation');
          if (v === undefined) ok = false;
          else if (!operations.includes(v)) operations.push(v);
        }
      }
    }
    if (!ok || window === undefined || assets === undefined) continue;
    seen.add(window);
    out.push({ window, assets: assets.map((a) => a.value), operations });
  }
  return out;
}

/**
 * `revocations:` in the entry file: tokens the policy itself kills (by jti, sub or owner), each
 * with a reason. `revoked_at` (RFC 3339 with an offset, or seconds since the epoch) bounds a sub /
 * owner revocation to tokens issued before it; absent, the bundle's issued_at is used.
 */
function compileRevocations(f: SourceFile, top: Entries): BundleRevocation[] {
  const out: BundleRevocation[] = [];
  const pair = top.get('revocations');
  if (pair === undefined) return out;
  const items = f.seq(f.valueNode(pair), 'revocations', 'entries with one of jti, sub, owner and a reason');
  const seen = new Set<string>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `revocations[${i}]`;
    const e = f.map(item, field, REVOCATION_KEYS, 'with one of jti, sub, owner and a reason');
    if (e === undefined) continue;
    const named = (['jti', 'sub', 'owner'] as const).filter((k) => e.has(k));
    if (named.length !== 1) {
      f.fail(item, field, named.length === 0 ? 'name one of jti, sub, owner' : `names ${named.join(' and ')}; name exactly one of jti, sub, owner`);
      continue;
    }
    const kind = named[0]!;
    const value = f.str(item!, e, kind, `${field}.${kind}`, true);
    const reason = f.str(item!, e, 'reason', `${field}.reason`, true);
    if (value === undefined || reason === undefined) continue;
    if (kind === 'sub' && !isSpiffeId(value) && !isHumanPrincipal(value)) {
      f.fail(f.valueNode(e.get('sub')!), `${field}.sub`, `'${value}' is not a SPIFFE ID (spiffe://trust-domain/path) or a human as user:<name>`);
      continue;
    }
    if (value.length > 2048) {
      f.fail(f.valueNode(e.get(kind)!), `${field}.${kind}`, 'longer than 2048 characters');
      continue;
    }
    if (reason.length > 512) {
      f.fail(f.valueNode(e.get('reason')!), `${field}.reason`, 'longer than 512 characters');
      continue;
    }
    const key = `${kind}\u0000${value}`;
    if (seen.has(key)) {
      f.fail(f.valueNode(e.get(kind)!), `${field}.${kind}`, `'${value}' is revoked twice`);
      continue;
    }
    seen.add(key);
    const r: BundleRevocation = { [kind]: value, reason };
    const at = e.get('revoked_at');
    if (at !== undefined) {
      const n = f.valueNode(at);
      const v = isScalar(n) ? n.value : undefined;
      let sec: number | undefined;
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0) sec = v;
      else if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v) && Number.isFinite(Date.parse(v))) {
        sec = Math.floor(Date.parse(v) / 1000);
      }
      if (sec === undefined) {
        f.fail(n, `${field}.revoked_at`, 'must be an RFC 3339 time with an offset (2026-01-15T08:00:00Z) or seconds since the epoch');
        continue;
      }
      r.revoked_at = sec;
    }
    out.push(r);
  }
  return out;
}

/** `windows:` in the entry file: maintenance windows and change freezes, each in its own time zone. */
function compileWindowSources(f: SourceFile, top: Entries): Map<string, WindowSpec> {
  const out = new Map<string, WindowSpec>();
  const pair = top.get('windows');
  if (pair === undefined) return out;
  const items = f.seq(f.valueNode(pair), 'windows', 'of { id, time_zone, days, from, to } or { id, time_zone, start, end }');
  const seen = new Map<string, Node>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `windows[${i}]`;
    const e = f.map(item, field, WINDOW_KEYS, 'with id, time_zone and days/from/to or start/end');
    if (e === undefined) continue;
    const n = item!;
    let ok = true;
    let id = f.str(n, e, 'id', `${field}.id`, true);
    if (id !== undefined && !ID_RE.test(id)) id = f.fail(e.get('id')!.value, `${field}.id`, `'${id}' must match ${ID_RE.source}`);
    if (id !== undefined && seen.has(id)) {
      f.fail(e.get('id')!.value, `${field}.id`, `duplicate window id '${id}' (first at ${f.where(seen.get(id))})`);
      id = undefined;
    } else if (id !== undefined) seen.set(id, e.get('id')!.value!);
    const tz = f.str(n, e, 'time_zone', `${field}.time_zone`, true);
    if (tz !== undefined && !isValidTimeZone(tz)) {
      f.fail(e.get('time_zone')!.value, `${field}.time_zone`, `unknown time zone '${tz}' (expected an IANA name such as Europe/Berlin)`);
      ok = false;
    }
    const spec: WindowSpec = { id: id ?? '', time_zone: tz ?? '' };
    for (const key of ['from', 'to'] as const) {
      if (!e.has(key)) continue;
      const v = f.strNode(f.valueNode(e.get(key)!), `${field}.${key}`);
      if (v === undefined) ok = false;
      else if (parseHhmm(v) === null || (key === 'from' && v === '24:00')) {
        f.fail(f.valueNode(e.get(key)!), `${field}.${key}`, `'${v}' is not a local time HH:MM${key === 'to' ? ' (or 24:00)' : ''} (quote it: "06:00")`);
        ok = false;
      } else spec[key] = v;
    }
    for (const key of ['start', 'end'] as const) {
      if (!e.has(key)) continue;
      const v = f.strNode(f.valueNode(e.get(key)!), `${field}.${key}`);
      if (v === undefined) ok = false;
      else if (parseLocalDateTime(v) === null) {
        f.fail(f.valueNode(e.get(key)!), `${field}.${key}`, `'${v}' is not a local date-time YYYY-MM-DDTHH:MM`);
        ok = false;
      } else spec[key] = v;
    }
    if (e.has('days')) {
      const items = f.seq(f.valueNode(e.get('days')!), `${field}.days`, WEEKDAYS.join(', '));
      if (items === undefined) ok = false;
      const days: Weekday[] = [];
      (items ?? []).forEach((d, k) => {
        const v = f.oneOfNode(d, `${field}.days[${k}]`, WEEKDAYS, 'day');
        if (v === undefined) ok = false;
        else if (!days.includes(v)) days.push(v);
      });
      spec.days = days;
    }
    if (!ok || id === undefined || tz === undefined) continue;
    const problem = windowProblem(spec);
    if (problem !== null) {
      f.fail(n, field, problem);
      continue;
    }
    out.set(id, spec);
  }
  return out;
}

async function compileIssuers(f: SourceFile, top: Entries, dir: string, rootNode: Node): Promise<BundleIssuer[]> {
  const out: BundleIssuer[] = [];
  const pair = top.get('issuers');
  if (pair === undefined) {
    // No issuer means no token can ever verify: a bundle that denies everything is a mistake.
    f.fail(rootNode, 'issuers', 'is required (at least one trusted token issuer)');
    return out;
  }
  const items = f.seq(f.valueNode(pair), 'issuers', 'of { iss, jwks_file }');
  const seen = new Map<string, Node>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `issuers[${i}]`;
    const e = f.map(item, field, ISSUER_KEYS, 'with iss, jwks_file');
    if (e === undefined) continue;
    const iss = f.str(item!, e, 'iss', `${field}.iss`, true);
    const jwksFile = f.str(item!, e, 'jwks_file', `${field}.jwks_file`, true);
    if (iss !== undefined && seen.has(iss)) {
      f.fail(e.get('iss')!.value, `${field}.iss`, `duplicate issuer '${iss}' (first at ${f.where(seen.get(iss))})`);
    } else if (iss !== undefined) {
      seen.set(iss, e.get('iss')!.value!);
    }
    if (jwksFile === undefined) continue;
    const node = e.get('jwks_file')!.value!;
    const jwks = await readJwks(f, node, `${field}.jwks_file`, path.resolve(dir, jwksFile));
    if (iss !== undefined && jwks !== undefined) out.push({ iss, jwks });
  }
  return out;
}

async function readJwks(f: SourceFile, node: Node, field: string, abs: string): Promise<BundleIssuer['jwks'] | undefined> {
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return f.fail(node, field, `cannot read JWKS file '${displayPath(abs)}' (${code})`);
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch {
    return f.fail(node, field, `'${displayPath(abs)}' is not JSON`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    return f.fail(node, field, `'${displayPath(abs)}' is not a JWKS (expected { "keys": [ ... ] } with at least one key)`);
  }
  for (const k of keys) {
    if (typeof k !== 'object' || k === null || typeof (k as { kty?: unknown }).kty !== 'string') {
      return f.fail(node, field, `'${displayPath(abs)}' has a key without kty`);
    }
    // A private key in a signed, widely copied bundle would leak the issuer's signing power.
    if ('d' in k) return f.fail(node, field, `'${displayPath(abs)}' contains a private key; use the public JWKS`);
  }
  return { keys } as BundleIssuer['jwks'];
}

async function compileAssets(
  f: SourceFile,
  top: Entries,
  dir: string,
  rootNode: Node,
  errors: SourceError[],
): Promise<{ assets: BundleAsset[]; points: Map<string, string[]> }> {
  const assets: BundleAsset[] = [];
  const points = new Map<string, string[]>();
  const pair = top.get('assets');
  if (pair === undefined) {
    f.fail(rootNode, 'assets', 'is required');
    return { assets, points };
  }
  const items = f.seq(f.valueNode(pair), 'assets', 'of assets');
  const plants = new Map<string, Promise<Plant | SourceErrors>>();
  const ids = new Map<string, Node>();
  const units = new Map<number, string>();
  for (const [i, item] of (items ?? []).entries()) {
    const field = `assets[${i}]`;
    const e = f.map(item, field, ASSET_KEYS, 'with id, zone, criticality, protocol, unit_id (Modbus), points_from');
    if (e === undefined) continue;
    const node = item!;
    let id = f.str(node, e, 'id', `${field}.id`, true);
    if (id !== undefined && !ID_RE.test(id)) id = f.fail(e.get('id')!.value, `${field}.id`, `'${id}' must match ${ID_RE.source}`);
    if (id !== undefined) {
      const prev = ids.get(id);
      if (prev) id = f.fail(e.get('id')!.value, `${field}.id`, `duplicate asset id '${id}' (first at ${f.where(prev)})`);
      else ids.set(id, e.get('id')!.value!);
    }
    const zone = f.str(node, e, 'zone', `${field}.zone`, true);
    const criticality = f.oneOf(node, e, 'criticality', `${field}.criticality`, CRITICALITIES);
    const protocol = f.oneOf(node, e, 'protocol', `${field}.protocol`, ['modbus', 'opcua'] as const);
    // OPC UA assets have no unit id (0 in the bundle); one given is checked but means nothing.
    const unitId = protocol === 'opcua' && !e.has('unit_id') ? 0 : f.int(node, e, 'unit_id', `${field}.unit_id`, 0, 255);
    if (unitId !== undefined && protocol === 'modbus') {
      const other = units.get(unitId);
      if (other !== undefined) f.fail(e.get('unit_id')!.value, `${field}.unit_id`, `unit id ${unitId} is already used by asset '${other}'`);
      else if (id !== undefined) units.set(unitId, id);
    }
    // Which PLC of the plant file: `plc:`, default the asset id (an OPC UA asset of a PLC that also
    // has a Modbus asset needs its own id, so it names the PLC).
    const plcName = f.str(node, e, 'plc', `${field}.plc`, false);
    // An OPC UA server describes itself (the gateway browses it), and rules that name only address
    // ranges need no names: such an asset needs no point map.
    const from = f.str(node, e, 'points_from', `${field}.points_from`, false);
    let pointMap: Record<string, PointDef> | undefined = from === undefined && !e.has('points_from') ? {} : undefined;
    let readOnly: AddressRange[] | undefined;
    let face: ReturnType<typeof describeOpcua>[number] | undefined;
    if (from !== undefined && id !== undefined) {
      const fromNode = e.get('points_from')!.value!;
      const abs = path.resolve(dir, from);
      let pending = plants.get(abs);
      if (!pending) {
        pending = loadPlant(displayPath(abs)).catch((err: unknown) => {
          if (err instanceof SourceErrors) return err;
          return new SourceErrors([new SourceError(displayPath(abs), 1, 1, 'file', String(err))]);
        });
        plants.set(abs, pending);
      }
      const plant = await pending;
      const plcId = plcName ?? id;
      if (plant instanceof SourceErrors) {
        // Report the plant file's own problems once, and where it was referenced.
        if (!plant.errors.some((x) => errors.includes(x))) errors.push(...plant.errors);
        f.fail(fromNode, `${field}.points_from`, `plant file '${displayPath(abs)}' is invalid (see above)`);
      } else {
        const plc = plant.plcs.find((p) => p.id === plcId);
        if (!plc) {
          const where = plcName !== undefined ? e.get('plc')!.value : fromNode;
          f.fail(where, plcName !== undefined ? `${field}.plc` : `${field}.points_from`, `plant '${plant.name}' has no PLC with id '${plcId}' (has ${plant.plcs.map((p) => p.id).join(', ')})`);
        } else {
          pointMap = {};
          readOnly = plc.registers.filter((r) => r.readOnly).map((r) => ({ table: r.table, from: r.from, to: r.to }));
          for (const p of plc.points) {
            const def: PointDef = { table: p.table, address: p.address, type: p.type };
            if (p.length !== undefined) def.length = p.length;
            if (p.type !== 'string' && p.words === 2) def.word_order = p.wordOrder;
            if (p.scale !== 1) def.scale = p.scale;
            if (p.offset !== 0) def.offset = p.offset;
            if (p.unit !== undefined) def.unit = p.unit;
            pointMap[p.name] = def;
            if (p.readOnly === true) readOnly.push({ table: p.table, from: p.address, to: p.address + p.words - 1 });
          }
          if (unitId !== undefined && protocol === 'modbus' && plc.unitId !== unitId) {
            f.fail(e.get('unit_id')!.value, `${field}.unit_id`, `${unitId} differs from PLC '${plcId}' unit_id ${plc.unitId} in the plant file`);
          }
          if (protocol === 'opcua') face = describeOpcua({ ...plant, plcs: [plc] })[0];
        }
      }
    }
    // OPC UA: the server's namespace URI and a NodeId per point the agents may address. The plant
    // file's OPC UA face (the simulator's derivation) gives defaults; the asset may override them.
    for (const key of ['namespace', 'node_ids', 'object_node', 'methods']) {
      const kp = e.get(key);
      if (kp && protocol === 'modbus') f.fail(kp.key, `${field}.${key}`, `only OPC UA assets have ${key}`);
    }
    let namespace: string | undefined;
    let objectNode: string | undefined;
    let methods: Record<string, MethodDef> | undefined;
    let opcuaOk = true;
    if (protocol === 'opcua') {
      namespace = f.str(node, e, 'namespace', `${field}.namespace`, false) ?? face?.namespaceUri;
      if (namespace === undefined && !e.has('namespace')) f.fail(node, `${field}.namespace`, "is required (or points_from a plant file whose OPC UA face gives it)");
      if (namespace === undefined) opcuaOk = false;
      const ns = namespace ?? '';
      /** The canonical NodeId, or undefined after reporting why the text cannot be one. */
      const expand = (n: Node, nf: string, text: string | undefined): string | undefined => {
        if (text === undefined) return undefined;
        const problem = nodeIdProblem(ns, text);
        if (problem !== null) return f.fail(n, nf, problem);
        return text.startsWith('nsu=') ? text : `nsu=${ns};${text}`;
      };
      const seenNodes = new Map<string, string>();
      const claim = (n: Node, nf: string, nodeId: string, owner: string): boolean => {
        const prev = seenNodes.get(nodeId);
        if (prev !== undefined) {
          f.fail(n, nf, `NodeId '${nodeId}' is already mapped to '${prev}'`);
          return false;
        }
        seenNodes.set(nodeId, owner);
        return true;
      };
      const op = e.get('object_node');
      if (op) objectNode = expand(f.valueNode(op), `${field}.object_node`, f.strNode(f.valueNode(op), `${field}.object_node`));
      // A browsed server has no object of its own in the asset: rules' nodes: cover what it serves.
      else if (namespace !== undefined && from !== undefined) objectNode = `nsu=${ns};${face?.folderIdentifier ?? `s=${id ?? ''}`}`;
      if (objectNode !== undefined) claim(op ? f.valueNode(op) : node, `${field}.object_node`, objectNode, `the object of asset '${id ?? ''}'`);
      else if (namespace !== undefined && from !== undefined) opcuaOk = false;

      const nip = e.get('node_ids');
      if (nip && from === undefined) f.fail(nip.key, `${field}.node_ids`, 'node_ids name points of a plant file (points_from); a browsed server is covered by rules\' nodes:');
      else if (nip && pointMap && namespace !== undefined) {
        // Listed: exactly these points are exposed over OPC UA.
        const ne = f.freeMap(f.valueNode(nip), `${field}.node_ids`, 'point name -> NodeId');
        for (const [point, pair] of ne ?? []) {
          const nf = `${field}.node_ids.${point}`;
          const vn = f.valueNode(pair);
          const nodeId = expand(vn, nf, f.strNode(vn, nf));
          if (nodeId === undefined) continue;
          if (pointMap[point] === undefined) f.fail(pair.key, nf, `'${point}' is not a point of asset '${id}'`);
          else if (claim(vn, nf, nodeId, point)) pointMap[point] = { ...pointMap[point]!, node_id: nodeId };
        }
      } else if (pointMap && face && namespace !== undefined) {
        // Not listed: every point, under the NodeIds the plant's OPC UA face serves.
        for (const p of face.points) {
          const nodeId = `nsu=${ns};${p.identifier}`;
          if (pointMap[p.name] !== undefined && claim(node, `${field}.node_ids`, nodeId, p.name)) pointMap[p.name] = { ...pointMap[p.name]!, node_id: nodeId };
        }
      }

      const mp = e.get('methods');
      if (mp && namespace !== undefined) {
        methods = compileMethods(f, f.valueNode(mp), `${field}.methods`, (n, nf, text) => expand(n, nf, text), claim, pointMap);
        if (methods === undefined) opcuaOk = false;
      } else if (face && namespace !== undefined && face.methods.length > 0) {
        methods = {};
        for (const m of face.methods) {
          const nodeId = `nsu=${ns};${m.identifier}`;
          if (!claim(node, `${field}.methods`, nodeId, m.name)) continue;
          methods[m.name] = {
            node_id: nodeId,
            inputs: m.inputs.map((a) => ({ name: a.name, type: a.dataType })),
            outputs: m.outputs.map((a) => ({ name: a.name, type: a.dataType })),
          };
        }
      }
    }
    if (id && zone && criticality && protocol && unitId !== undefined && pointMap && opcuaOk) {
      const asset: BundleAsset = { id, zone, criticality, protocol, unit_id: unitId, points: pointMap };
      if (protocol === 'modbus' && readOnly !== undefined && readOnly.length > 0) asset.read_only = readOnly;
      if (protocol === 'opcua') {
        asset.namespace = namespace!;
        if (objectNode !== undefined) asset.object_node = objectNode;
        if (methods !== undefined && Object.keys(methods).length > 0) asset.methods = methods;
      }
      assets.push(asset);
      // Rules name methods like points (`points: [pump1.start]` with `operations: [call]`).
      points.set(id, [...Object.keys(pointMap), ...Object.keys(asset.methods ?? {})]);
    }
  }
  return { assets, points };
}

/**
 * `methods:` of an OPC UA asset: name -> { node_id, inputs: [{ name, type, min, max }], outputs }.
 * Input bounds are hard limits of the asset: a call outside them is denied VALUE_OUT_OF_BOUNDS.
 */
function compileMethods(
  f: SourceFile,
  node: Node,
  field: string,
  expand: (n: Node, nf: string, text: string | undefined) => string | undefined,
  claim: (n: Node, nf: string, nodeId: string, owner: string) => boolean,
  pointMap: Record<string, PointDef> | undefined,
): Record<string, MethodDef> | undefined {
  const me = f.freeMap(node, field, 'method name -> { node_id, inputs, outputs }');
  if (me === undefined) return undefined;
  const out: Record<string, MethodDef> = {};
  let ok = true;
  for (const [name, pair] of me) {
    const mf = `${field}.${name}`;
    const vn = f.valueNode(pair);
    const e = f.map(vn, mf, METHOD_KEYS, 'with node_id, inputs, outputs');
    if (e === undefined) {
      ok = false;
      continue;
    }
    if (pointMap?.[name] !== undefined) {
      f.fail(pair.key, mf, `'${name}' is already a point of the asset: rules could not tell them apart`);
      ok = false;
      continue;
    }
    const nodeId = expand(e.get('node_id')?.value ?? vn, `${mf}.node_id`, f.str(vn, e, 'node_id', `${mf}.node_id`, true));
    if (nodeId === undefined || !claim(e.get('node_id')!.value!, `${mf}.node_id`, nodeId, name)) {
      ok = false;
      continue;
    }
    const args = (key: 'inputs' | 'outputs'): MethodArgument[] | undefined => {
      const ap = e.get(key);
      if (ap === undefined) return [];
      const items = f.seq(f.valueNode(ap), `${mf}.${key}`, 'of { name, type, min, max }');
      if (items === undefined) return undefined;
      const list: MethodArgument[] = [];
      const names = new Set<string>();
      let good = true;
      items.forEach((item, i) => {
        const af = `${mf}.${key}[${i}]`;
        const ae = f.map(item, af, ARGUMENT_KEYS, `with name, type (${ARGUMENT_TYPES.join(', ')}), min, max`);
        if (ae === undefined) return (good = false);
        const argName = f.str(item!, ae, 'name', `${af}.name`, true);
        const type = f.oneOf(item!, ae, 'type', `${af}.type`, ARGUMENT_TYPES);
        const min = f.num(ae, 'min', `${af}.min`);
        const max = f.num(ae, 'max', `${af}.max`);
        if (argName === undefined || type === undefined || (ae.has('min') && min === undefined) || (ae.has('max') && max === undefined)) return (good = false);
        if (names.has(argName)) {
          f.fail(ae.get('name')!.value, `${af}.name`, `duplicate argument '${argName}'`);
          return (good = false);
        }
        names.add(argName);
        if (key === 'outputs' && (min !== undefined || max !== undefined)) {
          f.fail(item, af, 'bounds apply to inputs only');
          return (good = false);
        }
        if (min !== undefined && max !== undefined && min > max) {
          f.fail(ae.get('max')!.value, `${af}.max`, `${max} is below min (${min})`);
          return (good = false);
        }
        const arg: MethodArgument = { name: argName, type };
        if (min !== undefined) arg.min = min;
        if (max !== undefined) arg.max = max;
        list.push(arg);
        return true;
      });
      return good ? list : undefined;
    };
    const inputs = args('inputs');
    const outputs = args('outputs');
    if (inputs === undefined || outputs === undefined) {
      ok = false;
      continue;
    }
    out[name] = { node_id: nodeId, inputs, outputs };
  }
  return ok ? out : undefined;
}

/**
 * `nodes:` of a rule: OPC UA nodes by NodeId glob (`node`) and/or browse path glob (`path`), the
 * attributes covered (default Value), typed `bounds` on written values and `arguments` bounds of
 * called methods (docs/policy.md, "OPC UA nodes").
 */
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

function collectRules(f: SourceFile, node: Node | null, out: RuleDraft[]): void {
  const items = f.seq(node, 'rules', 'of rules');
  for (const [i, item] of (items ?? []).entries()) {
    const d = compileRule(f, item, `rules[${i}]`);
    if (d) out.push(d);
  }
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

  // subject:
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

  // asset | assets:
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

  // operations:
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

  // ranges:
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

  // function_codes:
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
  const selectors: Partial<Record<'sub_functions' | 'mei_types' | 'object_ids', { from: number; to: number }[]>> = {};
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

  const requireScope = f.str(n, e, 'require_scope', `${field}.require_scope`, false);
  if (e.has('require_scope') && requireScope === undefined) bad();

  // bounds:
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

  // max_step:
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

  // windows / freezes: references to the entry file's windows, checked once all are known.
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

  // rate_limit: the older { per_subject, per_asset } mapping, one { rate, per } or a list of them.
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
function checkRules(drafts: RuleDraft[], assetPoints: Map<string, string[]>, windows: Map<string, WindowSpec>, opcuaAssets: ReadonlySet<string>): void {
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
