// Access-token verification (docs/identity.md): signature against the bundle's trusted issuers, then every
// claim we rely on, then the binding to the session's certificate (RFC 8705).
// Owns turning a JWT string into a Subject or a TokenError. It never logs or stores the token, and
// never lets an unexpected error through as anything but a deny-able TokenError.
import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from '../core/clock.js';
import type { Assurance, Subject } from '../core/command.js';
import { samePrincipal } from '../core/principal.js';
import type { TrustedIssuers } from './issuers.js';
import { TokenError, type TokenDetail } from './token-error.js';

export { TokenError } from './token-error.js';
export type { TokenDetail, TokenReason } from './token-error.js';
export { trustedIssuersFromJwks } from './issuers.js';
export type { TrustedIssuers, TrustedIssuerSource, LocalTrustedIssuers } from './issuers.js';

/** Only asymmetric algorithms whose keys we can pin: HMAC would make every verifier a signer. */
export const ALLOWED_ALGORITHMS = ['EdDSA', 'ES256'] as const;
export const DEFAULT_LEEWAY_SEC = 30;
export const DEFAULT_MAX_TTL_SEC = 900;
/** Far above any token we mint (~1 KiB); bounds what an agent can make us parse. */
export const MAX_TOKEN_LENGTH = 8192;
/** Delegation chains deeper than this are a mistake or an attack, not a workflow. */
const MAX_ACT_DEPTH = 8;
const REQUIRED_REGISTERED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'];

export interface VerifyContext {
  issuers: TrustedIssuers;
  /** The gateway's audience string(s); the token's `aud` must name one of them. */
  audience: string | string[];
  /** The session's workload identity (certificate SPIFFE ID, or the static identity). */
  expectedSub: string;
  /** x5t#S256 of the session's client certificate; present exactly when the session is mTLS. */
  certThumbprint?: string;
  assurance: Assurance;
  /**
   * Modbus/TCP Security role from the session's client certificate (cert.ts), when it has one. It
   * joins the token's roles: the token is bound to that certificate (cnf), so the role holds for
   * exactly the commands the token authorizes, and policy `roles` matches it either way.
   */
  certRole?: string;
  maxTtlSec: number;
  leewaySec?: number;
  clock: Clock;
}

const invalid = (detail: TokenDetail, message: string, claim?: string, cause?: unknown): TokenError =>
  new TokenError('TOKEN_INVALID', detail, message, { claim, cause });

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Maps jose failures by their stable `code` (never the message) onto our reason and detail. */
export function fromJoseError(err: unknown): TokenError {
  const code = isObject(err) && typeof err.code === 'string' ? err.code : '';
  const claim = isObject(err) && typeof err.claim === 'string' ? err.claim : undefined;
  const why = isObject(err) && typeof err.reason === 'string' ? err.reason : '';
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new TokenError('TOKEN_EXPIRED', 'EXPIRED', 'token expired ("exp" is in the past beyond the clock leeway)', { claim: 'exp', cause: err });
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return invalid('BAD_SIGNATURE', 'token signature does not verify with the issuer\'s key', undefined, err);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return invalid('ALG_NOT_ALLOWED', `token algorithm not allowed (only ${ALLOWED_ALGORITHMS.join(', ')})`, undefined, err);
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return invalid('UNKNOWN_KID', 'no key of the trusted issuer matches the token\'s "kid" and "alg"', undefined, err);
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return invalid('UNKNOWN_KID', 'several keys of the issuer match the token; it must name its key with "kid"', undefined, err);
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_INVALID':
      return invalid('UNKNOWN_KID', 'the issuer\'s matching key cannot be used to verify', undefined, err);
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const c = claim ?? 'unspecified';
      if (why === 'missing') return invalid('MISSING_CLAIM', `token is missing required claim "${c}"`, c, err);
      if (c === 'aud') return invalid('AUD_MISMATCH', 'token "aud" does not name this gateway', c, err);
      if (c === 'iss') return invalid('ISS_MISMATCH', 'token "iss" does not match the trusted issuer', c, err);
      if (c === 'nbf') return invalid('NOT_YET_VALID', 'token is not valid yet ("nbf" is in the future)', c, err);
      if (c === 'iat') return invalid('IAT_IN_FUTURE', 'token "iat" is in the future', c, err);
      return invalid('INVALID_CLAIM', `token claim "${c}" is malformed`, c, err);
    }
    default:
      return invalid('MALFORMED', 'token is not a well-formed signed JWT', undefined, err);
  }
}

function flattenAct(act: unknown): string[] {
  const chain: string[] = [];
  let node: unknown = act;
  while (node !== undefined) {
    if (!isObject(node) || !isNonEmptyString(node.sub)) {
      throw invalid('INVALID_CLAIM', 'token claim "act" must be an object with a non-empty "sub" (and optionally a nested "act")', 'act');
    }
    if (chain.length === MAX_ACT_DEPTH) {
      throw invalid('INVALID_CLAIM', `token claim "act" is nested deeper than ${MAX_ACT_DEPTH}`, 'act');
    }
    chain.push(node.sub);
    node = node.act;
  }
  return chain;
}

