// `policy replay`: re-decides recorded commands against a candidate bundle with the gateway's own
// engines and clock semantics (docs/policy.md, "From monitor mode to enforce"). Each command is
// decided at its recorded time by the candidate's PolicyEngine against a PolicyMemory of that
// gateway, then by the candidate's interlocks on the inputs the audit recorded for that command
// (an interlock trip record), and committed as the pipeline commits (src/gateway/pipeline.ts):
// the candidate's rate budgets are spent by what the candidate would have forwarded; a step base
// moves when the PLC acknowledged a write (the recorded outcome). A verdict that needs a process
// value the audit does not hold (an interlock input or its history, a fresh max_step base the
// gateway read from the PLC) is reported unknown, never guessed. Decisions made before policy (identity, protocol,
// a full spool, a freeze) cannot change with a bundle and are kept as recorded, and so are
// cross-zone verdicts (the token's zone claim is not in the audit).
// Owns the comparison and its bounded summary; never writes anything and never talks to a PLC.
import { mustBeDurable, type Subject } from '../../core/command.js';
import type { DecodedRecord } from '../../audit/schema.js';
import { InterlockEngine, processInputs, type InterlockTrip, type ProcessValues } from '../../interlocks/engine.js';
import { PolicyEngine } from '../engine.js';
import { PolicyMemory, type Forwarding, type WriteResult } from '../memory.js';
import type { BundlePayload } from '../payload.js';
import { describeCommand, observedCommand, resolveWith, type ObservedCommand } from '../observed/command.js';
import { bundleResolver, type CommandResolver, type ResolverFactories } from '../../assets/resolver.js';

export type ChangeKind = 'newly-denied' | 'newly-allowed' | 'reason-changed';
export const CHANGE_KINDS: readonly ChangeKind[] = ['newly-denied', 'newly-allowed', 'reason-changed'];

/** Reasons decided by policy, interlocks or approvals: the ones a candidate bundle can change. */
const REDECIDED: ReadonlySet<string> = new Set([
  'ALLOWED',
  'SCOPE_MISSING',
  'NO_MATCHING_RULE',
  'OUTSIDE_WINDOW',
  'VALUE_OUT_OF_BOUNDS',
  'STEP_TOO_LARGE',
  'STEP_BASE_STALE',
  'RATE_LIMITED',
  'INTERLOCK',
  'INTERLOCK_INPUT_STALE',
  'INTERLOCK_INPUT_IMPLAUSIBLE',
  'APPROVAL_REQUIRED',
  'CROSS_ZONE',
  'BUNDLE_UNAVAILABLE',
  'CHANGE_FREEZE',
]);

/** Far past any audit: the candidate's validity period is a deployment matter, not replay's. */
export const NEVER_EXPIRES_SEC = 8_640_000_000_000;
const MAX_GATEWAYS = 1024;
const MAX_PENDING_TRIPS = 10_000;
/** Forwarded writes waiting for their outcome record, per gateway; the oldest settle 'unknown' past it. */
const MAX_PENDING_OUTCOMES = 100_000;

/** Verdicts that need a process value the audit does not hold. */
export type Unknown = 'interlock-unknown' | 'step-base-unknown';

export interface Verdict {
  effect: 'allow' | 'deny';
  reason: string;
  ruleId: string;
  interlockId?: string;
  /** Shadow mode: the would-deny reason. */
  shadow?: string;
}

export interface ChangedCommand {
  kind: ChangeKind;
  gatewayId: string;
  seq: number;
  time: string;
  workload: string;
  asset: string;
  operation: string;
  command: string;
  recorded: Verdict;
  candidate: Verdict;
}

export interface ChangeGroup {
  kind: ChangeKind | Unknown;
  workload: string;
  asset: string;
  operation: string;
  points: string;
  recorded: string;
  candidate: string;
  count: number;
  first: { gatewayId: string; seq: number; time: string };
  last: { gatewayId: string; seq: number; time: string };
}

export interface ReplayOptions {
  /** Changed commands listed one by one, per kind (the rest are counted in their groups). */
  maxListed: number;
  /** Distinct change groups kept (the rest counted). */
  maxGroups: number;
}

export const DEFAULT_REPLAY_OPTIONS: ReplayOptions = { maxListed: 1000, maxGroups: 10_000 };

/** Sees every changed command (before listing and grouping), e.g. for learn's check. */
export type ChangeListener = (kind: ChangeKind, oc: ObservedCommand, recorded: Verdict, candidate: Verdict) => void;

