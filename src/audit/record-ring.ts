// The audit log's window of recent durable records, for the shipper and sinks to read without
// touching the spool. Owns one fixed buffer that records are copied into back to back, wrapping
// around; the oldest records are forgotten as new ones overwrite them.
// Why not keep the records' own buffers: a record kept for thousands of appends outlives the young
// generation, so each one becomes old-generation garbage (and its bytes external memory) that only
// a full mark-compact frees. Measured: RSS rose ~0.65 MB per 1,000 commands until V8's external
// memory limit forced one (tens of MB later), and glibc kept much of what was then freed. A ring
// allocates nothing per record.
// Never hands out a view into the ring: `copy` and `frames` return fresh bytes, so a later append
// can never change what a reader holds.
import { recordFrameBytes, writeRecordFrame } from './framing.js';

export class RecordRing {
  private readonly buf: Buffer;
  private readonly offsets: Int32Array;
  private readonly lengths: Int32Array;
  /** Seq of the oldest record held; `firstSeq + count` is the next seq to push. */
  private first: number;
  private count = 0;
  /** Slot of the oldest record in offsets/lengths. */
  private slot0 = 0;
  /** Where the next record's bytes go. */
  private head = 0;

  constructor(maxRecords: number, capacityBytes: number, nextSeq: number) {
    this.buf = Buffer.allocUnsafeSlow(capacityBytes);
    this.offsets = new Int32Array(Math.max(1, maxRecords));
    this.lengths = new Int32Array(Math.max(1, maxRecords));
    this.first = nextSeq;
  }

  /** Seq of the oldest record held (the next seq to push when empty). */
  firstSeq(): number {
    return this.first;
  }

  /** Appends the record `src[start, end)` as seq `firstSeq() + size`; forgets the oldest as needed. */
  push(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    const cap = this.buf.length;
    if (n > cap || this.offsets.length === 0) {
      // Larger than the whole window: forget everything; readers fall back to the spool.
      this.first += this.count + 1;
      this.count = 0;
      this.head = 0;
      return;
    }
    let at = this.head;
    if (at + n > cap) {
      // Does not fit before the end: the tail is skipped, and whatever lies in it is older than
      // anything at the start, so it goes first.
      this.evictWithin(at, cap);
      at = 0;
    }
    this.evictWithin(at, at + n);
    if (this.count === this.offsets.length) this.evictOldest();
    const slot = (this.slot0 + this.count) % this.offsets.length;
    this.buf.set(src.subarray(start, end), at);
    this.offsets[slot] = at;
    this.lengths[slot] = n;
    this.count++;
    this.head = at + n;
  }

  /** A copy of record `seq`, or undefined when it is not (or no longer) held. */
  copy(seq: number): Buffer | undefined {
    const i = seq - this.first;
    if (i < 0 || i >= this.count) return undefined;
    const slot = (this.slot0 + i) % this.offsets.length;
    const off = this.offsets[slot]!;
    return Buffer.from(this.buf.subarray(off, off + this.lengths[slot]!));
  }

  /**
   * Records `seq` onwards (at most `max`) as the shipper's stream frames, written straight from the
   * ring into one fresh buffer: the stored bytes, one copy, no object per record (docs/audit.md,
   * Shipping). Undefined when `seq` is not held (the reader goes to the spool).
   */
  frames(seq: number, max: number): { bytes: Buffer; count: number } | undefined {
    const i0 = seq - this.first;
    if (i0 < 0 || i0 >= this.count || max <= 0) return undefined;
    const n = Math.min(max, this.count - i0);
    const slots = this.offsets.length;
    let total = 0;
    for (let i = i0; i < i0 + n; i++) total += recordFrameBytes(this.lengths[(this.slot0 + i) % slots]!);
    const out = Buffer.allocUnsafe(total);
    let pos = 0;
    for (let i = i0; i < i0 + n; i++) {
      const slot = (this.slot0 + i) % slots;
      const off = this.offsets[slot]!;
      pos = writeRecordFrame(out, pos, this.buf, off, off + this.lengths[slot]!);
    }
    return { bytes: out, count: n };
  }

  private evictWithin(from: number, to: number): void {
    // Records sit in seq order from the head onwards, so those in [from, to) are the oldest.
    while (this.count > 0) {
      const off = this.offsets[this.slot0]!;
      if (off >= to || off + this.lengths[this.slot0]! <= from) return;
      this.evictOldest();
    }
  }

  private evictOldest(): void {
    this.slot0 = (this.slot0 + 1) % this.offsets.length;
    this.count--;
    this.first++;
  }
}
