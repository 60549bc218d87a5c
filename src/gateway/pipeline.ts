// The enforcement chain, read top to bottom as the path of one command (docs/architecture.md,
// "The path of one command"): bundle → resolve points → identity → emergency freeze → policy →
// interlocks → approval → audit (durable for writes) → Decision; policy memory is committed only
// once every gate said yes (docs/policy.md, "Decide, then commit").
// Every step that cannot prove what it must turns into a deny with its reason; nothing here throws
// to the adapter.
import type { Clock } from '../core/clock.js';
import type { Command, Decision, Subject } from '../core/command.js';
import { deny } from '../core/command.js';
import type { Logger } from '../core/log.js';
import type { CommandPipeline, Outcome, Session, WireInfo } from '../core/pipeline.js';
import type { Reason } from '../core/reasons.js';
import type { AuditLog } from '../audit/log.js';
import { approvalRequestRecord, decisionRecord, interlockTripRecord, outcomeRecord, sessionRecord, violationRecord, withOutcome, type AuditEvent } from '../audit/records.js';
import type { TokenRegistry } from '../identity/registry.js';
import type { ApprovalStore } from '../approvals/store.js';
import type { InterlockEngine, InterlockTrip } from '../interlocks/engine.js';
import type { FreezeStore } from '../freeze/store.js';
import type { PolicyDecision, PolicyEngine } from '../policy/engine.js';
import { PolicyMemory, type Forwarding } from '../policy/memory.js';
import type { GatewayMetrics } from './metrics.js';
import type { PolicyState } from './policy-state.js';

export interface PipelineDeps {
  policy: PolicyState;
  tokens: TokenRegistry;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  metrics?: GatewayMetrics;
  /** Spool full: deny state-changing commands only (reads go on) or every command. */
  auditWhenFull?: 'deny_writes' | 'deny_all';
  /**
   * The active bundle's interlocks; 'broken' when the bundle has interlocks the gateway could not
   * set up (every state-changing command is then refused: fail closed).
   */
  interlocks?: () => InterlockEngine | 'broken' | undefined;
  approvals?: ApprovalStore;
  /** The operator's emergency freezes (docs/operator.md): asked before policy. */
  freezes?: Pick<FreezeStore, 'check'>;
  /** Rate-limit budgets and step bases (docs/policy.md, Decide, then commit); default: a memory of its own. */
  memory?: PolicyMemory;
}

/** A decision whose record waits for the command's answer (docs/audit.md, One record per read). */
interface AwaitingOutcome extends Decision {
  recordAtOutcome?: AuditEvent;
}

/** A decision and who it was made for. */
interface Decided {
  subject: Subject;
  decision: Decision;
}

/**
 * What is known of a session before (or without) a token: the certificate identity. Records of
 * commands refused for want of a token still say which workload tried.
 */
const certificateSubjects = new WeakMap<Session, Subject>();
function certificateSubject(session: Session): Subject {
  let s = certificateSubjects.get(session);
  if (s === undefined) {
    s = Object.freeze({
      workloadId: session.workloadId, owner: '', taskId: '', taskPurpose: '', jti: '', roles: [], scopes: [],
      assurance: session.assurance === 'static-ip+token' ? 'static-ip+token' : 'none', certThumbprint: session.certThumbprint, issuer: '', expiresAtMs: 0, issuedAtMs: 0,
    } satisfies Subject);
    certificateSubjects.set(session, s);
  }
  return s;
}

export class EnforcementPipeline implements CommandPipeline {
  readonly memory: PolicyMemory;
  private readonly trips = new WeakMap<Command, InterlockTrip>();

  constructor(private readonly deps: PipelineDeps) {
    this.memory = deps.memory ?? new PolicyMemory();
  }

  authorize(session: Session, cmd: Command, wire: WireInfo): Decision | Promise<Decision> {
    const started = performance.now();
    const decided = this.decide(session, cmd);
    if (decided instanceof Promise) return decided.then((d) => this.commit(session, cmd, d, wire, started));
    return this.commit(session, cmd, decided, wire, started);
  }

