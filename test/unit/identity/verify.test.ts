import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { base64url, type JSONWebKeySet, type JWK } from 'jose';
import { createHmac } from 'node:crypto';
import { ManualClock } from '../../../src/core/clock.js';
import { PlantgateError } from '../../../src/core/errors.js';
import { verifyAccessToken, trustedIssuersFromJwks, TokenError, type VerifyContext } from '../../../src/identity/verify.js';
import { mintToken, type MintOptions } from '../../../src/identity/dev/mint.js';
import { generateSigningKey, type SigningKey } from '../../../src/identity/dev/keys.js';

const fixture = (name: string): unknown => JSON.parse(readFileSync(fileURLToPath(new URL(`../../../fixtures/keys/${name}`, import.meta.url)), 'utf8'));
const devPrivate = fixture('dev-issuer.private.jwk.json') as JWK;
const devJwks = fixture('dev-issuer.jwks.json') as JSONWebKeySet;

const ISS = 'https://issuer.dev.plantgate.local';
const AUD = 'plantgate:site-a';
const SUB = 'spiffe://plant.example/agent/optimizer';
const THUMB = 'q3pL3Bz6qZJ0mXyS0nY7m3J1Fh8rHk2bqS0dXvH0r5Q';

let es256: SigningKey;
let stranger: SigningKey;

beforeAll(async () => {
  es256 = await generateSigningKey({ alg: 'ES256', name: 'es-issuer' });
  stranger = await generateSigningKey({ alg: 'EdDSA', name: 'dev-issuer' });
});

function context(clock: ManualClock, over: Partial<VerifyContext> = {}): VerifyContext {
  return {
    issuers: trustedIssuersFromJwks([
      { iss: ISS, jwks: devJwks },
      { iss: 'https://es.example', jwks: { keys: [es256.publicJwk] } },
    ]),
    audience: AUD,
    expectedSub: SUB,
    certThumbprint: THUMB,
    assurance: 'mtls+token',
    maxTtlSec: 900,
    clock,
    ...over,
  };
}

function mint(clock: ManualClock, over: Partial<MintOptions> = {}): Promise<string> {
  return mintToken({
    privateJwk: devPrivate,
    iss: ISS,
    sub: SUB,
    aud: AUD,
    owner: 'alice@plant.example',
    task: { id: 'T-42', purpose: 'optimise pump schedule' },
    scope: ['modbus:read', 'modbus:write'],
    certThumbprint: THUMB,
    jti: 'jti-1',
    now: clock.now(),
    ...over,
  });
}

/** Signs arbitrary header and payload with the dev issuer key, to craft tokens mint refuses to make. */
async function signRaw(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<string> {
  const { CompactSign, importJWK } = await import('jose');
  const key = await importJWK(devPrivate, 'EdDSA');
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'EdDSA', kid: devPrivate.kid, ...header }).sign(key);
}

function baseClaims(clock: ManualClock): Record<string, unknown> {
  const iat = Math.floor(clock.now() / 1000);
  return {
    iss: ISS, sub: SUB, aud: AUD, iat, exp: iat + 300, jti: 'jti-raw', owner: 'alice',
    task: { id: 'T-1', purpose: 'p' }, scope: 'modbus:read', cnf: { 'x5t#S256': THUMB },
  };
}

async function rejection(p: Promise<unknown>): Promise<TokenError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    expect(err).toBeInstanceOf(PlantgateError);
    return err as TokenError;
  }
  throw new Error('expected the token to be rejected');
}

