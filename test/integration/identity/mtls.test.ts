import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { initPki, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { identityFromTlsSocket, identityFromCertificate, type CertificateIdentity } from '../../../src/identity/cert.js';
import { PlantgateError } from '../../../src/core/errors.js';

const OPTIMIZER = 'spiffe://plant.example/agent/optimizer';
const REPORTER = 'spiffe://plant.example/agent/reporter';

let dir: string;
let otherDir: string;
let pki: PkiPaths;
let other: PkiPaths;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-pki-'));
  otherDir = await mkdtemp(join(tmpdir(), 'plantgate-pki-other-'));
  pki = await initPki(dir, {
    agents: [
      { name: 'optimizer', spiffeId: OPTIMIZER },
      { name: 'reporter', spiffeId: REPORTER },
    ],
  });
  other = await initPki(otherDir, { agents: [{ name: 'optimizer', spiffeId: OPTIMIZER }] });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(otherDir, { recursive: true, force: true });
});

type ServerSide = { identity?: CertificateIdentity; error?: unknown };

/** A real mTLS server on 127.0.0.1:0 that records what identityFromTlsSocket says about each peer. */
async function withServer(fn: (port: number, seen: Promise<ServerSide>) => Promise<void>): Promise<void> {
  const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.gateway.cert), readFile(pki.gateway.key)]);
  let resolveSeen!: (s: ServerSide) => void;
  const seen = new Promise<ServerSide>((r) => (resolveSeen = r));
  const server = tls.createServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true }, (socket) => {
    try {
      resolveSeen({ identity: identityFromTlsSocket(socket) });
    } catch (error) {
      resolveSeen({ error });
    }
    socket.end('ok');
  });
  server.on('tlsClientError', (error) => resolveSeen({ error }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await fn((server.address() as AddressInfo).port, seen);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

function connect(port: number, opts: tls.ConnectionOptions): Promise<{ data: string; error?: Error }> {
  return new Promise((resolve) => {
    let data = '';
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts });
    socket.setEncoding('utf8');
    socket.on('data', (d) => (data += d));
    socket.on('end', () => resolve({ data }));
    socket.on('error', (error) => resolve({ data, error }));
    socket.on('close', () => resolve({ data }));
  });
}

describe('dev PKI and mutual TLS', () => {
  it('writes every private key readable by the owner only', async () => {
    for (const p of [pki.ca.key, pki.gateway.key, pki.collector.key, pki.agents.optimizer.key, pki.agents.reporter.key]) {
      expect((await stat(p)).mode & 0o777).toBe(0o600);
    }
  });

  it('issues a gateway certificate for localhost and 127.0.0.1 with the gateway SPIFFE ID', async () => {
    const cert = new X509Certificate(await readFile(pki.gateway.cert));
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.subjectAltName).toContain('URI:spiffe://plant.example/gateway');
    expect(cert.checkIssued(new X509Certificate(await readFile(pki.ca.cert)))).toBe(true);
  });

  it('completes a mutual-TLS handshake and the gateway reads the agent SPIFFE ID and thumbprint', async () => {
    const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.agents.optimizer.cert), readFile(pki.agents.optimizer.key)]);
    await withServer(async (port, seen) => {
      const res = await connect(port, { ca, cert, key });
      expect(res.error).toBeUndefined();
      expect(res.data).toBe('ok');
      const side = await seen;
      expect(side.error).toBeUndefined();
      expect(side.identity?.workloadId).toBe(OPTIMIZER);
      expect(side.identity?.thumbprint).toBe(identityFromCertificate(new X509Certificate(cert)).thumbprint);
    });
  });

  it('tells two agents apart by their certificates', async () => {
    const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.agents.reporter.cert), readFile(pki.agents.reporter.key)]);
    await withServer(async (port, seen) => {
      await connect(port, { ca, cert, key });
      expect((await seen).identity?.workloadId).toBe(REPORTER);
    });
  });

  it('refuses an agent certificate issued by another CA', async () => {
    const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(other.agents.optimizer.cert), readFile(other.agents.optimizer.key)]);
    await withServer(async (port, seen) => {
      const res = await connect(port, { ca, cert, key });
      expect(res.data).toBe('');
      const side = await seen;
      expect(side.identity).toBeUndefined();
      expect(side.error).toBeInstanceOf(Error);
    });
  });

  it('refuses a client that presents no certificate', async () => {
    const ca = await readFile(pki.ca.cert);
    await withServer(async (port, seen) => {
      const res = await connect(port, { ca });
      expect(res.data).toBe('');
      expect((await seen).identity).toBeUndefined();
    });
  });

  it('gives NO_IDENTITY for a peer the TLS layer did not authorize', async () => {
    const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.gateway.cert), readFile(pki.gateway.key)]);
    const [otherCert, otherKey] = await Promise.all([readFile(other.agents.optimizer.cert), readFile(other.agents.optimizer.key)]);
    // A server that asks for a certificate but does not reject: the extractor must still refuse.
    let resolveSeen!: (s: ServerSide) => void;
    const seen = new Promise<ServerSide>((r) => (resolveSeen = r));
    const server = tls.createServer({ ca, cert, key, requestCert: true, rejectUnauthorized: false }, (socket) => {
      try {
        resolveSeen({ identity: identityFromTlsSocket(socket) });
      } catch (error) {
        resolveSeen({ error });
      }
      socket.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      await connect((server.address() as AddressInfo).port, { ca, cert: otherCert, key: otherKey });
      const side = await seen;
      expect(side.error).toBeInstanceOf(PlantgateError);
      expect((side.error as PlantgateError).reason).toBe('NO_IDENTITY');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('refuses to replace an existing CA unless asked to', async () => {
    await expect(initPki(dir, { agents: [] })).rejects.toThrow(/already exists/);
  });
});