  /** The last gates: the command's tokens are spent when it goes on, and the decision is recorded. */
  private commit(session: Session, cmd: Command, decided: Decided, wire: WireInfo, started: number): Decision | Promise<Decision> {
    const forward = decided.decision.effect === 'allow' ? (decided.decision as PolicyDecision).forward : undefined;
    if (forward === undefined) return this.record(session, cmd, decided.subject, decided.decision, wire, started);
    // Decide, then commit (docs/policy.md): every gate said yes, so the command's tokens are spent
    // now, in the turn it was decided in (a pipelined command cannot pass on the same token), and
    // given back if the audit refuses it after all.
    this.memory.forwarded(forward, this.deps.clock.now());
    const recorded = this.record(session, cmd, decided.subject, decided.decision, wire, started);
    if (recorded instanceof Promise) return recorded.then((d) => this.unlessRefused(d, forward));
    return this.unlessRefused(recorded, forward);
  }

  private unlessRefused(d: Decision, forward: Forwarding): Decision {
    if (d.effect !== 'allow') this.memory.returned(forward);
    return d;
  }

  private decide(session: Session, cmd: Command): Decided | Promise<Decided> {
    const { policy, tokens, clock } = this.deps;
    const engine = policy.engine;
    const resolver = policy.resolver;
    if (engine === undefined || resolver === undefined) return { subject: certificateSubject(session), decision: deny('BUNDLE_UNAVAILABLE') };
    const revision = engine.revision;
    // The protocol's own resolver, from the same bundle as the engine (src/assets/resolver.ts).
    const routed = resolver.resolve(cmd);

    const subject = session.subject !== undefined ? tokens.check(session.subject) : tokens.current(session.workloadId);
    if (typeof subject === 'string') return { subject: session.subject ?? certificateSubject(session), decision: deny(subject, '', revision) };
    // A token is bound to the certificate it was registered with (RFC 8705); another certificate
    // carrying the same SPIFFE ID does not inherit it.
    if (subject.certThumbprint !== undefined && subject.certThumbprint !== session.certThumbprint) {
      return { subject, decision: deny('TOKEN_BINDING_MISMATCH', '', revision) };
    }
    // An address no asset answers to (a Modbus unit id) has no path behind the gateway (0x0A, as a
    // Modbus gateway answers), told apart from a target the rules do not allow; only once identity is settled.
    if (!routed) return { subject, decision: deny('NO_ROUTE', '', revision) };
    const now = clock.now();
    const decision = this.policyDecision(engine, cmd, subject, now);
    // An interlock with `confirm` has its inputs read again before a command it guards goes on
    // (a bounded wait); only for commands policy would let through, so a refused agent cannot
    // make the gateway read the PLC. The token, freeze and policy are asked again after the wait
    // (pure, cheap): what changed meanwhile (a revocation, a freeze, a spent budget) counts.
    if (decision.effect === 'allow' || decision.reason === 'APPROVAL_REQUIRED') {
      const interlocks = this.deps.interlocks?.();
      let confirming: { done: Promise<void>; after: number } | undefined;
      try {
        confirming = interlocks === undefined || interlocks === 'broken' ? undefined : interlocks.confirm(cmd);
      } catch (err) {
        // No confirming read: the check below finds the inputs unconfirmed and denies.
        this.deps.logger.error({ err: (err as Error).message }, 'interlock confirming read failed');
        confirming = { done: Promise.resolve(), after: Infinity };
      }
      if (confirming !== undefined) {
        const { after } = confirming;
        return confirming.done.then(() => {
          const still = tokens.check(subject);
          if (typeof still === 'string') return { subject, decision: deny(still, '', revision) };
          const later = clock.now();
          return this.afterPolicy(session, cmd, subject, this.policyDecision(engine, cmd, subject, later), later, after);
        });
      }
    }
    return this.afterPolicy(session, cmd, subject, decision, now, Infinity);
  }

