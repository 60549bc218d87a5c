// No token or private key reaches a log line (docs/architecture.md, Invariants), whatever field or depth it travels in,
// and the non-secret identifiers an operator needs (jti, workload, thumbprint) stay readable.
import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLogger, scrub } from '../../../src/core/log.js';
import { generateSigningKey } from '../../../src/identity/dev/keys.js';
import { mintToken } from '../../../src/identity/dev/mint.js';

function capture(level = 'debug') {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  // pino writes synchronously to a plain stream, so lines are there when the call returns.
  const logger = createLogger('redaction-test', { level }, { destination: destination as unknown as NodeJS.WritableStream & { write(s: string): boolean } });
  return { logger, text: () => lines.join('') };
}

describe('log redaction', () => {
  let token: string;
  let jwk: Record<string, unknown>;
  let pem: string;
  let secrets: string[];

  beforeAll(async () => {
    const key = await generateSigningKey({ alg: 'EdDSA', name: 'issuer' });
    jwk = key.privateJwk as Record<string, unknown>;
    token = await mintToken({
      privateJwk: key.privateJwk, iss: 'https://issuer.test', sub: 'spiffe://plant.example/agent/optimizer', aud: 'plant', owner: 'alice',
      task: { id: 't1', purpose: 'p' }, scope: ['read'],
    });
    pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // What must never appear: the whole token, its signature, the JWK's private scalar, the PEM body.
    secrets = [token, token.split('.')[2]!, String(jwk.d), pem.split('\n')[1]!];
  });

  const expectClean = (text: string) => {
    expect(text.length).toBeGreaterThan(0);
    for (const s of secrets) expect(text).not.toContain(s);
  };

  it('censors tokens and keys under their usual field names at the top level and one level down', () => {
    const { logger, text } = capture();
    logger.info({ token, jwt: token, authorization: `Bearer ${token}`, privateKey: pem, key: jwk, d: jwk.d }, 'top level');
    logger.info({ body: { token }, creds: { key: pem, privateJwk: jwk }, req: { headers: { authorization: `Bearer ${token}` } } }, 'one level down');
    expectClean(text());
    expect(text()).toContain('[redacted]');
  });

  it('censors them deep inside nested objects and arrays', () => {
    const { logger, text } = capture();
    logger.warn({ request: { ctx: { auth: { session: { bearer: token } } } }, keys: [{ kid: 'k1', jwk: { ...jwk } }], a: { b: { c: { d: jwk.d, password: 'hunter2' } } } }, 'deep');
    expectClean(text());
    expect(text()).not.toContain('hunter2');
    expect(text()).toContain('"kid":"k1"');
  });

  it('censors token- and key-shaped values whatever the field is called, also in messages and errors', () => {
    const { logger, text } = capture();
    logger.info({ upstreamAnswer: `rejected ${token} at 12:00`, note: pem }, `agent sent ${token}`);
    logger.error({ err: new Error(`could not verify ${token}`) }, 'verification failed');
    logger.debug(`PUT /v1/token body=${token}`);
    expectClean(text());
    expect(text()).toContain('agent sent [redacted]');
  });

  it('keeps what an operator needs: jti, workload, thumbprint, reason', () => {
    const { logger, text } = capture();
    logger.info({ jti: 'jti-123', workload: 'spiffe://plant.example/agent/optimizer', thumbprint: 'abcDEF_-', reason: 'TOKEN_REVOKED' }, 'refused');
    const line = JSON.parse(text()) as Record<string, unknown>;
    expect(line).toMatchObject({ jti: 'jti-123', workload: 'spiffe://plant.example/agent/optimizer', thumbprint: 'abcDEF_-', reason: 'TOKEN_REVOKED', msg: 'refused' });
  });

  it('never mutates the object handed to the logger', () => {
    const { logger } = capture();
    const obj = { nested: { token }, list: [token] };
    logger.info(obj, 'x');
    expect(obj.nested.token).toBe(token);
    expect(obj.list[0]).toBe(token);
  });

  it('terminates on cyclic and very deep structures', () => {
    const { logger, text } = capture();
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    let deep: Record<string, unknown> = { token };
    for (let i = 0; i < 100; i++) deep = { next: deep };
    logger.info({ cyclic, deep }, 'structures');
    expectClean(text());
  });

  it('property: any JWT embedded in any string at any depth is censored', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.integer({ min: 0, max: 5 }), (before, after, depth) => {
        let v: unknown = `${before}${token}${after}`;
        for (let i = 0; i < depth; i++) v = { [`f${i}`]: [v] };
        expect(JSON.stringify(scrub(v))).not.toContain(token.split('.')[2]);
      }),
    );
  });
});
