import { open, readdir, readFile, stat, truncate, appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditError } from '../../../src/audit/errors.js';
import { hashEquals, leafHash, ZERO_HASH } from '../../../src/audit/hash.js';
import { AuditLog } from '../../../src/audit/log.js';
import { SpoolDamageError } from '../../../src/audit/spool.js';
import { bundleRecord, decisionRecord, outcomeRecord, violationRecord, withOutcome } from '../../../src/audit/records.js';
import { allow, cmd, subject } from '../../unit/audit/fixtures.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { ManualClock } from '../../../src/core/clock.js';

let dir: string;
const clock = new ManualClock();
const ev = (i: number) => violationRecord({ sessionId: `s-${i}`, protocol: 'modbus', remoteAddress: '127.0.0.1:5020', detail: `bad frame ${i}` });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-audit-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

async function segmentFiles(): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort();
}

describe('AuditLog', () => {
  it('numbers records contiguously from 0 and chains each to the previous leaf hash', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    for (let i = 0; i < 50; i++) expect(log.append(ev(i))).toBe(i);
    await log.sync();
    const recs = await log.readFrom(0, 100);
    expect(recs.map((r) => r.seq)).toEqual([...Array(50).keys()]);
    let prev: Uint8Array = ZERO_HASH;
    for (const r of recs) {
      const d = decodeRecord(r.bytes);
      expect(d.seq).toBe(r.seq);
      expect(d.gatewayId).toBe('gw-1');
      expect(d.timeUnixMs).toBe(clock.now());
      expect(hashEquals(d.prevHash, prev)).toBe(true);
      prev = leafHash(r.bytes);
    }
    expect(hashEquals(log.lastRecordHash(), prev)).toBe(true);
    await log.close();
  });

  it('resolves a durable append only once its bytes are in the spool file', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    const seq = await log.appendDurable(bundleRecord({ kind: 'loaded', revision: 7, source: 'rules/bundle.jws' }));
    const [seg] = await segmentFiles();
    const onDisk = await readFile(join(dir, seg));
    const [rec] = await log.readFrom(seq, 1);
    expect(onDisk.includes(Buffer.from(rec.bytes))).toBe(true);
    await log.close();
  });

  it('writes everything appended in one event-loop turn with one durable write of the segment (tree hashes follow from the records)', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    await log.appendDurable(ev(0)); // opens the segment file
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe);
    const syncSpy = vi.spyOn(proto, 'sync');
    const writeSpy = vi.spyOn(proto, 'writev');
    await probe.close();
    const before = log.stats().fsyncs;
    const all = [];
    for (let i = 1; i <= 200; i++) all.push(log.appendDurable(ev(i)));
    expect(await Promise.all(all)).toEqual([...Array(200).keys()].map((i) => i + 1));
    expect(log.stats().fsyncs - before).toBe(1);
    // One write of the segment (opened O_DSYNC: durable when it returns) and one of tree.hashes;
    // no separate fsync. tree.hashes is fsynced only before a checkpoint file or a deletion relies on it.
    expect(writeSpy).toHaveBeenCalledTimes(2);
    expect(syncSpy).not.toHaveBeenCalled();
    await log.close();
  });

  it('rejects every durable waiter with AUDIT_UNAVAILABLE when the durable write fails, and refuses further records', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    await log.appendDurable(ev(0));
    const probe = await open(join(dir, 'probe'), 'w');
    vi.spyOn(Object.getPrototypeOf(probe), 'writev').mockRejectedValueOnce(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }));
    await probe.close();
    const waiters = [log.appendDurable(ev(1)), log.appendDurable(ev(2))];
    for (const w of waiters) await expect(w).rejects.toMatchObject({ reason: 'AUDIT_UNAVAILABLE' });
    expect(() => log.append(ev(3))).toThrow(AuditError);
    await expect(log.appendDurable(ev(3))).rejects.toMatchObject({ reason: 'AUDIT_UNAVAILABLE' });
    await log.close();
  });

  it('recovers next seq and last hash after a restart', async () => {
    const a = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    for (let i = 0; i < 10; i++) a.append(ev(i));
    await a.close();
    const hash = a.lastRecordHash();
    const b = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(b.nextSeq).toBe(10);
    expect(hashEquals(b.lastRecordHash(), hash)).toBe(true);
    const seq = await b.appendDurable(ev(10));
    const [r] = await b.readFrom(seq, 1);
    expect(hashEquals(decodeRecord(r.bytes).prevHash, hash)).toBe(true);
    await b.close();
  });

  it('cuts a torn tail (a record cut mid-write) on open and continues the chain from the last whole record', async () => {
    const a = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    for (let i = 0; i < 9; i++) a.append(ev(i));
    await a.close();
    const hashAfter8 = a.lastRecordHash();
    const [seg] = await segmentFiles();
    const whole = await readFile(join(dir, seg));
    // kill -9 in the middle of the next batch's write: the first 40 bytes of a frame reach the file
    // (and its tree hashes never do: they are written after the batch is durable).
    await appendFile(join(dir, seg), whole.subarray(0, 40));

    const b = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(b.nextSeq).toBe(9);
    expect(hashEquals(b.lastRecordHash(), hashAfter8)).toBe(true);
    expect(await b.appendDurable(ev(99))).toBe(9);
    await b.close();
    const c = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(c.nextSeq).toBe(10);
    await c.close();
  });

  it('refuses to open, changing nothing, when the newest records are cut off although tree.hashes vouches for them', async () => {
    const a = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    for (let i = 0; i < 10; i++) await a.appendDurable(ev(i));
    await a.close();
    const [seg] = await segmentFiles();
    const size = (await stat(join(dir, seg))).size;
    await truncate(join(dir, seg), size - 5); // record 9 was durable: its leaf hash is in tree.hashes
    const err = await AuditLog.open({ dir, gatewayId: 'gw-1', clock }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpoolDamageError);
    expect((err as Error).message).toMatch(/records 9\.\.9 are gone from the spool, yet tree\.hashes holds the leaf hashes of 10 records/);
    expect((err as Error).message).toMatch(/plantgate audit recover --config .* --accept-loss/);
    expect((await stat(join(dir, seg))).size).toBe(size - 5);
  });

  it('cuts a zero-filled tail left by a crash before the data reached the disk', async () => {
    const a = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    for (let i = 0; i < 5; i++) a.append(ev(i));
    await a.close();
    const [seg] = await segmentFiles();
    await appendFile(join(dir, seg), Buffer.alloc(300));
    const b = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(b.nextSeq).toBe(5);
    expect((await b.readFrom(0, 10)).length).toBe(5);
    await b.close();
  });

  it('denies appends with AUDIT_UNAVAILABLE once the spool is full, without skipping a seq', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 2000 });
    let n = 0;
    let err: unknown;
    try {
      for (;;) {
        log.append(ev(n));
        n++;
      }
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuditError);
    expect((err as AuditError).reason).toBe('AUDIT_UNAVAILABLE');
    expect(n).toBeGreaterThan(5);
    expect(log.nextSeq).toBe(n);
    await log.sync();
    expect(log.bytes()).toBeLessThanOrEqual(2000);
    await log.close();
  });

  it('on a full spool, keeps room for reads whatever the denials take, and reports the denials it had to drop with their exact count once there is room', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 256 * 1024, segmentBytes: 8 * 1024 });
    const write = () => decisionRecord(cmd, subject, allow);
    const denial = () => decisionRecord(cmd, subject, { ...allow, effect: 'deny', reason: 'AUDIT_UNAVAILABLE', durable: false });
    const read = () => decisionRecord({ ...cmd, operation: 'read' }, subject, { ...allow, durable: false });
    let writes = 0;
    for (;;) {
      try {
        log.append(write());
      } catch (err) {
        expect(err).toBeInstanceOf(AuditError);
        break;
      }
      writes++;
    }
    expect(log.stats().dropped).toBe(0); // a refused write is decided again as a denial, not dropped
    let recorded = 0;
    let refused = 0;
    for (let i = 0; i < 1000; i++) {
      try {
        log.append(denial());
        recorded++;
      } catch {
        refused++;
      }
    }
    expect(recorded).toBeGreaterThan(10);
    expect(refused).toBeGreaterThan(0);
    expect(log.stats().dropped).toBe(refused);
    // The room kept for reads is still there.
    let reads = 0;
    for (let i = 0; i < 10; i++) {
      log.append(read());
      reads++;
    }
    expect(reads).toBe(10);
    await log.sync();
    expect(log.bytes()).toBeLessThanOrEqual(256 * 1024);
    // Acknowledged segments are deleted: what was still uncounted goes on record at once. (A drop
    // record is smaller than a denial, so one may already have fitted in the last bytes of the room.)
    const beforeAck = log.stats().nextSeq;
    await log.markAcked(writes);
    await log.sync();
    expect(log.stats().nextSeq).toBeGreaterThan(beforeAck);
    const all = await log.readFrom(log.firstSeq, 100_000);
    const dropped = all.map((r) => decodeRecord(r.bytes).dropped).filter((d) => d != null);
    expect(dropped.reduce((n, d) => n + Number(d.count), 0)).toBe(refused);
    expect(dropped.reduce((n, d) => n + Number(d.denials), 0)).toBe(refused);
    expect(dropped.every((d) => d.reason === 'AUDIT_UNAVAILABLE' && Number(d.byEvent?.decision) === Number(d.count))).toBe(true);
    await log.close();
  });

  it('on a full spool, still writes the outcomes of writes already forwarded however many denials came first, and takes writes again once records are deleted', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 256 * 1024, segmentBytes: 8 * 1024 });
    const write = () => decisionRecord(cmd, subject, allow);
    const denial = () => decisionRecord(cmd, subject, { ...allow, effect: 'deny', reason: 'AUDIT_UNAVAILABLE', durable: false });
    // Writes in flight: decided and durable, their outcomes not yet known.
    const inFlight: number[] = [];
    for (let i = 0; i < 50; i++) inFlight.push(await log.appendDurable(write()));
    let writes = inFlight.length;
    for (;;) {
      try {
        log.append(write());
        writes++;
      } catch {
        break;
      }
    }
    expect(log.isFull()).toBe(true);
    // Denials take their room until it is gone, but never the room the reads keep.
    let denials = 0;
    for (let i = 0; i < 2000; i++) {
      try {
        log.append(denial());
        denials++;
      } catch {
        /* counted as dropped */
      }
    }
    expect(log.stats().dropped).toBeGreaterThan(0);
    // The outcomes of the writes in flight are records that must be written: denials never take their room.
    await log.sync();
    const droppedDenials = log.stats().dropped;
    expect(droppedDenials).toBe(2000 - denials);
    for (const seq of inFlight) log.append(outcomeRecord({ decisionSeq: seq, sessionId: 's-1', status: 'ok' }));
    expect(log.stats().dropped).toBe(droppedDenials);
    expect(() => log.append(write())).toThrow(AuditError);
    await log.sync();
    expect(log.bytes()).toBeLessThanOrEqual(256 * 1024);
    // Once acknowledged records are deleted, writes are taken again.
    await log.markAcked(writes - 1);
    await log.sync();
    expect(log.isFull()).toBe(false);
    expect(log.append(write())).toBeGreaterThan(0);
    await log.close();
  });

  it('lets a read through only while its record, written with the answer later, will be taken (one record per read)', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 256 * 1024, segmentBytes: 8 * 1024 });
    const read = () => withOutcome(decisionRecord({ ...cmd, operation: 'read' }, subject, { ...allow, durable: false }), { sessionId: 's-1', status: 'ok', upstreamLatencyUs: 900 });
    let reads = 0;
    // Every read the log said yes to is taken when its answer comes, until the reads' room is gone.
    while (log.hasRoomForRead()) {
      log.append(read());
      reads++;
    }
    expect(reads).toBeGreaterThan(100);
    expect(log.stats().dropped).toBe(0);
    await log.sync();
    await log.markAcked(reads - 1);
    await log.sync();
    expect(log.hasRoomForRead()).toBe(true);
    await log.close();
    expect(log.hasRoomForRead()).toBe(false);
  });

  it('persists the acknowledged seq and deletes only segments that are fully acknowledged', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, segmentBytes: 500 });
    for (let i = 0; i < 60; i++) await log.appendDurable(ev(i));
    const segsBefore = await segmentFiles();
    expect(segsBefore.length).toBeGreaterThan(3);
    await log.markAcked(30);
    expect(log.ackedSeq).toBe(30);
    const segsAfter = await segmentFiles();
    expect(segsAfter.length).toBeLessThan(segsBefore.length);
    // Every unacknowledged record is still readable, from disk, in order.
    expect(log.firstSeq).toBeLessThanOrEqual(31);
    const rest = await log.readFrom(31, 100);
    expect(rest.map((r) => r.seq)).toEqual([...Array(29).keys()].map((i) => i + 31));
    await expect(log.readFrom(0, 1)).rejects.toBeInstanceOf(AuditError);
    await log.close();

    const again = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, segmentBytes: 500, cacheRecords: 4 });
    expect(again.ackedSeq).toBe(30);
    expect(again.nextSeq).toBe(60);
    expect((await again.readFrom(31, 100)).length).toBe(29);
    expect(again.depthRecords()).toBe(29);
    await again.close();
  });

  it('reads records back from disk once they left the memory cache', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, cacheRecords: 8, segmentBytes: 1000 });
    for (let i = 0; i < 100; i++) log.append(outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok', upstreamLatencyUs: i }));
    await log.sync();
    const recs = await log.readFrom(3, 50);
    expect(recs.map((r) => decodeRecord(r.bytes).outcome?.decisionSeq)).toEqual([...Array(50).keys()].map((i) => i + 3));
    await log.close();
  });

  it('never counts a batch twice while it is written across segments, so a spool that is not full never refuses', async () => {
    // 8 KiB segments: one batch of 300 records spans several, written part after part.
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 64 * 1024 });
    for (let i = 0; i < 300; i++) log.append(ev(i));
    const queued = log.bytes();
    let most = 0;
    let flushing = true;
    const sample = (): void => {
      most = Math.max(most, log.bytes());
      if (flushing) setImmediate(sample);
    };
    sample();
    await log.sync();
    flushing = false;
    expect((await segmentFiles()).length).toBeGreaterThan(2);
    expect(most).toBe(queued);
    expect(log.bytes()).toBe(queued);
    await log.close();
  });
});

