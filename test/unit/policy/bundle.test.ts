import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CompactSign, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { BundleError, decodeBundleUnverified, MAX_BUNDLE_BYTES, readBundleFile, signBundle, verifyBundle, type BundleErrorCode } from '../../../src/policy/bundle.js';
import { demoPayload, NOW_MS } from './fixtures.js';

async function keyPair(alg: 'EdDSA' | 'ES256' = 'EdDSA'): Promise<{ priv: JWK; pub: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { priv: await exportJWK(privateKey), pub: await exportJWK(publicKey) };
}

async function refusal(p: Promise<unknown>): Promise<BundleErrorCode> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).reason).toBe('BUNDLE_UNAVAILABLE');
    return (err as BundleError).code;
  }
  throw new Error('expected the bundle to be refused');
}

const policyKey = await keyPair();
const trusted = [{ kid: 'policy-1', publicJwk: policyKey.pub }];

describe('signed policy bundles', () => {
  it('round-trips: a bundle signed with a pinned key verifies to the same payload', async () => {
    const jws = await signBundle(demoPayload(), policyKey.priv, 'policy-1');
    const { header } = decodeBundleUnverified(jws);
    expect(header).toEqual({ alg: 'EdDSA', kid: 'policy-1', typ: 'plantgate-bundle+jws' });
    expect(await verifyBundle(jws, trusted, { now: NOW_MS })).toEqual(demoPayload());
  });

  it('accepts an ES256 signing key', async () => {
    const ec = await keyPair('ES256');
    const jws = await signBundle(demoPayload(), ec.priv, 'ec-1');
    expect(decodeBundleUnverified(jws).header.alg).toBe('ES256');
    const p = await verifyBundle(jws, [{ kid: 'ec-1', publicJwk: ec.pub }], { now: NOW_MS });
    expect(p.revision).toBe(5);
  });

  it('refuses a tampered payload with BAD_SIGNATURE', async () => {
    const jws = await signBundle(demoPayload(), policyKey.priv, 'policy-1');
    const [h, , s] = jws.split('.');
    const forged = Buffer.from(JSON.stringify({ ...demoPayload(), revision: 99 })).toString('base64url');
    expect(await refusal(verifyBundle(`${h}.${forged}.${s}`, trusted, { now: NOW_MS }))).toBe('BAD_SIGNATURE');
  });

  it('refuses a bundle whose kid is not pinned with UNKNOWN_KEY', async () => {
    const other = await keyPair();
    const jws = await signBundle(demoPayload(), other.priv, 'rogue');
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('UNKNOWN_KEY');
  });

  it('refuses a valid signature from a key that is not the pinned one, even under a pinned kid', async () => {
    const other = await keyPair();
    const jws = await signBundle(demoPayload(), other.priv, 'policy-1');
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('BAD_SIGNATURE');
  });

  it('refuses everything when no key is pinned', async () => {
    const jws = await signBundle(demoPayload(), policyKey.priv, 'policy-1');
    expect(await refusal(verifyBundle(jws, [], { now: NOW_MS }))).toBe('UNKNOWN_KEY');
  });

  it('refuses an older revision than the accepted one as ROLLBACK', async () => {
    const jws = await signBundle(demoPayload({ revision: 4 }), policyKey.priv, 'policy-1');
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS, minRevision: 5 }))).toBe('ROLLBACK');
    expect((await verifyBundle(jws, trusted, { now: NOW_MS, minRevision: 4 })).revision).toBe(4);
  });

  it('refuses a bundle before not_before and after expires_at', async () => {
    const jws = await signBundle(demoPayload(), policyKey.priv, 'policy-1');
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS - 1000 }))).toBe('NOT_YET_VALID');
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS + 86400_000 + 1 }))).toBe('EXPIRED');
    expect((await verifyBundle(jws, trusted, { now: NOW_MS + 86400_000 })).name).toBe('unit');
  });

  it('refuses a JWS of another type with BAD_TYPE', async () => {
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(demoPayload())))
      .setProtectedHeader({ alg: 'EdDSA', kid: 'policy-1', typ: 'JWT' })
      .sign(await importJWK(policyKey.priv, 'EdDSA'));
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('BAD_TYPE');
  });

  it('refuses a correctly signed payload that is not a bundle with MALFORMED', async () => {
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify({ ...demoPayload(), rules: 'all' })))
      .setProtectedHeader({ alg: 'EdDSA', kid: 'policy-1', typ: 'plantgate-bundle+jws' })
      .sign(await importJWK(policyKey.priv, 'EdDSA'));
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('MALFORMED');
  });

  it('refuses garbage with MALFORMED, never a crash', async () => {
    for (const junk of ['', 'abc', 'a.b.c', '..', 'eyJhbGciOiJFZERTQSJ9..', `${'x'.repeat(10)}.${'y'.repeat(10)}`]) {
      expect(await refusal(verifyBundle(junk, trusted, { now: NOW_MS }))).toMatch(/MALFORMED|BAD_TYPE/);
    }
  });

  // Algorithm confusion: a header naming another alg than the pinned key's is refused as such,
  // before any signature is checked, so the audit says what the attacker tried.
  it('refuses an unsigned bundle (alg none) with ALG_NOT_ALLOWED', async () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const jws = `${b64({ alg: 'none', kid: 'policy-1', typ: 'plantgate-bundle+jws' })}.${b64(demoPayload())}.`;
    const err = await verifyBundle(jws, trusted, { now: NOW_MS }).catch((e: unknown) => e as BundleError);
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('ALG_NOT_ALLOWED');
    expect((err as BundleError).message).toContain("alg 'none'");
    expect((err as BundleError).message).toContain('EdDSA');
  });

  it('refuses an HS256 bundle keyed with the pinned public key (alg confusion) with ALG_NOT_ALLOWED', async () => {
    // The classic attack: HMAC with the public key's bytes as the secret.
    const secret = new TextEncoder().encode(JSON.stringify(policyKey.pub));
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(demoPayload())))
      .setProtectedHeader({ alg: 'HS256', kid: 'policy-1', typ: 'plantgate-bundle+jws' })
      .sign(secret);
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('ALG_NOT_ALLOWED');
  });

  it('refuses an ES256 header under a pinned Ed25519 key with ALG_NOT_ALLOWED', async () => {
    const ec = await keyPair('ES256');
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(demoPayload())))
      .setProtectedHeader({ alg: 'ES256', kid: 'policy-1', typ: 'plantgate-bundle+jws' })
      .sign(await importJWK(ec.priv, 'ES256'));
    expect(await refusal(verifyBundle(jws, trusted, { now: NOW_MS }))).toBe('ALG_NOT_ALLOWED');
  });

  it('refuses a bundle over the size limit with TOO_LARGE, from a string or a file, without reading it', async () => {
    expect(await refusal(verifyBundle('x'.repeat(MAX_BUNDLE_BYTES + 1), trusted, { now: NOW_MS }))).toBe('TOO_LARGE');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bundle-'));
    try {
      const file = path.join(dir, 'huge.jws');
      await writeFile(file, '');
      await truncate(file, 50 * 1024 * 1024); // sparse: 50 MB on paper
      const err = await readBundleFile(file).catch((e: unknown) => e as BundleError);
      expect(err).toBeInstanceOf(BundleError);
      expect((err as BundleError).code).toBe('TOO_LARGE');
      expect((err as BundleError).message).toContain(String(50 * 1024 * 1024));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('will not sign an invalid payload', async () => {
    expect(await refusal(signBundle(demoPayload({ revision: 0 }), policyKey.priv, 'policy-1'))).toBe('MALFORMED');
  });
});
