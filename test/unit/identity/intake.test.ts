// Token intake (src/identity/intake.ts): what an OPC UA session's or a static identity's token must
// be to be accepted, in order, and that nothing is accepted the audit did not record.
import { describe, expect, it } from 'vitest';
import { AUD, devJwks, devPrivate, ISS, SUB, THUMB } from './dev-issuer.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Subject } from '../../../src/core/command.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { TokenIntake } from '../../../src/identity/intake.js';
import { trustedIssuersFromJwks } from '../../../src/identity/verify.js';

const who = { workloadId: SUB, certThumbprint: THUMB, assurance: 'mtls+token' as const };

function setup(over: { bundle?: boolean; revoked?: boolean; auditUp?: boolean } = {}) {
  const clock = new ManualClock(1_768_478_400_000);
  const recorded: Subject[] = [];
  const intake = new TokenIntake({
    trust: () => (over.bundle === false ? undefined : { issuers: trustedIssuersFromJwks([{ iss: ISS, jwks: devJwks }]), audience: AUD, maxTokenTtlSec: 900 }),
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
  return { clock, intake, recorded, token };
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
});
