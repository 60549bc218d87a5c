// The JetStream sink against a real nats-server (Debian's, started here on loopback with
// JetStream and a file store): delivery in order, acknowledgement = publish ack, resume and
// deduplication across a gateway restart and across a NATS outage.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { leafHash, toHex } from '../../../src/audit/hash.js';
import { AuditLog } from '../../../src/audit/log.js';
import { natsMsgId, startNatsSink, type NatsSink, type NatsSinkAlert } from '../../../src/audit/nats-sink.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { ManualClock } from '../../../src/core/clock.js';

let root: string;
let spoolDir: string;
let natsPort: number;
let server: ChildProcess | undefined;
const clock = new ManualClock();
const cleanup: (() => Promise<void>)[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startNats(): Promise<void> {
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', join(root, 'nats')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  await new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run nats-server (make test installs it: apt-get install nats-server): ${err.message}`)));
    child.once('exit', (code) => reject(new Error(`nats-server exited ${code}: ${log}`)));
    // nats-server logs to stderr; JetStream is usable once it says the server is ready.
    child.stderr!.on('data', () => log.includes('Server is ready') && resolve());
  });
  server = child;
}

async function stopNats(): Promise<void> {
  const s = server;
  server = undefined;
  if (!s || s.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    s.once('exit', () => resolve());
    s.kill('SIGKILL');
  });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'plantgate-nats-'));
  natsPort = await freePort();
  await startNats();
});
afterAll(async () => {
  await stopNats();
  await rm(root, { recursive: true, force: true });
});

let gwId = '';
let n = 0;
beforeEach(() => {
  // A fresh gateway (subject) per test on the shared server.
  gwId = `gw-${++n}`;
  spoolDir = join(root, `spool-${n}`);
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function gatewayLog(): Promise<AuditLog> {
  const log = await AuditLog.open({ dir: spoolDir, gatewayId: gwId, clock });
  cleanup.push(() => log.close());
  return log;
}

function sink(log: AuditLog): NatsSink {
  const s = startNatsSink({ log, gatewayId: gwId, site: 'plant-a', servers: [`nats://127.0.0.1:${natsPort}`], createStream: true, reconnect: { minMs: 20, maxMs: 200 }, ackTimeoutMs: 1000 });
  cleanup.push(() => s.close());
  return s;
}

function ackedThrough(log: AuditLog, s: NatsSink, seq: number): Promise<void> {
  if (log.ackedSeq >= seq) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (a: number) => {
      if (a >= seq) {
        s.off('acked', on);
        resolve();
      }
    };
    s.on('acked', on);
  });
}

/** Every message on this gateway's subject, in stream order: [Plantgate-Seq, Nats-Msg-Id, leaf hash]. */
async function streamed(): Promise<{ seq: number; msgId: string; hash: string }[]> {
  const nc: NatsConnection = await connect({ servers: `nats://127.0.0.1:${natsPort}` });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info('PLANTGATE_AUDIT');
    const out: { seq: number; msgId: string; hash: string }[] = [];
    for (let s = info.state.first_seq; s <= info.state.last_seq; s++) {
      const m = await jsm.streams.getMessage('PLANTGATE_AUDIT', { seq: s }).catch(() => undefined);
      if (!m || m.subject !== `plantgate.audit.plant-a.${gwId}`) continue;
      out.push({ seq: Number(m.header.get('Plantgate-Seq')), msgId: m.header.get('Nats-Msg-Id'), hash: toHex(leafHash(m.data)) });
    }
    return out;
  } finally {
    await nc.close();
  }
}

const ev = (i: number) => outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok', upstreamLatencyUs: i });

describe('NATS JetStream audit sink', () => {
  it('publishes every record in order to plantgate.audit.<site>.<gateway> with Nats-Msg-Id <gateway>:<seq>, and the publish ack acknowledges the spool', async () => {
    const log = await gatewayLog();
    const s = sink(log);
    for (let i = 0; i < 500; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 499);
    expect(log.ackedSeq).toBe(499);
    const msgs = await streamed();
    expect(msgs.map((m) => m.seq)).toEqual([...Array(500).keys()]);
    expect(msgs[42].msgId).toBe(natsMsgId(gwId, 42));
    const recs = await log.readFrom(log.firstSeq, 500);
    for (const r of recs) expect(msgs[r.seq].hash).toBe(toHex(leafHash(r.bytes)));
    expect(decodeRecord((await log.readFrom(7, 1))[0].bytes).outcome?.decisionSeq).toBe(7);
  });

  it('after a gateway restart whose acknowledgements were lost, resumes without storing a record twice', async () => {
    let log = await gatewayLog();
    let s = sink(log);
    for (let i = 0; i < 100; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 99);
    const [ninth] = await log.readFrom(9, 1);
    await s.close();
    await log.close();
    cleanup.splice(0);
    // A crash after JetStream stored the records but before the spool recorded the acks.
    await writeFile(join(spoolDir, 'acked.json'), JSON.stringify({ acked_seq: 9, acked_hash: toHex(leafHash(ninth.bytes)) }));
    log = await gatewayLog();
    expect(log.ackedSeq).toBe(9);
    s = sink(log);
    for (let i = 100; i < 150; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 149);
    const msgs = await streamed();
    expect(msgs.map((m) => m.seq)).toEqual([...Array(150).keys()]);

    // And the stream itself drops a resent record by its Nats-Msg-Id.
    const nc = await connect({ servers: `nats://127.0.0.1:${natsPort}` });
    const [r] = await log.readFrom(120, 1);
    const ack = await nc.jetstream().publish(`plantgate.audit.plant-a.${gwId}`, r.bytes, { msgID: natsMsgId(gwId, 120) });
    await nc.close();
    expect(ack.duplicate).toBe(true);
    expect((await streamed()).length).toBe(150);
  });

  it('keeps records in the spool through a NATS outage and delivers them, once each, when it is back', async () => {
    const log = await gatewayLog();
    const s = sink(log);
    for (let i = 0; i < 50; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 49);
    await stopNats();
    for (let i = 50; i < 120; i++) log.append(ev(i));
    await log.sync();
    expect(log.ackedSeq).toBe(49);
    await startNats();
    await ackedThrough(log, s, 119);
    expect((await streamed()).map((m) => m.seq)).toEqual([...Array(120).keys()]);
  });

  it('refuses to publish when the stream holds a different record at its last seq (another history)', async () => {
    const log = await gatewayLog();
    const s = sink(log);
    for (let i = 0; i < 10; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 9);
    await s.close();
    await log.close();
    cleanup.splice(0);
    // The spool is replaced by one with other records under the same gateway id.
    await rm(spoolDir, { recursive: true, force: true });
    const other = await gatewayLog();
    for (let i = 0; i < 20; i++) other.append(outcomeRecord({ decisionSeq: i, sessionId: 'other', status: 'ok' }));
    await other.sync();
    const alert = await new Promise<NatsSinkAlert>((resolve) => sink(other).once('alert', resolve));
    expect(alert.kind).toBe('stream_chain_differs');
    expect((await streamed()).length).toBe(10);
  });
});
