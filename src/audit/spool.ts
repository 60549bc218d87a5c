// The spool's files on local disk: append-only segment files of framed records, the acked-seq
// state file, crash recovery. Owns every byte the audit writes to disk; knows nothing about
// sockets or about what a record means beyond its seq and prev_hash (which recovery checks).
// Never rewrites a record in place and never deletes a segment holding an unacknowledged record.
//
// Frame on disk: u32be length | u32be crc32(record) | record bytes. The CRC makes a torn or
// zero-filled tail (kill -9 mid-write, power loss before the size hit the disk) distinguishable
// from a record, so recovery can cut exactly there; anything else wrong refuses to open
// (spool-scan.ts decides which is which). A lost record kept by `audit recover` is a marker frame
// holding only its seq and leaf hash (LostRecord).
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../core/log.js';
import { AuditError } from './errors.js';
import { toHex } from './hash.js';
import { FRAME_HEADER_BYTES, LOST_FLAG, SpoolScanner, type Evidence, type Run, type ScanResult } from './spool-scan.js';

export { FRAME_HEADER_BYTES, MAX_RECORD_BYTES } from './spool-scan.js';
const SEGMENT_SUFFIX = '.seg';
/**
 * The active segment is written with O_DSYNC: each write returns once its bytes (and the file size)
 * are on disk, so a batch costs one system call and one thread-pool round trip instead of a write
 * and an fsync, which is what a state-changing command waits for.
 */
const SEGMENT_WRITE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_DSYNC;
export const ACK_FILE = 'acked.json';

/** A record the log lost (declared by an AUDIT_GAP record): only its place and leaf hash remain. */
export class LostRecord {
  constructor(readonly leafHash: Uint8Array) {}
}

/** What the spool holds at a seq: the record's exact bytes, or a lost record's leaf hash. */
export type SpoolEntry = Uint8Array | LostRecord;

/** The spool is damaged beyond a torn tail: what is wrong, where, and the way out. */
export class SpoolDamageError extends AuditError {
  constructor(
    readonly dir: string,
    readonly scan: ScanResult,
  ) {
    super(describeDamage(dir, scan, '<gateway config>'));
  }
}

/** The refusal's text: each problem, and the two commands that show and accept it. */
export function describeDamage(dir: string, scan: ScanResult, config: string): string {
  const lines = [`audit spool ${dir} is damaged beyond a torn tail; nothing was changed:`];
  for (const d of scan.damage) lines.push(`  - ${d.message}`);
  for (const [a, b] of scan.undeclared) lines.push(`  - seq ${a}..${b} are marked lost, but no AUDIT_GAP record declares it (an interrupted recover)`);
  const lost = scan.items.flatMap((i) => (i.kind === 'lost' ? [i.first === i.end - 1 ? `${i.first}` : `${i.first}..${i.end - 1}`] : []));
  lines.push(`See it: plantgate audit verify ${dir} --key <verifier key>`);
  lines.push(
    `Continue, recording ${lost.length ? `the loss of seq ${lost.join(', ')}` : 'what was found'} as AUDIT_GAP records the collector alerts on: ` +
      `plantgate audit recover --config ${config} --accept-loss   (docs/audit.md, Recovery)`,
  );
  return lines.join('\n');
}

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

/** Views of bytes [start, end) of runs laid end to end. */
function sliceRuns(runs: Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let base = 0;
  for (const r of runs) {
    const lo = Math.max(start, base);
    const hi = Math.min(end, base + r.length);
    if (lo < hi) out.push(r.subarray(lo - base, hi - base));
    base += r.length;
    if (base >= end) break;
  }
  return out;
}

