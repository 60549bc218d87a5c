// The decision engine: a verified bundle compiled into indexes, answering one Command at a time.
// Owns rule matching, address coverage, scope, zone, window, value-bound, step, rate-limit and
// approval checks, delegation and shadow mode, and the little state those need (last value per
// point, token buckets, all bounded). It must never do I/O, parse text or build RegExps per
// command, and it must never allow by default: every path that finds no covering rule ends in a
// deny carrying exactly one reason code.
//
// Precedence (docs/policy.md): rules are tried in bundle order among those indexed for the asset,
// operation and workload; the first rule that matches the subject, covers the command and passes
// its conditions allows. Otherwise the first covering rule's failed check is the deny reason, and
// with no covering rule the deny is NO_MATCHING_RULE with rule id ''.
import { LRUCache } from 'lru-cache';
import type { JSONWebKeySet } from 'jose';
import type { Command, Decision, ModbusTable, Operation, Subject } from '../core/command.js';
import { mustBeDurable } from '../core/command.js';
import type { Reason } from '../core/reasons.js';
import { BundleError } from './errors.js';
import { pointGlob, workloadMatcher, hasGlob } from './glob.js';
import {
  ASSURANCES,
  MODBUS_TABLES,
  payloadProblems,
  pointWidth,
  type BundleAsset,
  type BundlePayload,
  type BundleRule,
  type PointDef,
} from './payload.js';
import { TokenBucket, type RateSpec } from './rate.js';
import { decodePoint } from './values.js';
import { compileWindows, type CompiledWindow } from './windows.js';
import { checkArguments, checkValue, compileSelectors, numericOf, selectorFor, type CompiledSelector } from './opcua-nodes.js';

/** A deny that shadow mode (a `monitor` rule or bundle) reported instead of enforcing. */
export interface ShadowVerdict {
  reason: Reason;
  ruleId: string;
}

/**
 * What `decide` returns: a core Decision plus policy-local detail until core carries it.
 * `shadow` is set only on an allow that a monitor rule or bundle let through ("would deny");
 * `principal` is set on a deny decided by the rules of a delegating human (`user:alice`).
 */
export interface PolicyDecision extends Decision {
  shadow?: ShadowVerdict;
  principal?: string;
}

/** The token's zone claim, until core's Subject carries it (docs/policy.md, cross-zone). */

/** Bounds on per-engine state fed by the network (subjects are authenticated, but still bounded). */
const MAX_SUBJECT_BUCKETS_PER_RULE = 10_000;
const SCHEME = /^[a-z][a-z0-9+.-]*:/;

/** The principal a delegating `act.sub` is evaluated as: SPIFFE IDs stay, anything else is `user:<sub>`. */
export function principalFor(actSub: string): string {
  return SCHEME.test(actSub) ? actSub : `user:${actSub}`;
}

const ASSURANCE_LEVEL: Record<string, number> = Object.fromEntries(ASSURANCES.map((a, i) => [a, i]));

interface CompiledPoint {
  name: string;
  def: PointDef;
  index: number;
  width: 1 | 2;
}

interface CompiledRule {
  id: string;
  /** Position in the bundle: the evaluation order. */
  order: number;
  workload: string;
  matchWorkload: (workloadId: string) => boolean;
  owner: string | undefined;
  roles: readonly string[];
  scopesAll: readonly string[];
  act: RegExp | null;
  minAssurance: number;
  /** null = the command's operation name. */
  scope: string | null;
  functionCodes: ReadonlySet<number> | null;
  monitor: boolean;
  windows: readonly CompiledWindow[] | null;
  freezes: readonly CompiledWindow[] | null;
  crossAny: boolean;
  crossZones: ReadonlySet<string> | null;
  approval: boolean;
  perSubject: RateSpec | null;
  /**
   * Made when the rule first limits someone: lru-cache preallocates its index for `max` entries
   * (~217 kB at 10,000), so a bundle of 1,000 rate-limited rules would hold ~200 MB for rules
   * nobody has hit yet.
   */
  subjectBuckets: LRUCache<string, TokenBucket> | null;
}

/** A rule as it applies to one asset: its globs and ranges resolved to address intervals. */
interface RuleEntry {
  rule: CompiledRule;
  /** Per table: merged, sorted, inclusive intervals flattened as [from0, to0, from1, to1, ...]. */
  cover: Record<ModbusTable, Int32Array>;
  /** Per point index: 1 when one of the rule's point globs names it (OPC UA coverage). */
  pointCover: Uint8Array;
  /** OPC UA: the rule's node selectors for this asset (NodeId / browse path globs, typed bounds). */
  nodes: CompiledSelector[] | null;
  /**
   * Bounds and steps are sparse (point index, limit) lists: a rule names a few points, and dense
   * per-point arrays for 10,000 rules would cost tens of megabytes of cache misses.
   */
  bounded: Int32Array | null;
  min: Float64Array | null;
  max: Float64Array | null;
  stepped: Int32Array | null;
  maxStep: Float64Array | null;
  perAsset: RateSpec | null;
  assetBucket: TokenBucket | null;
}

