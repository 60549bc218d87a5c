import 'reflect-metadata';
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import * as x509 from '@peculiar/x509';
import { webcrypto, X509Certificate, createHash } from 'node:crypto';
import { identityFromCertificate, parseSubjectAltNames } from '../../../src/identity/cert.js';
import { parseSpiffeId, isSpiffeId } from '../../../src/identity/spiffe.js';
import { PlantgateError } from '../../../src/core/errors.js';

x509.cryptoProvider.set(webcrypto);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const keysP = webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);

async function certWith(names: x509.JsonGeneralName[]): Promise<X509Certificate> {
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=test', keys: await keysP, signingAlgorithm: ALG,
    extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return new X509Certificate(c.toString('pem'));
}

function noIdentity(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PlantgateError);
    expect((err as PlantgateError).reason).toBe('NO_IDENTITY');
    return (err as Error).message;
  }
  throw new Error('expected NO_IDENTITY');
}

describe('identityFromCertificate', () => {
  it('reads the SPIFFE ID and the x5t#S256 thumbprint', async () => {
    const cert = await certWith([{ type: 'url', value: 'spiffe://plant.example/agent/optimizer' }, { type: 'dns', value: 'agent.local' }]);
    expect(identityFromCertificate(cert)).toEqual({
      workloadId: 'spiffe://plant.example/agent/optimizer',
      thumbprint: createHash('sha256').update(cert.raw).digest('base64url'),
    });
  });

  it('refuses a certificate with no SAN or no URI SAN', async () => {
    const none = await certWith([]);
    expect(noIdentity(() => identityFromCertificate(none))).toMatch(/no subject alternative name/);
    const dnsOnly = await certWith([{ type: 'dns', value: 'agent.local' }]);
    expect(noIdentity(() => identityFromCertificate(dnsOnly))).toMatch(/no URI SAN/);
  });

  it('refuses a certificate with two URI SANs', async () => {
    const two = await certWith([{ type: 'url', value: 'spiffe://a/x' }, { type: 'url', value: 'spiffe://a/y' }]);
    expect(noIdentity(() => identityFromCertificate(two))).toMatch(/2 URI SANs/);
  });

  it('refuses a URI SAN that is not a valid SPIFFE ID', async () => {
    for (const bad of ['https://plant.example/agent', 'spiffe://Plant.Example/a', 'spiffe://td/a/../b', 'spiffe://td/a/', 'spiffe://td:8080/a']) {
      const cert = await certWith([{ type: 'url', value: bad }]);
      expect(noIdentity(() => identityFromCertificate(cert))).toMatch(/not a valid SPIFFE ID/);
    }
  });

  it('is not fooled by a DNS SAN that spells out a URI SAN (CVE-2021-44532)', async () => {
    const cert = await certWith([{ type: 'dns', value: 'x, URI:spiffe://plant.example/agent/admin' }]);
    expect(noIdentity(() => identityFromCertificate(cert))).toMatch(/no URI SAN/);
  });
});

describe('parseSubjectAltNames', () => {
  it('round-trips any values Node writes, quoted or not', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('DNS', 'URI', 'IP Address'), fc.string({ minLength: 1 })), { minLength: 1, maxLength: 5 }), (entries) => {
        // Node quotes a value when it contains characters that would make the list ambiguous.
        const text = entries.map(([k, v]) => `${k}:${/[,:"\\\s]/.test(v) || v !== v.trim() ? JSON.stringify(v) : v}`).join(', ');
        const parsed = parseSubjectAltNames(text);
        expect(parsed).toEqual(entries.map(([kind, value]) => ({ kind, value })));
      }),
    );
  });

  it('never throws on arbitrary text', () => {
    fc.assert(fc.property(fc.string(), (s) => {
      parseSubjectAltNames(s);
    }));
  });
});

describe('parseSpiffeId', () => {
  it('accepts well-formed IDs and rejects malformed ones', () => {
    expect(parseSpiffeId('spiffe://plant.example/agent/optimizer')).toEqual({ id: 'spiffe://plant.example/agent/optimizer', trustDomain: 'plant.example', path: '/agent/optimizer' });
    for (const bad of ['', 'spiffe://', 'SPIFFE://td/a', 'spiffe://td//a', 'spiffe://td/a?x=1', 'spiffe://td/a#f', 'spiffe://u@td/a', 'spiffe://td/%41']) {
      expect(isSpiffeId(bad)).toBe(false);
    }
  });
});

describe('peer certificates under connection churn', () => {
  it('never reads a peer certificate with getPeerX509Certificate (Node 20 leaks ~8 KB of native memory per call)', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const path = await import('node:path');
    const root = path.resolve(__dirname, '../../..');
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
    const calls = [...walk(path.join(root, 'src')), ...walk(path.join(root, 'protocols'))].flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) => (/getPeerX509Certificate\s*\??\.?\(/.test(line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '')) ? [`${path.relative(root, f)}:${i + 1}`] : [])),
    );
    expect(calls).toEqual([]);
  });
});
