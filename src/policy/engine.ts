// The decision engine: a verified bundle compiled into indexes, answering one Command at a time.
// Owns rule matching, address coverage, scope, zone, window, freeze, value-bound, step, rate-limit
// and approval checks, delegation and shadow mode. It must never do I/O, parse text or build
// RegExps per command, and it must never allow by default: every path that finds no covering rule
// ends in a deny carrying exactly one reason code.
//
// Decide, then commit (docs/policy.md): `decide(cmd, subject, nowMs, memory)` is a pure function
// of the bundle, the subject, the command and a PolicyMemory it only reads (rate-limit budgets,
// the PLC values max_step measures from). What forwarding the command would change comes back on
// the decision as `forward` (a Forwarding); the caller applies it to the memory only when the
// command really goes to the PLC, after every later gate (interlocks, approvals, audit):
//
//   const d = engine.decide(cmd, subject, now, memory);      // nothing changes
//   ...interlocks, approvals, durable audit...
//   if (forwarding) memory.forwarded(d.forward, now);          // tokens spent, writes in flight
//   else            (nothing: a refused command spends and moves nothing)
//   ...PLC answers...  memory.settled(d.forward, 'acknowledged' | 'refused' | 'unknown', now)
//
// A replay (what would this bundle have decided?) calls decide with its own memory and commits
// what the recorded outcome says, so it sees the same budgets and bases the gateway saw.
//
// Precedence (docs/policy.md): the effect is decided by the enforcing rules alone. They are tried
// in bundle order among those indexed for the asset, operation and workload; the first that
// matches the subject, covers the command and passes its conditions allows. Otherwise the first
// covering enforcing rule's failed check is the deny reason, and with no covering rule the deny is
// NO_MATCHING_RULE with rule id ''. Monitor rules never change the effect: each covering monitor
// rule adds a shadow finding per failing check (or ALLOWED when it would allow what is denied).
import type { JSONWebKeySet } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Command, Decision, ModbusTable, Operation, ShadowFinding, Subject, Target } from '../core/command.js';
import { mustBeDurable } from '../core/command.js';
import { canonicalPrincipal } from '../core/principal.js';
import type { Reason } from '../core/reasons.js';
import { BundleError } from './errors.js';
import { pointGlob, workloadMatcher, hasGlob } from '../core/glob.js';
import { Forwarding, NO_MEMORY, type PolicyMemory } from './memory.js';
import {
  APPROVAL_EXCLUSIONS,
  ASSURANCES,
  DEFAULT_STEP_BASE_MAX_AGE_MS,
  MODBUS_TABLES,
  payloadProblems,
  pointWidth,
  type ApprovalRule,
  type BundleAsset,
  type BundlePayload,
  type BundleRule,
  type PointDef,
} from './payload.js';
import type { KeyedRate } from './rate.js';
import type { RateSpec } from '../core/rate.js';
import { decodePoint } from '../assets/values.js';
import { compileWindows, type CompiledWindow } from './windows.js';
import { checkArguments, checkValue, compileSelectors, numericOf, selectorFor, type CompiledSelector } from './opcua-nodes.js';

/** A shadow finding (core's ShadowFinding): what a monitor rule or bundle would have answered. */
export type ShadowVerdict = ShadowFinding;

/** The approval a command needs: the strictest of the rules that require one (docs/safety.md). */
export type ApprovalSpec = ApprovalRule;

/**
 * What `decide` returns: a core Decision plus policy-local detail.
 * - `shadow`: the first would-deny finding; `shadows`: every finding (monitor rules, monitor bundle).
 * - `principal`: set on a deny decided by the rules of a delegating human (`user:alice`).
 * - `forward`: what forwarding the command changes in the PolicyMemory (allow and APPROVAL_REQUIRED).
 * - `approval`: with APPROVAL_REQUIRED, how many must approve, who may not, and the deadlines.
 */
export interface PolicyDecision extends Decision {
  shadow?: { reason: Reason; ruleId: string };
  shadows?: ShadowVerdict[];
  principal?: string;
  forward?: Forwarding;
  approval?: ApprovalSpec;
}

const SCHEME = /^[a-z][a-z0-9+.-]*:/;

/**
 * Canonical names of token claims (owner, act entries; src/core/principal.ts), so that rules match a
 * person under every spelling of their name, as approvals, revocations and freezes do. Cached and
 * bounded: the hot path folds each spelling once.
 */
const canonicalNames = new LRUCache<string, string>({ max: 4096 });
function canonicalName(raw: string): string {
  let c = canonicalNames.get(raw);
  if (c === undefined) canonicalNames.set(raw, (c = canonicalPrincipal(raw)));
  return c;
}

/**
 * The principal a delegating `act.sub` is evaluated as, in canonical form: SPIFFE IDs stay
 * workloads, anything else is the human `user:<name>`.
 */
export function principalFor(actSub: string): string {
  const name = canonicalName(actSub);
  return SCHEME.test(name) ? name : `user:${name}`;
}

/** A rule's `subject.workload`: a human (`user:<name>`, globs kept) in canonical form, a SPIFFE pattern as written. */
export function ruleWorkload(pattern: string): string {
  return USER_PATTERN.test(pattern) ? `user:${canonicalPrincipal(pattern)}` : pattern;
}
const USER_PATTERN = /^\s*user:/i;

const ASSURANCE_LEVEL: Record<string, number> = Object.fromEntries(ASSURANCES.map((a, i) => [a, i]));

/** `approval: required`: one approver, neither the owner nor the requester (the two-person rule). */
const ONE_APPROVER: ApprovalSpec = Object.freeze({ approvers: 1, distinct_from: [...APPROVAL_EXCLUSIONS] }) as ApprovalSpec;

