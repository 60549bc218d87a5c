// Length-delimited framing of the audit stream (varint length prefix, as protobuf's
// encodeDelimited writes it). Pure: bytes in, frames out, no sockets. A frame longer than the
// limit, or a length prefix longer than 5 bytes, is a protocol error: the reader never buffers
// without bound on behalf of the network.

export const MAX_FRAME_BYTES = 1 << 20;

export class FramingError extends Error {
  override readonly name = 'FramingError';
}

export function encodeFrame(payload: Uint8Array): Buffer {
  let n = payload.length;
  const head: number[] = [];
  while (n > 0x7f) {
    head.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  head.push(n);
  const out = Buffer.allocUnsafe(head.length + payload.length);
  for (let i = 0; i < head.length; i++) out[i] = head[i];
  out.set(payload, head.length);
  return out;
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function writeVarint(out: Buffer, pos: number, n: number): number {
  while (n > 0x7f) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}

/** ShipperFrame field 2 (`record`, wire type 2): the tag byte. */
const RECORD_TAG = 0x12;

/**
 * The shipper's stream bytes for a run of records: for each, a length-delimited ShipperFrame
 * { record } — exactly `pb.ShipperFrame.encodeDelimited({ record }).finish()`, concatenated — in
 * one buffer. The generic encoder cost a Writer, its growth and two copies per record, on the
 * gateway's main thread, for every record a command produces.
 */
export function encodeRecordFrames(records: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const r of records) total += recordFrameBytes(r.length);
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const r of records) pos = writeRecordFrame(out, pos, r, 0, r.length);
  return out;
}

/** Bytes of the stream frame (ShipperFrame { record }, length-delimited) of a record of `n` bytes. */
export function recordFrameBytes(n: number): number {
  const inner = 1 + varintBytes(n) + n;
  return varintBytes(inner) + inner;
}

/** Writes the stream frame of the record `src[start, end)` at `pos`; returns the position after it. */
export function writeRecordFrame(out: Buffer, pos: number, src: Uint8Array, start: number, end: number): number {
  const n = end - start;
  pos = writeVarint(out, pos, 1 + varintBytes(n) + n);
  out[pos++] = RECORD_TAG;
  pos = writeVarint(out, pos, n);
  out.set(src.subarray(start, end), pos);
  return pos + n;
}

/** Incremental reader: push() chunks as they arrive, get back the complete frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxFrame = MAX_FRAME_BYTES) {}

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const frames: Uint8Array[] = [];
    let pos = 0;
    for (;;) {
      let len = 0;
      let shift = 0;
      let i = pos;
      let complete = false;
      while (i < this.buf.length) {
        const b = this.buf[i++];
        if (shift === 28 && b > 0x0f) throw new FramingError('frame length prefix is not a valid 32-bit varint');
        len += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
        shift += 7;
      }
      if (!complete) break;
      if (len > this.maxFrame) throw new FramingError(`frame of ${len} bytes exceeds the limit of ${this.maxFrame}`);
      if (this.buf.length - i < len) break;
      frames.push(this.buf.subarray(i, i + len));
      pos = i + len;
    }
    // Frames are views into the old buffer; the remainder is copied so the next concat cannot
    // overwrite bytes a caller still holds.
    this.buf = pos === 0 ? this.buf : Buffer.from(this.buf.subarray(pos));
    return frames;
  }
}