describe('verifyAccessToken', () => {
  it('accepts a valid bound token and returns a Subject with every field', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { roles: ['optimizer'], act: ['bob@plant.example'] });
    const s = await verifyAccessToken(jwt, context(clock));
    const iat = Math.floor(clock.now() / 1000);
    expect(s).toEqual({
      workloadId: SUB,
      owner: 'alice@plant.example',
      taskId: 'T-42',
      taskPurpose: 'optimise pump schedule',
      jti: 'jti-1',
      actSub: ['bob@plant.example'],
      roles: ['optimizer'],
      scopes: ['modbus:read', 'modbus:write'],
      assurance: 'mtls+token',
      certThumbprint: THUMB,
      issuer: ISS,
      expiresAtMs: (iat + 300) * 1000,
      issuedAtMs: iat * 1000,
    });
  });

  it('accepts an ES256 token from a P-256 issuer', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { privateJwk: es256.privateJwk, iss: 'https://es.example' });
    expect((await verifyAccessToken(jwt, context(clock))).issuer).toBe('https://es.example');
  });

  it('accepts scope given as an array of strings', async () => {
    const clock = new ManualClock();
    const jwt = await signRaw({}, { ...baseClaims(clock), scope: ['a', 'b'] });
    expect((await verifyAccessToken(jwt, context(clock))).scopes).toEqual(['a', 'b']);
  });

  it('flattens a nested act chain outermost first', async () => {
    const clock = new ManualClock();
    const jwt = await signRaw({}, { ...baseClaims(clock), act: { sub: 'agent-runner', act: { sub: 'bob', act: { sub: 'carol' } } } });
    expect((await verifyAccessToken(jwt, context(clock))).actSub).toEqual(['agent-runner', 'bob', 'carol']);
  });

  it('rejects an expired token with TOKEN_EXPIRED once the clock passes exp plus leeway', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { ttlSec: 300 });
    clock.advance((300 + 30) * 1000);
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect(err.reason).toBe('TOKEN_EXPIRED');
    expect(err.detail).toBe('EXPIRED');
  });

  it('still accepts a token one second inside the leeway after exp', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { ttlSec: 300 });
    clock.advance((300 + 29) * 1000);
    await expect(verifyAccessToken(jwt, context(clock))).resolves.toMatchObject({ jti: 'jti-1' });
    const err = await rejection(verifyAccessToken(jwt, context(clock, { leewaySec: 0 })));
    expect(err.reason).toBe('TOKEN_EXPIRED');
  });

  it('rejects a token for another audience', async () => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await mint(clock, { aud: 'plantgate:site-b' }), context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'AUD_MISMATCH']);
  });

  it('rejects a token from an issuer the bundle does not trust', async () => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await mint(clock, { iss: 'https://evil.example' }), context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'UNKNOWN_ISSUER']);
    expect(err.message).toContain('https://evil.example');
  });

  it('rejects a token signed with a key id the issuer does not publish', async () => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await mint(clock, { privateJwk: stranger.privateJwk }), context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'UNKNOWN_KID']);
  });

  it('rejects a token signed by another key under the trusted kid', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { privateJwk: { ...stranger.privateJwk, kid: devPrivate.kid } });
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'BAD_SIGNATURE']);
  });

  it('rejects a token whose payload was altered after signing', async () => {
    const clock = new ManualClock();
    const [h, p, sig] = (await mint(clock)).split('.');
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p))) as Record<string, unknown>;
    claims.scope = 'modbus:write admin';
    const tampered = `${h}.${base64url.encode(JSON.stringify(claims))}.${sig}`;
    const err = await rejection(verifyAccessToken(tampered, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'BAD_SIGNATURE']);
  });

  it('rejects a token with a flipped signature bit', async () => {
    const clock = new ManualClock();
    const [h, p, sig] = (await mint(clock)).split('.');
    const bytes = base64url.decode(sig);
    bytes[0] ^= 1;
    const err = await rejection(verifyAccessToken(`${h}.${p}.${base64url.encode(bytes)}`, context(clock)));
    expect(err.detail).toBe('BAD_SIGNATURE');
  });

  it('rejects an unsigned alg "none" token', async () => {
    const clock = new ManualClock();
    const enc = (o: unknown): string => base64url.encode(JSON.stringify(o));
    const jwt = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(baseClaims(clock))}.`;
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'ALG_NOT_ALLOWED']);
  });

  it('rejects an HS256 token, even one keyed with the issuer public key', async () => {
    const clock = new ManualClock();
    const enc = (o: unknown): string => base64url.encode(JSON.stringify(o));
    const input = `${enc({ alg: 'HS256', typ: 'JWT', kid: devPrivate.kid })}.${enc(baseClaims(clock))}`;
    const mac = createHmac('sha256', String(devJwks.keys[0].x)).update(input).digest('base64url');
    const err = await rejection(verifyAccessToken(`${input}.${mac}`, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'ALG_NOT_ALLOWED']);
  });

  it('rejects garbage and oversized input as TOKEN_INVALID', async () => {
    const clock = new ManualClock();
    for (const junk of ['', 'abc', 'a.b.c', '...', 'x'.repeat(10_000)]) {
      const err = await rejection(verifyAccessToken(junk, context(clock)));
      expect(err.reason).toBe('TOKEN_INVALID');
    }
  });

  for (const claim of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'owner', 'task', 'scope']) {
    it(`rejects a token missing the "${claim}" claim and names it`, async () => {
      const clock = new ManualClock();
      const claims = baseClaims(clock);
      delete claims[claim];
      const err = await rejection(verifyAccessToken(await signRaw({}, claims), context(clock)));
      expect(err.reason).toBe('TOKEN_INVALID');
      expect(err.detail).toBe('MISSING_CLAIM');
      expect(err.claim).toBe(claim);
      expect(err.message).toContain(`"${claim}"`);
    });
  }

  it.each([
    ['task without purpose', { task: { id: 'T-1' } }, 'task'],
    ['task with empty id', { task: { id: '', purpose: 'p' } }, 'task'],
    ['owner not a string', { owner: 7 }, 'owner'],
    ['empty scope', { scope: '' }, 'scope'],
    ['scope of numbers', { scope: [1, 2] }, 'scope'],
    ['roles not an array', { roles: 'admin' }, 'roles'],
    ['act without sub', { act: { act: { sub: 'x' } } }, 'act'],
    ['act naming its own subject (delegation a no-op)', { act: { sub: SUB } }, 'act'],
    ['act naming its own subject deeper in the chain, another spelling', { act: { sub: 'bob', act: { sub: 'SPIFFE://Plant.Example/agent/optimizer' } } }, 'act'],
    ['empty jti', { jti: '' }, 'jti'],
  ])('rejects a token with %s', async (_name, patch, claim) => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await signRaw({}, { ...baseClaims(clock), ...patch }), context(clock)));
    expect([err.reason, err.detail, err.claim]).toEqual(['TOKEN_INVALID', 'INVALID_CLAIM', claim]);
  });

  it('rejects a token whose lifetime exceeds the bundle maximum', async () => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await mint(clock, { ttlSec: 901 }), context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'LIFETIME_TOO_LONG']);
    await expect(verifyAccessToken(await mint(clock, { ttlSec: 900 }), context(clock))).resolves.toBeDefined();
  });

  it('rejects a token issued in the future beyond the leeway', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { now: clock.now() + 120_000 });
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'IAT_IN_FUTURE']);
  });

  it("rejects a token whose sub is not the certificate's SPIFFE ID", async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { sub: 'spiffe://plant.example/agent/reporter' });
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_INVALID', 'SUB_MISMATCH']);
  });

  it('rejects an unbound token on an mTLS session with TOKEN_BINDING_MISMATCH', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { certThumbprint: undefined });
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_BINDING_MISMATCH', 'CNF_MISSING']);
  });

  it('rejects a token bound to another certificate', async () => {
    const clock = new ManualClock();
    const jwt = await mint(clock, { certThumbprint: 'A'.repeat(43) });
    const err = await rejection(verifyAccessToken(jwt, context(clock)));
    expect([err.reason, err.detail]).toEqual(['TOKEN_BINDING_MISMATCH', 'THUMBPRINT_MISMATCH']);
  });

  it('refuses to accept a token on an mTLS session whose thumbprint is unknown', async () => {
    const clock = new ManualClock();
    const err = await rejection(verifyAccessToken(await mint(clock), context(clock, { certThumbprint: undefined })));
    expect(err.reason).toBe('TOKEN_BINDING_MISMATCH');
  });

  it('accepts an unbound token on a static-ip session, and refuses a bound one there', async () => {
    const clock = new ManualClock();
    const ctx = context(clock, { certThumbprint: undefined, assurance: 'static-ip+token' });
    const s = await verifyAccessToken(await mint(clock, { certThumbprint: undefined }), ctx);
    expect(s.assurance).toBe('static-ip+token');
    // Bound to "no certificate": the pipeline then refuses it on any mTLS session of that workload.
    expect(s.certThumbprint).toBe('');
    const err = await rejection(verifyAccessToken(await mint(clock), ctx));
    expect([err.reason, err.detail]).toEqual(['TOKEN_BINDING_MISMATCH', 'CNF_UNVERIFIABLE']);
  });
});

describe('trustedIssuersFromJwks', () => {
  it('refuses a JWKS carrying a private key, an HMAC secret or an RSA key', () => {
    expect(() => trustedIssuersFromJwks([{ iss: ISS, jwks: { keys: [devPrivate] } }])).toThrow(/private/);
    expect(() => trustedIssuersFromJwks([{ iss: ISS, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }])).toThrow(/secret/);
    expect(() => trustedIssuersFromJwks([{ iss: ISS, jwks: { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] } }])).toThrow(/not allowed/);
  });

  it('refuses an issuer listed twice or with no keys', () => {
    expect(() => trustedIssuersFromJwks([{ iss: ISS, jwks: devJwks }, { iss: ISS, jwks: devJwks }])).toThrow(/twice/);
    expect(() => trustedIssuersFromJwks([{ iss: ISS, jwks: { keys: [] } }])).toThrow(/no keys/);
  });
});