  /** The emergency freeze, then the policy engine; never throws. */
  private policyDecision(engine: PolicyEngine, cmd: Command, subject: Subject, now: number): Decision {
    const revision = engine.revision;
    // Emergency freeze before policy: no rule, scope or approval can outweigh an operator's freeze.
    const frozen = this.deps.freezes?.check(cmd, subject, now);
    if (frozen !== undefined) return { ...deny('EMERGENCY_FREEZE', '', revision), freezeId: frozen.id };
    try {
      return engine.decide(cmd, subject, now, this.memory);
    } catch (err) {
      // Fail closed: a policy bug is a deny, never a forward.
      this.deps.logger.error({ err: (err as Error).message, asset: cmd.assetId }, 'policy evaluation failed');
      return deny('NO_MATCHING_RULE', '', revision);
    }
  }

  /** Interlocks and approvals, after policy. `confirmedAfter`: inputs of a confirming interlock must be read by a later request. */
  private afterPolicy(session: Session, cmd: Command, subject: Subject, policyDecision: Decision, now: number, confirmedAfter: number): Decided {
    let decision = policyDecision;
    const revision = decision.bundleRevision;
    // Interlocks hold whatever policy says, also over an approval: a human cannot approve a
    // command into an unsafe process state.
    if (decision.effect === 'allow' || decision.reason === 'APPROVAL_REQUIRED') {
      const trip = this.checkInterlocks(session, cmd, subject, now, confirmedAfter);
      if (trip !== undefined) return { subject, decision: { ...deny(trip.reason, decision.ruleId, revision), interlockId: trip.interlockId } };
    }
    if (decision.reason === 'APPROVAL_REQUIRED') {
      const approvals = this.deps.approvals;
      if (approvals !== undefined) {
        const grant = approvals.consume(cmd, subject, now);
        if (grant !== undefined) {
          decision = { ...decision, effect: 'allow', reason: 'ALLOWED', approvalId: grant, durable: true };
          const request = approvals.get(grant);
          if (request !== undefined) this.appendSafely(approvalRequestRecord('consumed', request));
        } else {
          const id = approvals.request(cmd, subject, decision.ruleId, now, (decision as PolicyDecision).approval);
          if (id !== undefined) {
            decision = { ...decision, approvalId: id };
            // Repeated attempts while a request is pending reuse it: only a new one is an event.
            const request = approvals.get(id);
            if (request !== undefined && request.requestedAtMs === now) this.appendSafely(approvalRequestRecord('requested', request));
          }
        }
      }
    }
    return { subject, decision };
  }

  private checkInterlocks(session: Session, cmd: Command, subject: Subject, now: number, confirmedAfter: number): InterlockTrip | undefined {
    const interlocks = this.deps.interlocks?.();
    if (interlocks === undefined) return undefined;
    let trip: InterlockTrip | undefined;
    if (interlocks === 'broken') {
      if (cmd.operation === 'read' || cmd.operation === 'browse' || cmd.operation === 'subscribe') return undefined;
      trip = { reason: 'INTERLOCK_INPUT_STALE', interlockId: '', point: '', inputs: [], detail: 'the bundle has interlocks the gateway could not set up' } as InterlockTrip;
    } else {
      try {
        trip = interlocks.check(cmd, now, confirmedAfter);
      } catch (err) {
        this.deps.logger.error({ err: (err as Error).message }, 'interlock evaluation failed');
        trip = { reason: 'INTERLOCK_INPUT_STALE', interlockId: '', point: '', inputs: [], detail: 'interlock evaluation failed' } as InterlockTrip;
      }
    }
    if (trip !== undefined) {
      this.trips.set(cmd, trip);
      this.appendSafely(interlockTripRecord({ sessionId: session.id, subject, assetId: cmd.assetId, trip }));
      this.deps.logger.warn(
        { session: session.id, workload: session.workloadId, asset: cmd.assetId, interlock: trip.interlockId, reason: trip.reason, inputs: trip.inputs },
        'interlock refused a command',
      );
    }
    return trip;
  }

