// Each workload's own recent decisions, so an agent can ask the agent API why it was refused
// (GET /v1/decisions) instead of guessing from a bare Modbus exception code.
// Owns a bounded ring per workload (fixed slots, reused: no allocation per command once warm) and
// a bounded LRU of workloads; it is fed by a pass-through pipeline wrapper, so the enforcement
// chain itself knows nothing of it. Never holds a token: commands and decisions carry none.
// The audit log stays the record of truth; this is a convenience view that forgets.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import { targetText, type Command, type Decision } from '../core/command.js';
import type { CommandPipeline, Outcome, Session, WireInfo } from '../core/pipeline.js';
import { modbusExceptionFor, type Reason } from '../core/reasons.js';

export interface RecentDecisionsOptions {
  clock: Clock;
  /** Decisions kept per workload (the most `limit` may ask for). Default 100. */
  perWorkload?: number;
  /** Workloads remembered; the least recently active is forgotten first. Default 1024. */
  maxWorkloads?: number;
}

interface Slot {
  atMs: number;
  sessionId: string;
  cmd: Command | undefined;
  decision: Decision | undefined;
}

class Ring {
  readonly slots: Slot[] = [];
  next = 0;
  constructor(private readonly capacity: number) {}

  put(atMs: number, sessionId: string, cmd: Command, decision: Decision): void {
    let slot = this.slots[this.next];
    if (slot === undefined) {
      slot = { atMs, sessionId, cmd, decision };
      this.slots.push(slot);
    } else {
      slot.atMs = atMs;
      slot.sessionId = sessionId;
      slot.cmd = cmd;
      slot.decision = decision;
    }
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first. */
  newest(limit: number): Slot[] {
    const out: Slot[] = [];
    const n = this.slots.length;
    for (let i = 1; i <= n && out.length < limit; i++) out.push(this.slots[(this.next - i + n * 2) % n]!);
    return out;
  }
}

/** What an agent sees of one of its decisions (JSON of GET /v1/decisions). */
export interface DecisionView {
  at: string;
  session: string;
  protocol: string;
  asset: string;
  operation: string;
  function_code: number;
  service?: string;
  targets: string[];
  points: string[];
  values?: Record<string, number>;
  effect: 'allow' | 'deny';
  reason: Reason;
  rule: string;
  bundle_revision: number;
  interlock?: string;
  approval?: string;
  audit_seq?: number;
  /** The Modbus exception the agent received for a deny (0 for allows and OPC UA). */
  modbus_exception: number;
}

function view(s: Slot): DecisionView {
  const cmd = s.cmd!;
  const d = s.decision!;
  return {
    at: new Date(s.atMs).toISOString(),
    session: s.sessionId,
    protocol: cmd.protocol,
    asset: cmd.assetId,
    operation: cmd.operation,
    function_code: cmd.functionCode,
    ...(cmd.service !== undefined ? { service: cmd.service } : {}),
    targets: cmd.targets.map(targetText),
    points: cmd.points,
    ...(cmd.values !== undefined ? { values: cmd.values } : {}),
    effect: d.effect,
    reason: d.reason,
    rule: d.ruleId,
    bundle_revision: d.bundleRevision,
    ...(d.interlockId ? { interlock: d.interlockId } : {}),
    ...(d.approvalId ? { approval: d.approvalId } : {}),
    ...(d.auditSeq !== undefined ? { audit_seq: d.auditSeq } : {}),
    modbus_exception: d.effect === 'deny' && cmd.protocol === 'modbus' ? modbusExceptionFor(d.reason) : 0,
  };
}

export class RecentDecisions {
  readonly perWorkload: number;
  private readonly rings: LRUCache<string, Ring>;
  private readonly clock: Clock;

  constructor(opts: RecentDecisionsOptions) {
    this.perWorkload = opts.perWorkload ?? 100;
    if (!Number.isSafeInteger(this.perWorkload) || this.perWorkload < 1) throw new RangeError('perWorkload must be an integer >= 1');
    this.rings = new LRUCache({ max: opts.maxWorkloads ?? 1024 });
    this.clock = opts.clock;
  }

  record(session: Session, cmd: Command, decision: Decision): void {
    let ring = this.rings.get(session.workloadId);
    if (ring === undefined) {
      ring = new Ring(this.perWorkload);
      this.rings.set(session.workloadId, ring);
    }
    ring.put(this.clock.now(), session.id, cmd, decision);
  }

  /** The workload's most recent decisions, newest first; at most `limit` (capped at perWorkload). */
  list(workloadId: string, limit: number): DecisionView[] {
    const ring = this.rings.peek(workloadId);
    return ring === undefined ? [] : ring.newest(Math.min(limit, this.perWorkload)).map(view);
  }
}

/**
 * A pipeline that records every final decision (after durability and any AUDIT_UNAVAILABLE
 * downgrade) into `recent`, and otherwise is `inner`. Recording cannot fail the command: it only
 * writes into preallocated slots.
 */
export function recordingPipeline(inner: CommandPipeline, recent: RecentDecisions): CommandPipeline {
  return {
    authorize(session: Session, cmd: Command, wire: WireInfo): Decision | Promise<Decision> {
      const d = inner.authorize(session, cmd, wire);
      if (d instanceof Promise) {
        // Only durable writes take this path; they already wait for an fsync.
        return d.then((final) => {
          recent.record(session, cmd, final);
          return final;
        });
      }
      recent.record(session, cmd, d);
      return d;
    },
    refuse(session: Session, cmd: Command, reason: Reason, wire: WireInfo): Decision {
      const d = inner.refuse(session, cmd, reason, wire);
      recent.record(session, cmd, d);
      return d;
    },
    outcome: (session: Session, cmd: Command, decision: Decision, outcome: Outcome) => inner.outcome(session, cmd, decision, outcome),
    sessionOpened: (session: Session) => inner.sessionOpened(session),
    sessionClosed: (session: Session, why: string) => inner.sessionClosed(session, why),
    violation: (session, reason, code, message) => inner.violation(session, reason, code, message),
  };
}
