// The one error type token verification throws. The reason code decides the answer (wire, audit,
// metric); `detail` says precisely which check failed, for the audit record and the operator.
import { PlantgateError } from '../core/errors.js';

export type TokenReason = 'TOKEN_INVALID' | 'TOKEN_EXPIRED' | 'TOKEN_BINDING_MISMATCH' | 'TOKEN_REVOKED' | 'RATE_LIMITED' | 'SCOPE_MISSING';

export type TokenDetail =
  | 'MALFORMED'
  | 'TOO_LARGE'
  | 'ALG_NOT_ALLOWED'
  | 'CRIT_UNSUPPORTED'
  | 'UNKNOWN_ISSUER'
  | 'UNKNOWN_KID'
  | 'BAD_SIGNATURE'
  | 'MISSING_CLAIM'
  | 'INVALID_CLAIM'
  | 'ISS_MISMATCH'
  | 'AUD_MISMATCH'
  | 'SUB_MISMATCH'
  | 'NOT_YET_VALID'
  | 'IAT_IN_FUTURE'
  | 'LIFETIME_TOO_LONG'
  | 'EXPIRED'
  | 'CNF_MISSING'
  | 'CNF_UNVERIFIABLE'
  | 'THUMBPRINT_MISMATCH'
  | 'REVOKED'
  | 'TOO_MANY_TOKENS'
  | 'ROLE_MISSING';

export class TokenError extends PlantgateError {
  readonly detail: TokenDetail;
  /** The claim the failed check concerned, when there is one. */
  readonly claim?: string;
  constructor(reason: TokenReason, detail: TokenDetail, message: string, options?: { claim?: string; cause?: unknown }) {
    super(reason, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.detail = detail;
    if (options?.claim !== undefined) this.claim = options.claim;
  }
}
