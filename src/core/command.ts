// The protocol-neutral model every middle step sees (docs/architecture.md, Seams). Protocol adapters build Commands;
// identity, policy, interlocks, approvals and audit never see wire bytes.
import type { Reason } from './reasons.js';

/**
 * The protocol a session speaks. `mcp` is a session of the MCP front (docs/mcp.md): its Commands
 * carry the protocol of the asset's upstream (`modbus` or `opcua`), whose addressing their targets
 * use, so that policy resolves and judges them exactly as it does the other fronts' commands.
 */
export type Protocol = 'modbus' | 'opcua' | 'mcp';
export type Operation = 'read' | 'write' | 'call' | 'browse' | 'subscribe' | 'diagnostic' | 'admin';
export type ModbusTable = 'coil' | 'discrete' | 'holding' | 'input';

/** One addressed range of a command. Modbus: table + address + count. OPC UA: nodeId. */
export interface Target {
  table?: ModbusTable;
  address?: number;
  count?: number;
  nodeId?: string;
  /**
   * OPC UA: the node's browse path from the Objects folder, browse names joined by '/'
   * (`/Line1/Speed`), for rules that select nodes by path (docs/policy.md, "OPC UA nodes").
   */
  browsePath?: string;
  /** OPC UA: the attribute read or written when it is not Value (`DisplayName`); absent = Value. */
  attribute?: string;
  /**
   * Modbus function codes without register addresses (docs/policy.md, "Diagnostics and device
   * identification"): FC 8's sub-function; FC 43's MEI type and, for MEI 14, the device
   * identification objects the request reads (first..last, inclusive).
   */
  subFunction?: number;
  meiType?: number;
  objectFrom?: number;
  objectTo?: number;
}

/** A target in one line for people (approval lists, recent decisions). */
export function targetText(t: Target): string {
  if (t.nodeId !== undefined) return `node ${t.nodeId}`;
  if (t.subFunction !== undefined) return `sub-function ${t.subFunction}`;
  if (t.meiType !== undefined) return t.objectFrom === undefined ? `MEI ${t.meiType}` : `MEI ${t.meiType} objects ${t.objectFrom}..${t.objectTo ?? t.objectFrom}`;
  return `${t.table ?? '?'} ${t.address ?? '?'} x${t.count ?? 1}`;
}

/**
 * A written value or method argument as policy sees it when it is not (only) a number: OPC UA
 * strings, byte strings, 64-bit integers (bigint), times, booleans and arrays of them.
 */
export type TypedValue = boolean | number | bigint | string | Date | Uint8Array | readonly TypedValue[];

export interface Command {
  sessionId: string;
  protocol: Protocol;
  /** Modbus unit id the agent addressed: the bundle maps it to an asset. */
  unitId?: number;
  /** Asset id from the bundle; '' when no asset matches (policy then denies). */
  assetId: string;
  operation: Operation;
  /** Modbus function code, or the OPC UA service name. */
  functionCode: number;
  service?: string;
  targets: Target[];
  /** Names of the asset's points that the targets touch, resolved against the bundle's point map. */
  points: string[];
  /** Values a write carries: raw register / coil values in wire order. */
  rawValues?: number[];
  /** The same values per point in engineering units, where the point map defines them. */
  values?: Record<string, number>;
  /**
   * Every written value (per point name) or call argument (per argument name) with its type, for
   * typed bounds (strings, arrays, 64-bit integers). A scalar number is also in `values`.
   */
  typedValues?: Record<string, TypedValue>;
}

export type Assurance = 'mtls+token' | 'static-ip+token' | 'none';

export interface Subject {
  /** SPIFFE ID of the workload (URI SAN of its certificate). */
  workloadId: string;
  owner: string;
  taskId: string;
  taskPurpose: string;
  /** Token id; never the token itself. */
  jti: string;
  /** Delegation chain, outermost actor first (RFC 8693 act). */
  actSub?: string[];
  roles: string[];
  scopes: string[];
  assurance: Assurance;
  /** base64url SHA-256 of the client certificate DER (RFC 8705 x5t#S256). */
  certThumbprint?: string;
  issuer: string;
  /** The network zone the token says the agent acts from (optional `zone` claim): cross-zone checks. */
  zone?: string;
  /** Token expiry, ms since epoch: checked on every command. */
  expiresAtMs: number;
  issuedAtMs: number;
}

export type Effect = 'allow' | 'deny';

/**
 * What a monitor rule (or a monitor bundle) would have answered: a failing check's reason, or
 * ALLOWED when it would have allowed a command the enforcing rules deny.
 */
export interface ShadowFinding {
  reason: Reason;
  ruleId: string;
  /** The human principal (`user:alice`) whose rules gave the finding; absent for the agent's own. */
  principal?: string;
}

export interface Decision {
  effect: Effect;
  reason: Reason;
  /** Id of the rule that decided, or '' when no rule matched (default deny). */
  ruleId: string;
  bundleRevision: number;
  interlockId?: string;
  approvalId?: string;
  /** The operator's emergency freeze that refused the command (reason EMERGENCY_FREEZE). */
  freezeId?: string;
  /**
   * Shadow mode: the first would-deny finding of a monitor rule, or the deny a monitor bundle did
   * not enforce (reason and rule).
   */
  shadow?: { reason: Reason; ruleId: string };
  /** Every shadow finding (docs/policy.md, Shadow mode): each failing check of each monitor rule. */
  shadows?: readonly ShadowFinding[];
  /** Set when the deny came from the rules of the human the agent acts for (e.g. `user:alice`). */
  principal?: string;
  /** Sequence number of the audit record of this decision, linking the outcome record to it. */
  auditSeq?: number;
  /** The audit record must be durable before the command is forwarded (always for writes). */
  durable: boolean;
}

/** Operations that change the process: audited durably before forwarding (docs/architecture.md, Invariants). */
export function mustBeDurable(op: Operation): boolean {
  return op === 'write' || op === 'call' || op === 'diagnostic' || op === 'admin';
}

export function deny(reason: Reason, ruleId = '', bundleRevision = 0): Decision {
  return { effect: 'deny', reason, ruleId, bundleRevision, durable: false };
}
