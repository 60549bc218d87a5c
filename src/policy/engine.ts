// The decision engine: a verified bundle compiled into indexes, answering one Command at a time.
// Owns rule matching, address coverage, scope and value-bound checks. It must never do I/O, parse
// text or build RegExps per command, and it must never allow by default: every path that finds
// no covering rule ends in a deny carrying exactly one reason code.
import type { Command, Decision, ModbusTable, Operation, Subject } from '../core/command.js';
import { mustBeDurable } from '../core/command.js';
import type { Reason } from '../core/reasons.js';
import type { JSONWebKeySet } from 'jose';
import { BundleError } from './errors.js';
import { workloadMatcher, pointGlob } from './glob.js';
import {
  MODBUS_TABLES,
  payloadProblems,
  pointWidth,
  type BundleAsset,
  type BundlePayload,
  type BundleRule,
  type PointDef,
} from './payload.js';
import { decodePoint } from './values.js';

interface CompiledPoint {
  name: string;
  def: PointDef;
  index: number;
  width: 1 | 2;
}

interface CompiledRule {
  id: string;
  matchWorkload: (workloadId: string) => boolean;
  owner: string | undefined;
  roles: readonly string[];
  /** null = the command's operation name. */
  scope: string | null;
  functionCodes: ReadonlySet<number> | null;
}

/** A rule as it applies to one asset: its globs and ranges resolved to address intervals. */
interface RuleEntry {
  rule: CompiledRule;
  /** Per table: merged, sorted, inclusive intervals flattened as [from0, to0, from1, to1, ...]. */
  cover: Record<ModbusTable, Int32Array>;
  /** Per point index: 1 when the rule bounds that point. */
  bounded: Uint8Array | null;
  min: Float64Array;
  max: Float64Array;
}

interface CompiledAsset {
  id: string;
  unitId: number;
  protocol: BundleAsset['protocol'];
  points: CompiledPoint[];
  /** Address → point per table; a 32-bit point appears under both of its addresses. */
  byAddress: Record<ModbusTable, Map<number, CompiledPoint>>;
  rulesByOperation: Map<Operation, RuleEntry[]>;
}

export interface PolicyEngineOptions {
  /** DESIGN §5: while the bundle is expired, reads still follow it (last-known-good). Default true. */
  readsWhenExpired?: boolean;
}

const EMPTY_INTERVALS = new Int32Array(0);

export class PolicyEngine {
  readonly revision: number;
  readonly audience: string;
  readonly maxTokenTtlSec: number;
  readonly expiresAtMs: number;
  readonly notBeforeMs: number;
  readonly name: string;
  readonly readsWhenExpired: boolean;
  private readonly payload: BundlePayload;
  private readonly assetsById: Map<string, CompiledAsset>;
  private readonly modbusAssetsByUnit: Map<number, CompiledAsset>;

  private constructor(payload: BundlePayload, options: PolicyEngineOptions) {
    this.payload = payload;
    this.name = payload.name;
    this.revision = payload.revision;
    this.audience = payload.audience;
    this.maxTokenTtlSec = payload.limits.max_token_ttl_sec;
    this.expiresAtMs = payload.expires_at * 1000;
    this.notBeforeMs = payload.not_before * 1000;
    this.readsWhenExpired = options.readsWhenExpired ?? true;
    this.assetsById = new Map();
    this.modbusAssetsByUnit = new Map();
    for (const a of payload.assets) {
      const asset = compileAsset(a);
      this.assetsById.set(a.id, asset);
      if (a.protocol === 'modbus') {
        // Two assets behind one unit id would make resolution ambiguous: refuse the bundle.
        if (this.modbusAssetsByUnit.has(a.unit_id)) {
          throw new BundleError('MALFORMED', `assets '${this.modbusAssetsByUnit.get(a.unit_id)!.id}' and '${a.id}' share unit id ${a.unit_id}`);
        }
        this.modbusAssetsByUnit.set(a.unit_id, asset);
      }
    }
    for (const r of payload.rules) {
      const rule = compileRule(r);
      for (const assetId of r.assets) {
        const asset = this.assetsById.get(assetId)!;
        const entry = compileEntry(rule, r, asset);
        for (const op of r.operations) {
          let list = asset.rulesByOperation.get(op);
          if (!list) asset.rulesByOperation.set(op, (list = []));
          list.push(entry);
        }
      }
    }
  }

  /** Compiles a verified payload once. Throws BundleError('MALFORMED') when it is inconsistent. */
  static fromPayload(payload: BundlePayload, options: PolicyEngineOptions = {}): PolicyEngine {
    const problem = payloadProblems(payload);
    if (problem) throw new BundleError('MALFORMED', problem);
    return new PolicyEngine(payload, options);
  }

  issuers(): { iss: string; jwks: JSONWebKeySet }[] {
    return this.payload.issuers.map((i) => ({ iss: i.iss, jwks: i.jwks }));
  }