export interface ReplaySummary {
  commands: number;
  unchanged: number;
  newlyDenied: number;
  newlyAllowed: number;
  reasonChanged: number;
  /** Still allowed, by another rule. */
  ruleChanged: number;
  /**
   * Kept as recorded, by reason: decided before policy (identity, protocol, a full spool, a freeze),
   * or on the token's zone claim (CROSS_ZONE), which the audit does not hold.
   */
  notRedecided: Record<string, number>;
  /**
   * The candidate's policy allows, an interlock guards it and the audit holds no inputs for it (or,
   * for inputs found implausible at the time, not their history).
   */
  interlockUnknown: number;
  /**
   * The candidate measures a max_step from the PLC's value, which the gateway read from the PLC
   * and the audit does not hold (STEP_BASE_STALE where the gateway decided otherwise).
   */
  stepBaseUnknown: number;
}

/** The replay image: the interlock inputs one recorded command carried, nothing else. */
class RecordedInputs implements ProcessValues {
  readonly values: Float64Array;
  readonly readAtMs: Float64Array;
  readonly maxAgeMs: Float64Array;
  readonly names: readonly string[];
  /** No history in an audit: stuck-sensor and rate checks cannot trip on recorded inputs. */
  readonly changedAtMs: Float64Array;
  readonly previousValues: Float64Array;
  readonly previousReadAtMs: Float64Array;
  /** Recorded inputs count as the command's own (confirming) read: 1; unknown ones NaN. */
  readonly readSeq: Float64Array;
  private readonly slots = new Map<string, number>();

  constructor(inputs: { asset: string; point: string; maxAgeMs: number }[]) {
    const names: string[] = [];
    const maxAge: number[] = [];
    for (const i of inputs) {
      const name = `${i.asset}/${i.point}`;
      if (this.slots.has(name)) continue;
      this.slots.set(name, names.length);
      names.push(name);
      maxAge.push(i.maxAgeMs);
    }
    this.names = names;
    this.values = new Float64Array(names.length).fill(Number.NaN);
    this.readAtMs = new Float64Array(names.length).fill(Number.NaN);
    this.maxAgeMs = Float64Array.from(maxAge);
    this.changedAtMs = new Float64Array(names.length).fill(Number.NaN);
    this.previousValues = new Float64Array(names.length).fill(Number.NaN);
    this.previousReadAtMs = new Float64Array(names.length).fill(Number.NaN);
    this.readSeq = new Float64Array(names.length).fill(Number.NaN);
  }

  slot(asset: string, point: string): number {
    return this.slots.get(`${asset}/${point}`) ?? -1;
  }

  readsSent(): number {
    return 0;
  }

  /**
   * Sets the inputs one command's trip record carried (every other input stays unknown) until
   * clear(): the image is unknown between commands, so a value never outlives its command.
   */
  load(trip: NonNullable<DecodedRecord['interlockTrip']>, timeMs: number): void {
    for (const i of trip.inputs ?? []) {
      const s = this.slots.get(i.point ?? '');
      const age = i.ageMs as number;
      if (s === undefined || age < 0) continue;
      this.values[s] = i.value ?? Number.NaN;
      this.readAtMs[s] = timeMs - age;
      this.readSeq[s] = 1;
    }
  }

  clear(): void {
    this.values.fill(Number.NaN);
    this.readAtMs.fill(Number.NaN);
    this.readSeq.fill(Number.NaN);
  }
}

/** A command the gateway forwarded whose outcome record is still to come. */
interface PendingOutcome {
  /** What the candidate's forwarding changed: settled with the recorded outcome. */
  plan?: Forwarding;
  /** What it wrote, when the candidate would not have forwarded it: the PLC's values all the same. */
  writes?: { asset: string; point: string; value: number }[];
}

interface GatewayState {
  policy: PolicyEngine;
  resolver: CommandResolver;
  memory: PolicyMemory;
  interlocks: InterlockEngine | undefined;
  inputs: RecordedInputs | undefined;
  /** By decision seq. */
  pending: Map<number, PendingOutcome>;
}

const RESULT_OF: Record<string, WriteResult> = { ok: 'acknowledged', exception: 'refused', not_forwarded: 'refused' };

