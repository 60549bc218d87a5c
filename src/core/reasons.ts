// The one table of reason codes (docs/architecture.md, Seams) and how each is answered on every surface.
// The wire answer, the audit record, the metric label and the log line all come from this value:
// never match on error message text.

export const REASONS = [
  'ALLOWED',
  'NO_IDENTITY',
  'NO_TOKEN',
  'TOKEN_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_REVOKED',
  'TOKEN_BINDING_MISMATCH',
  'SCOPE_MISSING',
  'NO_MATCHING_RULE',
  'OUTSIDE_WINDOW',
  // A change freeze from the signed bundle (issue 26): distinct from a closed window.
  'CHANGE_FREEZE',
  'VALUE_OUT_OF_BOUNDS',
  'STEP_TOO_LARGE',
  // max_step has no PLC value to measure from that is fresh enough (docs/policy.md, max_step).
  'STEP_BASE_STALE',
  'RATE_LIMITED',
  'INTERLOCK',
  'INTERLOCK_INPUT_STALE',
  // An interlock input failed a plausibility check: stuck, jumping, or two sensors disagree.
  'INTERLOCK_INPUT_IMPLAUSIBLE',
  'APPROVAL_REQUIRED',
  'APPROVAL_INVALID',
  'CROSS_ZONE',
  'BUNDLE_UNAVAILABLE',
  'AUDIT_UNAVAILABLE',
  'PROTOCOL_VIOLATION',
  'UNSUPPORTED_FUNCTION',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_TIMEOUT',
  // A Modbus unit id that no asset of the bundle answers to: a gateway has no path there (0x0A).
  'NO_ROUTE',
  // What the PLC itself would refuse, answered by the gateway before policy (an OPC UA server's own
  // status codes, docs/opcua.md "Status codes"): the target does not exist, is read-only, or the
  // value or the method's arguments do not fit what the PLC declares.
  'UNKNOWN_TARGET',
  'NOT_WRITABLE',
  'TYPE_MISMATCH',
  'ARGUMENTS_MISSING',
  'TOO_MANY_ARGUMENTS',
  // An operator's emergency write freeze (docs/operator.md, "Emergency freeze"): no token, scope,
  // rule or approval outweighs it.
  'EMERGENCY_FREEZE',
] as const;

export type Reason = (typeof REASONS)[number];

const REASON_SET: ReadonlySet<string> = new Set(REASONS);
export function isReason(value: string): value is Reason {
  return REASON_SET.has(value);
}

/** Modbus exception codes (Modbus Application Protocol v1.1b3 §7). */
export const ModbusException = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  SERVER_DEVICE_FAILURE: 0x04,
  SERVER_DEVICE_BUSY: 0x06,
  GATEWAY_PATH_UNAVAILABLE: 0x0a,
  GATEWAY_TARGET_FAILED_TO_RESPOND: 0x0b,
} as const;

/**
 * docs/troubleshooting.md: 0x01 for a function or operation not allowed, 0x02 for a target not
 * allowed, 0x03 for a value not allowed, 0x0A no path (upstream unreachable or a unit id no asset
 * answers to), 0x0B upstream timeout.
 * Every reason not listed answers 0x01: the agent may not do this, whatever the detail.
 */
const MODBUS_EXCEPTION_FOR: Partial<Record<Reason, number>> = {
  NO_MATCHING_RULE: ModbusException.ILLEGAL_DATA_ADDRESS,
  CROSS_ZONE: ModbusException.ILLEGAL_DATA_ADDRESS,
  VALUE_OUT_OF_BOUNDS: ModbusException.ILLEGAL_DATA_VALUE,
  STEP_TOO_LARGE: ModbusException.ILLEGAL_DATA_VALUE,
  UNKNOWN_TARGET: ModbusException.ILLEGAL_DATA_ADDRESS,
  NOT_WRITABLE: ModbusException.ILLEGAL_DATA_ADDRESS,
  TYPE_MISMATCH: ModbusException.ILLEGAL_DATA_VALUE,
  ARGUMENTS_MISSING: ModbusException.ILLEGAL_DATA_VALUE,
  TOO_MANY_ARGUMENTS: ModbusException.ILLEGAL_DATA_VALUE,
  UPSTREAM_UNAVAILABLE: ModbusException.GATEWAY_PATH_UNAVAILABLE,
  NO_ROUTE: ModbusException.GATEWAY_PATH_UNAVAILABLE,
  UPSTREAM_TIMEOUT: ModbusException.GATEWAY_TARGET_FAILED_TO_RESPOND,
};

export function modbusExceptionFor(reason: Reason): number {
  return MODBUS_EXCEPTION_FOR[reason] ?? ModbusException.ILLEGAL_FUNCTION;
}

/** HTTP status for API answers that carry a reason. */
export function httpStatusFor(reason: Reason): number {
  switch (reason) {
    case 'ALLOWED':
      return 200;
    case 'NO_IDENTITY':
    case 'NO_TOKEN':
    case 'TOKEN_INVALID':
    case 'TOKEN_EXPIRED':
    case 'TOKEN_REVOKED':
    case 'TOKEN_BINDING_MISMATCH':
      return 401;
    case 'BUNDLE_UNAVAILABLE':
    case 'AUDIT_UNAVAILABLE':
    case 'UPSTREAM_UNAVAILABLE':
      return 503;
    case 'UPSTREAM_TIMEOUT':
      return 504;
    case 'PROTOCOL_VIOLATION':
    case 'TYPE_MISMATCH':
    case 'ARGUMENTS_MISSING':
    case 'TOO_MANY_ARGUMENTS':
      return 400;
    case 'UNKNOWN_TARGET':
    case 'NO_ROUTE':
      return 404;
    default:
      return 403;
  }
}

/**
 * The OPC UA status code (its name in OPC 10000-6 Annex A, as node-opcua's StatusCodes spells it)
 * that answers a refused item. A policy denial is BadUserAccessDenied; what the server itself would
 * refuse gets the server's own code, so agent code behaves as against the PLC; the reason code
 * stays in the audit. `operation` picks the code a Call answers (Part 4, Call service).
 */
export function opcuaStatusFor(reason: Reason, operation: string): string {
  switch (reason) {
    case 'UNKNOWN_TARGET':
      return operation === 'call' ? 'BadMethodInvalid' : 'BadNodeIdUnknown';
    case 'NOT_WRITABLE':
      return 'BadNotWritable';
    case 'TYPE_MISMATCH':
      return operation === 'call' ? 'BadInvalidArgument' : 'BadTypeMismatch';
    case 'ARGUMENTS_MISSING':
      return 'BadArgumentsMissing';
    case 'TOO_MANY_ARGUMENTS':
      return 'BadTooManyArguments';
    case 'UNSUPPORTED_FUNCTION':
      return operation === 'write' ? 'BadWriteNotSupported' : 'BadServiceUnsupported';
    case 'UPSTREAM_UNAVAILABLE':
      return 'BadServerNotConnected';
    case 'UPSTREAM_TIMEOUT':
      return 'BadTimeout';
    default:
      return 'BadUserAccessDenied';
  }
}
