// Why a bundle was refused. Every refusal means the same thing to a command (BUNDLE_UNAVAILABLE);
// the `code` tells the operator and the audit record which check failed.
import { PlantgateError } from '../core/errors.js';

export type BundleErrorCode =
  | 'MALFORMED'
  | 'UNKNOWN_KEY'
  | 'RETIRED_KEY'
  | 'BAD_SIGNATURE'
  /** The header names another alg than the pinned key's (`none`, HS256, …): alg confusion. */
  | 'ALG_NOT_ALLOWED'
  /** Larger than MAX_BUNDLE_BYTES: refused before it is read or parsed. */
  | 'TOO_LARGE'
  | 'ROLLBACK'
  | 'NOT_YET_VALID'
  | 'EXPIRED'
  | 'BAD_TYPE';

export class BundleError extends PlantgateError {
  readonly code: BundleErrorCode;
  constructor(code: BundleErrorCode, message: string, options?: { cause?: unknown }) {
    super('BUNDLE_UNAVAILABLE', `${code}: ${message}`, options);
    this.code = code;
  }
}
