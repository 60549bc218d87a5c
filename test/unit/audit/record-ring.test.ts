// The audit log keeps its recent durable records in a fixed ring so the shipper reads them without
// touching the spool. A SOC receives exactly those bytes: the ring must hand back each record it
// still holds byte for byte, say plainly (undefined) when a record is no longer held so the reader
// falls back to the spool, and never let a later append change bytes a reader already has.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordRing } from '../../../src/audit/record-ring.js';
import { pb } from '../../../src/audit/schema.js';

describe('recent-records ring', () => {
  it('returns every record it still holds byte for byte, the newest always, and nothing outside its window', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 16, max: 2048 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 700 }), { minLength: 1, maxLength: 300 }),
        (maxRecords, capacity, firstSeq, records) => {
          const ring = new RecordRing(maxRecords, capacity, firstSeq);
          records.forEach((rec, i) => {
            // Records arrive inside larger frames: only [start, end) is the record.
            const frame = new Uint8Array(rec.length + 7);
            frame.set(rec, 5);
            ring.push(frame, 5, 5 + rec.length);
            const next = firstSeq + i + 1;
            const oldest = ring.firstSeq();
            expect(oldest).toBeLessThanOrEqual(next);
            expect(next - oldest).toBeLessThanOrEqual(maxRecords);
            if (rec.length <= capacity) expect(oldest).toBeLessThanOrEqual(next - 1);
            for (let s = oldest; s < next; s++) expect(ring.copy(s)).toEqual(Buffer.from(records[s - firstSeq]));
            expect(ring.copy(oldest - 1)).toBeUndefined();
            expect(ring.copy(next)).toBeUndefined();
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('ships runs of held records as exactly the stream frames the generated encoder makes, and nothing it no longer holds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 16, max: 4096 }),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 120 }),
        fc.nat(),
        fc.integer({ min: 1, max: 50 }),
        (maxRecords, capacity, records, pick, max) => {
          const ring = new RecordRing(maxRecords, capacity, 100);
          for (const rec of records) ring.push(rec, 0, rec.length);
          const next = 100 + records.length;
          const oldest = ring.firstSeq();
          expect(ring.frames(oldest - 1, max)).toBeUndefined();
          expect(ring.frames(next, max)).toBeUndefined();
          if (oldest === next) return;
          const seq = oldest + (pick % (next - oldest));
          const got = ring.frames(seq, max)!;
          const want = records.slice(seq - 100, Math.min(seq - 100 + max, records.length));
          expect(got.count).toBe(want.length);
          expect(got.bytes).toEqual(Buffer.concat(want.map((r) => pb.ShipperFrame.encodeDelimited({ record: r }).finish())));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('hands out copies: bytes a reader holds survive the appends that overwrite the ring', () => {
    const ring = new RecordRing(4, 64, 0);
    ring.push(Buffer.from('first record'), 0, 12);
    const held = ring.copy(0)!;
    for (let i = 0; i < 20; i++) ring.push(Buffer.alloc(30, i), 0, 30);
    expect(ring.copy(0)).toBeUndefined();
    expect(held.toString()).toBe('first record');
  });

  it('forgets everything for a record larger than the whole ring, so readers go to the spool', () => {
    const ring = new RecordRing(8, 32, 10);
    ring.push(Buffer.alloc(10, 1), 0, 10);
    ring.push(Buffer.alloc(40, 2), 0, 40);
    expect(ring.firstSeq()).toBe(12);
    expect(ring.copy(10)).toBeUndefined();
    expect(ring.copy(11)).toBeUndefined();
    ring.push(Buffer.alloc(5, 3), 0, 5);
    expect(ring.copy(12)).toEqual(Buffer.alloc(5, 3));
  });
});