const PER_WORKLOAD = 1;
const PER_OWNER = 2;
const PER_TASK = 4;
const PER_ASSET = 8;
const PER_BIT: Record<string, number> = { workload: PER_WORKLOAD, owner: PER_OWNER, task: PER_TASK, asset: PER_ASSET };

interface CompiledPoint {
  name: string;
  def: PointDef;
  index: number;
  width: number;
}

/** One rate limit of a rule: a budget per distinct value of its keys, kept in the PolicyMemory. */
interface CompiledLimit {
  /** Names the limit's budgets in the memory: rule, position, rate and keys (a changed limit starts afresh). */
  id: string;
  spec: RateSpec;
  /** PER_* bits. */
  per: number;
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
  /** Selectors of commands without register addresses (FC 8 sub-functions, FC 43 MEI types and objects). */
  subFunctions: ReadonlySet<number> | null;
  meiTypes: ReadonlySet<number> | null;
  objectIds: Int32Array | null;
  monitor: boolean;
  windows: readonly CompiledWindow[] | null;
  freezes: readonly CompiledWindow[] | null;
  crossAny: boolean;
  crossZones: ReadonlySet<string> | null;
  approval: ApprovalSpec | null;
  limits: readonly CompiledLimit[] | null;
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
}

interface CompiledMethod {
  name: string;
  /** Index in a rule entry's pointCover (after the points). */
  index: number;
  /** Input arguments with bounds (asset-level hard limits; every call must carry them in range). */
  boundedArgs: { name: string; min: number; max: number }[];
}

/**
 * Entries of one asset and operation, indexed by exact workload; globs are kept in order.
 * Enforcing and monitor rules are kept apart: the first decide, the second only report.
 */
interface OpIndex {
  exact: Map<string, RuleEntry[]>;
  globs: RuleEntry[];
  monitorExact: Map<string, RuleEntry[]>;
  monitorGlobs: RuleEntry[];
  monitors: number;
}

/** A change freeze of the bundle, as it applies to one asset. */
interface CompiledFreeze {
  /** `freeze:<window id>`: the rule id its denies carry. */
  id: string;
  window: CompiledWindow;
  operations: Set<Operation>;
}

interface CompiledAsset {
  id: string;
  zone: string;
  unitId: number;
  protocol: BundleAsset['protocol'];
  points: CompiledPoint[];
  /** Address → point per table; a 32-bit point appears under both of its addresses. */
  byAddress: Record<ModbusTable, Map<number, CompiledPoint>>;
  /** Modbus: merged read-only intervals per table (as `cover`), null when the device has none. */
  readOnly: Record<ModbusTable, Int32Array> | null;
  byNodeId: Map<string, CompiledPoint>;
  byName: Map<string, CompiledPoint>;
  /** OPC UA: methods (rule coverage index = points.length + k) and the object node browse rules cover. */
  methods: CompiledMethod[];
  methodByNodeId: Map<string, CompiledMethod>;
  objectNode: string | null;
  /** OPC UA: the namespace bare identifiers in node selectors are read in. */
  namespace: string | undefined;
  index: Map<Operation, OpIndex>;
  freezes: CompiledFreeze[];
}

export interface PolicyEngineOptions {
  /** docs/policy.md, bundle lifecycle: while the bundle is expired, reads still follow it (last-known-good). Default true. */
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
  /** The oldest PLC value a max_step may measure from. */
  readonly stepBaseMaxAgeMs: number;
  private readonly payload: BundlePayload;
  private readonly assetsById: Map<string, CompiledAsset>;

  // Scratch state of the decision in progress (single-threaded, so no allocation per command).
  private written = new Int32Array(128);
  /**
   * The decoded value written to each of those points (NaN: none, e.g. half a 32-bit point),
   * looked up in cmd.values once per decision: every command's values object has keys of its own,
   * and a keyed load per rule and bound in the rule loop was the slow part of denied writes.
   */
  private writtenValues = new Float64Array(128);
  private writtenN = 0;
  /** The allowing entry, or (with evReason APPROVAL_REQUIRED) the entry that asks for approval. */
  private evEntry: RuleEntry | null = null;
  private evReason: Reason = 'NO_MATCHING_RULE';
  private evRule = '';
  /** Shadow findings of the decision in progress; allocated on the first one. */
  private findings: ShadowVerdict[] | null = null;
  /** Covering monitor entries with rate limits, and the principal each was met for: their budgets count forwarded commands too. */
  private monitorLimited: (RuleEntry | string)[] | null = null;
  private readonly failed: Reason[] = [];