  /** The asset definition by id (zone, criticality, point map), for callers that label or poll. */
  asset(id: string): BundleAsset | undefined {
    return this.payload.assets.find((a) => a.id === id);
  }

  /** The Modbus asset behind a unit id, or undefined. */
  assetIdForUnit(unitId: number): string | undefined {
    return this.modbusAssetsByUnit.get(unitId)?.id;
  }

  /**
   * Fills cmd.assetId (by unit id), cmd.points (names of the points the targets touch) and, for
   * writes, cmd.values (engineering units per written point). Written raw values belong to the
   * last target (FC 23 carries the read range first, the write range second). A point only
   * partly written (one half of a 32-bit value) gets no value.
   */
  resolveModbus(cmd: Command, unitId: number): void {
    const asset = this.modbusAssetsByUnit.get(unitId);
    if (!asset) {
      cmd.assetId = '';
      cmd.points = [];
      return;
    }
    cmd.assetId = asset.id;
    const names: string[] = [];
    for (const t of cmd.targets) {
      if (t.table === undefined || t.address === undefined) continue;
      const map = asset.byAddress[t.table];
      if (map.size === 0) continue;
      const end = t.address + (t.count ?? 1);
      for (let a = t.address; a < end; a++) {
        const p = map.get(a);
        // A 32-bit point is met at two addresses; consecutive addresses make a repeat adjacent.
        if (p !== undefined && names[names.length - 1] !== p.name && !names.includes(p.name)) names.push(p.name);
      }
    }
    cmd.points = names;

    const raw = cmd.rawValues;
    if (cmd.operation !== 'write' || !raw || cmd.targets.length === 0) return;
    const t = cmd.targets[cmd.targets.length - 1]!;
    if (t.table === undefined || t.address === undefined) return;
    const map = asset.byAddress[t.table];
    const count = Math.min(t.count ?? 1, raw.length);
    let values: Record<string, number> | undefined;
    for (let i = 0; i < count; i++) {
      const p = map.get(t.address + i);
      if (p === undefined || p.def.address !== t.address + i) continue;
      const second = p.width === 2 ? (i + 1 < count ? raw[i + 1]! : NaN) : 0;
      const v = decodePoint(p.def, raw[i]!, second);
      if (Number.isNaN(v)) continue;
      (values ??= {})[p.name] = v;
    }
    if (values) cmd.values = values;
  }

  decide(cmd: Command, subject: Subject, nowMs: number): Decision {
    const op = cmd.operation;
    if (nowMs > this.expiresAtMs && !(op === 'read' && this.readsWhenExpired)) {
      return this.deny('BUNDLE_UNAVAILABLE', '');
    }
    const asset = this.assetsById.get(cmd.assetId);
    if (asset === undefined) return this.deny('NO_MATCHING_RULE', '');
    const entries = asset.rulesByOperation.get(op);
    if (entries === undefined) return this.deny('NO_MATCHING_RULE', '');

    let denyReason: Reason | null = null;
    let denyRule = '';
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const rule = entry.rule;
      if (!subjectMatches(rule, subject)) continue;
      if (rule.functionCodes !== null && !rule.functionCodes.has(cmd.functionCode)) continue;
      if (!covers(entry, cmd)) continue;
      // From here the rule speaks about this command: its deny beats the default deny.
      if (!hasScope(subject.scopes, rule.scope ?? op)) {
        if (denyReason === null) {
          denyReason = 'SCOPE_MISSING';
          denyRule = rule.id;
        }
        continue;
      }
      if (entry.bounded !== null && op === 'write' && !withinBounds(entry, asset, cmd)) {
        if (denyReason === null) {
          denyReason = 'VALUE_OUT_OF_BOUNDS';
          denyRule = rule.id;
        }
        continue;
      }
      return {
        effect: 'allow',
        reason: 'ALLOWED',
        ruleId: rule.id,
        bundleRevision: this.revision,
        durable: mustBeDurable(op),
      };
    }
    return denyReason === null ? this.deny('NO_MATCHING_RULE', '') : this.deny(denyReason, denyRule);
  }

  private deny(reason: Reason, ruleId: string): Decision {
    return { effect: 'deny', reason, ruleId, bundleRevision: this.revision, durable: false };
  }
}

function subjectMatches(rule: CompiledRule, s: Subject): boolean {
  if (!rule.matchWorkload(s.workloadId)) return false;
  if (rule.owner !== undefined && rule.owner !== s.owner) return false;
  const roles = rule.roles;
  for (let i = 0; i < roles.length; i++) if (!s.roles.includes(roles[i]!)) return false;
  return true;
}

function hasScope(scopes: readonly string[], required: string): boolean {
  for (let i = 0; i < scopes.length; i++) {
    const s = scopes[i];
    if (s === required || s === '*') return true;
  }
  return false;
}

