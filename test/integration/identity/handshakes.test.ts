// The handshake guard on a real mutual-TLS server over loopback: a peer that never finishes its
// handshake is closed at the deadline (silent, or trickling bytes that would restart node's own
// timer), a source or the listener over its cap of handshakes in progress is closed at accept,
// a finished handshake frees its slot, and every connection that ends without one is reported
// exactly once with its address. Deadlines are short and only awaited, never measured.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initPki, type PkiPaths } from '../../../src/identity/dev/pki.js';
import { guardHandshakes, type ConnectionLimits, type HandshakeGuard, type HandshakeRefusal } from '../../../src/identity/handshakes.js';

let dir: string;
let pki: PkiPaths;
let files: { ca: Buffer; cert: Buffer; key: Buffer; agentCert: Buffer; agentKey: Buffer };

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-handshakes-'));
  pki = await initPki(dir, { agents: [{ name: 'optimizer', spiffeId: 'spiffe://plant.example/agent/optimizer' }] });
  const [ca, cert, key, agentCert, agentKey] = await Promise.all([
    readFile(pki.ca.cert), readFile(pki.gateway.cert), readFile(pki.gateway.key), readFile(pki.agents.optimizer.cert), readFile(pki.agents.optimizer.key),
  ]);
  files = { ca, cert, key, agentCert, agentKey };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Guarded {
  port: number;
  guard: HandshakeGuard;
  refusals: HandshakeRefusal[];
  /** Resolves once `n` refusals have been reported. */
  refused(n: number): Promise<HandshakeRefusal[]>;
  secured: number;
  close(): Promise<void>;
}