interface CompiledMethod {
  name: string;
  /** Index in a rule entry's pointCover (after the points). */
  index: number;
  /** Input arguments with bounds (asset-level hard limits; every call must carry them in range). */
  boundedArgs: { name: string; min: number; max: number }[];
}

/** Entries of one asset and operation, indexed by exact workload; globs are kept in order. */
interface OpIndex {
  exact: Map<string, RuleEntry[]>;
  globs: RuleEntry[];
}

interface CompiledAsset {
  id: string;
  zone: string;
  unitId: number;
  protocol: BundleAsset['protocol'];
  points: CompiledPoint[];
  /** Address → point per table; a 32-bit point appears under both of its addresses. */
  byAddress: Record<ModbusTable, Map<number, CompiledPoint>>;
  byNodeId: Map<string, CompiledPoint>;
  byName: Map<string, CompiledPoint>;
  /** OPC UA: methods (rule coverage index = points.length + k) and the object node browse rules cover. */
  methods: CompiledMethod[];
  methodByNodeId: Map<string, CompiledMethod>;
  objectNode: string | null;
  /** OPC UA: the namespace bare identifiers in node selectors are read in. */
  namespace: string | undefined;
  /** OPC UA: last known value per canonical NodeId of nodes outside the point map (max_step). */
  nodeLast: LRUCache<string, number> | null;
  index: Map<Operation, OpIndex>;
  /** Last known engineering value per point index (NaN = unknown): the base of max_step. */
  last: Float64Array;
}

export interface PolicyEngineOptions {
  /** DESIGN §5: while the bundle is expired, reads still follow it (last-known-good). Default true. */
  readsWhenExpired?: boolean;
}

const EMPTY_INTERVALS = new Int32Array(0);
const NO_ENTRIES: RuleEntry[] = [];

export class PolicyEngine {
  readonly revision: number;
  readonly audience: string;
  readonly maxTokenTtlSec: number;
  readonly expiresAtMs: number;
  readonly notBeforeMs: number;
  readonly name: string;
  readonly readsWhenExpired: boolean;
  /** The whole bundle is in shadow mode: denies are reported, not enforced. */
  readonly monitor: boolean;
  private readonly payload: BundlePayload;
  private readonly assetsById: Map<string, CompiledAsset>;
  private readonly modbusAssetsByUnit: Map<number, CompiledAsset>;
  /** OPC UA NodeId → asset, for commands that arrive without an asset id. */
  private readonly opcuaAssetsByNode: Map<string, CompiledAsset>;

  // Scratch state of the decision in progress (single-threaded, so no allocation per command).
  private written = new Int32Array(128);
  /**
   * The decoded value written to each of those points (NaN: none, e.g. half a 32-bit point),
   * looked up in cmd.values once per decision: every command's values object has keys of its own,
   * and a keyed load per rule and bound in the rule loop was the slow part of denied writes.
   */
  private writtenValues = new Float64Array(128);
  private writtenN = 0;
  private evEntry: RuleEntry | null = null;
  private evReason: Reason = 'NO_MATCHING_RULE';
  private evRule = '';
  private evShadow: Reason | null = null;

