// The JetStream sink against a real nats-server (Debian's, started here on loopback with
// JetStream and a file store): delivery in order, acknowledgement = publish ack, resume and
// deduplication across a gateway restart and across a NATS outage.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers as natsHeaders, nkeys, type NatsConnection } from 'nats';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { leafHash, toHex } from '../../../src/audit/hash.js';
import { AuditLog } from '../../../src/audit/log.js';
import { natsMsgId, startNatsSink, type NatsSink, type NatsSinkAlert } from '../../../src/audit/nats-sink.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { ManualClock } from '../../../src/core/clock.js';
import { initPki } from '../../../src/identity/dev/pki.js';
import { freePort, natsServer, type NatsServer } from './nats-server.js';

let root: string;
let spoolDir: string;
let natsPort: number;
let nats: NatsServer;
const clock = new ManualClock();
const cleanup: (() => Promise<void>)[] = [];
const startNats = () => nats.start();
const stopNats = () => nats.stop();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'plantgate-nats-'));
  natsPort = await freePort();
  nats = natsServer(root, natsPort);
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

function sink(log: AuditLog, alertRecordEveryMs?: number): NatsSink {
  const s = startNatsSink({ log, gatewayId: gwId, site: 'plant-a', servers: [`nats://127.0.0.1:${natsPort}`], createStream: true, reconnect: { minMs: 20, maxMs: 200 }, ackTimeoutMs: 1000, alertRecordEveryMs });
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

/** A gateway log with a sink that has shipped `n` records (acknowledged). */
async function shipped(n: number): Promise<{ log: AuditLog; s: NatsSink }> {
  const log = await gatewayLog();
  const s = sink(log);
  for (let i = 0; i < n; i++) log.append(ev(i));
  await log.sync();
  await ackedThrough(log, s, n - 1);
  return { log, s };
}

/** Someone else publishes on the gateway's subject, claiming `seq`; returns the stream's ack. */
async function forge(seq: string, body: string, msgID?: string): Promise<{ seq: number }> {
  const nc = await connect({ servers: `nats://127.0.0.1:${natsPort}` });
  try {
    const h = natsHeaders();
    h.set('Plantgate-Seq', seq);
    return await nc.jetstream().publish(`plantgate.audit.plant-a.${gwId}`, new TextEncoder().encode(body), { headers: h, ...(msgID ? { msgID } : {}) });
  } finally {
    await nc.close();
  }
}

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

  it('a forged message left last on the subject is alerted and recorded, and shipping goes on instead of halting', async () => {
    let { log, s } = await shipped(10);
    await s.close();
    await log.close();
    cleanup.splice(0);
    // Anyone allowed to publish on plantgate.audit.> claims a seq far ahead of the gateway.
    const forged = await forge('5000', 'not a record');

    log = await gatewayLog();
    s = sink(log);
    const alert = await new Promise<NatsSinkAlert>((resolve) => s.once('alert', resolve));
    expect(alert).toMatchObject({ kind: 'foreign_message', streamSeq: forged.seq, claimedSeq: '5000' });
    for (let i = 10; i < 20; i++) log.append(ev(i));
    await log.sync();
    const last = log.nextSeq - 1;
    await ackedThrough(log, s, last);
    const ours = (await streamed()).filter((m) => m.msgId.startsWith(`${gwId}:`));
    expect(ours.map((m) => m.seq)).toEqual([...Array(last + 1).keys()]);
    // The alert is in the gateway's own verified chain, shipped like every record.
    const recs = (await log.readFrom(10, 100)).map((r) => decodeRecord(r.bytes));
    expect(recs.find((r) => r.sinkAlert)?.sinkAlert).toMatchObject({ sink: 'nats', kind: 'foreign_message', streamSeq: forged.seq, claimedSeq: '5000' });
    expect(s.stats()).toMatchObject({ halted: false, alerts: 1 });
  });

  it('a forged message published while the gateway streams is alerted at once', async () => {
    const { log, s } = await shipped(5);
    const alerted = new Promise<NatsSinkAlert>((resolve) => s.once('alert', resolve));
    await forge('5', 'forged 5', 'x');
    expect(await alerted).toMatchObject({ kind: 'foreign_message', claimedSeq: '5' });
    for (let i = 5; i < 10; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, log.nextSeq - 1);
    expect((await streamed()).filter((m) => m.msgId.startsWith(`${gwId}:`)).map((m) => m.seq)).toEqual([...Array(log.nextSeq).keys()]);
  });

  it('a flood of forged messages is counted exactly but recorded in a few alert records, so it cannot fill the spool', async () => {
    const log = await gatewayLog();
    const s = sink(log, 200);
    log.append(ev(0));
    await log.sync();
    await ackedThrough(log, s, 0);
    let seen = 0;
    const all = new Promise<void>((resolve) => s.on('alert', () => ++seen === 300 && resolve()));
    const nc = await connect({ servers: `nats://127.0.0.1:${natsPort}` });
    for (let i = 0; i < 300; i++) nc.publish(`plantgate.audit.plant-a.${gwId}`, new TextEncoder().encode(`flood ${i}`));
    await nc.flush();
    await nc.close();
    await all;
    expect(s.stats().alerts).toBe(300);
    await s.close(); // records what was counted since the last alert record
    await log.sync();
    const alerts = (await log.readFrom(0, 1000)).map((r) => decodeRecord(r.bytes).sinkAlert).filter((a) => a !== undefined && a !== null);
    expect(alerts.length).toBeLessThan(20);
    const counted = alerts.reduce((n, a) => n + (/^(\d+) more messages/.exec(a!.detail ?? '')?.[1] ? Number(/^(\d+) more/.exec(a!.detail!)![1]) : 1), 0);
    expect(counted).toBe(300);
  });

  it("a forged message taking the gateway's next Nats-Msg-Id does not make JetStream drop the real record: it is stored under an id of its own, and alerted", async () => {
    const { log, s } = await shipped(5);
    const squat = await forge('5', 'squatter', natsMsgId(gwId, 5));
    const alerts: NatsSinkAlert[] = [];
    s.on('alert', (a: NatsSinkAlert) => alerts.push(a));
    log.append(ev(5));
    await log.sync();
    await ackedThrough(log, s, 5);
    expect(alerts).toContainEqual(expect.objectContaining({ kind: 'msg_id_taken', streamSeq: squat.seq }));
    const [five] = await log.readFrom(5, 1);
    const stored = (await streamed()).filter((m) => m.seq === 5);
    expect(stored.map((m) => m.hash)).toContain(toHex(leafHash(five.bytes)));
    expect(stored.find((m) => m.hash === toHex(leafHash(five.bytes)))?.msgId).toBe(`${natsMsgId(gwId, 5)}:${squat.seq}`);
  });

  it('a replaced spool under the same gateway id is alerted (the stream holds another record at that seq) and its records are shipped after it', async () => {
    const { log, s } = await shipped(10);
    await s.close();
    await log.close();
    cleanup.splice(0);
    // The spool is replaced by one with other records under the same gateway id.
    await rm(spoolDir, { recursive: true, force: true });
    const other = await gatewayLog();
    for (let i = 0; i < 20; i++) other.append(outcomeRecord({ decisionSeq: i, sessionId: 'other', status: 'ok' }));
    await other.sync();
    const s2 = sink(other);
    const alert = await new Promise<NatsSinkAlert>((resolve) => s2.once('alert', resolve));
    expect(alert).toMatchObject({ kind: 'foreign_message', claimedSeq: '9' });
    expect(alert.message).toMatch(/is not the spool's record 9/);
    await ackedThrough(other, s2, other.nextSeq - 1);
    const [nine] = await other.readFrom(9, 1);
    expect((await streamed()).filter((m) => m.seq === 9).map((m) => m.hash)).toContain(toHex(leafHash(nine.bytes)));
  });

  it('connects with an nkey seed file to a server where only this gateway may publish on its subject', async () => {
    const user = nkeys.createUser();
    const pub = user.getPublicKey();
    const seedFile = join(root, `${gwId}.nk`);
    await writeFile(seedFile, new TextDecoder().decode(user.getSeed()), { mode: 0o600 });
    const port = await freePort();
    const conf = join(root, `${gwId}.conf`);
    // docs/configuration.md, audit.nats: the gateway's user publishes on its own subject and the JetStream API only.
    await writeFile(
      conf,
      `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(root, `js-${gwId}`)}" }\n` +
        `authorization { users = [\n` +
        `  { nkey: ${pub}, permissions: { publish: { allow: ["plantgate.audit.plant-a.${gwId}", "$JS.API.INFO", "$JS.API.STREAM.INFO.PLANTGATE_AUDIT", "$JS.API.STREAM.MSG.GET.PLANTGATE_AUDIT"] }, subscribe: { allow: ["_INBOX.>", "plantgate.audit.plant-a.${gwId}"] } } }\n` +
        `  { user: admin, password: admin }\n` +
        `  { user: other, password: other, permissions: { publish: { allow: ["$JS.API.>"] }, subscribe: { allow: ["_INBOX.>"] } } }\n` +
        `] }\n`,
    );
    const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanup.push(async () => {
      if (child.exitCode === null) await new Promise<void>((resolve) => (child.once('exit', () => resolve()), child.kill('SIGKILL')));
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.once('exit', (code) => reject(new Error(`nats-server exited ${code}: ${out}`)));
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()).includes('Server is ready') && resolve());
    });
    // The stream is made once by an administrator: the gateway has no stream-management rights.
    const admin = await connect({ servers: `nats://127.0.0.1:${port}`, user: 'admin', pass: 'admin' });
    await (await admin.jetstreamManager()).streams.add({ name: 'PLANTGATE_AUDIT', subjects: ['plantgate.audit.>'], duplicate_window: 120_000_000_000 });
    await admin.close();
    const log = await gatewayLog();
    const s = startNatsSink({ log, gatewayId: gwId, site: 'plant-a', servers: [`nats://127.0.0.1:${port}`], auth: { nkeySeedFile: seedFile }, reconnect: { minMs: 20, maxMs: 200 }, ackTimeoutMs: 2000 });
    cleanup.push(() => s.close());
    for (let i = 0; i < 5; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 4);
    // Another user of the same server cannot publish on the gateway's subject.
    const nc = await connect({ servers: `nats://127.0.0.1:${port}`, user: 'other', pass: 'other' });
    const refused = nc.jetstream().publish(`plantgate.audit.plant-a.${gwId}`, new TextEncoder().encode('forged'), { timeout: 1000 });
    await expect(refused).rejects.toThrow();
    await nc.close().catch(() => undefined);
  });

  it('ships over mutual TLS to a server that requires client certificates', async () => {
    const pki = await initPki(join(root, `pki-${gwId}`), { agents: [] });
    const port = await freePort();
    const conf = join(root, `${gwId}-tls.conf`);
    await writeFile(
      conf,
      `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(root, `js-tls-${gwId}`)}" }\n` +
        `tls { cert_file: "${pki.collector.cert}", key_file: "${pki.collector.key}", ca_file: "${pki.ca.cert}", verify: true }\n`,
    );
    const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanup.push(async () => {
      if (child.exitCode === null) await new Promise<void>((resolve) => (child.once('exit', () => resolve()), child.kill('SIGKILL')));
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.once('exit', (code) => reject(new Error(`nats-server exited ${code}: ${out}`)));
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()).includes('Server is ready') && resolve());
    });
    const log = await gatewayLog();
    const s = startNatsSink({
      log, gatewayId: gwId, site: 'plant-a', servers: [`tls://127.0.0.1:${port}`], createStream: true,
      tls: { ca: pki.ca.cert, cert: pki.gateway.cert, key: pki.gateway.key }, reconnect: { minMs: 20, maxMs: 200 }, ackTimeoutMs: 2000,
    });
    cleanup.push(() => s.close());
    for (let i = 0; i < 5; i++) log.append(ev(i));
    await log.sync();
    await ackedThrough(log, s, 4);
    // Without a client certificate the server refuses the connection.
    await expect(connect({ servers: `tls://127.0.0.1:${port}`, tls: { ca: await readFile(pki.ca.cert, 'utf8') }, reconnect: false, timeout: 2000 })).rejects.toThrow();
  });
});