async function guardedServer(limits: Partial<ConnectionLimits>): Promise<Guarded> {
  const server = tls.createServer({ ca: files.ca, cert: files.cert, key: files.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
  const refusals: HandshakeRefusal[] = [];
  let waiter: (() => void) | undefined;
  const guard = guardHandshakes(server, { handshakeTimeoutMs: 10_000, maxPendingHandshakes: 512, maxPendingHandshakesPerSource: 32, idleTimeoutMs: 0, ...limits }, (r) => {
    refusals.push(r);
    waiter?.();
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const g: Guarded = {
    port: 0,
    guard,
    refusals,
    secured: 0,
    async refused(n) {
      while (refusals.length < n) await new Promise<void>((r) => (waiter = r));
      return refusals.slice(0, n);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('secureConnection', (s) => {
    g.secured++;
    s.on('error', () => undefined);
    s.write('hello');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  g.port = (server.address() as net.AddressInfo).port;
  return g;
}

/** A TCP connection from `localAddress` that never speaks TLS; resolves when it is open. */
function stalled(port: number, localAddress = '127.0.0.1'): Promise<{ socket: net.Socket; localPort: number; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => resolve({ socket, localPort: socket.localPort!, closed }));
    socket.once('error', reject);
  });
}

/**
 * A full mutual-TLS handshake as the optimizer agent; resolves with the connected socket once the
 * server has sent its greeting (so the server side has finished the handshake too: TLS 1.3).
 */
function agent(port: number, localAddress = '127.0.0.1'): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // localAddress reaches the TCP socket (tls.connect passes its options on to net); @types/node omits it.
    const options: tls.ConnectionOptions & { localAddress: string } = { port, host: '127.0.0.1', localAddress, ca: files.ca, cert: files.agentCert, key: files.agentKey, servername: 'localhost' };
    const s = tls.connect(options);
    s.once('data', () => resolve(s));
    s.once('error', reject);
  });
}

describe('TLS handshake guard', () => {
  it('closes a connection that sends nothing at the deadline and reports TLS_HANDSHAKE_TIMEOUT once', async () => {
    const g = await guardedServer({ handshakeTimeoutMs: 300 });
    try {
      const { closed, localPort } = await stalled(g.port);
      await closed;
      const [r] = await g.refused(1);
      expect(r).toMatchObject({ reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE_TIMEOUT', remoteAddress: `127.0.0.1:${localPort}` });
      expect(g.guard.pending).toBe(0);
      // The "socket hang up" node reports after the close is not a second report.
      await new Promise((r) => setImmediate(r));
      expect(g.refusals).toHaveLength(1);
    } finally {
      await g.close();
    }
  });

  it('closes a peer that trickles a ClientHello byte by byte (each byte would restart a timer of silence)', async () => {
    const g = await guardedServer({ handshakeTimeoutMs: 400 });
    try {
      const { socket, closed } = await stalled(g.port);
      // A TLS record header and a ClientHello's first bytes, one every 50 ms: never silent for long.
      const bytes = Buffer.from('160301020001000200303', 'hex');
      let i = 0;
      const trickle = setInterval(() => {
        if (!socket.destroyed) socket.write(bytes.subarray(i % bytes.length, (i % bytes.length) + 1));
        i++;
      }, 50);
      await closed;
      clearInterval(trickle);
      const [r] = await g.refused(1);
      expect(r.code).toBe('TLS_HANDSHAKE_TIMEOUT');
      expect(r.message).toContain('400 ms');
    } finally {
      await g.close();
    }
  });

  it('closes at accept the handshakes one source holds over its cap, and lets another source in', async () => {
    const g = await guardedServer({ maxPendingHandshakesPerSource: 3 });
    try {
      const held = await Promise.all([1, 2, 3].map(() => stalled(g.port, '127.0.0.2')));
      const over = await stalled(g.port, '127.0.0.2');
      await over.closed;
      const [r] = await g.refused(1);
      expect(r).toMatchObject({ reason: 'RATE_LIMITED', code: 'TOO_MANY_HANDSHAKES', remoteAddress: `127.0.0.2:${over.localPort}` });
      expect(r.message).toContain('3 TLS handshakes in progress from 127.0.0.2 (limit 3)');
      // The held ones are still open, and an agent from another address completes its handshake.
      expect(held.every((h) => !h.socket.destroyed)).toBe(true);
      const a = await agent(g.port, '127.0.0.1');
      expect(a.authorized).toBe(true);
      a.destroy();
      for (const h of held) h.socket.destroy();
    } finally {
      await g.close();
    }
  });

  it('closes at accept whatever exceeds the listener-wide cap, whatever its source', async () => {
    const g = await guardedServer({ maxPendingHandshakes: 4 });
    try {
      const held = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => stalled(g.port, a)));
      const over = await stalled(g.port, '127.0.0.6');
      await over.closed;
      const [r] = await g.refused(1);
      expect(r.code).toBe('TOO_MANY_HANDSHAKES');
      expect(r.message).toContain('4 TLS handshakes in progress on this listener (limit 4)');
      for (const h of held) h.socket.destroy();
      await Promise.all(held.map((h) => h.closed));
    } finally {
      await g.close();
    }
  });

  it('frees the slot of a finished handshake: connected agents never count against the cap', async () => {
    const g = await guardedServer({ maxPendingHandshakesPerSource: 2 });
    try {
      const agents: tls.TLSSocket[] = [];
      for (let i = 0; i < 6; i++) agents.push(await agent(g.port));
      expect(g.refusals).toEqual([]);
      expect(g.secured).toBe(6);
      expect(g.guard.pending).toBe(0);
      for (const a of agents) a.destroy();
    } finally {
      await g.close();
    }
  });

  it('reports a refused handshake (no client certificate) once, with the TLS error', async () => {
    const g = await guardedServer({});
    try {
      const s = tls.connect({ port: g.port, host: '127.0.0.1', ca: files.ca, servername: 'localhost' });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('close', r));
      const [r] = await g.refused(1);
      expect(r).toMatchObject({ reason: 'NO_IDENTITY', code: 'TLS_HANDSHAKE' });
      expect(r.message).toMatch(/certificate/i);
      await new Promise((r) => setImmediate(r));
      expect(g.refusals).toHaveLength(1);
      expect(g.guard.pending).toBe(0);
    } finally {
      await g.close();
    }
  });

  it('reports a peer that leaves before its handshake, with its address', async () => {
    const g = await guardedServer({});
    try {
      const { socket, localPort } = await stalled(g.port);
      socket.end();
      const [r] = await g.refused(1);
      expect(r).toMatchObject({ code: 'TLS_HANDSHAKE', remoteAddress: `127.0.0.1:${localPort}` });
      expect(r.message).toContain('before the TLS handshake finished');
    } finally {
      await g.close();
    }
  });
});