  private constructor(payload: BundlePayload, options: PolicyEngineOptions) {
    this.payload = payload;
    this.name = payload.name;
    this.revision = payload.revision;
    this.audience = payload.audience;
    this.maxTokenTtlSec = payload.limits.max_token_ttl_sec;
    this.expiresAtMs = payload.expires_at * 1000;
    this.notBeforeMs = payload.not_before * 1000;
    this.readsWhenExpired = options.readsWhenExpired ?? true;
    this.monitor = payload.mode === 'monitor';
    this.assetsById = new Map();
    this.modbusAssetsByUnit = new Map();
    this.opcuaAssetsByNode = new Map();
    for (const a of payload.assets) {
      const asset = compileAsset(a);
      this.assetsById.set(a.id, asset);
      if (a.protocol === 'modbus') {
        // Two assets behind one unit id would make resolution ambiguous: refuse the bundle.
        if (this.modbusAssetsByUnit.has(a.unit_id)) {
          throw new BundleError('MALFORMED', `assets '${this.modbusAssetsByUnit.get(a.unit_id)!.id}' and '${a.id}' share unit id ${a.unit_id}`);
        }
        this.modbusAssetsByUnit.set(a.unit_id, asset);
      } else {
        const nodes = [...asset.byNodeId.keys(), ...asset.methodByNodeId.keys()];
        if (asset.objectNode !== null) nodes.push(asset.objectNode);
        for (const nodeId of nodes) {
          const other = this.opcuaAssetsByNode.get(nodeId);
          if (other) throw new BundleError('MALFORMED', `assets '${other.id}' and '${a.id}' both map node '${nodeId}'`);
          this.opcuaAssetsByNode.set(nodeId, asset);
        }
      }
    }
    let windows: Map<string, CompiledWindow>;
    try {
      windows = compileWindows(payload.windows ?? []);
    } catch (err) {
      throw new BundleError('MALFORMED', (err as Error).message, { cause: err });
    }
    payload.rules.forEach((r, order) => {
      const rule = compileRule(r, order, windows);
      for (const assetId of r.assets) {
        const asset = this.assetsById.get(assetId)!;
        const entry = compileEntry(rule, r, asset);
        for (const op of r.operations) {
          let idx = asset.index.get(op);
          if (!idx) asset.index.set(op, (idx = { exact: new Map(), globs: [] }));
          if (hasGlob(rule.workload)) {
            idx.globs.push(entry);
          } else {
            let list = idx.exact.get(rule.workload);
            if (!list) idx.exact.set(rule.workload, (list = []));
            list.push(entry);
          }
        }
      }
    });
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

  /**
   * OPC UA: fills cmd.assetId (kept when the adapter set it, else found from the first target's
   * NodeId) and cmd.points (names of the points whose `node_id` the targets name). A NodeId the
   * asset does not map names no point, and no rule covers it (default deny). Values are the
   * adapter's: cmd.values in engineering units per point name.
   */
  resolveOpcua(cmd: Command): void {
    let asset = cmd.assetId !== '' ? this.assetsById.get(cmd.assetId) : undefined;
    if (asset === undefined) {
      const first = cmd.targets[0]?.nodeId;
      asset = first === undefined ? undefined : this.opcuaAssetsByNode.get(first);
    }
    if (asset === undefined || asset.protocol !== 'opcua') {
      cmd.assetId = '';
      cmd.points = [];
      return;
    }
    cmd.assetId = asset.id;
    const names: string[] = [];
    for (const t of cmd.targets) {
      if (t.nodeId === undefined) continue;
      // A node outside the point map (a mirrored server's) is named by its browse path.
      const name = asset.byNodeId.get(t.nodeId)?.name ?? asset.methodByNodeId.get(t.nodeId)?.name ?? t.browsePath ?? t.nodeId;
      if (!names.includes(name)) names.push(name);
    }
    cmd.points = names;
  }

  /**
   * Records a point's current value (from the process image, a read-back, or a policy test's
   * given values): the base max_step measures from. Unknown asset or point: ignored.
   */
  observeValue(assetId: string, point: string, value: number): void {
    const asset = this.assetsById.get(assetId);
    const p = asset?.byName.get(point);
    if (asset && p && Number.isFinite(value)) asset.last[p.index] = value;
    // OPC UA nodes outside the point map are known by canonical NodeId.
    else if (asset && asset.protocol === 'opcua' && point.startsWith('nsu=') && Number.isFinite(value)) nodeLastOf(asset).set(point, value);
  }

  /** The last value the engine knows for a point, or undefined. */
  lastValue(assetId: string, point: string): number | undefined {
    const asset = this.assetsById.get(assetId);
    const p = asset?.byName.get(point);
    if (asset !== undefined && p === undefined) return asset.nodeLast?.get(point);
    if (!asset || !p) return undefined;
    const v = asset.last[p.index]!;
    return Number.isNaN(v) ? undefined : v;
  }

  decide(cmd: Command, subject: Subject, nowMs: number): PolicyDecision {
    const op = cmd.operation;
    if (nowMs > this.expiresAtMs && !(op === 'read' && this.readsWhenExpired)) {
      return this.deny('BUNDLE_UNAVAILABLE', '');
    }
    const asset = this.assetsById.get(cmd.assetId);
    if (asset === undefined) return this.denied(cmd, asset, 'NO_MATCHING_RULE', '', undefined);
    // Before any deny: a monitor-mode bundle records the written values of what it lets through.
    if (op === 'write') this.collectWritten(asset, cmd);
    else this.writtenN = 0;
    const idx = asset.index.get(op);
    if (idx === undefined) return this.denied(cmd, asset, 'NO_MATCHING_RULE', '', undefined);

    const zone = subject.zone;
    this.evaluate(asset, idx, cmd, subject, subject.workloadId, zone, nowMs);
    const agentEntry = this.evEntry;
    if (agentEntry === null) return this.denied(cmd, asset, this.evReason, this.evRule, undefined);
    let shadowReason = this.evShadow;
    let shadowRule = agentEntry.rule.id;

    // Delegation: every principal the agent acts for must be allowed by its own rules too, so the
    // agent never exceeds the human and never inherits the human's wider rights.
    const act = subject.actSub;
    let humans: RuleEntry[] | null = null;
    if (act !== undefined && act.length > 0) {
      humans = [];
      for (let i = 0; i < act.length; i++) {
        const principal = principalFor(act[i]!);
        const human: Subject = { ...subject, workloadId: principal, roles: [] };
        delete human.actSub;
        this.evaluate(asset, idx, cmd, human, principal, zone, nowMs);
        if (this.evEntry === null) return this.denied(cmd, asset, this.evReason, this.evRule, principal);
        humans.push(this.evEntry);
        if (shadowReason === null && this.evShadow !== null) {
          shadowReason = this.evShadow;
          shadowRule = this.evEntry.rule.id;
        }
      }
    }

    // Only a command that will be forwarded spends rate tokens and moves the last known values.
    takeToken(agentEntry, subject.workloadId);
    if (humans !== null) for (let i = 0; i < humans.length; i++) takeToken(humans[i]!, principalFor(act![i]!));
    this.recordWritten(asset, cmd);
    const d: PolicyDecision = { effect: 'allow', reason: 'ALLOWED', ruleId: agentEntry.rule.id, bundleRevision: this.revision, durable: mustBeDurable(op) };
    if (shadowReason !== null) d.shadow = { reason: shadowReason, ruleId: shadowRule };
    return d;
  }

  /**
   * Evaluates the rules for one principal. Leaves in the scratch fields either the allowing entry
   * (evEntry, with evShadow when a monitor rule waived a failed condition) or the deny.
   */
  private evaluate(asset: CompiledAsset, idx: OpIndex, cmd: Command, s: Subject, key: string, zone: string | undefined, nowMs: number): void {
    const exact = idx.exact.get(s.workloadId) ?? NO_ENTRIES;
    const globs = idx.globs;
    const op = cmd.operation;
    let denyReason: Reason | null = null;
    let denyRule = '';
    let waived: RuleEntry | null = null;
    let waivedReason: Reason = 'NO_MATCHING_RULE';
    let i = 0;
    let j = 0;
    while (i < exact.length || j < globs.length) {
      // Merge the two lists by bundle order, so indexing never changes which rule decides.
      let entry: RuleEntry;
      if (j >= globs.length || (i < exact.length && exact[i]!.rule.order < globs[j]!.rule.order)) entry = exact[i++]!;
      else entry = globs[j++]!;
      const rule = entry.rule;
      if (!subjectMatches(rule, s)) continue;
      if (rule.functionCodes !== null && !rule.functionCodes.has(cmd.functionCode)) continue;
      if (!covers(entry, asset, cmd)) continue;
      // From here the rule speaks about this command: its deny beats the default deny.
      let reason: Reason | null;
      if (!hasScope(s.scopes, rule.scope ?? op)) {
        // Identity is never waived, not even by a monitor rule.
        if (denyReason === null) {
          denyReason = 'SCOPE_MISSING';
          denyRule = rule.id;
        }
        continue;
      }
      reason = this.conditions(entry, asset, cmd, key, zone, nowMs);
      if (reason === null) {
        this.evEntry = entry;
        this.evShadow = null;
        return;
      }
      if (rule.monitor) {
        if (waived === null) {
          waived = entry;
          waivedReason = reason;
        }
        continue;
      }
      if (denyReason === null) {
        denyReason = reason;
        denyRule = rule.id;
      }
    }
    if (waived !== null) {
      this.evEntry = waived;
      this.evShadow = waivedReason;
      return;
    }
    this.evEntry = null;
    this.evShadow = null;
    this.evReason = denyReason ?? 'NO_MATCHING_RULE';
    this.evRule = denyReason === null ? '' : denyRule;
  }

  /** The first failed condition of a covering rule, or null when the rule allows. */
  private conditions(entry: RuleEntry, asset: CompiledAsset, cmd: Command, key: string, zone: string | undefined, nowMs: number): Reason | null {
    const rule = entry.rule;
    if (zone !== undefined && zone !== '' && zone !== asset.zone) {
      if (!rule.crossAny && (rule.crossZones === null || !rule.crossZones.has(zone))) return 'CROSS_ZONE';
    }
    const windows = rule.windows;
    if (windows !== null) {
      let open = false;
      for (let k = 0; k < windows.length && !open; k++) open = windows[k]!.contains(nowMs);
      if (!open) return 'OUTSIDE_WINDOW';
    }
    const freezes = rule.freezes;
    if (freezes !== null) {
      for (let k = 0; k < freezes.length; k++) if (freezes[k]!.contains(nowMs)) return 'OUTSIDE_WINDOW';
    }
    if (cmd.operation === 'write') {
      if (entry.bounded !== null && !this.withinBounds(entry)) return 'VALUE_OUT_OF_BOUNDS';
      if (entry.maxStep !== null && !this.withinStep(entry, asset)) return 'STEP_TOO_LARGE';
    } else if (cmd.operation === 'call' && asset.methods.length > 0 && !argumentsWithinBounds(asset, cmd)) {
      return 'VALUE_OUT_OF_BOUNDS';
    }
    if (entry.nodes !== null && (cmd.operation === 'write' || cmd.operation === 'call')) {
      const verdict = nodeBounds(entry.nodes, asset, cmd);
      if (verdict !== null) return verdict;
    }
    if (rule.perSubject !== null) {
      const buckets = (rule.subjectBuckets ??= new LRUCache<string, TokenBucket>({ max: MAX_SUBJECT_BUCKETS_PER_RULE }));
      let b = buckets.get(key);
      if (b === undefined) buckets.set(key, (b = new TokenBucket(rule.perSubject, nowMs)));
      if (!b.available(nowMs)) return 'RATE_LIMITED';
    }
    if (entry.perAsset !== null) {
      entry.assetBucket ??= new TokenBucket(entry.perAsset, nowMs);
      if (!entry.assetBucket.available(nowMs)) return 'RATE_LIMITED';
    }
    if (rule.approval) return 'APPROVAL_REQUIRED';
    return null;
  }

  /**
   * The point indices a write touches, once per decision: Modbus from the last target's addresses
   * (a point met only by its second register still counts, so a half write fails its checks),
   * OPC UA from the targets' NodeIds. -1 marks a target that names no point.
   */
  private collectWritten(asset: CompiledAsset, cmd: Command): void {
    let n = 0;
    const targets = cmd.targets;
    if (targets.length === 0) {
      this.writtenN = 0;
      return;
    }
    if (asset.protocol === 'opcua') {
      if (targets.length > this.written.length) this.written = new Int32Array(targets.length);
      for (let i = 0; i < targets.length; i++) {
        const id = targets[i]!.nodeId;
        const p = id === undefined ? undefined : asset.byNodeId.get(id);
        this.written[n++] = p === undefined ? -1 : p.index;
      }
      this.writtenN = n;
      this.collectValues(asset, cmd);
      return;
    }
    const t = targets[targets.length - 1]!;
    if (t.table === undefined || t.address === undefined) {
      this.writtenN = 0;
      return;
    }
    const map = asset.byAddress[t.table];
    const count = t.count ?? 1;
    if (count > this.written.length) this.written = new Int32Array(count);
    const end = t.address + count;
    for (let a = t.address; a < end; a++) {
      const p = map.get(a);
      if (p === undefined) continue;
      if (n > 0 && this.written[n - 1] === p.index) continue;
      this.written[n++] = p.index;
    }
    this.writtenN = n;
    this.collectValues(asset, cmd);
  }

  private collectValues(asset: CompiledAsset, cmd: Command): void {
    const n = this.writtenN;
    if (n > this.writtenValues.length) this.writtenValues = new Float64Array(this.written.length);
    const values = cmd.values;
    for (let k = 0; k < n; k++) {
      const idx = this.written[k]!;
      const v = idx < 0 || values === undefined ? undefined : values[asset.points[idx]!.name];
      this.writtenValues[k] = v === undefined ? NaN : v;
    }
  }

  /** Each bounded point the write touches must have a decoded value inside the rule's bounds. */
  private withinBounds(entry: RuleEntry): boolean {
    const bounded = entry.bounded!;
    for (let k = 0; k < this.writtenN; k++) {
      const idx = this.written[k]!;
      if (idx < 0) continue;
      for (let b = 0; b < bounded.length; b++) {
        if (bounded[b] !== idx) continue;
        // Undecodable (NaN: half a 32-bit point, no raw values) is out of bounds: fail closed.
        const v = this.writtenValues[k]!;
        if (!(v >= entry.min![b]! && v <= entry.max![b]!)) return false;
      }
    }
    return true;
  }

  /** Each stepped point must move at most max_step from its last known value; unknown = deny. */
  private withinStep(entry: RuleEntry, asset: CompiledAsset): boolean {
    const stepped = entry.stepped!;
    for (let k = 0; k < this.writtenN; k++) {
      const idx = this.written[k]!;
      if (idx < 0) continue;
      for (let b = 0; b < stepped.length; b++) {
        if (stepped[b] !== idx) continue;
        const v = this.writtenValues[k]!;
        const last = asset.last[idx]!;
        // NaN (undecodable value or no last value) fails the comparison: deny.
        if (!(Math.abs(v - last) <= entry.maxStep![b]!)) return false;
      }
    }
    return true;
  }

  private recordWritten(asset: CompiledAsset, cmd: Command): void {
    if (cmd.operation !== 'write') return;
    recordNodeValues(asset, cmd);
    for (let k = 0; k < this.writtenN; k++) {
      const idx = this.written[k]!;
      if (idx < 0) continue;
      const v = this.writtenValues[k]!;
      if (Number.isFinite(v)) asset.last[idx] = v;
    }
  }

  /** A policy deny; a bundle in monitor mode reports it and lets the command through. */
  private denied(cmd: Command, asset: CompiledAsset | undefined, reason: Reason, ruleId: string, principal: string | undefined): PolicyDecision {
    if (!this.monitor) {
      const d = this.deny(reason, ruleId);
      if (principal !== undefined) d.principal = principal;
      return d;
    }
    if (asset !== undefined) this.recordWritten(asset, cmd);
    return {
      effect: 'allow',
      reason: 'ALLOWED',
      ruleId,
      bundleRevision: this.revision,
      durable: mustBeDurable(cmd.operation),
      shadow: { reason, ruleId },
    };
  }

  private deny(reason: Reason, ruleId: string): PolicyDecision {
    return { effect: 'deny', reason, ruleId, bundleRevision: this.revision, durable: false };
  }
}

function takeToken(entry: RuleEntry, key: string): void {
  entry.rule.subjectBuckets?.get(key)?.take();
  entry.assetBucket?.take();
}

function subjectMatches(rule: CompiledRule, s: Subject): boolean {
  if (!rule.matchWorkload(s.workloadId)) return false;
  if (rule.owner !== undefined && rule.owner !== s.owner) return false;
  const roles = rule.roles;
  for (let i = 0; i < roles.length; i++) if (!s.roles.includes(roles[i]!)) return false;
  const scopes = rule.scopesAll;
  for (let i = 0; i < scopes.length; i++) if (!s.scopes.includes(scopes[i]!)) return false;
  if (rule.minAssurance > 0 && !((ASSURANCE_LEVEL[s.assurance] ?? -1) >= rule.minAssurance)) return false;
  if (rule.act !== null) {
    const act = s.actSub;
    if (act === undefined) return false;
    let any = false;
    for (let i = 0; i < act.length && !any; i++) any = rule.act.test(act[i]!);
    if (!any) return false;
  }
  return true;
}

/** Every target lies inside one merged interval of the rule's coverage for its table. */
function covers(entry: RuleEntry, asset: CompiledAsset, cmd: Command): boolean {
  const targets = cmd.targets;
  if (targets.length === 0) return false;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    if (t.nodeId !== undefined) {
      // A rule's node selectors cover any node they name, in or outside the point map.
      if (entry.nodes !== null && selectorFor(entry.nodes, t, cmd.operation) !== undefined) continue;
      const p = asset.byNodeId.get(t.nodeId);
      if (p !== undefined) {
        if (entry.pointCover[p.index] === 0) return false;
        continue;
      }
      const m = asset.methodByNodeId.get(t.nodeId);
      if (m !== undefined) {
        if (entry.pointCover[m.index] === 0) return false;
        continue;
      }
      // The asset's object holds no process data: any browse rule of the asset covers it (its
      // children are gated one by one).
      if (cmd.operation === 'browse' && t.nodeId === asset.objectNode) continue;
      return false;
    }
    if (t.table === undefined || t.address === undefined) return false;
    const count = t.count ?? 1;
    if (!(count >= 1)) return false;
    const iv = entry.cover[t.table];
    if (iv === undefined || !inIntervals(iv, t.address, t.address + count - 1)) return false;
  }
  return true;
}