export class Replay {
  readonly summary: ReplaySummary = {
    commands: 0,
    unchanged: 0,
    newlyDenied: 0,
    newlyAllowed: 0,
    reasonChanged: 0,
    ruleChanged: 0,
    notRedecided: {},
    interlockUnknown: 0,
    stepBaseUnknown: 0,
  };
  readonly changes: ChangedCommand[] = [];
  /** Changed commands not listed (past maxListed), per kind. */
  readonly unlisted: Record<ChangeKind, number> = { 'newly-denied': 0, 'newly-allowed': 0, 'reason-changed': 0 };
  private readonly listed: Record<ChangeKind, number> = { 'newly-denied': 0, 'newly-allowed': 0, 'reason-changed': 0 };
  private readonly groups = new Map<string, ChangeGroup>();
  groupsDropped = 0;
  private readonly gateways = new Map<string, GatewayState>();
  private lastGatewayId: string | undefined;
  private lastGateway: GatewayState | undefined;
  private readonly payload: BundlePayload;
  private readonly interlockIds: ReadonlySet<string>;
  /** Interlock trip records waiting for the decision record of their command, by session. */
  private readonly trips = new Map<string, { timeMs: number; trip: NonNullable<DecodedRecord['interlockTrip']> }>();

  /**
   * Compiles the candidate once to surface its problems (BundleError, InterlockError) before
   * anything is read; each gateway of the audit then gets engines of its own.
   */
  constructor(
    candidate: BundlePayload,
    /** How each protocol's recorded addresses resolve to the candidate's points (protocols/resolvers.ts). */
    private readonly resolvers: ResolverFactories,
    private readonly opts: ReplayOptions = DEFAULT_REPLAY_OPTIONS,
    private readonly onChange?: ChangeListener,
  ) {
    this.payload = { ...candidate, expires_at: NEVER_EXPIRES_SEC };
    this.interlockIds = new Set((candidate.interlocks ?? []).map((d) => d.id));
    this.engines();
  }

  private engines(): GatewayState {
    const policy = PolicyEngine.fromPayload(this.payload);
    const defs = this.payload.interlocks ?? [];
    const state: GatewayState = { policy, resolver: bundleResolver(this.resolvers, this.payload.assets), memory: new PolicyMemory(), interlocks: undefined, inputs: undefined, pending: new Map() };
    if (defs.length > 0) {
      state.inputs = new RecordedInputs(processInputs(defs, this.payload.assets));
      state.interlocks = new InterlockEngine(defs, this.payload.assets, state.inputs);
    }
    return state;
  }

  private gateway(id: string): GatewayState | undefined {
    // Audits are long runs of one gateway's records.
    if (id === this.lastGatewayId) return this.lastGateway;
    let g = this.gateways.get(id);
    this.lastGatewayId = id;
    this.lastGateway = g;
    if (g === undefined) {
      if (this.gateways.size >= MAX_GATEWAYS) return undefined;
      this.gateways.set(id, (g = this.engines()));
      this.lastGateway = g;
    }
    return g;
  }

