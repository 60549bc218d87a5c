// `plantgate pki opcua` as an operator runs it: OPC UA application instance certificates a stock OPC
// UA stack accepts (RSA 2048, the applicationUri as URI SAN, the key usages Basic256Sha256 and
// Aes256_Sha256_RsaPss need), the thumbprints a token's cnf names, and a config block to paste.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateThumbprint } from '../../src/identity/cert.js';
import { assertBuilt, run } from './cli.js';

describe('plantgate pki opcua', () => {
  let dir: string;
  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-pki-opcua-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('issues RSA application certificates for the gateway, agents (applicationUri = SPIFFE ID) and a fronted server, with key usages and thumbprints', async () => {
    const out = path.join(dir, 'ua');
    const r = await run(['pki', 'opcua', '--dir', out, '--gateway-uri', 'urn:plantgate:gateway:gw1', '--host', 'gw1.plant.example', '--agent', 'optimizer=spiffe://plant.example/agent/optimizer', '--server', 'line1=urn:acme:plc:line1:server']);
    expect(r.code, r.stderr).toBe(0);
    const check = async (file: string, uri: string, server: boolean) => {
      const pem = await readFile(file);
      const cert = new X509Certificate(pem);
      expect(cert.publicKey.asymmetricKeyType).toBe('rsa');
      expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      expect(cert.subjectAltName).toContain(`URI:${uri}`);
      if (server) expect(cert.subjectAltName).toContain('DNS:gw1.plant.example');
      const parsed = new x509.X509Certificate(pem.toString());
      const usage = parsed.getExtension(x509.KeyUsagesExtension)!;
      for (const flag of [x509.KeyUsageFlags.digitalSignature, x509.KeyUsageFlags.nonRepudiation, x509.KeyUsageFlags.keyEncipherment, x509.KeyUsageFlags.dataEncipherment]) expect(usage.usages & flag).toBe(flag);
      expect(parsed.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual(expect.arrayContaining([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]));
      expect(parsed.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
      // The key belongs to the certificate, and only its owner may read it.
      const key = createPrivateKey(await readFile(file.replace(/\.pem$/, '.key')));
      expect(cert.checkPrivateKey(key)).toBe(true);
      expect((await stat(file.replace(/\.pem$/, '.key'))).mode & 0o077).toBe(0);
      expect(r.stdout).toContain(`${file}  ${uri}  x5t#S256=${certificateThumbprint(cert)}`);
    };
    await check(path.join(out, 'gateway.pem'), 'urn:plantgate:gateway:gw1', true);
    await check(path.join(out, 'agents', 'optimizer.pem'), 'spiffe://plant.example/agent/optimizer', false);
    await check(path.join(out, 'servers', 'line1.pem'), 'urn:acme:plc:line1:server', true);
    expect(r.stdout).toContain('application_uri: urn:plantgate:gateway:gw1');
    expect(r.stdout).toContain(`trusted_agent_certs: [${path.join(out, 'agents', 'optimizer.pem')}]`);
  }, 60_000);

  it('refuses to replace existing certificates without --force, and an agent whose applicationUri would not be a SPIFFE ID, exiting 2', async () => {
    const out = path.join(dir, 'twice');
    expect((await run(['pki', 'opcua', '--dir', out])).code).toBe(0);
    const again = await run(['pki', 'opcua', '--dir', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/gateway\.key already exists; refusing to replace it/);
    expect((await run(['pki', 'opcua', '--dir', out, '--force'])).code).toBe(0);
    const bad = await run(['pki', 'opcua', '--dir', path.join(dir, 'bad'), '--agent', 'hmi=urn:acme:hmi']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/agent 'hmi': 'urn:acme:hmi' is not a SPIFFE ID/);
    expect((await run(['pki', 'opcua', '--dir', path.join(dir, 'bad'), '--agent', 'nonsense'])).code).toBe(2);
  }, 60_000);
});