/** Every bounded input of every called method is present and inside its bounds (missing = deny). */
function argumentsWithinBounds(asset: CompiledAsset, cmd: Command): boolean {
  const targets = cmd.targets;
  for (let i = 0; i < targets.length; i++) {
    const id = targets[i]!.nodeId;
    const m = id === undefined ? undefined : asset.methodByNodeId.get(id);
    if (m === undefined) continue;
    const args = m.boundedArgs;
    for (let k = 0; k < args.length; k++) {
      const v = cmd.values?.[args[k]!.name];
      if (v === undefined || !(v >= args[k]!.min && v <= args[k]!.max)) return false;
    }
  }
  return true;
}

/** Per asset: last known values of nodes outside the point map, made when first needed. */
const MAX_NODE_VALUES_PER_ASSET = 10_000;
function nodeLastOf(asset: CompiledAsset): LRUCache<string, number> {
  return (asset.nodeLast ??= new LRUCache<string, number>({ max: MAX_NODE_VALUES_PER_ASSET }));
}

/** The name a target's value is carried under in cmd.values / cmd.typedValues (see resolveOpcua). */
function valueName(asset: CompiledAsset, t: { nodeId?: string; browsePath?: string }): string {
  return (t.nodeId !== undefined ? asset.byNodeId.get(t.nodeId)?.name : undefined) ?? t.browsePath ?? t.nodeId ?? '';
}

