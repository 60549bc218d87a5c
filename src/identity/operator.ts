// Operator authentication for the operator API (issue 8): a bearer JWT from an issuer the policy
// bundle trusts, for this gateway's audience, carrying the `operator` role, or the `owner` role
// for self-service (an owner acts only on tokens whose `owner` claim is their own `sub`).
// Owns turning a bearer token into an Operator or a TokenError with a reason code. Never logs or
// stores the token; never grants anything beyond the two roles named here.
import type { Clock } from '../core/clock.js';
import type { TrustedIssuers } from './issuers.js';
import type { RevocationStore } from './revocation.js';
import { TokenError } from './token-error.js';
import { verifySignedToken } from './verify.js';

export const OPERATOR_ROLE = 'operator';
export const OWNER_ROLE = 'owner';

export interface Operator {
  /** The human (or service) the token names; for an owner, the value their agents' `owner` claim carries. */
  sub: string;
  roles: string[];
  /** Holds the operator role: may revoke anything and list everything. */
  isOperator: boolean;
  jti: string;
  issuer: string;
  expiresAtMs: number;
  issuedAtMs: number;
}

export interface OperatorVerifyContext {
  issuers: TrustedIssuers;
  audience: string | string[];
  maxTtlSec: number;
  leewaySec?: number;
  clock: Clock;
  /** Operator tokens are revocable like agent tokens (by jti, or by sub through kind owner/sub). */
  revocations?: RevocationStore;
}

const invalid = (detail: ConstructorParameters<typeof TokenError>[1], message: string, claim?: string): TokenError =>
  new TokenError('TOKEN_INVALID', detail, message, claim === undefined ? undefined : { claim });

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

/** Verifies an operator's bearer token; throws TokenError (TOKEN_INVALID / TOKEN_EXPIRED / TOKEN_REVOKED / SCOPE_MISSING). */
export async function verifyOperatorToken(jwt: string, ctx: OperatorVerifyContext): Promise<Operator> {
  // The same verification as an agent's token (verify.ts): the same ceiling on its lifetime, too,
  // since an operator credential is no less worth stealing.
  const { payload, iss, sub, jti, exp, iat } = await verifySignedToken(jwt, ctx);
  // No clock leeway for an operator's action: a token past its exp acts no more.
  if (exp * 1000 <= ctx.clock.now()) throw new TokenError('TOKEN_EXPIRED', 'EXPIRED', 'operator token has expired', { claim: 'exp' });
  const roles = payload.roles;
  if (roles === undefined) throw new TokenError('SCOPE_MISSING', 'ROLE_MISSING', 'operator token carries no "roles" (needs "operator" or "owner")', { claim: 'roles' });
  if (!Array.isArray(roles) || !roles.every(isNonEmptyString)) throw invalid('INVALID_CLAIM', 'token claim "roles" must be an array of non-empty strings', 'roles');
  const isOperator = roles.includes(OPERATOR_ROLE);
  if (!isOperator && !roles.includes(OWNER_ROLE)) {
    throw new TokenError('SCOPE_MISSING', 'ROLE_MISSING', `operator token roles [${roles.join(', ')}] include neither "${OPERATOR_ROLE}" nor "${OWNER_ROLE}"`, { claim: 'roles' });
  }
  const op: Operator = { sub, roles: roles as string[], isOperator, jti, issuer: iss, expiresAtMs: exp * 1000, issuedAtMs: iat * 1000 };
  // An operator token is checked against jti and owner revocations (its sub is the person).
  if (ctx.revocations?.isRevoked({ workloadId: sub, owner: sub, taskId: '', taskPurpose: '', jti, roles: op.roles, scopes: [], assurance: 'none', issuer: iss, expiresAtMs: op.expiresAtMs, issuedAtMs: op.issuedAtMs }) !== undefined) {
    throw new TokenError('TOKEN_REVOKED', 'REVOKED', 'operator token has been revoked');
  }
  return op;
}