function parseScope(scope: unknown): string[] {
  let scopes: string[];
  if (typeof scope === 'string') {
    scopes = scope.split(' ').filter((s) => s !== '');
  } else if (Array.isArray(scope) && scope.every((s) => isNonEmptyString(s) && !s.includes(' '))) {
    scopes = scope as string[];
  } else {
    throw invalid('INVALID_CLAIM', 'token claim "scope" must be a space-separated string or an array of strings', 'scope');
  }
  if (scopes.length === 0) throw invalid('INVALID_CLAIM', 'token claim "scope" names no scope', 'scope');
  return scopes;
}

function parseRoles(roles: unknown): string[] {
  if (roles === undefined) return [];
  if (!Array.isArray(roles) || !roles.every(isNonEmptyString)) {
    throw invalid('INVALID_CLAIM', 'token claim "roles" must be an array of non-empty strings', 'roles');
  }
  return roles as string[];
}

/**
 * RFC 8705 §3: a certificate-bound token is only usable with that certificate, and on an mTLS
 * session we require the binding so a token copied off one agent is useless on another.
 */
function checkBinding(payload: JWTPayload, ctx: VerifyContext): string | undefined {
  const cnf = payload.cnf;
  if (cnf !== undefined && !isObject(cnf)) throw invalid('INVALID_CLAIM', 'token claim "cnf" must be an object', 'cnf');
  const bound = cnf?.['x5t#S256'];
  if (bound !== undefined && !isNonEmptyString(bound)) {
    throw invalid('INVALID_CLAIM', 'token claim "cnf.x5t#S256" must be a base64url string', 'cnf');
  }
  const mtls = ctx.assurance === 'mtls+token' || ctx.certThumbprint !== undefined;
  if (mtls) {
    if (ctx.certThumbprint === undefined) {
      throw new TokenError('TOKEN_BINDING_MISMATCH', 'CNF_UNVERIFIABLE', 'session is mTLS but no certificate thumbprint is known to check the token against', { claim: 'cnf' });
    }
    if (bound === undefined) {
      throw new TokenError('TOKEN_BINDING_MISMATCH', 'CNF_MISSING', 'token is not bound to the client certificate (no "cnf.x5t#S256"), which an mTLS session requires', { claim: 'cnf' });
    }
    if (bound !== ctx.certThumbprint) {
      throw new TokenError('TOKEN_BINDING_MISMATCH', 'THUMBPRINT_MISMATCH', 'token "cnf.x5t#S256" does not match the presented client certificate', { claim: 'cnf' });
    }
    return bound;
  }
  if (bound !== undefined) {
    throw new TokenError('TOKEN_BINDING_MISMATCH', 'CNF_UNVERIFIABLE', 'token is bound to a client certificate but the session presented none', { claim: 'cnf' });
  }
  return undefined;
}

/** What every token this gateway accepts must prove, agent or operator: the trust and the clock. */
export interface SignedTokenContext {
  issuers: TrustedIssuers;
  /** The audience string(s); the token's `aud` must name one of them. */
  audience: string | string[];
  maxTtlSec: number;
  leewaySec?: number;
  clock: Clock;
}

/** A token whose signature and registered claims verified; the caller checks its own claims next. */
export interface VerifiedToken {
  payload: JWTPayload;
  iss: string;
  sub: string;
  jti: string;
  /** Seconds since the epoch, as in the token. */
  exp: number;
  iat: number;
}

/**
 * The one JWT verification of the gateway (docs/identity.md): size, header (asymmetric algorithms
 * only, no `crit`), a trusted issuer, the signature (jose), audience, expiry within the leeway, and
 * `iat`, `exp`, `jti`, `sub` sane, the lifetime within the bundle's maximum. Agent tokens
 * (verifyAccessToken) and operator tokens (operator.ts) both start here. Throws TokenError.
 */
