// Pure builders from our model (src/core/command.ts) to audit events: what the pipeline hands to
// AuditLog.append. They run per command, so they only copy references into plain objects (no
// encoding, no hashing, no JSON); the log stamps gateway id, seq, time and prev_hash.
// Never copy a token or a key into a record: Subject carries only the token id and thumbprint.
import { createHash } from 'node:crypto';
import type { Command, Decision, Protocol, Subject, TypedValue } from '../core/command.js';
import type { McpCallInfo } from '../core/pipeline.js';
import type { Reason } from '../core/reasons.js';
import type { Revocation } from '../identity/revocation.js';
import type { FreezeChange } from '../freeze/store.js';
import type { ApprovalRequest } from '../approvals/store.js';
import { pb } from './schema.js';
import type { AuditRecordProps, CommandInfoProps, IdentityProps } from './schema.js';

/** A record before the log stamps it. */
export type AuditEvent = Omit<AuditRecordProps, 'schemaVersion' | 'gatewayId' | 'seq' | 'timeUnixMs' | 'prevHash'>;

export type OutcomeStatus = 'ok' | 'exception' | 'upstream_unavailable' | 'upstream_timeout' | 'not_forwarded';

// A session's Subject object is reused for each of its commands: map it once. Keyed by object
// identity, so only a frozen Subject (verify.ts freezes what it returns) is cached, and the
// IdentityProps it maps to is frozen too (record-encoder.ts caches its bytes by that object).
const identities = new WeakMap<Subject, Readonly<IdentityProps>>();

export function identityOf(s: Subject): Readonly<IdentityProps> {
  let id = identities.get(s);
  if (id === undefined) {
    id = Object.freeze({
      workloadId: s.workloadId,
      owner: s.owner,
      taskId: s.taskId,
      taskPurpose: s.taskPurpose,
      jti: s.jti,
      actSub: s.actSub ?? [],
      roles: s.roles,
      scopes: s.scopes,
      assurance: s.assurance,
      certThumbprint: s.certThumbprint ?? '',
      issuer: s.issuer,
    });
    if (Object.isFrozen(s)) identities.set(s, id);
  }
  return id;
}

export function commandInfo(cmd: Command, extra?: { unitId?: number; transactionId?: number }, remoteAddress = ''): CommandInfoProps {
  return {
    sessionId: cmd.sessionId,
    protocol: cmd.protocol,
    assetId: cmd.assetId,
    operation: cmd.operation,
    functionCode: cmd.functionCode,
    service: cmd.service ?? '',
    targets: cmd.targets,
    points: cmd.points,
    rawValues: cmd.rawValues ?? [],
    values: cmd.values ?? {},
    typedValues: cmd.typedValues === undefined ? {} : typedValuesText(cmd.typedValues),
    unitId: extra?.unitId ?? 0,
    transactionId: extra?.transactionId ?? 0,
    remoteAddress,
  };
}

/** Longest typed value kept whole in a record; a longer one keeps its head, length and SHA-256. */
const MAX_TYPED_VALUE_TEXT = 1024;

function jsonOf(v: TypedValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return `base64:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')}`;
  if (Array.isArray(v)) return v.map(jsonOf);
  return v;
}

/**
 * Typed values as the record's JSON text per name (strings quoted, 64-bit integers as decimal
 * strings, times ISO 8601, byte strings `base64:…`). Only writes and calls carry them.
 */
export function typedValuesText(values: Record<string, TypedValue>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(values)) {
    const text = JSON.stringify(jsonOf(v)) ?? 'null';
    out[name] =
      text.length <= MAX_TYPED_VALUE_TEXT
        ? text
        : `${text.slice(0, MAX_TYPED_VALUE_TEXT)}… (${text.length} chars, sha256 ${createHash('sha256').update(text).digest('hex')})`;
  }
  return out;
}

export function decisionRecord(
  cmd: Command,
  subject: Subject | undefined,
  decision: Decision,
  extra?: { unitId?: number; transactionId?: number; mcp?: McpCallInfo },
  /** The agent's address:port (the SOC's src_endpoint). */
  remoteAddress = '',
): AuditEvent {
  const mcp = extra?.mcp;
  return {
    decision: {
      ...(mcp !== undefined
        ? {
            mcp: {
              clientName: mcp.clientName,
              clientVersion: mcp.clientVersion,
              protocolVersion: mcp.protocolVersion,
              mcpSessionId: mcp.mcpSessionId,
              tool: mcp.tool,
              arguments: mcp.arguments,
            },
          }
        : {}),
      subject: subject ? identityOf(subject) : null,
      command: commandInfo(cmd, extra, remoteAddress),
      decision: {
        effect: decision.effect === 'allow' ? pb.Effect.ALLOW : pb.Effect.DENY,
        reason: decision.reason,
        ruleId: decision.ruleId,
        bundleRevision: decision.bundleRevision,
        interlockId: decision.interlockId ?? '',
        approvalId: decision.approvalId ?? '',
        durable: decision.durable,
        shadowReason: decision.shadow?.reason ?? '',
        shadowRuleId: decision.shadow?.ruleId ?? '',
        principal: decision.principal ?? '',
        freezeId: decision.freezeId ?? '',
        ...(decision.shadows !== undefined ? { shadows: decision.shadows.map((f) => ({ reason: f.reason, ruleId: f.ruleId, principal: f.principal ?? '' })) } : {}),
      },
    },
  };
}

