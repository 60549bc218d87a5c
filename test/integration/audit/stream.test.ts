import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader } from '../../../src/audit/framing.js';
import { leafHash, toHex, ZERO_HASH } from '../../../src/audit/hash.js';
import { AuditLog } from '../../../src/audit/log.js';
import { outcomeRecord, violationRecord } from '../../../src/audit/records.js';
import { encodeRecord, num, pb } from '../../../src/audit/schema.js';
import { startShipper, type Shipper, type ShipperAlert } from '../../../src/audit/shipper.js';
import { startCollector, type Collector, type CollectorAlert } from '../../../src/collector/server.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki } from '../../../src/identity/dev/pki.js';

interface Pem {
  ca: string;
  gateway: { cert: string; key: string };
  collector: { cert: string; key: string };
}
let pem: Pem;
let root: string;
let spoolDir: string;
let outDir: string;
const clock = new ManualClock();
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'plantgate-pki-'));
  const p = await initPki(dir, { agents: [] });
  const read = (f: string) => readFile(f, 'utf8');
  pem = {
    ca: await read(p.ca.cert),
    gateway: { cert: await read(p.gateway.cert), key: await read(p.gateway.key) },
    collector: { cert: await read(p.collector.cert), key: await read(p.collector.key) },
  };
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'plantgate-stream-'));
  spoolDir = join(root, 'spool');
  outDir = join(root, 'out');
});

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
  await rm(root, { recursive: true, force: true });
});

async function collector(port = 0): Promise<Collector> {
  const c = await startCollector({ host: '127.0.0.1', port, tls: { ca: pem.ca, ...pem.collector }, outDir });
  cleanup.push(() => c.close());
  return c;
}

async function gateway(opts: { segmentBytes?: number } = {}): Promise<AuditLog> {
  const log = await AuditLog.open({ dir: spoolDir, gatewayId: 'gw-1', clock, ...opts });
  cleanup.push(() => log.close());
  return log;
}

function ship(log: AuditLog, port: number): Shipper {
  const s = startShipper({
    log,
    host: '127.0.0.1',
    port,
    tls: { ca: pem.ca, ...pem.gateway },
    gatewayId: 'gw-1',
    reconnect: { minMs: 10, maxMs: 100 },
  });
  cleanup.push(() => s.close());
  return s;
}

/** Resolves once the shipper has seen the collector acknowledge `seq`. */
function ackedThrough(s: Shipper, seq: number): Promise<void> {
  if (s.stats().ackedSeq >= seq) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (acked: number) => {
      if (acked >= seq) {
        s.off('acked', on);
        resolve();
      }
    };
    s.on('acked', on);
  });
}

const ev = (i: number) => outcomeRecord({ decisionSeq: i, sessionId: 'sess-1', status: 'ok', upstreamLatencyUs: 100 + i });

async function ndjson(): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(outDir, 'gw-1.ndjson'), 'utf8');
  return text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function expectCompleteChain(log: AuditLog, n: number): Promise<void> {
  const lines = await ndjson();
  expect(lines.map((l) => l.seq)).toEqual([...Array(n).keys()]);
  let prev = toHex(ZERO_HASH);
  for (const l of lines) {
    expect(l.prevHash).toBe(prev);
    prev = l.hash as string;
  }
  expect(prev).toBe(toHex(log.lastRecordHash()));
}