export async function verifySignedToken(jwt: string, ctx: SignedTokenContext): Promise<VerifiedToken> {
  if (typeof jwt !== 'string' || jwt.length === 0) throw invalid('MALFORMED', 'token is empty');
  if (jwt.length > MAX_TOKEN_LENGTH) throw invalid('TOO_LARGE', `token is longer than ${MAX_TOKEN_LENGTH} characters`);

  // The header and issuer are read unverified only to choose the key; jwtVerify below re-checks
  // both (algorithms, issuer) against the signature before anything is trusted.
  let alg: unknown;
  let crit: unknown;
  let iss: unknown;
  try {
    ({ alg, crit } = decodeProtectedHeader(jwt));
    iss = decodeJwt(jwt).iss;
  } catch (err) {
    throw invalid('MALFORMED', 'token is not a well-formed compact JWT', undefined, err);
  }
  if (typeof alg !== 'string' || !(ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
    throw invalid('ALG_NOT_ALLOWED', `token algorithm ${JSON.stringify(alg)} not allowed (only ${ALLOWED_ALGORITHMS.join(', ')})`);
  }
  // RFC 7515 §4.1.11: a verifier must refuse a token whose "crit" names an extension it does not
  // process, and this gateway processes none (jose would refuse it too, under a code it shares
  // with an unsupported algorithm).
  if (crit !== undefined) {
    throw invalid('CRIT_UNSUPPORTED', `token header "crit" names extensions this gateway does not process: ${JSON.stringify(crit)}`, 'crit');
  }
  if (iss === undefined) throw invalid('MISSING_CLAIM', 'token is missing required claim "iss"', 'iss');
  if (!isNonEmptyString(iss)) throw invalid('INVALID_CLAIM', 'token claim "iss" must be a non-empty string', 'iss');
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
      requiredClaims: REQUIRED_REGISTERED_CLAIMS,
      currentDate: new Date(nowMs),
      clockTolerance: leeway,
    }));
  } catch (err) {
    throw fromJoseError(err);
  }

  const { sub, exp, iat, jti } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw invalid('INVALID_CLAIM', 'token claim "exp" must be a number', 'exp');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('INVALID_CLAIM', 'token claim "iat" must be a number', 'iat');
  if (iat > Math.floor(nowMs / 1000) + leeway) throw invalid('IAT_IN_FUTURE', 'token "iat" is in the future beyond the clock leeway', 'iat');
  if (exp <= iat) throw invalid('INVALID_CLAIM', 'token "exp" is not after "iat"', 'exp');
  if (exp - iat > ctx.maxTtlSec) {
    throw invalid('LIFETIME_TOO_LONG', `token lifetime ${exp - iat}s exceeds the maximum of ${ctx.maxTtlSec}s`, 'exp');
  }
  if (!isNonEmptyString(jti)) throw invalid('INVALID_CLAIM', 'token claim "jti" must be a non-empty string', 'jti');
  if (!isNonEmptyString(sub)) throw invalid('INVALID_CLAIM', 'token claim "sub" must be a non-empty string', 'sub');
  return { payload, iss, sub, jti, exp, iat };
}

export async function verifyAccessToken(jwt: string, ctx: VerifyContext): Promise<Subject> {
  const { payload, iss, sub, jti, exp, iat } = await verifySignedToken(jwt, ctx);
  if (sub !== ctx.expectedSub) {
    throw invalid('SUB_MISMATCH', `token "sub" ${sub} is not the session's identity ${ctx.expectedSub}`, 'sub');
  }

  const { owner, task } = payload;
  if (owner === undefined) throw invalid('MISSING_CLAIM', 'token is missing required claim "owner"', 'owner');
  if (!isNonEmptyString(owner)) throw invalid('INVALID_CLAIM', 'token claim "owner" must be a non-empty string', 'owner');
  if (task === undefined) throw invalid('MISSING_CLAIM', 'token is missing required claim "task"', 'task');
  if (!isObject(task) || !isNonEmptyString(task.id) || !isNonEmptyString(task.purpose)) {
    throw invalid('INVALID_CLAIM', 'token claim "task" must be an object with non-empty string "id" and "purpose"', 'task');
  }
  if (payload.scope === undefined) throw invalid('MISSING_CLAIM', 'token is missing required claim "scope"', 'scope');
  const scopes = parseScope(payload.scope);
  let roles = parseRoles(payload.roles);
  if (ctx.certRole !== undefined && !roles.includes(ctx.certRole)) roles = [...roles, ctx.certRole];
  const actSub = payload.act === undefined ? undefined : flattenAct(payload.act);
  // An agent "acting for" itself would make delegation a no-op (its own rules checked twice, no
  // human's): such a token is refused, in any spelling of the name (docs/identity.md, delegation).
  if (actSub !== undefined && actSub.some((a) => samePrincipal(a, sub))) {
    throw invalid('INVALID_CLAIM', 'token claim "act" names the token\'s own subject: an agent cannot act for itself', 'act');
  }
  const certThumbprint = checkBinding(payload, ctx);

  const subject: Subject = {
    workloadId: sub,
    owner,
    taskId: task.id,
    taskPurpose: task.purpose,
    jti,
    roles,
    scopes,
    assurance: ctx.assurance,
    issuer: iss,
    expiresAtMs: exp * 1000,
    issuedAtMs: iat * 1000,
  };
  if (actSub !== undefined) subject.actSub = actSub;
  if (certThumbprint !== undefined) subject.certThumbprint = certThumbprint;
  // A static-identity token is bound to "no certificate" (''), not unbound: the pipeline's
  // thumbprint check then refuses it on any mTLS session of the same workload, as it refuses an
  // mTLS token on a plaintext session (whose thumbprint is '').
  else if (ctx.assurance === 'static-ip+token') subject.certThumbprint = '';
  if (payload.zone !== undefined) {
    if (!isNonEmptyString(payload.zone)) throw invalid('INVALID_CLAIM', 'token claim "zone" must be a non-empty string', 'zone');
    subject.zone = payload.zone;
  }
  // Shared by the token cache, the registry and every command of a session, and the audit caches
  // its encoded identity by object: nobody may change it after verification.
  Object.freeze(subject.roles);
  Object.freeze(subject.scopes);
  if (subject.actSub !== undefined) Object.freeze(subject.actSub);
  return Object.freeze(subject);
}
