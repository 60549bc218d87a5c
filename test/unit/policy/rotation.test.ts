import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { BundleError, mergeTrustedKeys, readTrustedKeys, signBundle, verifyBundle, type TrustedKey } from '../../../src/policy/bundle.js';
import { readPinnedKeys } from '../../../src/gateway/policy-state.js';
import { demoPayload, NOW_MS } from './fixtures.js';

async function keyPair(): Promise<{ priv: JWK; pub: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  return { priv: await exportJWK(privateKey), pub: await exportJWK(publicKey) };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BundleError);
    return `${(err as BundleError).code}: ${(err as Error).message}`;
  }
  throw new Error('expected a refusal');
}

const oldKey = await keyPair();
const newKey = await keyPair();

describe('policy key rotation', () => {
  it('accepts bundles from the old and the new key while both are pinned (rotate-in)', async () => {
    const pinned: TrustedKey[] = [
      { kid: 'policy-2025', publicJwk: oldKey.pub },
      { kid: 'policy-2026', publicJwk: newKey.pub },
    ];
    const byOld = await signBundle(demoPayload({ revision: 5 }), oldKey.priv, 'policy-2025');
    const byNew = await signBundle(demoPayload({ revision: 6 }), newKey.priv, 'policy-2026');
    expect((await verifyBundle(byOld, pinned, { now: NOW_MS })).revision).toBe(5);
    expect((await verifyBundle(byNew, pinned, { now: NOW_MS })).revision).toBe(6);
  });

  it('refuses a bundle signed by a retired key with RETIRED_KEY, naming the current keys', async () => {
    const pinned: TrustedKey[] = [
      { kid: 'policy-2025', publicJwk: oldKey.pub, retired: true },
      { kid: 'policy-2026', publicJwk: newKey.pub },
    ];
    const byOld = await signBundle(demoPayload(), oldKey.priv, 'policy-2025');
    const refusal = await codeOf(verifyBundle(byOld, pinned, { now: NOW_MS }));
    expect(refusal).toMatch(/^RETIRED_KEY: .*'policy-2025', which is retired.*current: policy-2026/);
    const byNew = await signBundle(demoPayload(), newKey.priv, 'policy-2026');
    expect((await verifyBundle(byNew, pinned, { now: NOW_MS })).revision).toBe(5);
  });

  it('still refuses a key that was never pinned with UNKNOWN_KEY', async () => {
    const rogue = await keyPair();
    const jws = await signBundle(demoPayload(), rogue.priv, 'policy-2027');
    expect(await codeOf(verifyBundle(jws, [{ kid: 'policy-2026', publicJwk: newKey.pub }], { now: NOW_MS }))).toMatch(/^UNKNOWN_KEY/);
  });

  it('merges several JWKS files and retires the kids the config lists', () => {
    const merged = mergeTrustedKeys(
      [[{ kid: 'policy-2025', publicJwk: oldKey.pub }], [{ kid: 'policy-2026', publicJwk: newKey.pub }, { kid: 'policy-2025', publicJwk: oldKey.pub }]],
      ['policy-2025'],
    );
    expect(merged.map((k) => [k.kid, k.retired === true])).toEqual([
      ['policy-2025', true],
      ['policy-2026', false],
    ]);
  });

  it('refuses one kid pinned with two different keys', () => {
    expect(() =>
      mergeTrustedKeys([[{ kid: 'policy-2026', publicJwk: oldKey.pub }], [{ kid: 'policy-2026', publicJwk: newKey.pub }]]),
    ).toThrow(/'policy-2026' is pinned twice with different keys/);
  });

  it('reads "retired": true from a JWKS file and keeps it out of the public key', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-rotation-'));
    const file = path.join(dir, 'policy.jwks.json');
    await writeFile(file, JSON.stringify({ keys: [{ ...oldKey.pub, kid: 'policy-2025', retired: true }, { ...newKey.pub, kid: 'policy-2026' }] }));
    const keys = await readTrustedKeys(file);
    expect(keys.map((k) => [k.kid, k.retired === true])).toEqual([
      ['policy-2025', true],
      ['policy-2026', false],
    ]);
    expect(keys[0]!.publicJwk).not.toHaveProperty('retired');
    await writeFile(file, JSON.stringify({ keys: [{ ...oldKey.pub, kid: 'k', retired: 'yes' }] }));
    await expect(readTrustedKeys(file)).rejects.toThrow(/keys\[0\]\.retired must be true or false/);
  });

  it('refuses a configuration in which every pinned key is retired', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-rotation-'));
    const a = path.join(dir, 'a.jwks.json');
    const b = path.join(dir, 'b.jwks.json');
    await writeFile(a, JSON.stringify({ keys: [{ ...oldKey.pub, kid: 'policy-2025' }] }));
    await writeFile(b, JSON.stringify({ keys: [{ ...newKey.pub, kid: 'policy-2026' }] }));
    expect((await readPinnedKeys([a, b], ['policy-2025'])).map((k) => k.kid)).toEqual(['policy-2025', 'policy-2026']);
    await expect(readPinnedKeys([a, b], ['policy-2025', 'policy-2026'])).rejects.toThrow(/every pinned policy key is retired/);
  });
});
