// The rule compiler: YAML policy sources (an entry file plus its includes, the plant files they
// name, the issuers' JWKS files) into one BundlePayload. Owns the source format and every check
// a human's typo needs. Must never sign, never guess a default that widens access, and never stop
// at the first problem: a build run reports every problem it can find, each as file:line:col.
// Split by concern: reading a source file (sources/source-file.ts), assets (sources/assets.ts),
// rules (sources/rules.ts); this file reads the entry file and its includes and assembles the bundle.
import { readFile } from 'node:fs/promises';
import { compileInterlocks } from '../interlocks/compile.js';
import { parseDurationMs, POLL_DURATION } from '../core/duration.js';
import type { InterlockDef } from '../interlocks/payload.js';
import path from 'node:path';
import { isScalar, type Node } from 'yaml';
import { SourceError, SourceErrors } from '../core/errors.js';
import { WEEKDAYS, isValidTimeZone, parseHhmm, parseLocalDateTime, windowProblem, type Weekday, type WindowSpec } from './windows.js';
import { isSpiffeId } from '../identity/spiffe.js';
import { isHumanPrincipal, type BundleRevocation } from '../identity/revocation.js';
import { BUNDLE_FORMAT, MODES, RULE_OPERATIONS, type BundleFreeze, type BundleIssuer, type BundlePayload, type Mode, type RuleOperation } from './payload.js';
import { ID_RE, SourceFile, displayPath, parseFile, type Entries } from './sources/source-file.js';
import { compileAssets } from './sources/assets.js';
import { checkRules, collectRules, type RuleDraft } from './sources/rules.js';

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
const REVOCATION_KEYS = ['jti', 'sub', 'owner', 'reason', 'revoked_at'];
const INCLUDE_KEYS = ['rules', 'interlocks'];
const BUNDLE_KEYS = ['name', 'audience', 'valid_for', 'mode'];
const LIMIT_KEYS = ['max_token_ttl', 'step_base'];
const ISSUER_KEYS = ['iss', 'jwks_file'];
const WINDOW_KEYS = ['id', 'time_zone', 'days', 'from', 'to', 'start', 'end'];


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
