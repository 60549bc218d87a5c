// Signed policy bundles: signing a compiled payload, verifying one against pinned keys, and the
// bundle file on disk. Owns the trust decision for policy. It must never accept a bundle that is
// not signed by a pinned key: there is no "no key configured" path, no alg from the token alone,
// and a verified payload is still shape-checked before anyone uses it.
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PUBLIC_MODE, writeFileAtomic } from '../core/files.js';
import { CompactSign, compactVerify, decodeProtectedHeader, errors as joseErrors, importJWK, type JWK } from 'jose';
import { BundleError } from './errors.js';
import { payloadProblems, type BundlePayload } from './payload.js';

export { BundleError, type BundleErrorCode } from './errors.js';

export const BUNDLE_JWS_TYPE = 'plantgate-bundle+jws';
/** A bundle larger than this is refused before parsing (they are kilobytes in practice). */
export const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;

export type BundleAlg = 'EdDSA' | 'ES256';

export interface TrustedKey {
  kid: string;
  publicJwk: JWK;
  /**
   * Rotated out: still known (so a refusal names it as retired rather than unknown, which tells
   * the operator to re-sign rather than to pin), but a bundle signed by it is never accepted.
   */
  retired?: boolean;
}

/** The JWS alg a key signs with, from its type and curve; only Ed25519 and P-256 are allowed. */
export function algForJwk(jwk: JWK): BundleAlg {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  throw new BundleError('UNKNOWN_KEY', `unsupported signing key (kty ${jwk.kty ?? '?'}, crv ${jwk.crv ?? '?'}); use Ed25519 or P-256`);
}

export async function signBundle(payload: BundlePayload, privateJwk: JWK, kid: string): Promise<string> {
  const problem = payloadProblems(payload);
  if (problem) throw new BundleError('MALFORMED', `refusing to sign an invalid payload: ${problem}`);
  if (privateJwk.d === undefined) throw new BundleError('UNKNOWN_KEY', 'the signing key is a public key (no private part)');
  if (kid === '') throw new BundleError('UNKNOWN_KEY', 'a key id is required');
  const alg = algForJwk(privateJwk);
  const key = await importJWK(privateJwk, alg);
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg, kid, typ: BUNDLE_JWS_TYPE })
    .sign(key);
}

export interface VerifyOptions {
  /** ms since the epoch. */
  now: number;
  /** The highest revision already accepted; lower ones are rollback. */
  minRevision?: number;
}

export async function verifyBundle(jws: string, trusted: readonly TrustedKey[], opts: VerifyOptions): Promise<BundlePayload> {
  if (typeof jws !== 'string') throw new BundleError('MALFORMED', 'not a bundle (a JWS string)');
  if (jws.length > MAX_BUNDLE_BYTES) throw new BundleError('TOO_LARGE', `${jws.length} bytes (limit ${MAX_BUNDLE_BYTES})`);
  const compact = jws.trim();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    if (compact.split('.').length !== 3) throw new Error('expected three dot-separated parts');
    header = decodeProtectedHeader(compact);
  } catch (err) {
    throw new BundleError('MALFORMED', `not a compact JWS: ${(err as Error).message}`, { cause: err });
  }
  if (header.typ !== BUNDLE_JWS_TYPE) {
    throw new BundleError('BAD_TYPE', `typ is ${JSON.stringify(header.typ)}, expected '${BUNDLE_JWS_TYPE}'`);
  }
  // Said before any key is looked up or signature checked, so the refusal names the attempt (alg
  // none, HMAC keyed with the public key, an alg the pinned key does not sign with) instead of a
  // bare UNKNOWN_KEY or BAD_SIGNATURE.
  if (header.alg !== 'EdDSA' && header.alg !== 'ES256') {
    throw new BundleError('ALG_NOT_ALLOWED', `alg ${quoted(header.alg)} is not allowed (EdDSA or ES256 only)`);
  }
  const kid = header.kid;
  const pinned = typeof kid === 'string' ? trusted.find((t) => t.kid === kid) : undefined;
  if (pinned === undefined) {
    throw new BundleError('UNKNOWN_KEY', `signed with key ${JSON.stringify(kid)}, which is not pinned (pinned: ${trusted.map((t) => t.kid).join(', ') || 'none'})`);
  }
  if (pinned.retired === true) {
    throw new BundleError('RETIRED_KEY', `signed with key '${kid}', which is retired; re-sign the bundle with a current key (current: ${trusted.filter((t) => t.retired !== true).map((t) => t.kid).join(', ') || 'none'})`);
  }
  // The alg comes from the pinned key, never from the header alone (alg confusion).
  let alg: BundleAlg;
  try {
    alg = algForJwk(pinned.publicJwk);
  } catch (err) {
    throw new BundleError('UNKNOWN_KEY', `pinned key '${kid}' is unusable: ${(err as Error).message}`, { cause: err });
  }
  if (header.alg !== alg) {
    throw new BundleError('ALG_NOT_ALLOWED', `alg ${quoted(header.alg)} is not allowed: pinned key '${kid}' signs with ${alg} only`);
  }
  let payloadBytes: Uint8Array;
  try {
    const key = await importJWK(pinned.publicJwk, alg);
    ({ payload: payloadBytes } = await compactVerify(compact, key, { algorithms: [alg] }));
  } catch (err) {
    if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JOSEAlgNotAllowed) {
      throw new BundleError('BAD_SIGNATURE', `signature does not verify with pinned key '${kid}' (${alg})`, { cause: err });
    }
    throw new BundleError('MALFORMED', `cannot verify: ${(err as Error).message}`, { cause: err });
  }
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes));
  } catch (err) {
    throw new BundleError('MALFORMED', 'payload is not UTF-8 JSON', { cause: err });
  }
  const problem = payloadProblems(payload);
  if (problem) throw new BundleError('MALFORMED', `signed payload is not a valid bundle: ${problem}`);
  const p = payload as BundlePayload;
  if (opts.minRevision !== undefined && p.revision < opts.minRevision) {
    throw new BundleError('ROLLBACK', `revision ${p.revision} is older than the accepted revision ${opts.minRevision}`);
  }
  if (opts.now < p.not_before * 1000) {
    throw new BundleError('NOT_YET_VALID', `not valid before ${new Date(p.not_before * 1000).toISOString()}`);
  }
  if (opts.now > p.expires_at * 1000) {
    throw new BundleError('EXPIRED', `expired at ${new Date(p.expires_at * 1000).toISOString()}`);
  }
  return p;
}