  /** The interlock's account of a command it refused (the MCP front tells the agent which, on what values). */
  tripOf(cmd: Command): InterlockTrip | undefined {
    return this.trips.get(cmd);
  }

  /** Records an event that gates nothing by itself (a trip, an approval request): a refusal is logged, never thrown. */
  private appendSafely(event: AuditEvent): void {
    try {
      this.deps.audit.append(event);
    } catch (err) {
      this.deps.logger.error({ err: (err as Error).message, event: Object.keys(event)[0] }, 'audit record refused');
    }
  }

  refuse(session: Session, cmd: Command, reason: Reason, wire: WireInfo): Decision {
    const decision = deny(reason, '', this.deps.policy.engine?.revision ?? 0);
    const subject = session.subject ?? this.deps.tokens.current(session.workloadId);
    return this.record(session, cmd, typeof subject === 'string' ? certificateSubject(session) : subject, decision, wire, performance.now()) as Decision;
  }

  /**
   * Writes the decision record. Allowed writes wait for the fsync (docs/architecture.md, Invariants); if the record cannot
   * be written, the command is denied AUDIT_UNAVAILABLE: what cannot be audited does not run.
   */
  private record(session: Session, cmd: Command, subject: Subject, decision: Decision, wire: WireInfo, startedMs: number): Decision | Promise<Decision> {
    const { audit, logger, metrics } = this.deps;
    // A full spool refuses what changes the process before it refuses anything else, so reads (and
    // the records of denials) keep the space that is left.
    if (decision.effect === 'allow' && (decision.durable || this.deps.auditWhenFull === 'deny_all') && audit.isFull()) {
      decision = deny('AUDIT_UNAVAILABLE', decision.ruleId, decision.bundleRevision);
    }
    const rec = decisionRecord(cmd, subject, decision, wire, session.remoteAddress);
    if (decision.effect === 'allow' && !decision.durable && wire.outcomeFollows === true) {
      // Recorded with its answer, in one record: what cannot be recorded then does not run now.
      if (!audit.hasRoomForRead()) {
        logger.error('audit unavailable; denying');
        const refused = this.recordRefusal(session, cmd, subject, decision, wire);
        metrics?.decided(cmd, refused, (performance.now() - startedMs) / 1000);
        return refused;
      }
      (decision as AwaitingOutcome).recordAtOutcome = rec;
      metrics?.decided(cmd, decision, (performance.now() - startedMs) / 1000);
      return decision;
    }
    if (decision.effect === 'allow' && decision.durable) {
      const decidedMs = performance.now();
      // A consumed grant is on disk before the command runs, so a crash cannot make it reusable.
      const grantDurable = decision.approvalId !== undefined && this.deps.approvals ? this.deps.approvals.whenDurable() : undefined;
      const appended = audit.appendDurable(rec);
      return (grantDurable ? Promise.all([appended, grantDurable]).then(([seq]) => seq) : appended).then(
        (seq) => {
          decision.auditSeq = seq;
          metrics?.decided(cmd, decision, (decidedMs - startedMs) / 1000);
          return decision;
        },
        (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'audit record not durable; denying');
          const refused = this.recordRefusal(session, cmd, subject, decision, wire);
          metrics?.decided(cmd, refused, (decidedMs - startedMs) / 1000);
          return refused;
        },
      );
    }
    let final = decision;
    try {
      decision.auditSeq = audit.append(rec);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'audit unavailable; denying');
      final = decision.effect === 'allow' ? this.recordRefusal(session, cmd, subject, decision, wire) : deny('AUDIT_UNAVAILABLE', decision.ruleId, decision.bundleRevision);
    }
    metrics?.decided(cmd, final, (performance.now() - startedMs) / 1000);
    return final;
  }

  /**
   * An allowed command whose record the spool refused is denied AUDIT_UNAVAILABLE, and that denial
   * is recorded in the room kept for denials (a full log counts it as dropped: docs/audit.md, Full spool).
   */
  private recordRefusal(session: Session, cmd: Command, subject: Subject, decision: Decision, wire: WireInfo): Decision {
    const refused = deny('AUDIT_UNAVAILABLE', decision.ruleId, decision.bundleRevision);
    try {
      refused.auditSeq = this.deps.audit.append(decisionRecord(cmd, subject, refused, wire, session.remoteAddress));
    } catch {
      // counted by the log, reported in a RecordsDroppedEvent once there is room
    }
    return refused;
  }

  outcome(session: Session, cmd: Command, decision: Decision, outcome: Outcome): void {
    this.deps.metrics?.outcome(cmd, outcome);
    // The PLC's answer settles what the command wrote: only an acknowledged write moves a step base.
    const forward = (decision as PolicyDecision).forward;
    if (forward !== undefined) {
      this.memory.settled(forward, outcome.status === 'ok' ? 'acknowledged' : outcome.status === 'exception' ? 'refused' : 'unknown', this.deps.clock.now());
    }
    // A read's answer is the PLC's value of what it read: a max_step base as of when the read was
    // sent (docs/policy.md, max_step and its base); only on the bundle the read was resolved with.
    if (outcome.readValue !== undefined && outcome.status === 'ok' && cmd.operation === 'read') {
      const engine = this.deps.policy.engine;
      if (engine !== undefined && engine.revision === decision.bundleRevision) {
        engine.observeRead(cmd, outcome.readValue, this.deps.clock.now() - outcome.latencyUs / 1000, this.memory);
      }
    }
    const awaiting = decision as AwaitingOutcome;
    const rec = awaiting.recordAtOutcome;
    if (rec !== undefined) {
      awaiting.recordAtOutcome = undefined;
      const seq = this.appendQuietly(
        withOutcome(rec, { sessionId: session.id, status: outcome.status, exceptionCode: outcome.exceptionCode, upstreamLatencyUs: outcome.latencyUs, transactionId: rec.decision?.command?.transactionId ?? 0 }),
      );
      if (seq !== undefined) decision.auditSeq = seq;
      return;
    }
    this.appendQuietly(
      outcomeRecord({
        decisionSeq: decision.auditSeq ?? 0,
        sessionId: session.id,
        status: outcome.status,
        exceptionCode: outcome.exceptionCode,
        upstreamLatencyUs: outcome.latencyUs,
        workloadId: session.workloadId,
        assetId: cmd.assetId,
        points: cmd.points,
        operation: cmd.operation,
      }),
    );
  }

  sessionOpened(session: Session): void {
    this.appendQuietly(sessionRecord({ kind: 'open', sessionId: session.id, protocol: session.protocol, remoteAddress: session.remoteAddress, subject: session.subject ?? certificateSubject(session) }));
  }

  sessionClosed(session: Session, why: string): void {
    this.appendQuietly(sessionRecord({ kind: 'close', sessionId: session.id, protocol: session.protocol, remoteAddress: session.remoteAddress, subject: certificateSubject(session), detail: why }));
  }

  violation(session: Partial<Session> & { remoteAddress: string }, reason: Reason, code: string, message: string): void {
    this.appendQuietly(
      violationRecord({
        sessionId: session.id ?? '',
        protocol: session.protocol ?? 'modbus',
        remoteAddress: session.remoteAddress,
        detail: `${reason} ${code}: ${message}`,
      }),
    );
  }

  /** Records with nothing to gate on (outcomes, session events): a failure is logged loudly. */
  private appendQuietly(rec: AuditEvent): number | undefined {
    try {
      return this.deps.audit.append(rec);
    } catch (err) {
      this.deps.logger.error({ err: (err as Error).message }, 'audit record lost: spool unavailable');
      return undefined;
    }
  }
}