  /** Feeds one record (any kind; records of one gateway in seq order). */
  add(r: DecodedRecord): void {
    const trip = r.interlockTrip;
    if (trip) {
      if (this.trips.size >= MAX_PENDING_TRIPS) this.trips.clear();
      this.trips.set(trip.sessionId ?? '', { timeMs: r.timeUnixMs as number, trip });
      return;
    }
    const outcome = r.outcome;
    if (outcome) return this.settle(r.gatewayId ?? '', outcome.decisionSeq as number, outcome.status ?? '', r.timeUnixMs as number);
    const oc = observedCommand(r);
    if (oc === undefined) return;
    const gw = this.gateway(oc.gatewayId);
    if (gw === undefined) throw new Error(`more than ${MAX_GATEWAYS} gateways in the audit: replay them in parts`);
    this.summary.commands++;
    const rec = oc.recorded;
    const pending = this.trips.get(oc.cmd.sessionId);
    const recordedTrip = pending !== undefined && pending.timeMs === oc.timeMs ? pending.trip : undefined;
    if (pending !== undefined) this.trips.delete(oc.cmd.sessionId);
    const subject = oc.subject;
    let kept: string | undefined;
    if (!REDECIDED.has(rec.reason) || subject === undefined) kept = rec.reason;
    // The token's zone claim is not in the audit: a command judged on it cannot be judged again.
    else if (rec.reason === 'CROSS_ZONE' || rec.shadowReasons.includes('CROSS_ZONE')) kept = 'CROSS_ZONE';
    if (kept !== undefined || subject === undefined) {
      const k = kept ?? rec.reason;
      this.summary.notRedecided[k] = (this.summary.notRedecided[k] ?? 0) + 1;
      return;
    }
    const candidate = this.decide(gw, oc, subject, recordedTrip);
    if (candidate === 'interlock-unknown' || candidate === 'step-base-unknown') {
      if (candidate === 'interlock-unknown') this.summary.interlockUnknown++;
      else this.summary.stepBaseUnknown++;
      this.group(candidate, oc, this.verdictOf(oc), { effect: 'allow', reason: 'ALLOWED', ruleId: '' });
      return;
    }
    let kind: ChangeKind | undefined;
    if (rec.effect === 'allow' && candidate.effect === 'deny') kind = 'newly-denied';
    else if (rec.effect === 'deny' && candidate.effect === 'allow') kind = 'newly-allowed';
    else if (rec.effect === 'deny' && rec.reason !== candidate.reason) kind = 'reason-changed';
    if (kind === undefined) {
      this.summary.unchanged++;
      if (rec.effect === 'allow' && rec.ruleId !== candidate.ruleId) this.summary.ruleChanged++;
      return;
    }
    const recorded = this.verdictOf(oc);
    if (kind === 'newly-denied') this.summary.newlyDenied++;
    else if (kind === 'newly-allowed') this.summary.newlyAllowed++;
    else this.summary.reasonChanged++;
    this.onChange?.(kind, oc, recorded, candidate);
    this.group(kind, oc, recorded, candidate);
    if (this.listed[kind] >= this.opts.maxListed) {
      this.unlisted[kind]++;
      return;
    }
    this.listed[kind]++;
    this.changes.push({
      kind,
      gatewayId: oc.gatewayId,
      seq: oc.seq,
      time: new Date(oc.timeMs).toISOString(),
      workload: subject.workloadId,
      asset: oc.cmd.assetId,
      operation: oc.cmd.operation,
      command: describeCommand(oc.cmd),
      recorded,
      candidate,
    });
  }

  private verdictOf(oc: ObservedCommand): Verdict {
    const r = oc.recorded;
    const v: Verdict = { effect: r.effect, reason: r.reason, ruleId: r.ruleId };
    if (r.interlockId) v.interlockId = r.interlockId;
    if (r.shadowReason) v.shadow = r.shadowReason;
    return v;
  }

  /**
   * The candidate's verdict on one recorded command, in the pipeline's order, and its commit: what
   * the candidate would have forwarded spends its budgets now; the writes the gateway did forward
   * wait for their recorded outcome (settle), the others are settled refused at once (the PLC never
   * got them).
   */
  private decide(gw: GatewayState, oc: ObservedCommand, subject: Subject, trip: NonNullable<DecodedRecord['interlockTrip']> | undefined): Verdict | Unknown {
    const { cmd, recorded } = oc;
    resolveWith(gw.resolver, cmd);
    const d = gw.policy.decide(cmd, subject, oc.timeMs, gw.memory);
    let v: Verdict | Unknown = { effect: d.effect, reason: d.reason, ruleId: d.ruleId };
    if (d.shadow) v.shadow = d.shadow.reason;
    // The gateway read the base from the PLC; the audit kept only the verdict it led to.
    if (d.reason === 'STEP_BASE_STALE' && recorded.reason !== 'STEP_BASE_STALE') v = 'step-base-unknown';
    // Interlocks hold whatever policy says, also over an approval (src/gateway/pipeline.ts).
    else if ((d.effect === 'allow' || d.reason === 'APPROVAL_REQUIRED') && gw.interlocks !== undefined) {
      // Implausible (stuck, jumping) is judged on the inputs' history, which the audit does not
      // hold: where the candidate keeps the interlock that said so, what it would say is unknown.
      if (recorded.reason === 'INTERLOCK_INPUT_IMPLAUSIBLE' && this.interlockIds.has(recorded.interlockId)) v = 'interlock-unknown';
      else {
        if (trip !== undefined) gw.inputs!.load(trip, oc.timeMs);
        // The recorded inputs are what the gateway judged the command on (confirmed, with `confirm`).
        const t: InterlockTrip | undefined = gw.interlocks.check(cmd, oc.timeMs, 0);
        if (trip !== undefined) gw.inputs!.clear();
        // Inputs never recorded for this command: the audit cannot say what the interlock saw.
        if (t !== undefined) v = t.inputs.some((i) => i.ageMs < 0) ? 'interlock-unknown' : { effect: 'deny', reason: t.reason, ruleId: d.ruleId, interlockId: t.interlockId };
      }
    }
    // A grant consumed at the time would have been consumed under the candidate too.
    if (typeof v === 'object' && v.reason === 'APPROVAL_REQUIRED' && recorded.effect === 'allow' && recorded.approvalId !== '') {
      v = { effect: 'allow', reason: 'ALLOWED', ruleId: d.ruleId };
    }
    const forwardedThen = recorded.effect === 'allow';
    const outcomeComes = forwardedThen && mustBeDurable(cmd.operation);
    // Unknown verdicts commit as the gateway did: it forwarded the command or it did not.
    const forwardsNow = typeof v === 'object' ? v.effect === 'allow' : forwardedThen;
    const plan = forwardsNow ? d.forward : undefined;
    if (plan !== undefined) gw.memory.forwarded(plan, oc.timeMs);
    if (outcomeComes) {
      const pending: PendingOutcome = {};
      if (plan !== undefined) pending.plan = plan;
      else if (cmd.operation === 'write' && cmd.values !== undefined) pending.writes = Object.entries(cmd.values).map(([point, value]) => ({ asset: cmd.assetId, point, value }));
      if (pending.plan !== undefined || pending.writes !== undefined) this.expect(gw, oc.seq, pending);
    } else if (plan !== undefined) {
      gw.memory.settled(plan, forwardedThen ? 'acknowledged' : 'refused', oc.timeMs);
    }
    return v;
  }

