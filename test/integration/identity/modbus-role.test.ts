// The Modbus/TCP Security role extension (OID 1.3.6.1.4.1.50316.802.1): read from the client
// certificate over a real mutual-TLS handshake, carried into the verified Subject's roles, and
// matched by policy `roles`. A role extension we cannot read is NO_IDENTITY, never "no role".
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { JSONWebKeySet, JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command } from '../../../src/core/command.js';
import { identityFromTlsSocket, type CertificateIdentity } from '../../../src/identity/cert.js';
import { initPki, issueClientCertificate, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { trustedIssuersFromJwks, verifyAccessToken } from '../../../src/identity/verify.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import type { BundleRule } from '../../../src/policy/payload.js';
import { demoPayload, NOW_MS } from '../../unit/policy/fixtures.js';
import { resolveModbus } from '../../resolve.js';

const OPT = 'spiffe://plant.example/agent/optimizer';
const ISS = 'https://issuer.dev.plantgate.local';
const AUD = 'plantgate:site-a';
const fixture = (name: string): unknown => JSON.parse(readFileSync(fileURLToPath(new URL(`../../../fixtures/keys/${name}`, import.meta.url)), 'utf8'));

let dir: string;
let pki: PkiPaths;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-role-'));
  pki = await initPki(dir, { agents: [{ name: 'optimizer', spiffeId: OPT }] });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const validity = () => ({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });

/** The identity a real mTLS server sees for a client presenting `certFile`/`keyFile`. */
async function seenBy(certFile: string, keyFile: string): Promise<{ identity?: CertificateIdentity; error?: unknown }> {
  const [ca, cert, key, clientCert, clientKey] = await Promise.all(
    [pki.ca.cert, pki.gateway.cert, pki.gateway.key, certFile, keyFile].map((f) => readFile(f)),
  );
  let resolveSeen!: (s: { identity?: CertificateIdentity; error?: unknown }) => void;
  const seen = new Promise<{ identity?: CertificateIdentity; error?: unknown }>((r) => (resolveSeen = r));
  const server = tls.createServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true }, (socket) => {
    try {
      resolveSeen({ identity: identityFromTlsSocket(socket) });
    } catch (error) {
      resolveSeen({ error });
    }
    socket.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const client = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca, cert: clientCert, key: clientKey, servername: 'localhost' });
    client.on('error', () => undefined);
    const result = await seen;
    client.destroy();
    return result;
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('Modbus/TCP Security role from the client certificate', () => {
  it('reads the role a certificate carries, and none from a certificate without the extension', async () => {
    const withRole = await issueClientCertificate(pki, { name: 'opt-operator', uris: [OPT], role: 'Operator', ...validity() });
    const a = await seenBy(withRole.cert, withRole.key);
    expect(a.error).toBeUndefined();
    expect(a.identity).toMatchObject({ workloadId: OPT, role: 'Operator' });

    const plain = await seenBy(pki.agents.optimizer.cert, pki.agents.optimizer.key);
    expect(plain.identity?.workloadId).toBe(OPT);
    expect(plain.identity?.role).toBeUndefined();
  });

  it('refuses a certificate whose role extension is not one readable UTF8String (NO_IDENTITY)', async () => {
    const cases: Array<[string, Uint8Array]> = [
      ['octet-string', Uint8Array.from([0x04, 0x02, 0x61, 0x62])],
      ['bad-utf8', Uint8Array.from([0x0c, 0x02, 0xc3, 0x28])],
      ['trailing', Uint8Array.from([0x0c, 0x01, 0x61, 0x00])],
      ['empty', Uint8Array.from([0x0c, 0x00])],
      ['control', Uint8Array.from([0x0c, 0x02, 0x61, 0x0a])],
    ];
    for (const [name, der] of cases) {
      const files = await issueClientCertificate(pki, { name: `role-${name}`, uris: [OPT], roleDer: der, ...validity() });
      const seen = await seenBy(files.cert, files.key);
      expect(seen.identity, name).toBeUndefined();
      expect(seen.error, name).toMatchObject({ reason: 'NO_IDENTITY' });
    }
  });

  it('lets policy match the certificate role through the token bound to that certificate', async () => {
    const files = await issueClientCertificate(pki, { name: 'opt-tuner', uris: [OPT], role: 'tuner', ...validity() });
    const seen = await seenBy(files.cert, files.key);
    const identity = seen.identity!;
    const clock = new ManualClock(NOW_MS);
    const jwt = await mintToken({
      privateJwk: fixture('dev-issuer.private.jwk.json') as JWK,
      iss: ISS,
      sub: OPT,
      aud: AUD,
      owner: 'ops',
      task: { id: 't-1', purpose: 'tune level' },
      scope: ['read', 'write'],
      certThumbprint: identity.thumbprint,
      now: clock.now(),
    });
    const ctx = {
      issuers: trustedIssuersFromJwks([{ iss: ISS, jwks: fixture('dev-issuer.jwks.json') as JSONWebKeySet }]),
      audience: AUD,
      expectedSub: OPT,
      certThumbprint: identity.thumbprint,
      assurance: 'mtls+token' as const,
      maxTtlSec: 900,
      clock,
    };
    const withRole = await verifyAccessToken(jwt, { ...ctx, certRole: identity.role });
    const withoutRole = await verifyAccessToken(jwt, ctx);
    expect(withRole.roles).toEqual(['tuner']);
    expect(withoutRole.roles).toEqual([]);

    const rule: BundleRule = {
      id: 'tuners',
      description: '',
      subject: { workload: OPT, roles: ['tuner'] },
      assets: ['plc1'],
      operations: ['write'],
      points: ['tank1.setpoint'],
      ranges: [],
      bounds: {},
    };
    const engine = PolicyEngine.fromPayload(demoPayload({ rules: [rule], expires_at: NOW_MS / 1000 + 400 * 86400 }));
    const write = (): Command => {
      const c: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation: 'write', functionCode: 6, targets: [{ table: 'holding', address: 0, count: 1 }], points: [], rawValues: [400] };
      resolveModbus(engine, c, 1);
      return c;
    };
    expect(engine.decide(write(), withRole, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'tuners' });
    expect(engine.decide(write(), withoutRole, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });
});