/**
 * A decision record closed by its answer (docs/audit.md, One record per read): the same decision,
 * with the outcome inside. A new event object; `rec` is left as it was.
 */
export function withOutcome(rec: AuditEvent, o: { sessionId: string; status: OutcomeStatus; exceptionCode?: number; upstreamLatencyUs: number; transactionId?: number }): AuditEvent {
  return {
    decision: {
      ...rec.decision,
      // decision_seq 0 (this record); who and what are the decision's, so not repeated here.
      outcome: {
        status: o.status,
        exceptionCode: o.exceptionCode ?? 0,
        upstreamLatencyUs: o.upstreamLatencyUs,
        sessionId: o.sessionId,
        transactionId: o.transactionId ?? 0,
      },
    },
  };
}

export function outcomeRecord(o: {
  decisionSeq: number;
  sessionId: string;
  status: OutcomeStatus;
  exceptionCode?: number;
  upstreamLatencyUs?: number;
  transactionId?: number;
  /** Who and what, so an outcome names the agent and the points without its decision record. */
  workloadId?: string;
  assetId?: string;
  points?: string[];
  operation?: string;
}): AuditEvent {
  return {
    outcome: {
      decisionSeq: o.decisionSeq,
      status: o.status,
      exceptionCode: o.exceptionCode ?? 0,
      upstreamLatencyUs: o.upstreamLatencyUs ?? 0,
      sessionId: o.sessionId,
      transactionId: o.transactionId ?? 0,
      workloadId: o.workloadId ?? '',
      assetId: o.assetId ?? '',
      points: o.points ?? [],
      operation: o.operation ?? '',
    },
  };
}

export function sessionRecord(s: {
  kind: 'open' | 'close';
  sessionId: string;
  protocol: Protocol;
  remoteAddress: string;
  listener?: string;
  subject?: Subject;
  reason?: Reason;
  detail?: string;
}): AuditEvent {
  return {
    session: {
      kind: s.kind,
      sessionId: s.sessionId,
      protocol: s.protocol,
      remoteAddress: s.remoteAddress,
      listener: s.listener ?? '',
      subject: s.subject ? identityOf(s.subject) : null,
      reason: s.reason ?? '',
      detail: s.detail ?? '',
    },
  };
}

export function tokenRecord(t: {
  kind: 'accepted' | 'rejected';
  sessionId: string;
  subject?: Subject;
  reason: Reason;
  detail?: string;
  expiresAtMs?: number;
}): AuditEvent {
  return {
    token: {
      kind: t.kind,
      sessionId: t.sessionId,
      subject: t.subject ? identityOf(t.subject) : null,
      reason: t.reason,
      detail: t.detail ?? '',
      expiresAtUnixMs: t.expiresAtMs ?? t.subject?.expiresAtMs ?? 0,
    },
  };
}

export function bundleRecord(b: {
  kind: 'loaded' | 'rejected';
  revision: number;
  source: string;
  reason?: Reason;
  digest?: string;
  keyId?: string;
  detail?: string;
}): AuditEvent {
  return {
    bundle: {
      kind: b.kind,
      revision: b.revision,
      reason: b.reason ?? '',
      source: b.source,
      digest: b.digest ?? '',
      keyId: b.keyId ?? '',
      detail: b.detail ?? '',
    },
  };
}

export function violationRecord(v: {
  sessionId: string;
  protocol: Protocol;
  remoteAddress: string;
  detail: string;
  functionCode?: number;
}): AuditEvent {
  return {
    violation: {
      sessionId: v.sessionId,
      protocol: v.protocol,
      remoteAddress: v.remoteAddress,
      detail: v.detail,
      functionCode: v.functionCode ?? 0,
    },
  };
}

/**
 * A revocation that took effect. `by` overrides who asked (e.g. the operator API's caller when the
 * store recorded a service identity).
 */
export function revocationRecord(r: Revocation, by?: string): AuditEvent {
  return {
    revocation: {
      kind: r.kind,
      value: r.value,
      workloadId: r.workloadId ?? '',
      owner: r.owner ?? '',
      reason: r.reason,
      revokedAtUnixMs: r.revokedAtMs,
      source: r.source,
      by: by ?? r.by,
    },
  };
}