/** Typed bounds of the selectors naming each target (written values, call arguments). */
function nodeBounds(selectors: readonly CompiledSelector[], asset: CompiledAsset, cmd: Command): Reason | null {
  const targets = cmd.targets;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    const s = selectorFor(selectors, t, cmd.operation);
    if (s === undefined) continue;
    if (cmd.operation === 'call') {
      if (checkArguments(s, cmd.typedValues, cmd.values) !== null) return 'VALUE_OUT_OF_BOUNDS';
      continue;
    }
    if (s.bounds === null) continue;
    const name = valueName(asset, t);
    const last = t.nodeId === undefined ? undefined : asset.nodeLast?.get(t.nodeId);
    const verdict = checkValue(s.bounds, cmd.typedValues?.[name] ?? cmd.values?.[name], last);
    if (verdict !== null) return verdict;
  }
  return null;
}

/** An allowed write moves the last known value of the nodes outside the point map it wrote. */
function recordNodeValues(asset: CompiledAsset, cmd: Command): void {
  if (asset.protocol !== 'opcua') return;
  for (const t of cmd.targets) {
    if (t.nodeId === undefined || asset.byNodeId.has(t.nodeId) || (t.attribute !== undefined && t.attribute !== 'Value')) continue;
    const name = valueName(asset, t);
    const n = numericOf(cmd.typedValues?.[name] ?? cmd.values?.[name]);
    if (n !== undefined) nodeLastOf(asset).set(t.nodeId, n);
  }
}

