// Operator authentication for the operator API (issue 8): a bearer JWT from an issuer the policy
// bundle trusts, for this gateway's audience, carrying the `operator` role, or the `owner` role
// for self-service (an owner acts only on tokens whose `owner` claim is their own `sub`).
// Owns turning a bearer token into an Operator or a TokenError with a reason code. Never logs or
// stores the token; never grants anything beyond the two roles named here.
import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from '../core/clock.js';
import type { TrustedIssuers } from './issuers.js';
import type { RevocationStore } from './revocation.js';
import { TokenError } from './token-error.js';
import { ALLOWED_ALGORITHMS, DEFAULT_LEEWAY_SEC, MAX_TOKEN_LENGTH, fromJoseError } from './verify.js';

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
  if (typeof jwt !== 'string' || jwt.length === 0) throw invalid('MALFORMED', 'bearer token is empty');
  if (jwt.length > MAX_TOKEN_LENGTH) throw invalid('TOO_LARGE', `bearer token is longer than ${MAX_TOKEN_LENGTH} characters`);
  let alg: unknown;
  let iss: unknown;
  try {
    alg = decodeProtectedHeader(jwt).alg;
    iss = decodeJwt(jwt).iss;
  } catch {
    throw invalid('MALFORMED', 'bearer token is not a well-formed compact JWT');
  }
  if (typeof alg !== 'string' || !(ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
    throw invalid('ALG_NOT_ALLOWED', `token algorithm ${JSON.stringify(alg)} not allowed (only ${ALLOWED_ALGORITHMS.join(', ')})`);
  }
  if (!isNonEmptyString(iss)) throw invalid('MISSING_CLAIM', 'token is missing required claim "iss"', 'iss');
  const getKey = ctx.issuers.get(iss);
  if (getKey === undefined) throw invalid('UNKNOWN_ISSUER', `token issuer "${iss}" is not trusted by the policy bundle`, 'iss');

  const leeway = ctx.leewaySec ?? DEFAULT_LEEWAY_SEC;
  const nowMs = ctx.clock.now();
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(jwt, getKey, {
      algorithms: [...ALLOWED_ALGORITHMS],
      issuer: iss,
      audience: ctx.audience,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
      currentDate: new Date(nowMs),
      clockTolerance: leeway,
    }));
  } catch (err) {
    throw fromJoseError(err);
  }
  const { sub, exp, iat, jti } = payload;
  if (typeof exp !== 'number' || typeof iat !== 'number') throw invalid('INVALID_CLAIM', 'token "exp" and "iat" must be numbers', 'exp');
  if (exp * 1000 <= nowMs) throw new TokenError('TOKEN_EXPIRED', 'EXPIRED', 'operator token has expired', { claim: 'exp' });
  if (iat > Math.floor(nowMs / 1000) + leeway) throw invalid('IAT_IN_FUTURE', 'token "iat" is in the future beyond the clock leeway', 'iat');
  if (exp <= iat) throw invalid('INVALID_CLAIM', 'token "exp" is not after "iat"', 'exp');
  // The same ceiling as agent tokens: an operator credential is no less worth stealing.
  if (exp - iat > ctx.maxTtlSec) throw invalid('LIFETIME_TOO_LONG', `token lifetime ${exp - iat}s exceeds the maximum of ${ctx.maxTtlSec}s`, 'exp');
  if (!isNonEmptyString(sub)) throw invalid('INVALID_CLAIM', 'token claim "sub" must be a non-empty string', 'sub');
  if (!isNonEmptyString(jti)) throw invalid('INVALID_CLAIM', 'token claim "jti" must be a non-empty string', 'jti');
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
