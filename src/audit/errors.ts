// The audit's one error type: anything that stops a record from being made durable is
// AUDIT_UNAVAILABLE, so the pipeline denies (docs/architecture.md, Invariants: no audit, no write).
import { PlantgateError } from '../core/errors.js';

export class AuditError extends PlantgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AUDIT_UNAVAILABLE', message, options);
  }
}