export function interlockTripRecord(t: {
  sessionId: string;
  subject?: Subject;
  assetId: string;
  trip: { reason: Reason; interlockId: string; point: string; detail: string; inputs: { point: string; value: number; ageMs: number; maxAgeMs: number }[] };
}): AuditEvent {
  return {
    interlockTrip: {
      sessionId: t.sessionId,
      interlockId: t.trip.interlockId,
      reason: t.trip.reason,
      assetId: t.assetId,
      point: t.trip.point,
      inputs: t.trip.inputs.map((i) => ({ point: i.point, value: i.value, ageMs: i.ageMs, maxAgeMs: i.maxAgeMs })),
      detail: t.trip.detail,
      subject: t.subject ? identityOf(t.subject) : null,
    },
  };
}

export function approvalRecord(a: {
  /** endorsed: one of the N approvals a request needs (it stays pending). */
  kind: 'requested' | 'endorsed' | 'approved' | 'rejected' | 'consumed';
  id: string;
  digest: string;
  ruleId: string;
  assetId: string;
  workloadId: string;
  owner: string;
  taskId: string;
  by?: string;
  reason?: string;
  expiresAtMs?: number;
}): AuditEvent {
  return {
    approval: {
      kind: a.kind,
      approvalId: a.id,
      digest: a.digest,
      ruleId: a.ruleId,
      assetId: a.assetId,
      workloadId: a.workloadId,
      owner: a.owner,
      taskId: a.taskId,
      by: a.by ?? '',
      reason: a.reason ?? '',
      expiresAtUnixMs: a.expiresAtMs ?? 0,
    },
  };
}

/** An emergency freeze changed (frozen, unfreeze requested, unfrozen, expired). */
export function freezeRecord(c: FreezeChange): AuditEvent {
  const f = c.freeze;
  return {
    freeze: {
      kind: c.kind,
      freezeId: f.id,
      scope: f.scope,
      value: f.value,
      mode: f.mode,
      reason: c.reason,
      by: c.by,
      frozenAtUnixMs: f.frozenAtMs,
      expiresAtUnixMs: f.expiresAtMs ?? 0,
      frozenBy: f.by,
      unfreezeBy: f.unfreezeVotes.map((v) => v.by),
      unfreezeNeeded: c.needed,
    },
  };
}

/** Records lost from the spool, declared by `audit recover --accept-loss` (docs/audit.md, Recovery). */
export function auditGapRecord(g: {
  firstSeq: number;
  lastSeq: number;
  cause: string;
  lastCheckpoint?: { size: number; root: Uint8Array };
  unknownHashes: number;
  detail: string;
}): AuditEvent {
  return {
    auditGap: {
      firstSeq: g.firstSeq,
      lastSeq: g.lastSeq,
      cause: g.cause,
      lastCheckpointSize: g.lastCheckpoint?.size ?? 0,
      lastCheckpointRoot: g.lastCheckpoint?.root ?? new Uint8Array(0),
      unknownHashes: g.unknownHashes,
      detail: g.detail,
    },
  };
}

/** The gateway starts after an unclean stop: writes whose outcome is unknown, sessions it closes. */
export function restartRecord(r: { lastSeq: number; lastTimeMs: number; outcomeUnknown: number[]; sessionsClosed: string[]; tornBytes: number }): AuditEvent {
  return {
    restart: {
      kind: 'unclean_stop',
      lastSeq: r.lastSeq,
      lastTimeUnixMs: r.lastTimeMs,
      outcomeUnknown: r.outcomeUnknown,
      sessionsClosed: r.sessionsClosed,
      tornBytes: r.tornBytes,
    },
  };
}

/** Records a full spool could not take, counted exactly, once there is room again. */
export function droppedRecord(d: { count: number; denials: number; firstMs: number; lastMs: number; byEvent: Record<string, number> }): AuditEvent {
  return {
    dropped: { count: d.count, denials: d.denials, firstUnixMs: d.firstMs, lastUnixMs: d.lastMs, reason: 'AUDIT_UNAVAILABLE', byEvent: d.byEvent },
  };
}

/** Something on the audit sink's stream that this gateway did not write there. */
export function sinkAlertRecord(a: { sink: string; kind: string; subject: string; streamSeq?: number; claimedSeq?: string; bodyHash?: string; detail: string }): AuditEvent {
  return {
    sinkAlert: {
      sink: a.sink,
      kind: a.kind,
      subject: a.subject,
      streamSeq: a.streamSeq ?? 0,
      claimedSeq: a.claimedSeq ?? '',
      bodyHash: a.bodyHash ?? '',
      detail: a.detail,
    },
  };
}

/** An approval request's record: its kind, the request's identity and who decided (docs/operator.md). */
export function approvalRequestRecord(kind: 'requested' | 'endorsed' | 'approved' | 'rejected' | 'consumed', r: ApprovalRequest, by?: string): AuditEvent {
  return approvalRecord({
    kind,
    id: r.id,
    digest: r.digest,
    ruleId: r.ruleId,
    assetId: r.assetId,
    workloadId: r.workloadId,
    owner: r.owner,
    taskId: r.taskId,
    by: by ?? r.decidedBy,
    reason: r.reason,
    expiresAtMs: kind === 'approved' ? r.grantExpiresAtMs : r.expiresAtMs,
  });
}