describe('audit shipping over mutual TLS', () => {
  it('delivers 1000 records in order with a valid chain, one NDJSON line per record', async () => {
    const col = await collector();
    const log = await gateway();
    const s = ship(log, col.port);
    for (let i = 0; i < 1000; i++) {
      log.append(ev(i));
      if (i % 100 === 99) await log.sync();
    }
    await ackedThrough(s, 999);
    await expectCompleteChain(log, 1000);
    const lines = await ndjson();
    const recs = await log.readFrom(log.firstSeq, 1000);
    for (const r of recs) expect(lines[r.seq].hash).toBe(toHex(leafHash(r.bytes)));
    expect(lines[7]).toMatchObject({ gatewayId: 'gw-1', event: 'outcome', outcome: { decisionSeq: 7, status: 'ok', upstreamLatencyUs: 107 } });
    expect(log.ackedSeq).toBe(999);
    expect(s.stats()).toMatchObject({ connected: true, sentSeq: 999, ackedSeq: 999 });
  });

  it('resumes after the collector is killed mid-stream and restarted, without losing or duplicating a record', async () => {
    const first = await collector();
    const port = first.port;
    const log = await gateway();
    const s = ship(log, port);
    let seen = 0;
    const killed = new Promise<void>((resolve) => {
      first.on('record', () => {
        if (++seen === 300) void first.close().then(resolve);
      });
    });
    for (let i = 0; i < 600; i++) {
      log.append(ev(i));
      if (i % 50 === 49) await log.sync();
    }
    await killed;
    for (let i = 600; i < 800; i++) log.append(ev(i));
    await log.sync();
    expect(log.ackedSeq).toBeLessThan(799);

    const second = await collector(port);
    await ackedThrough(s, 799);
    await expectCompleteChain(log, 800);
    expect(s.stats().connects).toBeGreaterThanOrEqual(2);
    await second.close();
  });

  it('trusts the NDJSON over a stale state file after a collector crash, so nothing is written twice', async () => {
    const col = await collector();
    const port = col.port;
    const log = await gateway();
    const s = ship(log, port);
    for (let i = 0; i < 100; i++) log.append(ev(i));
    await ackedThrough(s, 99);
    await col.close();
    // A crash between the NDJSON fsync and the state rename leaves the state behind the data.
    await writeFile(join(outDir, 'gw-1.state.json'), JSON.stringify({ next_seq: 40, last_hash: toHex(new Uint8Array(32)) }));
    await collector(port);
    for (let i = 100; i < 150; i++) log.append(ev(i));
    await ackedThrough(s, 149);
    await expectCompleteChain(log, 150);
  });

  it('deletes spool segments once the collector has acknowledged every record in them', async () => {
    const col = await collector();
    const log = await gateway({ segmentBytes: 2048 });
    for (let i = 0; i < 300; i++) {
      log.append(ev(i));
      if (i % 10 === 9) await log.sync();
    }
    const segsWritten = (await readdir(spoolDir)).filter((f) => f.endsWith('.seg')).length;
    const s = ship(log, col.port);
    await ackedThrough(s, 299);
    await log.markAcked(299); // the shipper's own markAcked may still be in flight
    const files = (await readdir(spoolDir)).filter((f) => f.endsWith('.seg'));
    expect(files.length).toBe(1);
    expect(log.stats().segments).toBe(1);
    expect(segsWritten).toBeGreaterThan(3);
    expect(log.depthRecords()).toBe(0);
  });

  it('does not skip records when the collector asks for ones the spool already deleted: it alerts', async () => {
    const col = await collector();
    const log = await gateway({ segmentBytes: 1024 });
    const s = ship(log, col.port);
    for (let i = 0; i < 200; i++) {
      log.append(ev(i));
      if (i % 10 === 9) await log.sync();
    }
    await ackedThrough(s, 199);
    await log.markAcked(199);
    await col.close();
    await rm(outDir, { recursive: true, force: true }); // the SOC lost its copy
    const alert = once(s, 'alert') as Promise<[ShipperAlert]>;
    await collector(col.port);
    const [a] = await alert;
    expect(a.kind).toBe('collector_wants_deleted_records');
    expect(a.nextSeq).toBe(0);
  });
});