export function segmentName(firstSeq: number): string {
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
  /** Bytes of the batch being written that no segment counts yet: moved into totalBytes part by part, in the same step. */
  private unwritten = 0;
  /** fsync calls made on segment files: lets tests and metrics see group commit at work. */
  fsyncs = 0;

  private constructor(
    readonly dir: string,
    private readonly segmentBytes: number,
    private readonly logger: Logger,
  ) {}

  /**
   * Opens the spool in `dir` (created if missing), cutting a torn tail off the newest segment.
   * Throws SpoolDamageError, changing nothing, when anything else is wrong (docs/audit.md, Recovery).
   */
  static async open(
    dir: string,
    segmentBytes: number,
    logger: Logger,
    evidence: Evidence,
    opts: { declaringLoss?: boolean } = {},
  ): Promise<{ spool: Spool; recovered: Recovered }> {
    const spool = new Spool(dir, segmentBytes, logger);
    await mkdir(dir, { recursive: true });
    const recovered = await spool.recover(evidence, opts.declaringLoss === true);
    return { spool, recovered };
  }

  /** Bytes on disk, plus the part of a batch being written that is not yet (a full spool refuses at its bound during a write too). */
  bytes(): number {
    return this.totalBytes + this.unwritten;
  }

  /** Oldest seq still on disk (= next seq when the spool holds nothing). */
  firstSeq(nextSeq: number): number {
    for (const s of this.segments) if (s.offsets.length > 0) return s.firstSeq;
    return nextSeq;
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

  /** `declaringLoss`: lost-record markers no AUDIT_GAP declares yet are accepted (audit recover declares them next). */
  private async recover(evidence: Evidence, declaringLoss: boolean): Promise<Recovered> {
    const { ackedSeq, ackedHash } = evidence;
    const names = (await readdir(this.dir)).filter((n) => /^\d{16}\.seg$/.test(n)).sort();
    const scanner = new SpoolScanner(evidence);
    const sizes: number[] = [];
    // One segment in memory at a time: the scanner keeps offsets and a few hashes.
    for (let i = 0; i < names.length; i++) {
      const data = await readFile(join(this.dir, names[i]));
      sizes.push(data.length);
      scanner.segment(i, names[i], Number(names[i].slice(0, 16)), data, i === names.length - 1);
    }
    const scan = scanner.finish();
    if (scan.damage.length > 0 || (scan.undeclared.length > 0 && !declaringLoss)) throw new SpoolDamageError(this.dir, scan);

    let truncatedBytes = 0;
    const runs = new Map<number, Run>();
    for (const it of scan.items) if (it.kind === 'run') runs.set(it.seg, it);
    for (let i = 0; i < names.length; i++) {
      const path = join(this.dir, names[i]);
      const run = runs.get(i);
      let size = run?.end ?? 0;
      if (scan.torn?.seg === i) {
        // Only the newest segment is ever being written, and only its last batch can be torn: nothing
        // there was reported durable, nothing covers it (the scanner checked), so it is cut.
        size = scan.torn.offset;
        truncatedBytes = scan.torn.bytes;
        this.logger.warn({ path, offset: size, bytes: truncatedBytes, problem: scan.torn.problem }, 'audit spool: cutting torn tail');
        const h = await open(path, 'r+');
        try {
          await h.truncate(size);
          await h.sync();
        } finally {
          await h.close();
        }
      }
      if (!run && i < names.length - 1) {
        // An empty segment the next one starts at the same seq as (a roll interrupted by a crash).
        await rm(path, { force: true });
        continue;
      }
      this.segments.push({ firstSeq: Number(names[i].slice(0, 16)), path, size, offsets: run?.offsets ?? [] });
      this.totalBytes += size;
    }
    if (this.records() === 0) {
      // Nothing on disk: the log resumes right after what the evidence says it reached.
      for (const s of this.segments) await rm(s.path, { force: true });
      this.segments = [];
      this.totalBytes = 0;
    }
    return { nextSeq: scan.nextSeq, lastHash: scan.lastHash, ackedSeq, ackedHash, truncatedBytes };
  }

  private records(): number {
    let n = 0;
    for (const s of this.segments) n += s.offsets.length;
    return n;
  }

  /**
   * Writes one batch (frames of contiguous records starting at firstSeq, as `chunks` of whole
   * frames back to back, `frameLengths` giving each frame's length), one durable write per
   * segment it touches: a segment keeps to segmentBytes, so a large batch is split, part after
   * part, and only the part being written (in the newest segment) can be torn.
   */
  async appendBatch(chunks: Buffer[], frameLengths: number[], firstSeq: number): Promise<void> {
    let total = 0;
    for (const c of chunks) total += c.length;
    let framed = 0;
    for (const n of frameLengths) framed += n;
    // The offsets index below must describe exactly the bytes written.
    if (framed !== total) throw new AuditError(`spool batch of ${total} bytes does not match its ${frameLengths.length} frames (${framed} bytes)`);
    const runs = coalesce(chunks);
    this.unwritten = total;
    try {
      await this.writeParts(runs, frameLengths, firstSeq);
    } finally {
      this.unwritten = 0;
    }
  }

  private async writeParts(runs: Buffer[], frameLengths: number[], firstSeq: number): Promise<void> {
    let i = 0;
    let byte = 0;
    while (i < frameLengths.length) {
      let seg = this.segments[this.segments.length - 1];
      // A segment holds at most segmentBytes (or one larger record): the bound docs/audit.md gives.
      if (!seg || (seg.offsets.length > 0 && seg.size + frameLengths[i] > this.segmentBytes)) {
        await this.active?.close();
        this.active = undefined;
        seg = { firstSeq: firstSeq + i, path: join(this.dir, segmentName(firstSeq + i)), size: 0, offsets: [] };
        this.active = await open(seg.path, SEGMENT_WRITE_FLAGS);
        await fsyncDir(this.dir);
        this.segments.push(seg);
      } else if (!this.active) {
        this.active = await open(seg.path, SEGMENT_WRITE_FLAGS);
      }
      let j = i;
      let part = 0;
      while (j < frameLengths.length && (j === i || seg.size + part + frameLengths[j] <= this.segmentBytes)) part += frameLengths[j++];
      // Written in order, part after part: a crash can only tear the part being written, in the newest segment.
      await this.writeDurably(sliceRuns(runs, byte, byte + part));
      this.fsyncs++;
      let off = seg.size;
      for (let k = i; k < j; k++) {
        seg.offsets.push(off);
        off += frameLengths[k];
      }
      seg.size = off;
      this.totalBytes += part;
      this.unwritten -= part;
      byte += part;
      i = j;
    }
  }

  private async writeDurably(views: Buffer[]): Promise<void> {
    let total = 0;
    for (const v of views) total += v.length;
    let written = 0;
    let pending = views;
    for (;;) {
      const { bytesWritten } = await this.active!.writev(pending);
      written += bytesWritten;
      if (written >= total) return;
      // A short write (rare on regular files): the part written is durable; write the rest.
      pending = [Buffer.concat(views).subarray(written)];
    }
  }

  /** Up to `max` records from `seq` on, read from disk. Only durable records are indexed. */
  async read(seq: number, max: number): Promise<SpoolEntry[]> {
    const out: SpoolEntry[] = [];
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
        const raw = buf.readUInt32BE(pos);
        const len = (raw & ~LOST_FLAG) >>> 0;
        const body = buf.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len);
        out.push((raw & LOST_FLAG) !== 0 ? new LostRecord(new Uint8Array(body.subarray(8))) : body);
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
