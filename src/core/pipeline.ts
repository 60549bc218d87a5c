// The seam between protocol adapters and the enforcement chain (docs/architecture.md, Seams;
// after rodbus's AuthorizationHandler). An adapter settles identity at the handshake, builds a Command per request
// and asks this interface; it never looks inside identity, policy or audit.
import type { Assurance, Command, Decision, Protocol, Subject } from './command.js';
import type { Reason } from './reasons.js';

export interface Session {
  id: string;
  protocol: Protocol;
  /** SPIFFE ID from the client certificate. */
  workloadId: string;
  /** base64url SHA-256 of the client certificate DER. */
  certThumbprint: string;
  remoteAddress: string;
  assurance: Assurance;
  /**
   * The session's own verified token when the protocol carries one (OPC UA: the JWT of the last
   * ActivateSession). Absent for Modbus, whose token lives in the TokenRegistry by workload.
   */
  subject?: Subject;
}

/** Wire details kept for the audit record only. */
export interface WireInfo {
  unitId?: number;
  transactionId?: number;
  /**
   * The front reports this command's outcome (CommandPipeline.outcome) once it is forwarded and
   * answered, on every path. An allowed command that needs no durable record is then recorded once,
   * with its answer (docs/audit.md, One record per read); without it, decision and outcome are two.
   */
  outcomeFollows?: boolean;
  /** The MCP tool call a Command came from (docs/mcp.md, Audit). */
  mcp?: McpCallInfo;
}

/** Who asked through MCP and what they asked, as the audit records it (never a token). */
export interface McpCallInfo {
  /** clientInfo.name / version the MCP client declared (initialize, or the request's envelope). */
  clientName: string;
  clientVersion: string;
  /** The MCP protocol revision of the request. */
  protocolVersion: string;
  /** The MCP session id (2025 revisions) or '' (stateless 2026-07-28 requests). */
  mcpSessionId: string;
  tool: string;
  /** The tool's arguments as JSON text, cut at a bound (docs/mcp.md, Audit). */
  arguments: string;
}

export type OutcomeStatus = 'ok' | 'exception' | 'upstream_unavailable' | 'upstream_timeout';

export interface Outcome {
  status: OutcomeStatus;
  exceptionCode?: number;
  /** From sending the command to the PLC to its answer. */
  latencyUs: number;
  /**
   * An allowed read the PLC answered (status ok): its i-th value in the order of the command's
   * targets (Modbus: register or coil i of the range, raw; OPC UA: target i's number), NaN past
   * the end or when not a number. Policy takes the values of max_step points from it as their
   * base (docs/policy.md, max_step and its base).
   */
  readValue?: (i: number) => number;
}

export interface CommandPipeline {
  /**
   * Decides one command and records the decision. Returns synchronously when no durable write is
   * needed (reads, denies); otherwise resolves once the decision record is on disk. Never throws
   * and never rejects: every failure is a deny with its reason.
   */
  authorize(session: Session, cmd: Command, wire: WireInfo): Decision | Promise<Decision>;
  /** Records a deny the adapter decided itself (e.g. an unsupported function code). */
  refuse(session: Session, cmd: Command, reason: Reason, wire: WireInfo): Decision;
  /** Records what the PLC answered to an allowed command. */
  outcome(session: Session, cmd: Command, decision: Decision, outcome: Outcome): void;
  sessionOpened(session: Session): void;
  sessionClosed(session: Session, why: string): void;
  /** A connection broke the protocol (malformed frame, no identity): recorded, then closed. */
  violation(session: Partial<Session> & { remoteAddress: string }, reason: Reason, code: string, message: string): void;
}