describe('collector chain verification', () => {
  function record(seq: number, prevHash: Uint8Array, gatewayId = 'gw-1'): Uint8Array {
    return encodeRecord({
      ...violationRecord({ sessionId: 's', protocol: 'modbus', remoteAddress: '10.0.0.9:502', detail: `r${seq}` }),
      schemaVersion: 1,
      gatewayId,
      seq,
      timeUnixMs: clock.now(),
      prevHash,
    });
  }

  async function rawGateway(port: number): Promise<{ socket: tls.TLSSocket; frames: FrameReader; hello: Promise<unknown> }> {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: pem.ca, ...pem.gateway });
    await once(socket, 'secureConnect');
    const frames = new FrameReader();
    const hello = new Promise((resolve) => {
      socket.on('data', (c: Buffer) => {
        for (const f of frames.push(c)) {
          const m = pb.CollectorFrame.decode(f);
          if (m.hello) resolve(m.hello);
        }
      });
    });
    socket.write(encodeFrame(pb.ShipperFrame.encode({ hello: { streamVersion: 1, gatewayId: 'gw-1' } }).finish()));
    return { socket, frames, hello };
  }

  const send = (socket: tls.TLSSocket, rec: Uint8Array) => socket.write(encodeFrame(pb.ShipperFrame.encode({ record: rec }).finish()));

  it('alerts on a gap, keeps the records before it and closes the stream', async () => {
    const col = await collector();
    const alerted = once(col, 'alert') as Promise<[CollectorAlert]>;
    const { socket, hello } = await rawGateway(col.port);
    const closed = once(socket, 'close');
    await hello;
    const r0 = record(0, ZERO_HASH);
    send(socket, r0);
    send(socket, record(2, leafHash(r0)));
    const [alert] = await alerted;
    expect(alert).toMatchObject({ kind: 'gap', gatewayId: 'gw-1', expectedSeq: 1, gotSeq: 2 });
    await closed;
    const lines = await ndjson();
    expect(lines.map((l) => l.seq)).toEqual([0]);
    const alerts = (await readFile(join(outDir, 'alerts.ndjson'), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ kind: 'gap', gatewayId: 'gw-1' });
  });

  it('alerts on a forged record whose prev_hash does not chain, and does not store it', async () => {
    const col = await collector();
    const alerted = once(col, 'alert') as Promise<[CollectorAlert]>;
    const { socket, hello } = await rawGateway(col.port);
    await hello;
    const r0 = record(0, ZERO_HASH);
    send(socket, r0);
    send(socket, record(1, leafHash(record(0, ZERO_HASH, 'gw-evil'))));
    const [alert] = await alerted;
    expect(alert.kind).toBe('fork');
    expect(alert.expectedPrevHash).toBe(toHex(leafHash(r0)));
    expect((await ndjson()).map((l) => l.seq)).toEqual([0]);
    // The resume point did not move past the forged record.
    const again = await rawGateway(col.port);
    expect(num((await again.hello as { nextSeq: unknown }).nextSeq)).toBe(1);
    again.socket.destroy();
  });

  it('alerts on a replayed (out-of-order) record', async () => {
    const col = await collector();
    const alerted = once(col, 'alert') as Promise<[CollectorAlert]>;
    const { socket, hello } = await rawGateway(col.port);
    await hello;
    const r0 = record(0, ZERO_HASH);
    const r1 = record(1, leafHash(r0));
    send(socket, r0);
    send(socket, r1);
    send(socket, r0);
    const [alert] = await alerted;
    expect(alert).toMatchObject({ kind: 'replay', expectedSeq: 2, gotSeq: 0 });
  });

  it('closes although a gateway finishes its TLS handshake after close() began: that stream is refused, not kept open', async () => {
    const col = await startCollector({ host: '127.0.0.1', port: 0, tls: { ca: pem.ca, ...pem.collector }, outDir });
    // Accepted at the TCP level, its TLS handshake waiting for the gateway's first flight.
    const accepted = once((col as unknown as { server: tls.Server }).server, 'connection');
    const raw = net.connect(col.port, '127.0.0.1');
    await accepted;
    const closed = col.close();
    const socket = tls.connect({ socket: raw, ca: pem.ca, ...pem.gateway, servername: 'localhost' });
    socket.on('error', () => undefined);
    // A gateway that says hello at once would be bound and stored from, were it let in.
    socket.on('secureConnect', () => socket.write(encodeFrame(pb.ShipperFrame.encode({ hello: { streamVersion: 1, gatewayId: 'gw-1' } }).finish())));
    const ended = once(socket, 'close');
    await closed;
    await ended;
  });

  it('refuses a client that presents no certificate from its CA', async () => {
    const col = await collector();
    const socket = tls.connect({ host: '127.0.0.1', port: col.port, ca: pem.ca });
    const outcome = await new Promise<string>((resolve) => {
      socket.on('error', (e) => resolve(`error: ${e.message}`));
      socket.on('close', () => resolve('closed'));
      socket.on('data', () => resolve('data'));
      socket.on('secureConnect', () => socket.write(encodeFrame(pb.ShipperFrame.encode({ hello: { gatewayId: 'gw-1' } }).finish())));
    });
    expect(outcome).not.toBe('data');
    socket.destroy();
  });
});
