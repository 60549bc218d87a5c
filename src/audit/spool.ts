// The spool's files on local disk: append-only segment files of framed records, the acked-seq
// state file, crash recovery. Owns every byte the audit writes to disk; knows nothing about
// sockets or about what a record means beyond its seq and prev_hash (which recovery checks).
// Never rewrites a record in place and never deletes a segment holding an unacknowledged record.
//
// Frame on disk: u32be length | u32be crc32(record) | record bytes. The CRC makes a torn or
// zero-filled tail (kill -9 mid-write, power loss before the size hit the disk) distinguishable
// from a record, so recovery can cut exactly there.
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../core/log.js';
import { AuditError } from './errors.js';
import { fromHex, hashEquals, leafHash, toHex, ZERO_HASH } from './hash.js';
import { decodeRecord } from './schema.js';

export const FRAME_HEADER_BYTES = 8;
/** No single record is anywhere near this; a larger length field means a torn or corrupt frame. */
export const MAX_RECORD_BYTES = 1 << 20;
const SEGMENT_SUFFIX = '.seg';
/**
 * The active segment is written with O_DSYNC: each write returns once its bytes (and the file size)
 * are on disk, so a batch costs one system call and one thread-pool round trip instead of a write
 * and an fsync, which is what a state-changing command waits for.
 */
const SEGMENT_WRITE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_DSYNC;
const ACK_FILE = 'acked.json';

export function encodeSpoolFrame(record: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + record.length);
  frame.writeUInt32BE(record.length, 0);
  frame.writeUInt32BE(crc32(record), 4);
  frame.set(record, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Views that lie back to back in one buffer (the log lays frames and stored hashes out so,
 * frame-arena.ts, digest-arena.ts) become one view per run: a batch of thousands of records is
 * then a handful of iovecs for writev, not one per record. Views only; no byte is copied.
 */
export function coalesce(views: readonly Uint8Array[]): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < views.length) {
    const first = views[i];
    let end = first.byteOffset + first.length;
    let j = i + 1;
    while (j < views.length && views[j].buffer === first.buffer && views[j].byteOffset === end) {
      end += views[j].length;
      j++;
    }
    out.push(Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
    i = j;
  }
  return out;
}

