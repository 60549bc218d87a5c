// The spool scanner tells a torn tail (the only thing recovery may cut) from damage, on bytes made
// the way the log makes them: any strict prefix of a frame or a zero-filled end after the last
// whole record is torn; a flipped bit anywhere is never taken for one; valid records after a bad
// frame keep their seqs; evidence of records the segments lack is loss.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHash, ZERO_HASH } from '../../../src/audit/hash.js';
import { outcomeRecord } from '../../../src/audit/records.js';
import { encodeRecord, SCHEMA_VERSION } from '../../../src/audit/schema.js';
import { encodeSpoolFrame } from '../../../src/audit/spool.js';
import { encodeLostFrame, SpoolScanner, type Evidence, type ScanResult } from '../../../src/audit/spool-scan.js';

/** n chained records' frames, and each record's leaf hash. */
function log(n: number, firstSeq = 0, prev: Uint8Array = ZERO_HASH): { frames: Buffer[]; hashes: Uint8Array[] } {
  const frames: Buffer[] = [];
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = encodeRecord({
      schemaVersion: SCHEMA_VERSION,
      gatewayId: 'gw-1',
      seq: firstSeq + i,
      timeUnixMs: 1_700_000_000_000 + i,
      prevHash: prev,
      ...outcomeRecord({ decisionSeq: i, sessionId: `s-${i % 3}`, status: 'ok', upstreamLatencyUs: 100 + i }),
    });
    frames.push(encodeSpoolFrame(bytes));
    prev = leafHash(bytes);
    hashes.push(prev);
  }
  return { frames, hashes };
}

const none: Evidence = { ackedSeq: -1, ackedHash: ZERO_HASH, treeLeaves: 0, treeLeaf: () => undefined, checkpointSize: -1 };

function scan(segs: [number, Buffer][], ev: Evidence = none): ScanResult {
  const s = new SpoolScanner(ev);
  segs.forEach(([first, data], i) => s.segment(i, `${String(first).padStart(16, '0')}.seg`, first, data, i === segs.length - 1));
  return s.finish();
}

function treeOf(hashes: Uint8Array[]): Evidence {
  // Only leaf lookups matter to the scanner: stored-hash order is the tree store's business.
  return { ...none, treeLeaves: hashes.length, treeLeaf: (s) => hashes[s] };
}

describe('spool scanner', () => {
  it('takes any strict prefix of a frame, or a zero-filled end from a sector boundary, after the last whole record as a torn tail', () => {
    const { frames } = log(12);
    const whole = Buffer.concat(frames.slice(0, 11));
    const next = frames[11];
    fc.assert(
      fc.property(fc.integer({ min: 1, max: next.length - 1 }), (cut) => {
        const r = scan([[0, Buffer.concat([whole, next.subarray(0, cut)])]]);
        expect(r.damage).toEqual([]);
        expect(r.nextSeq).toBe(11);
        expect(r.torn).toMatchObject({ offset: whole.length, bytes: cut });
      }),
    );
    const zeros = Buffer.alloc(2 * 512 - (whole.length % 512));
    const r = scan([[0, Buffer.concat([whole, zeros])]]);
    expect(r.damage).toEqual([]);
    expect(r.torn?.offset).toBe(whole.length);
  });

  it('never takes a flipped bit for a torn tail: the spool is damaged, and no record after it is lost', () => {
    const { frames } = log(20);
    const file = Buffer.concat(frames);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: file.length - 1 }), fc.integer({ min: 0, max: 7 }), (at, bit) => {
        const bad = Buffer.from(file);
        bad[at] ^= 1 << bit;
        const r = scan([[0, bad]]);
        expect(r.damage.length, `flip at ${at}`).toBeGreaterThan(0);
        // Whatever was lost, the log continues after every seq it ever had.
        expect(r.nextSeq).toBeGreaterThanOrEqual(20);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the valid records after a bad frame under their own seqs, and names the lost one with the hash its successor chains to', () => {
    const { frames, hashes } = log(10);
    const bad = Buffer.from(frames[4]);
    bad[bad.length - 2] ^= 0xff;
    const r = scan([[0, Buffer.concat([...frames.slice(0, 4), bad, ...frames.slice(5)])]]);
    expect(r.nextSeq).toBe(10);
    const lost = r.items.filter((i) => i.kind === 'lost');
    expect(lost).toMatchObject([{ first: 4, end: 5 }]);
    expect(lost[0].kind === 'lost' && Buffer.from(lost[0].hashes[0]!).equals(Buffer.from(hashes[4]))).toBe(true);
    expect(r.damage[0].message).toMatch(/record bytes do not match their CRC at 0000000000000000\.seg@\d+, followed by valid records from seq 5/);
  });

  it('calls records the evidence vouches for and the segments lack lost, however clean the segments look', () => {
    const { frames, hashes } = log(10);
    const six = Buffer.concat(frames.slice(0, 6));
    expect(scan([[0, six]], treeOf(hashes.slice(0, 6))).damage).toEqual([]);
    const byTree = scan([[0, six]], treeOf(hashes));
    expect(byTree.items.at(-1)).toMatchObject({ kind: 'lost', first: 6, end: 10 });
    expect(byTree.damage[0].message).toMatch(/records 6\.\.9 are gone from the spool, yet tree\.hashes holds the leaf hashes of 10 records/);
    const byCheckpoint = scan([[0, six]], { ...none, checkpointSize: 8 });
    expect(byCheckpoint.nextSeq).toBe(9);
    const emptied = scan([[0, Buffer.alloc(0)]], treeOf(hashes));
    expect(emptied.items).toMatchObject([{ kind: 'lost', first: 0, end: 10 }]);
  });

  it('calls a first segment that starts after the acknowledged point, or a segment missing between two, lost', () => {
    const { frames, hashes } = log(12);
    const a = Buffer.concat(frames.slice(0, 4));
    const c = Buffer.concat(frames.slice(8));
    expect(scan([[8, c]], { ...none, ackedSeq: 7, ackedHash: hashes[7] }).damage).toEqual([]);
    const missingFirst = scan([[8, c]], { ...none, ackedSeq: 3, ackedHash: hashes[3] });
    expect(missingFirst.items[0]).toMatchObject({ kind: 'lost', first: 4, end: 8 });
    const missingMiddle = scan([[0, a], [8, c]]);
    expect(missingMiddle.items.map((i) => i.kind)).toEqual(['run', 'lost', 'run']);
    expect(missingMiddle.damage[0].message).toMatch(/segment\(s\) missing: 0000000000000000\.seg ends at seq 3/);
  });

  it('reads lost-record markers as their seqs, and wants an AUDIT_GAP record after them', () => {
    const { frames, hashes } = log(6);
    const marked = Buffer.concat([...frames.slice(0, 2), encodeLostFrame(2, hashes[2]), encodeLostFrame(3, hashes[3]), ...frames.slice(4)]);
    const r = scan([[0, marked]]);
    expect(r.damage).toEqual([]);
    expect(r.nextSeq).toBe(6);
    expect(r.undeclared).toEqual([[2, 3]]);
  });
});