function compileAsset(a: BundleAsset): CompiledAsset {
  const byAddress = {} as Record<ModbusTable, Map<number, CompiledPoint>>;
  for (const t of MODBUS_TABLES) byAddress[t] = new Map();
  const points: CompiledPoint[] = [];
  const byNodeId = new Map<string, CompiledPoint>();
  const byName = new Map<string, CompiledPoint>();
  for (const [name, def] of Object.entries(a.points)) {
    const p: CompiledPoint = { name, def, index: points.length, width: pointWidth(def.type) };
    points.push(p);
    byName.set(name, p);
    for (let k = 0; k < p.width; k++) {
      const other = byAddress[def.table].get(def.address + k);
      if (other) {
        throw new BundleError('MALFORMED', `asset '${a.id}': points '${other.name}' and '${name}' overlap at ${def.table} ${def.address + k}`);
      }
      byAddress[def.table].set(def.address + k, p);
    }
    if (def.node_id !== undefined) {
      const other = byNodeId.get(def.node_id);
      if (other) throw new BundleError('MALFORMED', `asset '${a.id}': points '${other.name}' and '${name}' share node '${def.node_id}'`);
      byNodeId.set(def.node_id, p);
    }
  }
  const methods: CompiledMethod[] = [];
  const methodByNodeId = new Map<string, CompiledMethod>();
  for (const [name, def] of Object.entries(a.methods ?? {})) {
    if (byName.has(name)) throw new BundleError('MALFORMED', `asset '${a.id}': method '${name}' has the name of a point`);
    if (byNodeId.has(def.node_id) || methodByNodeId.has(def.node_id)) throw new BundleError('MALFORMED', `asset '${a.id}': method '${name}' reuses node '${def.node_id}'`);
    const boundedArgs = def.inputs
      .filter((x) => x.min !== undefined || x.max !== undefined)
      .map((x) => ({ name: x.name, min: x.min ?? -Infinity, max: x.max ?? Infinity }));
    const m: CompiledMethod = { name, index: points.length + methods.length, boundedArgs };
    methods.push(m);
    methodByNodeId.set(def.node_id, m);
  }
  return {
    id: a.id,
    zone: a.zone,
    unitId: a.unit_id,
    protocol: a.protocol,
    points,
    byAddress,
    byNodeId,
    byName,
    methods,
    methodByNodeId,
    objectNode: a.object_node ?? null,
    namespace: a.namespace,
    nodeLast: null,
    index: new Map(),
    last: new Float64Array(points.length).fill(Number.NaN),
  };
}

