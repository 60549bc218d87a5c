// Token intake (src/identity/intake.ts): what a presented token must be to be accepted, in order,
// that nothing is accepted the audit did not record, and that every refusal is recorded.
import { describe, expect, it } from 'vitest';
import { AUD, devJwks, devPrivate, ISS, SUB, THUMB } from './dev-issuer.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Subject } from '../../../src/core/command.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { TokenIntake } from '../../../src/identity/intake.js';
import { TokenRegistry } from '../../../src/identity/registry.js';
import { VerifiedTokenCache } from '../../../src/identity/token-cache.js';
import { trustedIssuersFromJwks } from '../../../src/identity/verify.js';

const who = { workloadId: SUB, certThumbprint: THUMB, assurance: 'mtls+token' as const };

function setup(over: { bundle?: boolean; revoked?: boolean; auditUp?: boolean } = {}) {
  const clock = new ManualClock(1_768_478_400_000);
  const recorded: Subject[] = [];
  const refusals: string[] = [];
  const cache = new VerifiedTokenCache({ clock });
  // One object per bundle, as PolicyState holds it: the cache reuses a verification only for the same issuers.
  const issuers = trustedIssuersFromJwks([{ iss: ISS, jwks: devJwks }]);
  const intake = new TokenIntake({
    cache,
    onRejected: (w, reason, detail, s) => refusals.push(`${w.workloadId === SUB ? 'SUB' : w.workloadId} ${reason} ${detail} jti=${s?.jti ?? '-'}`),
    trust: () => (over.bundle === false ? undefined : { issuers, audience: AUD, maxTokenTtlSec: 900 }),
    clock,
    leewaySec: 30,
    revocations: { isRevoked: (s) => (over.revoked === true && s.jti === 'j-1' ? 'TOKEN_REVOKED' : undefined) },
    onAccepted: (s) => {
      if (over.auditUp === false) return false;
      recorded.push(s);
      return true;
    },
  });
  const token = (ttlSec = 300) =>
    mintToken({ privateJwk: devPrivate, iss: ISS, sub: SUB, aud: AUD, owner: 'alice@plant.example', task: { id: 'T-1', purpose: 'tune' }, scope: ['opcua:read'], certThumbprint: THUMB, jti: 'j-1', ttlSec, now: clock.now() });
  return { clock, intake, recorded, refusals, cache, token };
}

const reasonOf = (p: Promise<unknown>) => p.then(() => 'accepted', (err: { reason?: string }) => err.reason);

describe('token intake', () => {
  it('accepts a valid token once its acceptance is recorded, as a frozen Subject', async () => {
    const { intake, recorded, token } = setup();
    const subject = await intake.accept(await token(), who);
    expect(subject.workloadId).toBe(SUB);
    expect(Object.isFrozen(subject)).toBe(true);
    expect(recorded).toEqual([subject]);
  });

  it('refuses with BUNDLE_UNAVAILABLE while no bundle is loaded, records nothing', async () => {
    const { intake, recorded, token } = setup({ bundle: false });
    expect(await reasonOf(intake.accept(await token(), who))).toBe('BUNDLE_UNAVAILABLE');
    expect(recorded).toEqual([]);
  });

  it('refuses a revoked token with TOKEN_REVOKED, records nothing', async () => {
    const { intake, recorded, token } = setup({ revoked: true });
    expect(await reasonOf(intake.accept(await token(), who))).toBe('TOKEN_REVOKED');
    expect(recorded).toEqual([]);
  });

  it('refuses a token expired within the clock leeway with TOKEN_EXPIRED', async () => {
    const { clock, intake, token } = setup();
    const jwt = await token(60);
    clock.advance(61_000);
    expect(await reasonOf(intake.accept(jwt, who))).toBe('TOKEN_EXPIRED');
  });

  it('refuses with AUDIT_UNAVAILABLE when its acceptance cannot be recorded', async () => {
    const { intake, token } = setup({ auditUp: false });
    expect(await reasonOf(intake.accept(await token(), who))).toBe('AUDIT_UNAVAILABLE');
  });

  it('records each refusal, naming the token once verification knew it', async () => {
    const { intake, refusals, token } = setup({ revoked: true });
    await reasonOf(intake.accept(await token(), who));
    await reasonOf(intake.accept('not-a-jwt', who));
    expect(refusals).toEqual(['SUB TOKEN_REVOKED REVOKED jti=j-1', 'SUB TOKEN_INVALID MALFORMED jti=-']);
  });

  it('verifies and records a bearer token riding on every request once, and still checks its expiry each time', async () => {
    const { clock, intake, recorded, cache, token } = setup();
    const jwt = await token(60);
    const bearer = { ...who, everyRequest: true };
    await intake.accept(jwt, bearer);
    await intake.accept(jwt, bearer);
    expect(recorded).toHaveLength(1);
    expect([cache.misses, cache.hits]).toEqual([1, 1]);
    clock.advance(60_000);
    expect(await reasonOf(intake.accept(jwt, bearer))).toBe('TOKEN_EXPIRED');
  });

  it('records a registration each time it is presented, from the cache after the first', async () => {
    const { intake, recorded, cache, token } = setup();
    const jwt = await token();
    await intake.accept(jwt, who);
    await intake.accept(jwt, who);
    expect(recorded).toHaveLength(2);
    expect([cache.misses, cache.hits]).toEqual([1, 1]);
  });

  it('never records as accepted a token its registry then refuses (the per-identity cap)', async () => {
    const { clock, intake, recorded, refusals } = setup();
    const tokens = new TokenRegistry({ clock, maxTokensPerIdentity: 1 });
    const mint = (jti: string) =>
      mintToken({ privateJwk: devPrivate, iss: ISS, sub: SUB, aud: AUD, owner: 'alice@plant.example', task: { id: 'T-1', purpose: 'tune' }, scope: ['opcua:read'], certThumbprint: THUMB, jti, ttlSec: 300, now: clock.now() });
    await intake.register(await mint('a'), who, tokens);
    expect(await reasonOf(intake.register(await mint('b'), who, tokens))).toBe('RATE_LIMITED');
    expect(recorded.map((s) => s.jti)).toEqual(['a']);
    expect(refusals).toEqual(['SUB RATE_LIMITED TOO_MANY_TOKENS jti=b']);
    expect(tokens.peek(SUB)?.jti).toBe('a');
  });
});
