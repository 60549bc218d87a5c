// Agent and operator tokens go through one JWT verification (src/identity/verify.ts,
// verifySignedToken): a token that is refused for what it is (header, issuer, signature,
// registered claims, lifetime) is refused the same way whoever presents it. Before, the operator
// API had a copy of its own that had already drifted (it let a "crit" header through).
import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AUD, devJwks, devPrivate, ISS, SUB } from './dev-issuer.js';
import { ManualClock } from '../../../src/core/clock.js';
import { verifyOperatorToken } from '../../../src/identity/operator.js';
import { TokenError, trustedIssuersFromJwks, verifyAccessToken } from '../../../src/identity/verify.js';

const clock = new ManualClock(1_768_478_400_000);
const issuers = trustedIssuersFromJwks([{ iss: ISS, jwks: devJwks }]);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Signed by hand (jose's signer refuses what these tests need to send). */
function signed(header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = `${b64({ alg: 'EdDSA', typ: 'JWT', kid: devPrivate.kid, ...header })}.${b64(claims)}`;
  const key = createPrivateKey({ key: devPrivate as import('node:crypto').JsonWebKey, format: 'jwk' });
  return `${input}.${cryptoSign(null, Buffer.from(input), key).toString('base64url')}`;
}

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(clock.now() / 1000);
  return {
    iss: ISS, sub: SUB, aud: AUD, iat: now, exp: now + 300, jti: 'j-1', owner: 'alice@plant.example',
    task: { id: 'T-1', purpose: 'tune' }, scope: 'modbus:read', roles: ['operator'], ...over,
  };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (err) {
    return err instanceof TokenError ? `${err.reason} ${err.detail}` : `thrown ${(err as Error).message}`;
  }
}

describe('one verifier for agent and operator tokens', () => {
  const cases: Array<[string, string]> = [
    ['a "crit" header extension', signed({ crit: ['x-ext'], 'x-ext': true }, claims())],
    ['an algorithm other than EdDSA or ES256', signed({ alg: 'HS256' }, claims())],
    ['an issuer the bundle does not trust', signed({}, claims({ iss: 'https://elsewhere.example' }))],
    ['a lifetime over the bundle maximum', signed({}, claims({ exp: Math.floor(clock.now() / 1000) + 3600 }))],
    ['an iat far in the future', signed({}, claims({ iat: Math.floor(clock.now() / 1000) + 600, exp: Math.floor(clock.now() / 1000) + 700 }))],
    ['an empty jti', signed({}, claims({ jti: '' }))],
    ['a tampered payload', signed({}, claims()).replace(/\.[^.]+\./, `.${b64(claims({ sub: 'spiffe://plant.example/agent/other' }))}.`)],
  ];

  for (const [what, jwt] of cases) {
    it(`refuses a token with ${what} the same way on the agent API and the operator API`, async () => {
      const agent = await refusal(verifyAccessToken(jwt, { issuers, audience: AUD, expectedSub: SUB, assurance: 'none', maxTtlSec: 900, clock }));
      const operator = await refusal(verifyOperatorToken(jwt, { issuers, audience: AUD, maxTtlSec: 900, clock }));
      expect(agent).toMatch(/^TOKEN_INVALID /);
      expect(operator).toBe(agent);
    });
  }
});
