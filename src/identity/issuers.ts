// Trusted token issuers and their public keys, as named in the policy bundle (docs/identity.md, docs/policy.md).
// Owns building the offline key lookup; it never fetches keys over the network (a gateway on a
// plant network must not depend on reaching an identity provider to decide a command).
import { createLocalJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose';
import { PlantgateError } from '../core/errors.js';

export type { JSONWebKeySet, JWTVerifyGetKey };

export interface TrustedIssuers {
  get(iss: string): JWTVerifyGetKey | undefined;
  /** Whether the issuer still has a key with this `kid` (a bundle reload may remove keys). */
  hasKey?(iss: string, kid: string): boolean;
}

export interface LocalTrustedIssuers extends TrustedIssuers {
  /** Issuer names, for diagnostics (`bundle inspect`, health). */
  names(): string[];
}

export interface TrustedIssuerSource {
  iss: string;
  jwks: JSONWebKeySet;
}

/**
 * Only public Ed25519 (EdDSA) and P-256 (ES256) keys may be trusted: the algorithms we accept.
 * Checked here, at bundle load, so a bad key set fails the load with a message naming the issuer
 * instead of failing every token later.
 */
function checkKey(iss: string, index: number, key: JWK): string | undefined {
  const where = `trusted issuer "${iss}" key #${index}${key.kid ? ` (kid "${key.kid}")` : ''}`;
  if ('d' in key || 'k' in key || 'p' in key) return `${where} contains private or secret key material`;
  if (key.kty === 'OKP') {
    if (key.crv !== 'Ed25519') return `${where}: OKP curve must be Ed25519, got ${String(key.crv)}`;
    if (key.alg !== undefined && key.alg !== 'EdDSA' && key.alg !== 'Ed25519') return `${where}: alg ${key.alg} does not match an Ed25519 key`;
  } else if (key.kty === 'EC') {
    if (key.crv !== 'P-256') return `${where}: EC curve must be P-256, got ${String(key.crv)}`;
    if (key.alg !== undefined && key.alg !== 'ES256') return `${where}: alg ${key.alg} does not match a P-256 key`;
  } else {
    return `${where}: key type ${String(key.kty)} not allowed (only OKP/Ed25519 and EC/P-256)`;
  }
  if (key.use !== undefined && key.use !== 'sig') return `${where}: use must be "sig"`;
  return undefined;
}

/**
 * Builds the issuer lookup from JWKS documents. Throws PlantgateError('BUNDLE_UNAVAILABLE') on a
 * duplicate issuer or an unacceptable key: a bundle that cannot say whom to trust is not usable.
 */
export function trustedIssuersFromJwks(list: TrustedIssuerSource[]): LocalTrustedIssuers {
  const map = new Map<string, JWTVerifyGetKey>();
  const kids = new Map<string, Set<string>>();
  for (const { iss, jwks } of list) {
    if (typeof iss !== 'string' || iss === '') {
      throw new PlantgateError('BUNDLE_UNAVAILABLE', 'trusted issuer has an empty name');
    }
    if (map.has(iss)) throw new PlantgateError('BUNDLE_UNAVAILABLE', `trusted issuer "${iss}" is listed twice`);
    if (jwks === null || typeof jwks !== 'object' || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
      throw new PlantgateError('BUNDLE_UNAVAILABLE', `trusted issuer "${iss}" has no keys (JWKS needs a non-empty "keys" array)`);
    }
    jwks.keys.forEach((key, index) => {
      const problem = key !== null && typeof key === 'object' ? checkKey(iss, index, key) : `trusted issuer "${iss}" key #${index} is not an object`;
      if (problem !== undefined) throw new PlantgateError('BUNDLE_UNAVAILABLE', problem);
    });
    let getKey: JWTVerifyGetKey;
    try {
      getKey = createLocalJWKSet(jwks);
    } catch (cause) {
      throw new PlantgateError('BUNDLE_UNAVAILABLE', `trusted issuer "${iss}" has a malformed JWKS`, { cause });
    }
    map.set(iss, getKey);
    kids.set(iss, new Set(jwks.keys.flatMap((k) => (typeof k.kid === 'string' ? [k.kid] : []))));
  }
  return {
    get: (iss) => map.get(iss),
    hasKey: (iss, kid) => kids.get(iss)?.has(kid) ?? false,
    names: () => [...map.keys()],
  };
}
