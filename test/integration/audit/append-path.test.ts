import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DigestArena } from '../../../src/audit/digest-arena.js';
import { AuditError } from '../../../src/audit/errors.js';
import { leafHash, ZERO_HASH } from '../../../src/audit/hash.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { AuditLog } from '../../../src/audit/log.js';
import { MemoryHashStore } from '../../../src/audit/merkle.js';
import { decisionRecord, outcomeRecord, violationRecord, type AuditEvent } from '../../../src/audit/records.js';
import { encodeRecord, type AuditRecordProps } from '../../../src/audit/schema.js';
import { encodeSpoolFrame, MAX_RECORD_BYTES } from '../../../src/audit/spool.js';
import { TREE_FILE } from '../../../src/audit/tree-store.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Decision, Subject } from '../../../src/core/command.js';

// The append path lays records and hashes out in shared slabs and encodes command decisions with
// a cached identity. None of that may change a byte of what is spooled, hashed or shipped: these
// tests hold the files and the stream to an independent computation with the generated encoder.

let dir: string;
const clock = new ManualClock(1_768_478_400_000);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-audit-append-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

const subject: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer',
  owner: 'alice@plant.example',
  taskId: 'T-1',
  taskPurpose: 'tune — pumps',
  jti: 'jti-1',
  actSub: [],
  roles: ['agent'],
  scopes: ['read', 'write'],
  assurance: 'mtls+token',
  certThumbprint: 'q1w2e3r4t5y6u7i8o9p0',
  issuer: 'https://issuer.plant.example',
  expiresAtMs: 0,
  issuedAtMs: 0,
};
const allow: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-read', bundleRevision: 7, durable: false };
function command(i: number): Command {
  return {
    sessionId: `sess-${i % 3}`,
    protocol: 'modbus',
    assetId: 'plc1',
    operation: 'read',
    functionCode: 3,
    targets: [{ table: 'holding', address: i % 100, count: 10 }],
    // Now and then a record too big to share a slab (it gets a buffer of its own).
    points: Array.from({ length: i % 500 === 250 ? 3000 : 1 + (i % 40) }, (_, k) => `tank${k}.level`),
  };
}

async function spoolBytes(): Promise<Buffer> {
  const segs = (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort();
  return Buffer.concat(await Promise.all(segs.map((s) => readFile(join(dir, s)))));
}

describe('audit append path', () => {
  it('spools, hashes and ships each record as exactly the bytes the schema encodes, over many slabs and batches', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, lazyFlushMs: 0 });
    const appended: Array<{ ev: AuditEvent; timeUnixMs: number }> = [];
    for (let i = 0; i < 2500; i++) {
      const ev: AuditEvent =
        i % 2 === 0
          ? decisionRecord(command(i), subject, allow, { unitId: 1, transactionId: i })
          : outcomeRecord({ decisionSeq: i - 1, sessionId: `sess-${i % 3}`, status: 'ok', upstreamLatencyUs: i });
      expect(log.append(ev)).toBe(i);
      appended.push({ ev, timeUnixMs: clock.now() });
      clock.advance(1);
      if (i % 97 === 0) await new Promise((r) => setImmediate(r)); // several group commits
    }
    await log.sync();

    // The records as the schema encodes them: each event with the stamp the log gives it (the
    // log writes nothing onto the event), chained by the previous record's leaf hash.
    const expected: Uint8Array[] = [];
    let prevHash: Uint8Array = ZERO_HASH;
    appended.forEach(({ ev, timeUnixMs }, seq) => {
      const bytes = encodeRecord({ schemaVersion: 1, gatewayId: 'gw-1', seq, timeUnixMs, prevHash, ...ev } as AuditRecordProps);
      expected.push(bytes);
      prevHash = leafHash(bytes);
    });
    const reference = new MemoryHashStore();
    for (const b of expected) reference.append(leafHash(b));

    expect((await spoolBytes()).equals(Buffer.concat(expected.map((b) => encodeSpoolFrame(b))))).toBe(true);
    expect((await readFile(join(dir, TREE_FILE))).equals(Buffer.concat(reference.hashes))).toBe(true);
    expect(Buffer.from(log.lastRecordHash()).equals(leafHash(expected[expected.length - 1]))).toBe(true);
    const shipped = await log.readFrom(0, 5000);
    expect(shipped.length).toBe(expected.length);
    expect(shipped.every((r, i) => Buffer.from(r.bytes).equals(expected[i]))).toBe(true);
    await log.close();

    // And a restart recovers the same chain from those files.
    const again = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(again.nextSeq).toBe(2500);
    await again.close();
  });

  it('refuses appends at the spool bound while a batch is being written, not only between batches', async () => {
    const maxBytes = 6000;
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes });
    const ev = (i: number) => violationRecord({ sessionId: `s-${i}`, protocol: 'modbus', remoteAddress: '127.0.0.1:5020', detail: `bad frame ${i}` });
    let n = 0;
    while (log.bytes() < maxBytes / 2) log.append(ev(n++));
    const before = log.bytes();
    // sync() hands the pending batch to the spool at once: from here until its fsync returns the
    // batch is neither pending nor counted by the spool.
    const writing = log.sync();
    expect(log.bytes()).toBe(before);
    let refused: unknown;
    try {
      for (;;) log.append(ev(n++));
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(AuditError);
    expect((refused as AuditError).reason).toBe('AUDIT_UNAVAILABLE');
    await writing;
    await log.sync();
    expect(log.bytes()).toBeLessThanOrEqual(maxBytes);
    expect((await spoolBytes()).length).toBe(log.bytes());
    await log.close();
  });

  it('refuses every record after one failed half-way through its append, and rejects those waiting', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    const ok = (i: number) => outcomeRecord({ decisionSeq: i, sessionId: 's', status: 'ok' });
    await log.appendDurable(ok(0));
    const waiting = log.appendDurable(ok(1));
    // A fault after the size checks (here: hashing), where half a record would misalign the tree.
    vi.spyOn(DigestArena.prototype, 'digest').mockImplementationOnce(() => {
      throw new RangeError('Array buffer allocation failed');
    });
    expect(() => log.append(ok(2))).toThrow(AuditError);
    await expect(waiting).rejects.toMatchObject({ reason: 'AUDIT_UNAVAILABLE' });
    expect(() => log.append(ok(3))).toThrow(AuditError);
    expect(log.isFull()).toBe(true);
    await log.close();
    const again = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    // Only what was durable, and a chain that verifies on open; a failed log did not stop cleanly:
    // seq 1 is the restart record saying the log ended at seq 0.
    expect(again.nextSeq).toBe(2);
    await again.sync();
    const [restart] = await again.readFrom(1, 1);
    const r = decodeRecord(restart.bytes).restart;
    expect([r?.kind, r?.lastSeq]).toEqual(['unclean_stop', 0]);
    await again.close();
  });

  it('refuses a record larger than recovery accepts, without taking a seq', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    log.append(outcomeRecord({ decisionSeq: 0, sessionId: 's', status: 'ok' }));
    const huge = decisionRecord({ ...command(0), points: ['x'.repeat(MAX_RECORD_BYTES)] }, subject, allow);
    expect(() => log.append(huge)).toThrow(AuditError);
    expect(log.append(outcomeRecord({ decisionSeq: 0, sessionId: 's', status: 'ok' }))).toBe(1);
    await log.close();
    // Had it been spooled, reopening would have cut it and everything after it as a torn tail.
    const again = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    expect(again.nextSeq).toBe(2);
    await again.close();
  });
});
