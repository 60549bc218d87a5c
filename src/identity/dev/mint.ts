// Development token minting for `plantgate token mint`, tests and the demo: produces exactly the
// token shape verify.ts requires (docs/identity.md). Never used by the gateway itself.
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import type { SigningAlg } from './keys.js';

export interface MintOptions {
  privateJwk: JWK;
  iss: string;
  sub: string;
  aud: string | string[];
  owner: string;
  task: { id: string; purpose: string };
  scope: string[];
  /** Lifetime in seconds; default 300. */
  ttlSec?: number;
  roles?: string[];
  /** Delegation chain, outermost (current) actor first; a single string is a one-link chain. */
  act?: string | string[];
  /** x5t#S256 of the agent's certificate → `cnf.x5t#S256` (RFC 8705). */
  certThumbprint?: string;
  jti?: string;
  /** Issue time, ms since the epoch (default: now). */
  now?: number;
}

function algOf(jwk: JWK): SigningAlg {
  if (jwk.alg === 'EdDSA' || jwk.alg === 'ES256') return jwk.alg as SigningAlg;
  if (jwk.alg === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  throw new Error(`signing key must be Ed25519 (EdDSA) or P-256 (ES256), got kty ${String(jwk.kty)} crv ${String(jwk.crv)}`);
}

/** RFC 8693 §4.1: the current actor is the outermost `act`; prior actors nest inside it. */
function nestAct(chain: string[]): Record<string, unknown> | undefined {
  let act: Record<string, unknown> | undefined;
  for (let i = chain.length - 1; i >= 0; i--) act = act === undefined ? { sub: chain[i] } : { sub: chain[i], act };
  return act;
}

/** Signs `claims` with the registered claims every token carries (iss, sub, aud, iat, exp, jti). */
async function signWith(
  opts: { privateJwk: JWK; iss: string; sub: string; aud: string | string[]; ttlSec?: number; jti?: string; now?: number },
  claims: Record<string, unknown>,
  defaultTtlSec: number,
): Promise<string> {
  if (opts.privateJwk.d === undefined) throw new Error('signing key has no private part ("d")');
  const alg = algOf(opts.privateJwk);
  const key = await importJWK(opts.privateJwk, alg);
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);
  const ttl = opts.ttlSec ?? defaultTtlSec;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error(`ttl must be a positive number of seconds, got ${ttl}`);
  const header: { alg: string; typ: string; kid?: string } = { alg, typ: 'JWT' };
  if (opts.privateJwk.kid !== undefined) header.kid = opts.privateJwk.kid;
  return new SignJWT(claims)
    .setProtectedHeader(header)
    .setIssuer(opts.iss)
    .setSubject(opts.sub)
    .setAudience(opts.aud)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttl)
    .setJti(opts.jti ?? randomUUID())
    .sign(key);
}

export async function mintToken(opts: MintOptions): Promise<string> {
  const claims: Record<string, unknown> = {
    owner: opts.owner,
    task: { id: opts.task.id, purpose: opts.task.purpose },
    scope: opts.scope.join(' '),
  };
  if (opts.roles !== undefined) claims.roles = opts.roles;
  const chain = opts.act === undefined ? [] : typeof opts.act === 'string' ? [opts.act] : opts.act;
  const act = nestAct(chain);
  if (act !== undefined) claims.act = act;
  if (opts.certThumbprint !== undefined) claims.cnf = { 'x5t#S256': opts.certThumbprint };
  return signWith(opts, claims, 300);
}

export interface OperatorMintOptions {
  privateJwk: JWK;
  iss: string;
  /** The human (or service) acting: `bob@plant.example`; for the owner role, the value the agents' `owner` claim carries. */
  sub: string;
  aud: string | string[];
  /** `operator` and/or `owner` (src/identity/operator.ts). */
  roles: string[];
  ttlSec?: number;
  jti?: string;
  now?: number;
}

/**
 * An operator's bearer token for the operator API and the console (docs/operator.md): the claims
 * verifyOperatorToken requires (iss, sub, aud, exp, iat, jti) and roles; no owner, task or scope.
 */
export async function mintOperatorToken(opts: OperatorMintOptions): Promise<string> {
  return signWith(opts, { roles: opts.roles }, 600);
}