function quoted(v: unknown): string {
  return typeof v === 'string' ? `'${v.slice(0, 32)}'` : String(v);
}

/** Decodes a bundle's header and payload WITHOUT verifying anything: for `bundle inspect` only. */
export function decodeBundleUnverified(jws: string): { header: Record<string, unknown>; payload: unknown } {
  const parts = jws.trim().split('.');
  if (parts.length !== 3) throw new BundleError('MALFORMED', 'not a compact JWS (expected three dot-separated parts)');
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return { header, payload };
  } catch (err) {
    throw new BundleError('MALFORMED', `cannot decode: ${(err as Error).message}`, { cause: err });
  }
}

export async function readBundleFile(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (size > MAX_BUNDLE_BYTES) throw new BundleError('TOO_LARGE', `${file} is ${size} bytes (limit ${MAX_BUNDLE_BYTES})`);
    return (await fh.readFile('utf8')).trim();
  } finally {
    await fh.close();
  }
}

/** Writes a bundle atomically: a crash leaves either the old file or the new one, never a torn one. */
export async function writeBundleFile(file: string, jws: string): Promise<void> {
  await writeFileAtomic(path.resolve(file), jws.endsWith('\n') ? jws : `${jws}\n`, PUBLIC_MODE);
}

/**
 * Reads a public JWKS file into pinned keys; every key must carry a kid. A key may carry
 * `"retired": true` (key rotation: the publisher marks the old key in the JWKS it ships).
 */
export async function readTrustedKeys(file: string): Promise<TrustedKey[]> {
  const jwks = JSON.parse(await readFile(file, 'utf8')) as { keys?: (JWK & { retired?: unknown })[] };
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`${file}: not a JWKS with at least one key`);
  return jwks.keys.map((k, i) => {
    if (typeof k.kid !== 'string' || k.kid === '') throw new Error(`${file}: keys[${i}] has no kid`);
    if (k.d !== undefined) throw new Error(`${file}: keys[${i}] is a private key; pin public keys only`);
    if (k.retired !== undefined && typeof k.retired !== 'boolean') throw new Error(`${file}: keys[${i}].retired must be true or false`);
    const { retired, ...publicJwk } = k;
    return retired === true ? { kid: k.kid, publicJwk, retired: true } : { kid: k.kid, publicJwk };
  });
}

/**
 * Merges the keys of several JWKS files (rotation pins the old and the new key side by side) and
 * marks the kids listed in `retiredKids` retired. A kid pinned twice with different key material
 * is refused: which key would verify would depend on file order.
 */
export function mergeTrustedKeys(sets: readonly (readonly TrustedKey[])[], retiredKids: readonly string[] = []): TrustedKey[] {
  const byKid = new Map<string, TrustedKey>();
  for (const set of sets) {
    for (const k of set) {
      const prev = byKid.get(k.kid);
      if (prev === undefined) {
        byKid.set(k.kid, { ...k });
        continue;
      }
      if (JSON.stringify(canonicalPublic(prev.publicJwk)) !== JSON.stringify(canonicalPublic(k.publicJwk))) {
        throw new BundleError('UNKNOWN_KEY', `key id '${k.kid}' is pinned twice with different keys; a kid must name one key`);
      }
      if (k.retired === true) prev.retired = true;
    }
  }
  const retired = new Set(retiredKids);
  for (const k of byKid.values()) if (retired.has(k.kid)) k.retired = true;
  return [...byKid.values()];
}

function canonicalPublic(jwk: JWK): Record<string, unknown> {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}
