// Why a tool call was refused, in a sentence an LLM agent can act on (docs/mcp.md, Denials): the
// reason code first (what the audit and the SOC see), then what happened and what to do next.
// Pure text from the decision and what the catalog knows; must never reveal a token, or the rules
// of other callers.
import type { Decision } from '../../src/core/command.js';
import type { Grant } from '../../src/policy/reach.js';

export interface DenialContext {
  /** What was attempted, in plant words: "write tank1.setpoint := 95 % on plc1". */
  action: string;
  tool: string;
  /** What the caller's rules allow for the point, when the catalog knows. */
  grant?: Grant;
  unit?: string;
  /** The interlock's own account (condition and live inputs), when one refused the command. */
  interlock?: string;
  /** How long an approved grant waits for the retry. */
  grantTtlMin?: number;
  /** Detail known to the front (a value the point's type cannot hold, an upstream failure). */
  detail?: string;
}

type Explain = (d: Pick<Decision, 'reason' | 'ruleId' | 'approvalId' | 'interlockId'>, c: DenialContext) => string;

const range = (c: DenialContext): string => {
  const g = c.grant;
  if (g === undefined) return '';
  const lo = Number.isFinite(g.min) ? String(g.min) : undefined;
  const hi = Number.isFinite(g.max) ? String(g.max) : undefined;
  if (lo === undefined && hi === undefined) return '';
  return ` You may write ${lo ?? 'any value'} to ${hi ?? 'any value'}${c.unit ? ` ${c.unit}` : ''}; choose a value inside that range.`;
};

const retryLater = 'Retry later; if it keeps failing, tell the plant\'s operators.';

