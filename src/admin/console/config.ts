// The gateway config block `console` (docs/configuration.md): the web console on the operator API.
// Owns the schema only.
import { z } from 'zod';
import { isSpiffeId } from '../../identity/spiffe.js';

export const consoleConfigSchema = z
  .strictObject({
    /** Serve the console under /console on the operator API (needs listeners.operator_api). */
    enabled: z.boolean().default(true),
    /** A console session's lifetime from sign-in; a revoked operator is signed out at once. */
    session_ttl_sec: z.number().int().min(60).max(43_200).default(1800),
    /**
     * Operators who may sign in with a client certificate issued by tls.ca: its SPIFFE ID, the
     * operator's name (as a token's sub would carry it) and roles. Empty: token sign-in only, and the
     * operator API asks no browser for a certificate.
     */
    certificate_operators: z
      .array(
        z.strictObject({
          spiffe_id: z.string().refine(isSpiffeId, 'must be a SPIFFE ID (spiffe://trust-domain/path)'),
          name: z.string().min(1),
          /** The console is the operator role's: an entry without it cannot sign in. */
          roles: z.array(z.enum(['operator', 'owner'])).min(1),
        }),
      )
      .default([]),
  })
  .default({ enabled: true, session_ttl_sec: 1800, certificate_operators: [] });