  private expect(gw: GatewayState, seq: number, pending: PendingOutcome): void {
    if (gw.pending.size >= MAX_PENDING_OUTCOMES) {
      // Outcomes come within a request timeout; one this late was lost: what the PLC holds is unknown.
      const [oldest, p] = gw.pending.entries().next().value as [number, PendingOutcome];
      gw.pending.delete(oldest);
      if (p.plan !== undefined) gw.memory.settled(p.plan, 'unknown', 0);
    }
    gw.pending.set(seq, pending);
  }

  /** An outcome record: the PLC's answer to a forwarded command settles what it wrote. */
  private settle(gatewayId: string, decisionSeq: number, status: string, timeMs: number): void {
    const gw = this.gateways.get(gatewayId);
    const p = gw?.pending.get(decisionSeq);
    if (gw === undefined || p === undefined) return;
    gw.pending.delete(decisionSeq);
    const result = RESULT_OF[status] ?? 'unknown';
    if (p.plan !== undefined) gw.memory.settled(p.plan, result, timeMs);
    else if (result === 'acknowledged') for (const w of p.writes ?? []) gw.memory.observe(w.asset, w.point, w.value, timeMs);
  }

  private group(kind: ChangeGroup['kind'], oc: ObservedCommand, recorded: Verdict, candidate: Verdict): void {
    const show = (v: Verdict): string =>
      `${v.effect} ${v.reason}${v.ruleId ? ` (${v.ruleId})` : ''}${v.interlockId ? ` interlock ${v.interlockId}` : ''}${v.shadow ? ` shadow ${v.shadow}` : ''}`;
    const points = oc.cmd.points.join(',');
    const rec = show(recorded);
    const cand =
      kind === 'interlock-unknown' ? 'allowed by policy; interlock inputs not in the audit'
      : kind === 'step-base-unknown' ? "max_step needs the PLC's value, not in the audit"
      : show(candidate);
    const key = `${kind}\u0000${oc.subject?.workloadId}\u0000${oc.cmd.assetId}\u0000${oc.cmd.operation}\u0000${points}\u0000${rec}\u0000${cand}`;
    const at = { gatewayId: oc.gatewayId, seq: oc.seq, time: new Date(oc.timeMs).toISOString() };
    const g = this.groups.get(key);
    if (g !== undefined) {
      g.count++;
      g.last = at;
      return;
    }
    if (this.groups.size >= this.opts.maxGroups) {
      this.groupsDropped++;
      return;
    }
    this.groups.set(key, { kind, workload: oc.subject?.workloadId ?? '', asset: oc.cmd.assetId, operation: oc.cmd.operation, points, recorded: rec, candidate: cand, count: 1, first: at, last: at });
  }

  /** Change groups, largest first within each kind. */
  changeGroups(): ChangeGroup[] {
    const order = [...CHANGE_KINDS, 'interlock-unknown', 'step-base-unknown'];
    return [...this.groups.values()].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || b.count - a.count);
  }
}
