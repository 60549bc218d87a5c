import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { JSONWebKeySet, JWK } from 'jose';
import { ManualClock } from '../../../src/core/clock.js';
import type { Subject } from '../../../src/core/command.js';
import { TokenRegistry, VerifiedTokenCache } from '../../../src/identity/registry.js';
import { trustedIssuersFromJwks, TokenError, type VerifyContext } from '../../../src/identity/verify.js';
import { mintToken } from '../../../src/identity/dev/mint.js';

const A = 'spiffe://plant.example/agent/optimizer';
const B = 'spiffe://plant.example/agent/reporter';

function subject(clock: ManualClock, over: Partial<Subject> = {}): Subject {
  return {
    workloadId: A, owner: 'alice', taskId: 'T', taskPurpose: 'p', jti: 'j1', roles: [], scopes: ['modbus:read'],
    assurance: 'mtls+token', issuer: 'iss', issuedAtMs: clock.now(), expiresAtMs: clock.now() + 300_000, ...over,
  };
}

describe('TokenRegistry', () => {
  it('answers NO_TOKEN for an identity that never presented a token', () => {
    const reg = new TokenRegistry({ clock: new ManualClock() });
    expect(reg.current(A)).toBe('NO_TOKEN');
  });

  it('returns the bound subject until exp, then TOKEN_EXPIRED with no leeway', () => {
    const clock = new ManualClock();
    const reg = new TokenRegistry({ clock });
    const s = subject(clock);
    reg.put(A, s);
    expect(reg.current(A)).toBe(s);
    expect(reg.current(B)).toBe('NO_TOKEN');
    clock.advance(299_999);
    expect(reg.current(A)).toBe(s);
    clock.advance(1);
    expect(reg.current(A)).toBe('TOKEN_EXPIRED');
  });

  it('replaces the token on rotation without reconnecting', () => {
    const clock = new ManualClock();
    const reg = new TokenRegistry({ clock });
    reg.put(A, subject(clock, { jti: 'old' }));
    clock.advance(290_000);
    reg.put(A, subject(clock, { jti: 'new' }));
    clock.advance(20_000);
    expect((reg.current(A) as Subject).jti).toBe('new');
  });

  it('refuses to bind a token to an identity other than its sub', () => {
    const clock = new ManualClock();
    const reg = new TokenRegistry({ clock });
    expect(() => reg.put(B, subject(clock))).toThrow(TokenError);
    expect(reg.current(B)).toBe('NO_TOKEN');
  });

  it('forgets removed and revoked identities', () => {
    const clock = new ManualClock();
    const reg = new TokenRegistry({ clock });
    reg.put(A, subject(clock));
    reg.put(B, subject(clock, { workloadId: B, owner: 'bob' }));
    expect(reg.removeWhere((s) => s.owner === 'bob')).toBe(1);
    expect(reg.current(B)).toBe('NO_TOKEN');
    reg.remove(A);
    expect(reg.current(A)).toBe('NO_TOKEN');
  });

  it('stays within its identity bound', () => {
    const clock = new ManualClock();
    const reg = new TokenRegistry({ clock, maxIdentities: 2 });
    for (const n of ['a', 'b', 'c']) reg.put(`spiffe://td/${n}`, subject(clock, { workloadId: `spiffe://td/${n}` }));
    expect(reg.size).toBe(2);
    expect(reg.current('spiffe://td/a')).toBe('NO_TOKEN');
  });
});

describe('VerifiedTokenCache', () => {
  const read = (n: string): unknown => JSON.parse(readFileSync(fileURLToPath(new URL(`../../../fixtures/keys/${n}`, import.meta.url)), 'utf8'));
  const privateJwk = read('dev-issuer.private.jwk.json') as JWK;
  const jwks = read('dev-issuer.jwks.json') as JSONWebKeySet;
  const ISS = 'https://issuer.dev.plantgate.local';

  function ctx(clock: ManualClock, over: Partial<VerifyContext> = {}): VerifyContext {
    return {
      issuers: trustedIssuersFromJwks([{ iss: ISS, jwks }]), audience: 'gw', expectedSub: A, assurance: 'static-ip+token',
      maxTtlSec: 900, clock, ...over,
    };
  }
  const mint = (clock: ManualClock): Promise<string> =>
    mintToken({ privateJwk, iss: ISS, sub: A, aud: 'gw', owner: 'o', task: { id: 't', purpose: 'p' }, scope: ['r'], ttlSec: 60, now: clock.now() });

  it('returns the same verified subject for a re-presented token in the same context', async () => {
    const clock = new ManualClock();
    const cache = new VerifiedTokenCache({ clock });
    const c = ctx(clock);
    const jwt = await mint(clock);
    const first = await cache.verify(jwt, c);
    expect(cache.get(jwt, c)).toBe(first);
    expect(await cache.verify(jwt, c)).toBe(first);
  });

  it('does not reuse a verification for another identity or a new set of issuers', async () => {
    const clock = new ManualClock();
    const cache = new VerifiedTokenCache({ clock });
    const jwt = await mint(clock);
    await cache.verify(jwt, ctx(clock));
    await expect(cache.verify(jwt, ctx(clock, { expectedSub: B }))).rejects.toMatchObject({ detail: 'SUB_MISMATCH' });
    expect(cache.get(jwt, ctx(clock))).toBeUndefined(); // fresh issuers object: a reloaded bundle
  });

  it('never serves a token past its exp', async () => {
    const clock = new ManualClock();
    const cache = new VerifiedTokenCache({ clock });
    const c = ctx(clock, { leewaySec: 0 });
    const jwt = await mint(clock);
    await cache.verify(jwt, c);
    clock.advance(60_000);
    expect(cache.get(jwt, c)).toBeUndefined();
    await expect(cache.verify(jwt, c)).rejects.toMatchObject({ reason: 'TOKEN_EXPIRED' });
  });
});