/** Every target lies inside one merged interval of the rule's coverage for its table. */
function covers(entry: RuleEntry, cmd: Command): boolean {
  const targets = cmd.targets;
  if (targets.length === 0) return false;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    if (t.table === undefined || t.address === undefined) return false;
    const count = t.count ?? 1;
    if (!(count >= 1)) return false;
    const iv = entry.cover[t.table];
    if (iv === undefined || !inIntervals(iv, t.address, t.address + count - 1)) return false;
  }
  return true;
}

function inIntervals(iv: Int32Array, from: number, to: number): boolean {
  // Binary search for the last interval starting at or before `from`.
  let lo = 0;
  let hi = (iv.length >> 1) - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (iv[mid * 2]! <= from) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found >= 0 && iv[found * 2 + 1]! >= to;
}

/** Each bounded point the write touches must have a decoded value inside the rule's bounds. */
function withinBounds(entry: RuleEntry, asset: CompiledAsset, cmd: Command): boolean {
  const t = cmd.targets[cmd.targets.length - 1]!;
  const map = asset.byAddress[t.table!];
  const end = t.address! + (t.count ?? 1);
  const bounded = entry.bounded!;
  const values = cmd.values;
  for (let a = t.address!; a < end; a++) {
    const p = map.get(a);
    if (p === undefined || bounded[p.index] === 0) continue;
    const v = values?.[p.name];
    // Undecodable (half a 32-bit point, no raw values) is treated as out of bounds: fail closed.
    if (v === undefined || !(v >= entry.min[p.index]! && v <= entry.max[p.index]!)) return false;
  }
  return true;
}

function compileAsset(a: BundleAsset): CompiledAsset {
  const byAddress = {} as Record<ModbusTable, Map<number, CompiledPoint>>;
  for (const t of MODBUS_TABLES) byAddress[t] = new Map();
  const points: CompiledPoint[] = [];
  for (const [name, def] of Object.entries(a.points)) {
    const p: CompiledPoint = { name, def, index: points.length, width: pointWidth(def.type) };
    points.push(p);
    for (let k = 0; k < p.width; k++) {
      const other = byAddress[def.table].get(def.address + k);
      if (other) {
        throw new BundleError('MALFORMED', `asset '${a.id}': points '${other.name}' and '${name}' overlap at ${def.table} ${def.address + k}`);
      }
      byAddress[def.table].set(def.address + k, p);
    }
  }
  return { id: a.id, unitId: a.unit_id, protocol: a.protocol, points, byAddress, rulesByOperation: new Map() };
}

function compileRule(r: BundleRule): CompiledRule {
  return {
    id: r.id,
    matchWorkload: workloadMatcher(r.subject.workload),
    owner: r.subject.owner,
    roles: r.subject.roles,
    scope: r.require_scope ?? null,
    functionCodes: r.function_codes ? new Set(r.function_codes) : null,
  };
}

function compileEntry(rule: CompiledRule, r: BundleRule, asset: CompiledAsset): RuleEntry {
  const globs = r.points.map(pointGlob);
  const spans: Record<ModbusTable, [number, number][]> = { coil: [], discrete: [], holding: [], input: [] };
  for (const p of asset.points) {
    if (globs.some((g) => g.test(p.name))) spans[p.def.table].push([p.def.address, p.def.address + p.width - 1]);
  }
  for (const range of r.ranges) spans[range.table].push([range.from, range.to]);
  const cover = {} as Record<ModbusTable, Int32Array>;
  for (const t of MODBUS_TABLES) cover[t] = mergeIntervals(spans[t]);

  const n = asset.points.length;
  const min = new Float64Array(n).fill(-Infinity);
  const max = new Float64Array(n).fill(Infinity);
  let bounded: Uint8Array | null = null;
  for (const [name, b] of Object.entries(r.bounds)) {
    const p = asset.points.find((x) => x.name === name);
    if (!p) continue; // bounds for a point of another asset this rule also names
    bounded ??= new Uint8Array(n);
    bounded[p.index] = 1;
    if (b.min !== undefined) min[p.index] = b.min;
    if (b.max !== undefined) max[p.index] = b.max;
  }
  return { rule, cover, bounded, min, max };
}

function mergeIntervals(spans: [number, number][]): Int32Array {
  if (spans.length === 0) return EMPTY_INTERVALS;
  spans.sort((x, y) => x[0] - y[0]);
  const out: number[] = [];
  let [from, to] = spans[0]!;
  for (let i = 1; i < spans.length; i++) {
    const [f, t] = spans[i]!;
    if (f <= to + 1) {
      if (t > to) to = t;
    } else {
      out.push(from, to);
      from = f;
      to = t;
    }
  }
  out.push(from, to);
  return Int32Array.from(out);
}
