// Lays records out as spool frames (u32be length | u32be crc32(record) | record, spool.ts) in large
// shared buffers instead of one allocation per record, and hands a batch over as a few runs of
// back-to-back frames rather than one object per record.
// Why: two records a command each used to cost a Buffer of their own (allocation, FastBuffer
// construction) and a view held by the pending batch until its fsync; under load those survive
// young-generation GCs by the thousand and are copied each time. Here a record costs a copy into
// the current slab; the batch holds its lengths (small integers) and the runs.
// Frames are never rewritten once written: a slab is replaced, not reused, when full, and lives as
// long as any run or record view into it (the log's shipper cache keeps recent ones).
import { crc32 } from 'node:zlib';
import { SlabRuns } from './slab-runs.js';
import { encodeSpoolFrame, FRAME_HEADER_BYTES } from './spool.js';

/** Large enough for hundreds of typical (100–600 byte) records per slab. */
const SLAB_BYTES = 256 * 1024;
/** Frames larger than this get a buffer of their own, so one big record never wastes a slab. */
const OWN_BUFFER_BYTES = SLAB_BYTES / 8;

export class FrameArena extends SlabRuns {
  constructor() {
    super(SLAB_BYTES);
  }

  /**
   * Copies `src[start, end)` (a record) behind a spool frame header; returns the frame's length.
   * The frame joins the runs the next drain() returns.
   */
  frame(src: Buffer, start: number, end: number): number {
    const n = FRAME_HEADER_BYTES + end - start;
    if (n > OWN_BUFFER_BYTES) {
      this.pushOwn(encodeSpoolFrame(src.subarray(start, end)));
      return n;
    }
    const { slab, off } = this.take(n);
    src.copy(slab, off + FRAME_HEADER_BYTES, start, end);
    slab.writeUInt32BE(end - start, off);
    slab.writeUInt32BE(crc32(slab.subarray(off + FRAME_HEADER_BYTES, off + n)), off + 4);
    return n;
  }
}

/**
 * Calls `fn` with where each record of `runs` lies (frames whose lengths are `lengths`, in order):
 * the run and the record's [start, end) in it, without making a view per record.
 */
export function forEachRecord(runs: readonly Buffer[], lengths: readonly number[], fn: (run: Buffer, start: number, end: number) => void): void {
  let r = 0;
  let pos = 0;
  for (const len of lengths) {
    while (pos >= runs[r].length) {
      r++;
      pos = 0;
    }
    fn(runs[r], pos + FRAME_HEADER_BYTES, pos + len);
    pos += len;
  }
}