function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}${SEGMENT_SUFFIX}`;
}

interface Segment {
  firstSeq: number;
  path: string;
  /** Durable size in bytes (everything up to the last fsynced batch). */
  size: number;
  /** Start offset of each record's frame, index = seq - firstSeq. */
  offsets: number[];
}

export interface Recovered {
  nextSeq: number;
  lastHash: Uint8Array;
  ackedSeq: number;
  ackedHash: Uint8Array;
  /** Bytes cut from a torn tail, 0 when the spool was clean. */
  truncatedBytes: number;
}

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export class Spool {
  private segments: Segment[] = [];
  private active: FileHandle | undefined;
  private totalBytes = 0;
  /** fsync calls made on segment files: lets tests and metrics see group commit at work. */
  fsyncs = 0;

  private constructor(
    readonly dir: string,
    private readonly segmentBytes: number,
    private readonly logger: Logger,
  ) {}

  /** Opens the spool in `dir` (created if missing), cutting a torn tail off the last segment. */
  static async open(dir: string, segmentBytes: number, logger: Logger): Promise<{ spool: Spool; recovered: Recovered }> {
    const spool = new Spool(dir, segmentBytes, logger);
    await mkdir(dir, { recursive: true });
    const recovered = await spool.recover();
    return { spool, recovered };
  }

  bytes(): number {
    return this.totalBytes;
  }

  /** Oldest seq still on disk (= next seq when the spool holds nothing). */
  firstSeq(nextSeq: number): number {
    for (const s of this.segments) if (s.offsets.length > 0) return s.firstSeq;
    return nextSeq;
  }

  private async readAckState(): Promise<{ ackedSeq: number; ackedHash: Uint8Array }> {
    let text: string;
    try {
      text = await readFile(join(this.dir, ACK_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ackedSeq: -1, ackedHash: ZERO_HASH };
      throw new AuditError(`cannot read ${join(this.dir, ACK_FILE)}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const v = JSON.parse(text) as { acked_seq?: unknown; acked_hash?: unknown };
      if (typeof v.acked_seq !== 'number' || !Number.isSafeInteger(v.acked_seq) || v.acked_seq < -1) {
        throw new Error('acked_seq must be an integer >= -1');
      }
      const hash = typeof v.acked_hash === 'string' ? fromHex(v.acked_hash) : ZERO_HASH;
      if (hash.length !== 32) throw new Error('acked_hash must be 32 bytes of hex');
      return { ackedSeq: v.acked_seq, ackedHash: hash };
    } catch (err) {
      // The state file is only ever replaced by rename, so it is whole or absent: a bad one was
      // edited by hand or the disk is failing. Refuse rather than guess what was acknowledged.
      throw new AuditError(`${join(this.dir, ACK_FILE)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Persists the acknowledged point: temp file, fsync, rename, fsync the directory. */
  async writeAckState(ackedSeq: number, ackedHash: Uint8Array): Promise<void> {
    const path = join(this.dir, ACK_FILE);
    const tmp = `${path}.tmp`;
    const h = await open(tmp, 'w');
    try {
      await h.writeFile(JSON.stringify({ acked_seq: ackedSeq, acked_hash: toHex(ackedHash) }) + '\n');
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, path);
    await fsyncDir(this.dir);
  }

  private async recover(): Promise<Recovered> {
    const { ackedSeq, ackedHash } = await this.readAckState();
    const names = (await readdir(this.dir)).filter((n) => /^\d{16}\.seg$/.test(n)).sort();
    let expectSeq = -1;
    let lastHash: Uint8Array = ZERO_HASH;
    let truncatedBytes = 0;

    for (let i = 0; i < names.length; i++) {
      const isLast = i === names.length - 1;
      const path = join(this.dir, names[i]);
      const firstSeq = Number(names[i].slice(0, 16));
      const data = await readFile(path);
      const seg: Segment = { firstSeq, path, size: 0, offsets: [] };
      if (expectSeq >= 0 && firstSeq !== expectSeq) {
        throw new AuditError(`${path}: segment starts at seq ${firstSeq}, expected ${expectSeq}`);
      }
      let pos = 0;
      let problem = '';
      let tampered = false;
      let seq = firstSeq;
      while (pos < data.length) {
        if (data.length - pos < FRAME_HEADER_BYTES) {
          problem = 'partial frame header';
          break;
        }
        const len = data.readUInt32BE(pos);
        if (len > MAX_RECORD_BYTES || data.length - pos - FRAME_HEADER_BYTES < len) {
          problem = `frame length ${len} runs past the end of the file`;
          break;
        }
        // No record is empty (it names its gateway): a zero length is a zero-filled tail (the file
        // size reached the disk before the data did), however valid its CRC of nothing looks.
        if (len === 0) {
          problem = 'zero-filled frame';
          break;
        }
        const bytes = data.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len);
        if (crc32(bytes) !== data.readUInt32BE(pos + 4)) {
          problem = 'checksum mismatch';
          break;
        }
        let rec;
        try {
          rec = decodeRecord(bytes);
        } catch {
          problem = 'record does not decode';
          tampered = true;
          break;
        }
        if (rec.seq !== seq) {
          problem = `record seq ${rec.seq}, expected ${seq}`;
          tampered = true;
          break;
        }
        // The first record on disk may follow a deleted (acknowledged) segment: its prev_hash is
        // then taken as given; from there on the chain is checked.
        if (seq > firstSeq || expectSeq >= 0 || seq === 0) {
          const want = seq === 0 ? ZERO_HASH : lastHash;
          if (!hashEquals(rec.prevHash, want)) {
            problem = `record ${seq} prev_hash does not match the previous record`;
            tampered = true;
            break;
          }
        }
        seg.offsets.push(pos);
        lastHash = leafHash(bytes);
        pos += FRAME_HEADER_BYTES + len;
        seq++;
      }
      if (problem) {
        if (!isLast) throw new AuditError(`${path}: corrupt at byte ${pos}: ${problem}`);
        // A crash tears bytes (a short or unchecksummed frame); it never writes a whole frame with a
        // valid CRC in the wrong place. Such a frame out of seq or chain order was edited, removed
        // or reordered by someone: refuse to open rather than cut the evidence off as a torn tail.
        if (tampered) throw new AuditError(`${path}: record at byte ${pos} has a valid checksum but ${problem}: the spool was changed on disk (run plantgate audit verify)`);
        // Only the last segment is ever being written, so damage there is a torn tail from a crash:
        // everything before it was fsynced (or never acknowledged to anyone), so cut it off.
        truncatedBytes = data.length - pos;
        this.logger.warn({ path, offset: pos, bytes: truncatedBytes, problem }, 'audit spool: cutting torn tail');
        const h = await open(path, 'r+');
        try {
          await h.truncate(pos);
          await h.sync();
        } finally {
          await h.close();
        }
      }
      seg.size = pos;
      expectSeq = seq;
      if (seg.offsets.length === 0 && !isLast) {
        await rm(path, { force: true });
        continue;
      }
      this.segments.push(seg);
      this.totalBytes += seg.size;
    }

    let nextSeq = expectSeq;
    if (nextSeq < 0 || this.records() === 0) {
      // Nothing on disk: resume right after the acknowledged point.
      nextSeq = Math.max(nextSeq, ackedSeq + 1);
      lastHash = nextSeq === ackedSeq + 1 ? ackedHash : lastHash;
      for (const s of this.segments) await rm(s.path, { force: true });
      this.segments = [];
      this.totalBytes = 0;
    } else if (nextSeq - 1 < ackedSeq) {
      throw new AuditError(`${this.dir}: spool ends at seq ${nextSeq - 1} but seq ${ackedSeq} was acknowledged`);
    }
    return { nextSeq, lastHash, ackedSeq, ackedHash, truncatedBytes };
  }

  private records(): number {
    let n = 0;
    for (const s of this.segments) n += s.offsets.length;
    return n;
  }

  /**
   * Writes one batch (frames of contiguous records starting at firstSeq, as `chunks` of whole
   * frames back to back, `frameLengths` giving each frame's length) with one durable write.
   * Rolls to a new segment first when the active one is full, so a batch never spans two files
   * and only the last segment can have a torn tail.
   */
  async appendBatch(chunks: Buffer[], frameLengths: number[], firstSeq: number): Promise<void> {
    let total = 0;
    for (const c of chunks) total += c.length;
    let framed = 0;
    for (const n of frameLengths) framed += n;
    // The offsets index below must describe exactly the bytes written.
    if (framed !== total) throw new AuditError(`spool batch of ${total} bytes does not match its ${frameLengths.length} frames (${framed} bytes)`);
    let seg = this.segments[this.segments.length - 1];
    if (!seg || (seg.size >= this.segmentBytes && seg.offsets.length > 0)) {
      await this.active?.close();
      this.active = undefined;
      seg = { firstSeq, path: join(this.dir, segmentName(firstSeq)), size: 0, offsets: [] };
      this.active = await open(seg.path, SEGMENT_WRITE_FLAGS);
      await fsyncDir(this.dir);
      this.segments.push(seg);
    } else if (!this.active) {
      this.active = await open(seg.path, SEGMENT_WRITE_FLAGS);
    }
    let written = 0;
    let pending = coalesce(chunks);
    for (;;) {
      const { bytesWritten } = await this.active.writev(pending);
      written += bytesWritten;
      if (written >= total) break;
      // A short write (rare on regular files): the part written is durable; write the rest.
      pending = [Buffer.concat(chunks).subarray(written)];
    }
    this.fsyncs++;
    let off = seg.size;
    for (const n of frameLengths) {
      seg.offsets.push(off);
      off += n;
    }
    seg.size = off;
    this.totalBytes += total;
  }

  /** Up to `max` records from `seq` on, read from disk. Only durable records are indexed. */
  async read(seq: number, max: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (const seg of this.segments) {
      const end = seg.firstSeq + seg.offsets.length;
      if (seq >= end || out.length >= max) continue;
      if (seq < seg.firstSeq) break;
      const from = seq - seg.firstSeq;
      const to = Math.min(seg.offsets.length, from + (max - out.length));
      const start = seg.offsets[from];
      const stop = to < seg.offsets.length ? seg.offsets[to] : seg.size;
      const buf = Buffer.allocUnsafe(stop - start);
      const h = await open(seg.path, 'r');
      try {
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await h.read(buf, got, buf.length - got, start + got);
          if (bytesRead === 0) throw new AuditError(`${seg.path}: ended before byte ${stop}`);
          got += bytesRead;
        }
      } finally {
        await h.close();
      }
      let pos = 0;
      while (pos < buf.length) {
        const len = buf.readUInt32BE(pos);
        out.push(buf.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len));
        pos += FRAME_HEADER_BYTES + len;
      }
      seq = seg.firstSeq + to;
    }
    return out;
  }

  /** Deletes segments whose records are all <= ackedSeq. The active segment always stays. */
  async deleteThrough(ackedSeq: number): Promise<number> {
    let deleted = 0;
    while (this.segments.length > 1) {
      const seg = this.segments[0];
      const lastSeq = seg.firstSeq + seg.offsets.length - 1;
      if (lastSeq > ackedSeq) break;
      await rm(seg.path, { force: true });
      this.segments.shift();
      this.totalBytes -= seg.size;
      deleted++;
    }
    if (deleted > 0) await fsyncDir(this.dir);
    return deleted;
  }

  segmentCount(): number {
    return this.segments.length;
  }

  async close(): Promise<void> {
    await this.active?.close();
    this.active = undefined;
  }
}

/** Size of a file, or -1 when it does not exist (for tests and tooling). */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return -1;
  }
}