function compileRule(r: BundleRule, order: number, windows: Map<string, CompiledWindow>): CompiledRule {
  const pick = (ids: string[] | undefined): CompiledWindow[] | null =>
    ids === undefined || ids.length === 0 ? null : ids.map((id) => windows.get(id)!);
  const cross = r.cross_zone ?? [];
  const perSubject = r.rate_limit?.per_subject ?? null;
  return {
    id: r.id,
    order,
    workload: r.subject.workload,
    matchWorkload: workloadMatcher(r.subject.workload),
    owner: r.subject.owner,
    roles: r.subject.roles,
    scopesAll: r.subject.scopes ?? [],
    act: r.subject.act === undefined ? null : pointGlob(r.subject.act),
    minAssurance: r.subject.assurance === undefined ? 0 : ASSURANCE_LEVEL[r.subject.assurance]!,
    scope: r.require_scope ?? null,
    functionCodes: r.function_codes ? new Set(r.function_codes) : null,
    monitor: r.mode === 'monitor',
    windows: pick(r.windows),
    freezes: pick(r.freezes),
    crossAny: cross.includes('*'),
    crossZones: cross.length > 0 ? new Set(cross) : null,
    approval: r.approval === 'required',
    perSubject,
    subjectBuckets: null,
  };
}

function compileEntry(rule: CompiledRule, r: BundleRule, asset: CompiledAsset): RuleEntry {
  const globs = r.points.map(pointGlob);
  const spans: Record<ModbusTable, [number, number][]> = { coil: [], discrete: [], holding: [], input: [] };
  const n = asset.points.length;
  const pointCover = new Uint8Array(n + asset.methods.length);
  for (const p of asset.points) {
    if (globs.some((g) => g.test(p.name))) {
      pointCover[p.index] = 1;
      spans[p.def.table].push([p.def.address, p.def.address + p.width - 1]);
    }
  }
  for (const m of asset.methods) if (globs.some((g) => g.test(m.name))) pointCover[m.index] = 1;
  const nodes = r.nodes !== undefined && r.nodes.length > 0 && asset.protocol === 'opcua' ? compileSelectors(r.nodes, asset.namespace) : null;
  for (const range of r.ranges) spans[range.table].push([range.from, range.to]);
  const cover = {} as Record<ModbusTable, Int32Array>;
  for (const t of MODBUS_TABLES) cover[t] = mergeIntervals(spans[t]);

  const bIdx: number[] = [];
  const bMin: number[] = [];
  const bMax: number[] = [];
  for (const [name, b] of Object.entries(r.bounds)) {
    const p = asset.byName.get(name);
    if (!p) continue; // bounds for a point of another asset this rule also names
    bIdx.push(p.index);
    bMin.push(b.min ?? -Infinity);
    bMax.push(b.max ?? Infinity);
  }
  const sIdx: number[] = [];
  const sVal: number[] = [];
  for (const [name, step] of Object.entries(r.max_step ?? {})) {
    const p = asset.byName.get(name);
    if (!p) continue;
    sIdx.push(p.index);
    sVal.push(step);
  }
  const bounded = bIdx.length > 0 ? Int32Array.from(bIdx) : null;
  const min = bIdx.length > 0 ? Float64Array.from(bMin) : null;
  const max = bIdx.length > 0 ? Float64Array.from(bMax) : null;
  const stepped = sIdx.length > 0 ? Int32Array.from(sIdx) : null;
  const maxStep = sIdx.length > 0 ? Float64Array.from(sVal) : null;
  const perAsset = r.rate_limit?.per_asset ?? null;
  return { rule, cover, pointCover, nodes, bounded, min, max, stepped, maxStep, perAsset, assetBucket: null };
}

function hasScope(scopes: readonly string[], required: string): boolean {
  for (let i = 0; i < scopes.length; i++) {
    const s = scopes[i];
    if (s === required || s === '*') return true;
  }
  return false;
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