  private constructor(payload: BundlePayload, options: PolicyEngineOptions) {
    this.payload = payload;
    this.name = payload.name;
    this.revision = payload.revision;
    this.audience = payload.audience;
    this.maxTokenTtlSec = payload.limits.max_token_ttl_sec;
    this.stepBaseMaxAgeMs = payload.limits.step_base_max_age_ms ?? DEFAULT_STEP_BASE_MAX_AGE_MS;
    this.expiresAtMs = payload.expires_at * 1000;
    this.notBeforeMs = payload.not_before * 1000;
    this.readsWhenExpired = options.readsWhenExpired ?? true;
    this.monitor = payload.mode === 'monitor';
    this.assetsById = new Map();
    // Two assets behind one unit id or one node would make resolution (src/assets/resolver.ts)
    // ambiguous: the bundle is refused.
    const byUnit = new Map<number, string>();
    const byNode = new Map<string, string>();
    for (const a of payload.assets) {
      const asset = compileAsset(a);
      this.assetsById.set(a.id, asset);
      if (a.protocol === 'modbus') {
        const other = byUnit.get(a.unit_id);
        if (other !== undefined) throw new BundleError('MALFORMED', `assets '${other}' and '${a.id}' share unit id ${a.unit_id}`);
        byUnit.set(a.unit_id, a.id);
      } else {
        const nodes = [...asset.byNodeId.keys(), ...asset.methodByNodeId.keys()];
        if (asset.objectNode !== null) nodes.push(asset.objectNode);
        for (const nodeId of nodes) {
          const other = byNode.get(nodeId);
          if (other !== undefined) throw new BundleError('MALFORMED', `assets '${other}' and '${a.id}' both map node '${nodeId}'`);
          byNode.set(nodeId, a.id);
        }
      }
    }
    let windows: Map<string, CompiledWindow>;
    try {
      windows = compileWindows(payload.windows ?? []);
    } catch (err) {
      throw new BundleError('MALFORMED', (err as Error).message, { cause: err });
    }
    for (const f of payload.freezes ?? []) {
      for (const asset of this.assetsById.values()) {
        // One object per asset: a rule's freeze of the same window adds its operations on its assets only.
        if (f.assets.includes('*') || f.assets.includes(asset.id)) asset.freezes.push({ id: `freeze:${f.window}`, window: windows.get(f.window)!, operations: new Set(f.operations) });
      }
    }
    payload.rules.forEach((r, order) => {
      const rule = compileRule(r, order, windows);
      for (const assetId of r.assets) {
        const asset = this.assetsById.get(assetId)!;
        // An enforcing rule's `freezes` is a change freeze of its assets and operations: it binds
        // every rule of the asset, not only the rule that names it (a monitor rule's only reports).
        if (!rule.monitor) {
          for (const w of r.freezes ?? []) {
            const id = `freeze:${w}`;
            let f = asset.freezes.find((x) => x.id === id);
            if (f === undefined) asset.freezes.push((f = { id, window: windows.get(w)!, operations: new Set() }));
            for (const op of r.operations) f.operations.add(op);
          }
        }
        const entry = compileEntry(rule, r, asset);
        for (const op of r.operations) {
          let idx = asset.index.get(op);
          if (!idx) asset.index.set(op, (idx = { exact: new Map(), globs: [], monitorExact: new Map(), monitorGlobs: [], monitors: 0 }));
          if (rule.monitor) idx.monitors++;
          if (hasGlob(rule.workload)) {
            (rule.monitor ? idx.monitorGlobs : idx.globs).push(entry);
          } else {
            const byWorkload = rule.monitor ? idx.monitorExact : idx.exact;
            let list = byWorkload.get(rule.workload);
            if (!list) byWorkload.set(rule.workload, (list = []));
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

  /** The bundle's assets, as signed: what the protocols' resolvers are built from (src/assets/resolver.ts). */
  get assets(): readonly BundleAsset[] {
    return this.payload.assets;
  }

  /** The asset definition by id (zone, criticality, point map), for callers that label or poll. */
  asset(id: string): BundleAsset | undefined {
    return this.payload.assets.find((a) => a.id === id);
  }

  /**
   * The points some rule's max_step names, per asset: the gateway reads them itself so a step is
   * measured from the PLC's value (docs/policy.md, max_step).
   */
  steppedPoints(): { asset: string; point: string }[] {
    const out: { asset: string; point: string }[] = [];
    const seen = new Set<string>();
    for (const r of this.payload.rules) {
      for (const point of Object.keys(r.max_step ?? {})) {
        for (const asset of r.assets) {
          if (this.assetsById.get(asset)?.byName.has(point) !== true || seen.has(`${asset}/${point}`)) continue;
          seen.add(`${asset}/${point}`);
          out.push({ asset, point });
        }
      }
    }
    return out;
  }

  /**
   * An allowed read the PLC answered (docs/policy.md, max_step and its base): each point a max_step
   * names that the read covered whole gets the answered value as its base, as of `atMs` (when the
   * read was sent; PolicyMemory ignores it if it knows something newer). `value(i)` is the answer's
   * i-th value in the order of the command's targets (Outcome.readValue). Other points are not
   * remembered, so the memory stays one entry per stepped point.
   */
  observeRead(cmd: Command, value: (i: number) => number, atMs: number, memory: PolicyMemory): void {
    const stepped = (this.steppedByAsset ??= this.indexStepped()).get(cmd.assetId);
    if (stepped === undefined) return;
    let offset = 0;
    for (const t of cmd.targets) {
      if (t.nodeId !== undefined) {
        const p = t.attribute === undefined ? stepped.byNodeId.get(t.nodeId) : undefined;
        if (p !== undefined) memory.observe(cmd.assetId, p.name, value(offset), atMs);
        offset++;
        continue;
      }
      if (t.table === undefined || t.address === undefined) continue;
      const count = t.count ?? 1;
      for (const p of stepped.points) {
        const at = p.def.address - t.address;
        if (p.def.table !== t.table || at < 0 || at + p.width > count) continue;
        memory.observe(cmd.assetId, p.name, decodePoint(p.def, value(offset + at), p.width === 2 ? value(offset + at + 1) : 0), atMs);
      }
      offset += count;
    }
  }

  private steppedByAsset: Map<string, { points: CompiledPoint[]; byNodeId: Map<string, CompiledPoint> }> | undefined;

  private indexStepped(): Map<string, { points: CompiledPoint[]; byNodeId: Map<string, CompiledPoint> }> {
    const out = new Map<string, { points: CompiledPoint[]; byNodeId: Map<string, CompiledPoint> }>();
    for (const { asset, point } of this.steppedPoints()) {
      const p = this.assetsById.get(asset)!.byName.get(point)!;
      let entry = out.get(asset);
      if (entry === undefined) out.set(asset, (entry = { points: [], byNodeId: new Map() }));
      entry.points.push(p);
      if (p.def.node_id !== undefined) entry.byNodeId.set(p.def.node_id, p);
    }
    return out;
  }

  /**
   * Decides one command. Pure: reads `memory` (budgets, PLC values), changes nothing, neither here
   * nor in the engine's rules. An allow (or an APPROVAL_REQUIRED a grant could turn into one)
   * carries `forward`: apply it with memory.forwarded() only if the command is really forwarded.
   */
  decide(cmd: Command, subject: Subject, nowMs: number, memory: PolicyMemory = NO_MEMORY): PolicyDecision {
    const op = cmd.operation;
    if (nowMs > this.expiresAtMs && !(op === 'read' && this.readsWhenExpired)) {
      return this.deny('BUNDLE_UNAVAILABLE', '');
    }
    this.findings = null;
    this.monitorLimited = null;
    const asset = this.assetsById.get(cmd.assetId);
    if (asset === undefined) return this.denied(cmd, subject, asset, 'NO_MATCHING_RULE', '', undefined);
    // What the device itself refuses is not a policy choice: no rule, and no monitor mode, lets it through.
    if (op === 'write' && asset.readOnly !== null && writesReadOnly(asset.readOnly, cmd)) return this.deny('NOT_WRITABLE', '');
    if (op === 'write') this.collectWritten(asset, cmd);
    else this.writtenN = 0;
    // A change freeze binds every rule of the asset: no rule is even asked.
    const freezes = asset.freezes;
    for (let k = 0; k < freezes.length; k++) {
      const f = freezes[k]!;
      if (f.operations.has(op) && f.window.contains(nowMs)) return this.denied(cmd, subject, asset, 'CHANGE_FREEZE', f.id, undefined);
    }
    const idx = asset.index.get(op);
    if (idx === undefined) return this.denied(cmd, subject, asset, 'NO_MATCHING_RULE', '', undefined);

    const zone = subject.zone;
    this.evaluate(asset, idx, cmd, subject, subject.workloadId, undefined, zone, nowMs, memory);
    if (this.evEntry === null) return this.denied(cmd, subject, asset, this.evReason, this.evRule, undefined);
    const agentEntry = this.evEntry;
    let approvalEntry = this.evReason === 'APPROVAL_REQUIRED' ? agentEntry : null;
    let approval = approvalEntry === null ? null : approvalEntry.rule.approval;

    // Delegation: every principal the agent acts for must be allowed by its own rules too, so the
    // agent never exceeds the human and never inherits the human's wider rights. A rule asking for
    // approval does not end this: a grant must never carry a command past a human's own rules.
    const act = subject.actSub;
    let humans: RuleEntry[] | null = null;
    if (act !== undefined && act.length > 0) {
      humans = [];
      for (let i = 0; i < act.length; i++) {
        const principal = principalFor(act[i]!);
        const human: Subject = { ...subject, workloadId: principal, roles: [] };
        delete human.actSub;
        this.evaluate(asset, idx, cmd, human, principal, principal, zone, nowMs, memory);
        if (this.evEntry === null) return this.denied(cmd, subject, asset, this.evReason, this.evRule, principal);
        humans.push(this.evEntry);
        if (this.evReason === 'APPROVAL_REQUIRED') {
          approvalEntry ??= this.evEntry;
          approval = stricter(approval, this.evEntry.rule.approval!);
        }
      }
    }

    const forward = this.plan(asset, cmd, subject, agentEntry, humans);
    let d: PolicyDecision;
    if (approvalEntry !== null) {
      d = this.deny('APPROVAL_REQUIRED', approvalEntry.rule.id);
      d.approval = approval!;
      if (this.monitor) d = this.unenforced(cmd, subject, d, asset);
    } else {
      d = { effect: 'allow', reason: 'ALLOWED', ruleId: agentEntry.rule.id, bundleRevision: this.revision, durable: mustBeDurable(op) };
    }
    if (forward !== undefined) d.forward = forward;
    this.attachFindings(d);
    return d;
  }

  /**
   * Evaluates the rules for one principal. Leaves in the scratch fields either the allowing entry
   * (evReason ALLOWED), the entry asking for approval (evReason APPROVAL_REQUIRED), or a deny
   * (evEntry null). Monitor rules add shadow findings only.
   */
  private evaluate(
    asset: CompiledAsset, idx: OpIndex, cmd: Command, s: Subject, key: string, principal: string | undefined, zone: string | undefined, nowMs: number, memory: PolicyMemory,
  ): void {
    const op = cmd.operation;
    let denyReason: Reason | null = null;
    let denyRule = '';
    let denyEntry: RuleEntry | null = null;
    let allowed: RuleEntry | null = null;
    const exact = idx.exact.get(s.workloadId) ?? NO_ENTRIES;
    const globs = idx.globs;
    let i = 0;
    let j = 0;
    while (i < exact.length || j < globs.length) {
      // Merge the two lists by bundle order, so indexing never changes which rule decides.
      let entry: RuleEntry;
      if (j >= globs.length || (i < exact.length && exact[i]!.rule.order < globs[j]!.rule.order)) entry = exact[i++]!;
      else entry = globs[j++]!;
      if (!speaksAbout(entry, asset, cmd, s)) continue;
      // From here the rule speaks about this command: its deny beats the default deny.
      const reason = hasScope(s.scopes, entry.rule.scope ?? op) ? this.conditions(entry, asset, cmd, s, key, zone, nowMs, memory, null) : 'SCOPE_MISSING';
      if (reason === null) {
        allowed = entry;
        break;
      }
      if (denyReason === null) {
        denyReason = reason;
        denyRule = entry.rule.id;
        denyEntry = entry;
      }
    }
    if (allowed !== null) {
      this.evEntry = allowed;
      this.evReason = 'ALLOWED';
      this.evRule = allowed.rule.id;
    } else {
      this.evReason = denyReason ?? 'NO_MATCHING_RULE';
      this.evRule = denyRule;
      this.evEntry = denyReason === 'APPROVAL_REQUIRED' ? denyEntry : null;
    }
    if (idx.monitors > 0) this.monitorFindings(asset, idx, cmd, s, key, principal, zone, nowMs, memory);
  }

  /**
   * Every covering monitor rule, in bundle order: a finding per failing check, or ALLOWED when it
   * would allow a command the enforcing rules do not. Never changes what the enforcing rules said.
   */
  private monitorFindings(
    asset: CompiledAsset, idx: OpIndex, cmd: Command, s: Subject, key: string, principal: string | undefined, zone: string | undefined, nowMs: number, memory: PolicyMemory,
  ): void {
    const exact = idx.monitorExact.get(s.workloadId) ?? NO_ENTRIES;
    const globs = idx.monitorGlobs;
    const failed = this.failed;
    let i = 0;
    let j = 0;
    while (i < exact.length || j < globs.length) {
      let entry: RuleEntry;
      if (j >= globs.length || (i < exact.length && exact[i]!.rule.order < globs[j]!.rule.order)) entry = exact[i++]!;
      else entry = globs[j++]!;
      if (!speaksAbout(entry, asset, cmd, s)) continue;
      failed.length = 0;
      if (!hasScope(s.scopes, entry.rule.scope ?? cmd.operation)) failed.push('SCOPE_MISSING');
      this.conditions(entry, asset, cmd, s, key, zone, nowMs, memory, failed);
      if (failed.length === 0) {
        if (this.evReason !== 'ALLOWED') this.finding('ALLOWED', entry.rule.id, principal);
      } else {
        for (let k = 0; k < failed.length; k++) this.finding(failed[k]!, entry.rule.id, principal);
      }
      if (entry.rule.limits !== null) (this.monitorLimited ??= []).push(entry, key);
    }
  }

  private finding(reason: Reason, ruleId: string, principal: string | undefined): void {
    const f: ShadowVerdict = { reason, ruleId };
    if (principal !== undefined) f.principal = principal;
    (this.findings ??= []).push(f);
  }

  /**
   * The failed conditions of a covering rule. With `all` null: the first failure, or null when the
   * rule allows. With an array: every failure is pushed (a monitor rule reports them all) and the
   * return value means nothing.
   */
  private conditions(
    entry: RuleEntry, asset: CompiledAsset, cmd: Command, s: Subject, key: string, zone: string | undefined, nowMs: number, memory: PolicyMemory, all: Reason[] | null,
  ): Reason | null {
    const rule = entry.rule;
    if (zone !== undefined && zone !== '' && zone !== asset.zone && !rule.crossAny && (rule.crossZones === null || !rule.crossZones.has(zone))) {
      if (all === null) return 'CROSS_ZONE';
      all.push('CROSS_ZONE');
    }
    const windows = rule.windows;
    if (windows !== null) {
      let open = false;
      for (let k = 0; k < windows.length && !open; k++) open = windows[k]!.contains(nowMs);
      if (!open) {
        if (all === null) return 'OUTSIDE_WINDOW';
        all.push('OUTSIDE_WINDOW');
      }
    }
    const freezes = rule.freezes;
    if (freezes !== null) {
      let frozen = false;
      for (let k = 0; k < freezes.length && !frozen; k++) frozen = freezes[k]!.contains(nowMs);
      if (frozen) {
        if (all === null) return 'CHANGE_FREEZE';
        all.push('CHANGE_FREEZE');
      }
    }
    if (cmd.operation === 'write') {
      if (entry.bounded !== null && !this.withinBounds(entry)) {
        if (all === null) return 'VALUE_OUT_OF_BOUNDS';
        all.push('VALUE_OUT_OF_BOUNDS');
      }
      const step = entry.maxStep === null ? null : this.stepProblem(entry, asset, nowMs, memory);
      if (step !== null) {
        if (all === null) return step;
        all.push(step);
      }
    } else if (cmd.operation === 'call' && asset.methods.length > 0 && !argumentsWithinBounds(asset, cmd)) {
      if (all === null) return 'VALUE_OUT_OF_BOUNDS';
      all.push('VALUE_OUT_OF_BOUNDS');
    }
    if (entry.nodes !== null && (cmd.operation === 'write' || cmd.operation === 'call')) {
      const verdict = this.nodeBounds(entry.nodes, asset, cmd, nowMs, memory);
      if (verdict !== null) {
        if (all === null) return verdict;
        all.push(verdict);
      }
    }
    const limits = rule.limits;
    if (limits !== null) {
      for (let k = 0; k < limits.length; k++) {
        const l = limits[k]!;
        if (memory.hasToken(l.id, this.budgetKey(l, key, s, asset.id), nowMs)) continue;
        if (all === null) return 'RATE_LIMITED';
        all.push('RATE_LIMITED');
        break;
      }
    }
    if (rule.approval !== null) {
      if (all === null) return 'APPROVAL_REQUIRED';
      all.push('APPROVAL_REQUIRED');
    }
    return null;
  }

  /** The budget of a limit a command counts against: its values of the limit's keys. */
  private budgetKey(l: CompiledLimit, key: string, s: Subject, assetId: string): string {
    switch (l.per) {
      case PER_WORKLOAD:
        return key;
      case PER_ASSET:
        return assetId;
      case 0:
        return '';
    }
    let k = '';
    if ((l.per & PER_WORKLOAD) !== 0) k += key;
    if ((l.per & PER_OWNER) !== 0) k += `\u0000${canonicalName(s.owner)}`;
    if ((l.per & PER_TASK) !== 0) k += `\u0000${s.taskId}`;
    if ((l.per & PER_ASSET) !== 0) k += `\u0000${assetId}`;
    return k;
  }

  /**
   * What forwarding the command changes: a token of every budget of the rules that allow it (the
   * agent's and each human's), and of every covering monitor rule's (so a trial counts real
   * traffic); and, for a write, the decoded value of every written point. undefined when nothing.
   */
  private plan(asset: CompiledAsset, cmd: Command, s: Subject, agent: RuleEntry | null, humans: RuleEntry[] | null): Forwarding | undefined {
    let f: Forwarding | undefined;
    const charge = (entry: RuleEntry, key: string): void => {
      const limits = entry.rule.limits;
      if (limits === null) return;
      f ??= new Forwarding();
      for (const l of limits) f.charges.push({ limit: l.id, key: this.budgetKey(l, key, s, asset.id), spec: l.spec });
    };
    if (agent !== null) charge(agent, s.workloadId);
    if (humans !== null) for (let i = 0; i < humans.length; i++) charge(humans[i]!, principalFor(s.actSub![i]!));
    const ml = this.monitorLimited;
    if (ml !== null) for (let i = 0; i < ml.length; i += 2) charge(ml[i] as RuleEntry, ml[i + 1] as string);
    if (cmd.operation === 'write') {
      for (let k = 0; k < this.writtenN; k++) {
        const idx = this.written[k]!;
        const v = this.writtenValues[k]!;
        if (idx < 0 || !Number.isFinite(v)) continue;
        (f ??= new Forwarding()).writes.push({ asset: asset.id, point: asset.points[idx]!.name, value: v });
      }
      // OPC UA nodes outside the point map are remembered by canonical NodeId.
      if (asset.protocol === 'opcua') {
        for (const t of cmd.targets) {
          if (t.nodeId === undefined || asset.byNodeId.has(t.nodeId) || (t.attribute !== undefined && t.attribute !== 'Value')) continue;
          const name = valueName(asset, t);
          const n = numericOf(cmd.typedValues?.[name] ?? cmd.values?.[name]);
          if (n !== undefined) (f ??= new Forwarding()).writes.push({ asset: asset.id, point: t.nodeId, value: n });
        }
      }
    }
    return f;
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

  /**
   * Typed bounds of the selectors naming each target (written values, call arguments). A node's
   * max_step is measured like a point's: from its PLC value (young enough, else STEP_BASE_STALE)
   * and from every write to it still in flight.
   */
  private nodeBounds(selectors: readonly CompiledSelector[], asset: CompiledAsset, cmd: Command, nowMs: number, memory: PolicyMemory): Reason | null {
    const targets = cmd.targets;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      const s = selectorFor(selectors, t, cmd.operation);
      if (s === undefined) continue;
      if (cmd.operation === 'call') {
        if (checkArguments(s, cmd.typedValues, cmd.values) !== null) return 'VALUE_OUT_OF_BOUNDS';
        continue;
      }
      const b = s.bounds;
      if (b === null) continue;
      const name = valueName(asset, t);
      const v = cmd.typedValues?.[name] ?? cmd.values?.[name];
      const m = b.maxStep === undefined || t.nodeId === undefined ? undefined : memory.point(asset.id, memoryKey(asset, t.nodeId));
      const fresh = m !== undefined && nowMs - m.atMs <= this.stepBaseMaxAgeMs && !Number.isNaN(m.value);
      const verdict = checkValue(b, v, fresh ? m.value : undefined);
      // Within its bounds but with no PLC value to measure the step from: say so.
      if (verdict === 'STEP_TOO_LARGE' && !fresh && !Array.isArray(v)) return 'STEP_BASE_STALE';
      if (verdict !== null) return verdict;
      if (fresh && m.inFlight.length > 0) {
        const n = numericOf(v);
        for (const f of m.inFlight) if (n === undefined || !(Math.abs(n - f.value) <= b.maxStep!)) return 'STEP_TOO_LARGE';
      }
    }
    return null;
  }

  /**
   * Each stepped point must move at most max_step from the PLC's value of it, which must be known
   * and no older than the bundle's step base age (else STEP_BASE_STALE), and from every write to
   * it still in flight (pipelined writes cannot add their steps up).
   */
  private stepProblem(entry: RuleEntry, asset: CompiledAsset, nowMs: number, memory: PolicyMemory): Reason | null {
    const stepped = entry.stepped!;
    for (let k = 0; k < this.writtenN; k++) {
      const idx = this.written[k]!;
      if (idx < 0) continue;
      for (let b = 0; b < stepped.length; b++) {
        if (stepped[b] !== idx) continue;
        const m = memory.point(asset.id, asset.points[idx]!.name);
        // NaN (never known, or unknown since a write's outcome was lost) fails the comparison.
        if (m === undefined || !(nowMs - m.atMs <= this.stepBaseMaxAgeMs) || Number.isNaN(m.value)) return 'STEP_BASE_STALE';
        const v = this.writtenValues[k]!;
        const max = entry.maxStep![b]!;
        // An undecodable value (NaN) fails the comparison too: deny.
        if (!(Math.abs(v - m.value) <= max)) return 'STEP_TOO_LARGE';
        const flying = m.inFlight;
        for (let f = 0; f < flying.length; f++) if (!(Math.abs(v - flying[f]!.value) <= max)) return 'STEP_TOO_LARGE';
      }
    }
    return null;
  }

  /** A policy deny; a bundle in monitor mode reports it and lets the command through. */
  private denied(cmd: Command, subject: Subject, asset: CompiledAsset | undefined, reason: Reason, ruleId: string, principal: string | undefined): PolicyDecision {
    const d = this.deny(reason, ruleId);
    if (principal !== undefined) d.principal = principal;
    if (this.monitor) return this.unenforced(cmd, subject, d, asset);
    this.attachFindings(d);
    return d;
  }

  /**
   * Monitor bundle: the deny becomes the first finding and the command goes through. What it
   * writes still moves the step base once the PLC acknowledges it: the PLC holds it then.
   */
  private unenforced(cmd: Command, subject: Subject, d: PolicyDecision, asset: CompiledAsset | undefined): PolicyDecision {
    const f: ShadowVerdict = { reason: d.reason, ruleId: d.ruleId };
    if (d.principal !== undefined) f.principal = d.principal;
    (this.findings ??= []).unshift(f);
    const out: PolicyDecision = { effect: 'allow', reason: 'ALLOWED', ruleId: d.ruleId, bundleRevision: this.revision, durable: mustBeDurable(cmd.operation) };
    const forward = d.forward ?? (asset === undefined ? undefined : this.plan(asset, cmd, subject, null, null));
    if (forward !== undefined) out.forward = forward;
    this.attachFindings(out);
    return out;
  }

  private attachFindings(d: PolicyDecision): void {
    const findings = this.findings;
    if (findings === null) return;
    d.shadows = findings;
    for (let i = 0; i < findings.length; i++) {
      if (findings[i]!.reason === 'ALLOWED') continue;
      d.shadow = { reason: findings[i]!.reason, ruleId: findings[i]!.ruleId };
      break;
    }
  }

  private deny(reason: Reason, ruleId: string): PolicyDecision {
    return { effect: 'deny', reason, ruleId, bundleRevision: this.revision, durable: false };
  }
}

/** The stricter of two approvals: more approvers, every exclusion of either, the earlier deadlines. */
function stricter(a: ApprovalSpec | null, b: ApprovalSpec): ApprovalSpec {
  if (a === null || a === b) return b;
  const min = (x: number | undefined, y: number | undefined) => (x === undefined ? y : y === undefined ? x : Math.min(x, y));
  const out: ApprovalSpec = {
    approvers: Math.max(a.approvers, b.approvers),
    distinct_from: APPROVAL_EXCLUSIONS.filter((e) => a.distinct_from.includes(e) || b.distinct_from.includes(e)),
  };
  const approve = min(a.approve_within_sec, b.approve_within_sec);
  const execute = min(a.execute_within_sec, b.execute_within_sec);
  if (approve !== undefined) out.approve_within_sec = approve;
  if (execute !== undefined) out.execute_within_sec = execute;
  return out;
}

/** The rule applies to this subject and covers every target of the command. */
function speaksAbout(entry: RuleEntry, asset: CompiledAsset, cmd: Command, s: Subject): boolean {
  const rule = entry.rule;
  if (!subjectMatches(rule, s)) return false;
  if (rule.functionCodes !== null && !rule.functionCodes.has(cmd.functionCode)) return false;
  return covers(entry, asset, cmd);
}

function subjectMatches(rule: CompiledRule, s: Subject): boolean {
  if (!rule.matchWorkload(s.workloadId)) return false;
  if (rule.owner !== undefined && rule.owner !== canonicalName(s.owner)) return false;
  const roles = rule.roles;
  for (let i = 0; i < roles.length; i++) if (!s.roles.includes(roles[i]!)) return false;
  const scopes = rule.scopesAll;
  for (let i = 0; i < scopes.length; i++) if (!s.scopes.includes(scopes[i]!)) return false;
  if (rule.minAssurance > 0 && !((ASSURANCE_LEVEL[s.assurance] ?? -1) >= rule.minAssurance)) return false;
  if (rule.act !== null) {
    const act = s.actSub;
    if (act === undefined) return false;
    let any = false;
    for (let i = 0; i < act.length && !any; i++) any = rule.act.test(canonicalName(act[i]!));
    if (!any) return false;
  }
  return true;
}

/**
 * Every target lies inside one merged interval of the rule's coverage for its table; a command
 * without register addresses is covered by its function code and selectors (coversFunction).
 */
function covers(entry: RuleEntry, asset: CompiledAsset, cmd: Command): boolean {
  const targets = cmd.targets;
  if (targets.length === 0) return coversFunction(entry.rule, cmd.functionCode, undefined);
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    if (t.table === undefined && t.nodeId === undefined) {
      if (!coversFunction(entry.rule, cmd.functionCode, t)) return false;
      continue;
    }
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

/**
 * Modbus diagnostics and device identification (FC 7, 8, 11, 12, 17, 43; docs/policy.md): only a
 * rule naming the function code covers them, never one that allows its operation wholesale; each
 * selector the rule gives (sub-functions, MEI types, object ids) must include the command's.
 */
function coversFunction(rule: CompiledRule, fc: number, t: Target | undefined): boolean {
  if (rule.functionCodes === null || !rule.functionCodes.has(fc)) return false;
  if (t === undefined) return true;
  if (t.subFunction !== undefined && rule.subFunctions !== null && !rule.subFunctions.has(t.subFunction)) return false;
  if (t.meiType !== undefined && rule.meiTypes !== null && !rule.meiTypes.has(t.meiType)) return false;
  if (t.objectFrom !== undefined && rule.objectIds !== null && !inIntervals(rule.objectIds, t.objectFrom, t.objectTo ?? t.objectFrom)) return false;
  return true;
}

/** A Modbus write's written range (its last target: FC 23 reads first) touches a read-only address. */
function writesReadOnly(readOnly: Record<ModbusTable, Int32Array>, cmd: Command): boolean {
  const t = cmd.targets[cmd.targets.length - 1];
  if (t === undefined || t.table === undefined || t.address === undefined) return false;
  const iv = readOnly[t.table];
  const from = t.address;
  const to = t.address + (t.count ?? 1) - 1;
  // The last interval starting at or before `to` is the only one that can reach back to `from`.
  let lo = 0;
  let hi = (iv.length >> 1) - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (iv[mid * 2]! <= to) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found >= 0 && iv[found * 2 + 1]! >= from;
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

/** The name a target's value is carried under in cmd.values / cmd.typedValues (see resolveOpcua). */
function valueName(asset: CompiledAsset, t: { nodeId?: string; browsePath?: string }): string {
  return (t.nodeId !== undefined ? asset.byNodeId.get(t.nodeId)?.name : undefined) ?? t.browsePath ?? t.nodeId ?? '';
}

/** What the policy memory knows a node by: its point name when mapped, else its canonical NodeId. */
function memoryKey(asset: CompiledAsset, nodeId: string): string {
  return asset.byNodeId.get(nodeId)?.name ?? nodeId;
}

function compileAsset(a: BundleAsset): CompiledAsset {
  const byAddress = {} as Record<ModbusTable, Map<number, CompiledPoint>>;
  for (const t of MODBUS_TABLES) byAddress[t] = new Map();
  const points: CompiledPoint[] = [];
  const byNodeId = new Map<string, CompiledPoint>();
  const byName = new Map<string, CompiledPoint>();
  for (const [name, def] of Object.entries(a.points)) {
    const p: CompiledPoint = { name, def, index: points.length, width: pointWidth(def) };
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
  let readOnly: Record<ModbusTable, Int32Array> | null = null;
  if (a.read_only !== undefined && a.read_only.length > 0) {
    const spans: Record<ModbusTable, [number, number][]> = { coil: [], discrete: [], holding: [], input: [] };
    for (const r of a.read_only) spans[r.table].push([r.from, r.to]);
    readOnly = { coil: mergeIntervals(spans.coil), discrete: mergeIntervals(spans.discrete), holding: mergeIntervals(spans.holding), input: mergeIntervals(spans.input) };
  }
  return {
    id: a.id,
    zone: a.zone,
    unitId: a.unit_id,
    protocol: a.protocol,
    points,
    byAddress,
    readOnly,
    byNodeId,
    byName,
    methods,
    methodByNodeId,
    objectNode: a.object_node ?? null,
    namespace: a.namespace,
    index: new Map(),
    freezes: [],
  };
}

function compileRule(r: BundleRule, order: number, windows: Map<string, CompiledWindow>): CompiledRule {
  const pick = (ids: string[] | undefined): CompiledWindow[] | null =>
    ids === undefined || ids.length === 0 ? null : ids.map((id) => windows.get(id)!);
  const cross = r.cross_zone ?? [];
  const limits = rateLimitsOf(r).map(
    (l, k): CompiledLimit => ({
      id: `${r.id}#${k}:${l.count}/${l.per_sec}s:${[...l.per].sort().join('+')}`,
      spec: { count: l.count, per_sec: l.per_sec },
      per: l.per.reduce((bits, key) => bits | PER_BIT[key]!, 0),
    }),
  );
  return {
    id: r.id,
    order,
    workload: ruleWorkload(r.subject.workload),
    matchWorkload: workloadMatcher(ruleWorkload(r.subject.workload)),
    owner: r.subject.owner === undefined ? undefined : canonicalPrincipal(r.subject.owner),
    roles: r.subject.roles,
    scopesAll: r.subject.scopes ?? [],
    act: r.subject.act === undefined ? null : pointGlob(canonicalPrincipal(r.subject.act)),
    minAssurance: r.subject.assurance === undefined ? 0 : ASSURANCE_LEVEL[r.subject.assurance]!,
    scope: r.require_scope ?? null,
    functionCodes: r.function_codes ? new Set(r.function_codes) : null,
    subFunctions: r.sub_functions ? new Set(r.sub_functions) : null,
    meiTypes: r.mei_types ? new Set(r.mei_types) : null,
    objectIds: r.object_ids ? mergeIntervals(r.object_ids.map((o): [number, number] => [o.from, o.to])) : null,
    monitor: r.mode === 'monitor',
    windows: pick(r.windows),
    // Only a monitor rule checks its freezes itself; an enforcing rule's bind the whole asset.
    freezes: r.mode === 'monitor' ? pick(r.freezes) : null,
    crossAny: cross.includes('*'),
    crossZones: cross.length > 0 ? new Set(cross) : null,
    approval: r.approval === undefined ? null : r.approval === 'required' ? ONE_APPROVER : r.approval,
    limits: limits.length > 0 ? limits : null,
  };
}

/** A rule's rate limits, the older `rate_limit` form read as `per: [workload]` / `per: [asset]`. */
function rateLimitsOf(r: BundleRule): KeyedRate[] {
  const out: KeyedRate[] = [...(r.rate_limits ?? [])];
  if (r.rate_limit?.per_subject) out.push({ ...r.rate_limit.per_subject, per: ['workload'] });
  if (r.rate_limit?.per_asset) out.push({ ...r.rate_limit.per_asset, per: ['asset'] });
  return out;
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
  return { rule, cover, pointCover, nodes, bounded, min, max, stepped, maxStep };
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