// Keyed by reason code text; test/unit/mcp/explain.test.ts holds it to src/core/reasons.ts, so a
// new reason gets its sentence here (until it does, the generic one below answers).
const SENTENCES: Record<string, Explain> = {
  NO_IDENTITY: (_d, c) => `The gateway could not establish who you are, so it refused to ${c.action}. Connect with a valid client certificate or none at all.`,
  NO_TOKEN: (_d, c) => `No access token came with the request to ${c.action}. Send your token as "Authorization: Bearer <token>".`,
  TOKEN_INVALID: (_d, c) => `Your access token is not valid here, so the gateway refused to ${c.action}. Get a new token for this MCP server from your token issuer.`,
  TOKEN_EXPIRED: (_d, c) => `Your access token has expired, so the gateway refused to ${c.action}. Get a fresh token from your token issuer and retry.`,
  TOKEN_REVOKED: (_d, c) => `Your access token has been revoked, so the gateway refused to ${c.action}. Stop and ask the plant's operators; do not retry with this token.`,
  TOKEN_BINDING_MISMATCH: (_d, c) => `Your access token is bound to another client certificate, so the gateway refused to ${c.action}. Use the certificate the token was issued for.`,
  SCOPE_MISSING: (d, c) => `Rule ${d.ruleId} would let you ${c.action}, but your token lacks the scope it requires. Ask for a token with that scope.`,
  NO_MATCHING_RULE: (_d, c) => `No rule of the plant's policy lets you ${c.action}. Do not retry; call list_assets to see what you may do, or ask the plant's engineers for a rule.`,
  OUTSIDE_WINDOW: (d, c) =>
    `Rule ${d.ruleId} lets you ${c.action} only inside ${c.grant !== undefined && c.grant.windows.length > 0 ? `the maintenance window(s) ${c.grant.windows.join(', ')}` : 'its maintenance window'} and never in a change freeze; it is outside that now. Retry when the window is open.`,
  VALUE_OUT_OF_BOUNDS: (d, c) => `The value is outside what ${d.ruleId ? `rule ${d.ruleId}` : 'the point'} allows, so the gateway refused to ${c.action}${c.detail ? ` (${c.detail})` : ''}.${range(c)}`,
  STEP_TOO_LARGE: (d, c) =>
    `The change is larger than rule ${d.ruleId} allows in one write${c.grant?.maxStep !== undefined ? ` (at most ${c.grant.maxStep}${c.unit ? ` ${c.unit}` : ''} from the last known value)` : ''}, so the gateway refused to ${c.action}. Read the point and move it in smaller steps.`,
  STEP_BASE_STALE: (d, c) =>
    `Rule ${d.ruleId} limits each write's step from the PLC's current value, and the gateway has no fresh reading of it, so it refused to ${c.action}. Retry in a few seconds.`,
  RATE_LIMITED: (d, c) => `Rule ${d.ruleId} limits how often you may do this, and the limit is reached, so the gateway refused to ${c.action}. Wait before retrying.`,
  INTERLOCK: (d, c) =>
    `A safety interlock (${d.interlockId ?? 'unnamed'}) refuses to ${c.action}: ${c.interlock ?? 'its condition holds on the live process values'}. Do not retry until the process state has changed; read the interlock's inputs to see when.`,
  INTERLOCK_INPUT_STALE: (d, c) =>
    `The safety interlock ${d.interlockId ?? ''} cannot prove it is safe to ${c.action}: ${c.interlock ?? 'its live inputs are not fresh'}. Retry in a few seconds.`.replace('  ', ' '),
  INTERLOCK_INPUT_IMPLAUSIBLE: (d, c) =>
    `The safety interlock ${d.interlockId ?? ''} does not trust its live inputs (a plausibility check failed), so it refused to ${c.action}. Do not retry; tell the plant's operators a sensor needs checking.`.replace('  ', ' '),
  APPROVAL_REQUIRED: (d, c) =>
    d.approvalId
      ? `Rule ${d.ruleId} lets you ${c.action} only with a human operator's approval. Approval request ${d.approvalId} is pending: a plant operator (not your owner) approves it on the gateway's operator API (\`plantgate approvals approve ${d.approvalId}\`). Once it is approved, call ${c.tool} again with exactly the same arguments${c.grantTtlMin !== undefined ? ` within ${c.grantTtlMin} minutes` : ''}; the approval is good for one call.`
      : `Rule ${d.ruleId} lets you ${c.action} only with a human operator's approval, and no approval request could be created now (too many are pending). ${retryLater}`,
  APPROVAL_INVALID: (_d, c) => `The approval for this command is not valid (used, expired or for other values), so the gateway refused to ${c.action}. Call again to request a new approval.`,
  CROSS_ZONE: (_d, c) => `Your token's zone differs from the asset's zone and no rule allows crossing it, so the gateway refused to ${c.action}.`,
  BUNDLE_UNAVAILABLE: (_d, c) => `The gateway has no valid policy right now, so it refused to ${c.action}. ${retryLater}`,
  AUDIT_UNAVAILABLE: (_d, c) => `The gateway cannot record this command in its audit log, and nothing runs unrecorded, so it refused to ${c.action}. ${retryLater}`,
  PROTOCOL_VIOLATION: (_d, c) => `The request to ${c.action} was malformed${c.detail ? `: ${c.detail}` : ''}. Fix the arguments to match the tool's input schema.`,
  UNSUPPORTED_FUNCTION: (_d, c) => `The gateway cannot ${c.action}${c.detail ? `: ${c.detail}` : ''}.`,
  UPSTREAM_UNAVAILABLE: (_d, c) => `The PLC could not be reached, so the gateway could not ${c.action}. ${retryLater}`,
  UPSTREAM_TIMEOUT: (_d, c) =>
    `The PLC did not answer in time, so it is unknown whether it did ${c.action}. Read the point back before you try again.`,
  NO_ROUTE: (_d, c) => `No asset of the plant's policy answers there, so the gateway has no path to ${c.action}. Call list_assets for the assets you may use.`,
  UNKNOWN_TARGET: (_d, c) => `The PLC has no such point or node, so the gateway refused to ${c.action}. Call list_assets for the points you may use.`,
  NOT_WRITABLE: (_d, c) => `The PLC does not let that point be written, so the gateway refused to ${c.action}.`,
  TYPE_MISMATCH: (_d, c) => `The value's type is not the one the PLC declares for the point, so the gateway refused to ${c.action}. Send a value of the type the tool's schema names.`,
  ARGUMENTS_MISSING: (_d, c) => `The method needs more arguments than were given, so the gateway refused to ${c.action}. Send every argument the tool's schema requires.`,
  TOO_MANY_ARGUMENTS: (_d, c) => `The method takes fewer arguments than were given, so the gateway refused to ${c.action}.`,
  CHANGE_FREEZE: (d, c) => `A change freeze of the plant's policy (rule ${d.ruleId}) forbids you to ${c.action} now. Retry after the freeze.`,
  EMERGENCY_FREEZE: (_d, c) => `The plant's operators have frozen all writes, so the gateway refused to ${c.action}. Do not retry until they lift the freeze.`,
};

/** "REASON: sentence." for a refused tool call. */
export function explainDenial(d: Pick<Decision, 'reason' | 'ruleId' | 'approvalId' | 'interlockId'>, c: DenialContext): string {
  const sentence = SENTENCES[d.reason] ?? ((_x: unknown, ctx: DenialContext) => `The gateway refused to ${ctx.action}.`);
  return `${d.reason}: ${sentence(d, c)}`;
}
