// Development token-signing keys (EdDSA / ES256 JWKs) for `plantgate keys gen` and tests.
// Never for production issuers: a real identity provider holds its own keys.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { join } from 'node:path';
import { PUBLIC_MODE, SECRET_MODE, writeFileDurable } from './files.js';

export type SigningAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  privateJwk: JWK;
  publicJwk: JWK;
  kid: string;
}

export interface SigningKeyFiles {
  privateJwkPath: string;
  jwksPath: string;
}

/**
 * kid: the given one, else `<name>-<first 8 chars of the RFC 7638 thumbprint>` (the form of the
 * fixture keys), else the whole thumbprint.
 */
export async function generateSigningKey(opts: { alg: SigningAlg; kid?: string; name?: string }): Promise<SigningKey> {
  if (opts.alg !== 'EdDSA' && opts.alg !== 'ES256') throw new Error(`unsupported signing algorithm ${String(opts.alg)} (EdDSA or ES256)`);
  const { privateKey } = await generateKeyPair(opts.alg, { extractable: true, ...(opts.alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const jwk = await exportJWK(privateKey);
  const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
  const kid = opts.kid ?? (opts.name ? `${opts.name}-${thumbprint.slice(0, 8)}` : thumbprint);
  const privateJwk: JWK = { ...jwk, kid, alg: opts.alg, use: 'sig' };
  const { d: _d, ...publicJwk } = privateJwk;
  return { privateJwk, publicJwk, kid };
}

/** Writes `<name>.private.jwk.json` (0600) and `<name>.jwks.json` (public JWKS). */
export async function writeSigningKey(dir: string, name: string, key: SigningKey): Promise<SigningKeyFiles> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`key name "${name}" may contain only letters, digits, ".", "-" and "_"`);
  const privateJwkPath = join(dir, `${name}.private.jwk.json`);
  const jwksPath = join(dir, `${name}.jwks.json`);
  await writeFileDurable(privateJwkPath, `${JSON.stringify(key.privateJwk, null, 2)}\n`, SECRET_MODE);
  await writeFileDurable(jwksPath, `${JSON.stringify({ keys: [key.publicJwk] }, null, 2)}\n`, PUBLIC_MODE);
  return { privateJwkPath, jwksPath };
}
