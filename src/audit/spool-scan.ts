// Reads a spool's segment files and decides, record by record, what is there, what is a torn tail
// and what was lost (docs/audit.md, Recovery). Pure: bytes and evidence in, a plan out; no I/O.
// Used by the spool when it opens (a clean plan, or a torn tail to cut, or it refuses), by
// `plantgate audit recover --accept-loss` (which writes the plan back with lost-record markers) and
// by `plantgate audit verify`.
// Never calls damage a torn tail: a crash can only tear the last batch of the newest segment (a
// frame cut short, or a zero-filled end after a power loss). A bad frame followed by valid ones, a
// complete frame that fails its CRC, a missing or empty segment, and records the evidence says
// existed (tree.hashes, a signed checkpoint file, acked.json) that are not in the spool are loss.
import { crc32 } from 'node:zlib';
import { hashEquals, HASH_BYTES, leafHash, ZERO_HASH } from './hash.js';
import { decodeRecord, num } from './schema.js';

export const FRAME_HEADER_BYTES = 8;
/** No single record is anywhere near this; a larger length field means a torn or corrupt frame. */
export const MAX_RECORD_BYTES = 1 << 20;
/**
 * A lost-record marker (written by `audit recover`) is a frame whose length field has this bit set:
 * `u32 (LOST_FLAG | 40) | u32 crc32(payload) | u64be seq | leaf hash (32)`. It keeps the lost seq's
 * place in the tree, so the log and its signed checkpoints stay one tree.
 */
export const LOST_FLAG = 0x80000000;
const LOST_PAYLOAD_BYTES = 8 + HASH_BYTES;
/** Leaf of a lost record whose hash is unknown too: RFC 9162's leaf hash of nothing (no record is empty). */
export const GAP_LEAF: Uint8Array = new Uint8Array(leafHash(new Uint8Array(0)));

export function encodeLostFrame(seq: number, hash: Uint8Array): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + LOST_PAYLOAD_BYTES);
  frame.writeUInt32BE((LOST_FLAG | LOST_PAYLOAD_BYTES) >>> 0, 0);
  frame.writeBigUInt64BE(BigInt(seq), 8);
  frame.set(hash, 16);
  frame.writeUInt32BE(crc32(frame.subarray(8)), 4);
  return frame;
}

/** What the rest of the spool's directory says about how far the log reached. */
export interface Evidence {
  /** Last seq the collector acknowledged (acked.json), -1 for none, and its leaf hash. */
  ackedSeq: number;
  ackedHash: Uint8Array;
  /** Records whose leaf hashes tree.hashes holds (written only after their records were durable). */
  treeLeaves: number;
  /** Leaf hash of `seq` from tree.hashes, when the file holds it. */
  treeLeaf(seq: number): Uint8Array | undefined;
  /** Largest signed checkpoint file (its size = the seq of its own record), -1 for none. */
  checkpointSize: number;
}

interface Ok {
  ok: true;
  end: number;
  seq: number;
  hash: Uint8Array;
  /** Undefined for a lost-record marker. */
  prevHash: Uint8Array | undefined;
  lost: boolean;
  /** An AUDIT_GAP record: the range it declares lost (inclusive). */
  declares?: [number, number];
}
interface Bad {
  ok: false;
  problem: string;
  /** The frame's length fits in the file (so it held something of that length). */
  complete: boolean;
  end: number;
}

/** Parses the frame at `pos`. */
export function parseFrame(data: Buffer, pos: number): Ok | Bad {
  const rem = data.length - pos;
  if (rem < FRAME_HEADER_BYTES) return { ok: false, problem: 'partial frame header', complete: false, end: data.length };
  const raw = data.readUInt32BE(pos);
  const lost = (raw & LOST_FLAG) !== 0;
  const len = lost ? (raw & ~LOST_FLAG) >>> 0 : raw;
  if (len === 0) return { ok: false, problem: 'zero-filled frame', complete: true, end: pos + FRAME_HEADER_BYTES };
  if ((lost ? len !== LOST_PAYLOAD_BYTES : len > MAX_RECORD_BYTES) || rem - FRAME_HEADER_BYTES < len) {
    return { ok: false, problem: `frame length ${len} runs past the end of the file`, complete: false, end: data.length };
  }
  const end = pos + FRAME_HEADER_BYTES + len;
  const bytes = data.subarray(pos + FRAME_HEADER_BYTES, end);
  if (crc32(bytes) !== data.readUInt32BE(pos + 4)) return { ok: false, problem: 'record bytes do not match their CRC', complete: true, end };
  if (lost) {
    const seq = bytes.readBigUInt64BE(0);
    if (seq > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, problem: 'lost-record marker with an impossible seq', complete: true, end };
    return { ok: true, end, seq: Number(seq), hash: new Uint8Array(bytes.subarray(8)), prevHash: undefined, lost: true };
  }
  let rec;
  try {
    rec = decodeRecord(bytes);
  } catch {
    return { ok: false, problem: 'record does not decode', complete: true, end };
  }
  const gap = rec.auditGap;
  return {
    ok: true,
    end,
    seq: num(rec.seq),
    hash: leafHash(bytes),
    prevHash: rec.prevHash ?? ZERO_HASH,
    lost: false,
    ...(gap ? { declares: [num(gap.firstSeq), num(gap.lastSeq)] as [number, number] } : {}),
  };
}

/** Frames of contiguous seqs in one segment, kept as they are. */
export interface Run {
  kind: 'run';
  seg: number;
  firstSeq: number;
  /** Byte offset of each frame in the segment. */
  offsets: number[];
  /** Byte offset just after the last frame. */
  end: number;
  /** prev_hash of the first frame (undefined for a marker): the leaf hash of the seq before. */
  firstPrev: Uint8Array | undefined;
}

/** Seqs [first, end) that were lost, and why. */
export interface Lost {
  kind: 'lost';
  first: number;
  end: number;
  cause: string;
  /** Leaf hash of each lost seq where it is known (set by SpoolScanner.finish). */
  hashes: (Uint8Array | undefined)[];
}

export interface Damage {
  where: string;
  message: string;
  /** The seqs it lost, [first, end), when it lost any. */
  first?: number;
  end?: number;
}

export interface ScanResult {
  items: (Run | Lost)[];
  /** The seq the log continues at (never below anything the evidence says existed). */
  nextSeq: number;
  /** Leaf hash of nextSeq - 1 (placeholder GAP_LEAF when unknown). */
  lastHash: Uint8Array;
  /** A torn tail of the newest segment, to cut. */
  torn?: { seg: number; offset: number; bytes: number; problem: string };
  /** Everything that is not a torn tail. Empty: the spool is whole (up to a torn tail). */
  damage: Damage[];
  /** Lost-record markers no AUDIT_GAP record declares yet ([first, last] inclusive). */
  undeclared: [number, number][];
}

/**
 * Feed it each segment in order (segment()), then finish(). It keeps only offsets and a few
 * hashes, never the segments' bytes.
 */
export class SpoolScanner {
  private cursor: number | undefined;
  private lastHash: Uint8Array | undefined;
  private run: Run | undefined;
  private lastKept: { run: Run; offset: number; name: string } | undefined;
  private openLost: { cause: string; min: number } | undefined;
  private lastName = '';
  private readonly items: (Run | Lost)[] = [];
  private readonly damage: Damage[] = [];
  private torn: ScanResult['torn'];
  private readonly markers: [number, number][] = [];
  private readonly declared: { seq: number; first: number; last: number }[] = [];

  constructor(private readonly ev: Evidence) {}

  segment(index: number, name: string, firstSeq: number, data: Buffer, isLast: boolean): void {
    const at = (pos: number): string => `${name}@${pos}`;
    this.run = undefined;
    if (this.cursor === undefined) {
      const acked = this.ev.ackedSeq;
      this.cursor = Math.min(firstSeq, acked + 1);
      this.lastHash =
        this.cursor === 0 ? ZERO_HASH : this.cursor === acked + 1 ? this.ev.ackedHash : this.ev.treeLeaf(this.cursor - 1);
      if (firstSeq > this.cursor) {
        this.lose(firstSeq, name, `the spool's first segment ${name} starts at seq ${firstSeq}, but the collector acknowledged only up to seq ${acked} (acked.json): the segment(s) holding seq ${this.cursor}..${firstSeq - 1} are missing`);
      }
    } else {
      this.closeOpenLost(firstSeq, name);
      if (firstSeq > this.cursor) {
        this.lose(firstSeq, name, `segment(s) missing: ${this.lastName} ends at seq ${this.cursor - 1} and the next segment, ${name}, starts at seq ${firstSeq}`);
      } else if (firstSeq < this.cursor) {
        this.damage.push({ where: name, message: `segment ${name} starts at seq ${firstSeq}, inside the records before it (up to seq ${this.cursor - 1})` });
      }
    }
    this.lastName = name;
    let pos = 0;
    while (pos < data.length) {
      const f = parseFrame(data, pos);
      if (f.ok) {
        const cursor = this.cursor!;
        if (f.seq < cursor) {
          this.damage.push({ where: at(pos), message: `record seq ${f.seq} appears again after seq ${cursor - 1} (copied or reordered on disk)` });
          pos = f.end;
          continue;
        }
        if (f.seq > cursor) this.lose(f.seq, at(pos), `records ${cursor}..${f.seq - 1} are missing at ${at(pos)}: the record there is seq ${f.seq} (removed from the file)`);
        if (f.prevHash !== undefined && this.lastHash !== undefined && !hashEquals(f.prevHash, this.lastHash)) {
          // The chain breaks between seq-1 and seq: one of the two was changed. tree.hashes, when it
          // has the earlier leaf, says which; otherwise the earlier one (its successor still names
          // the original hash) is taken as the changed one.
          const tl = this.ev.treeLeaf(f.seq - 1);
          const prevIsRight = tl !== undefined && hashEquals(tl, this.lastHash);
          const k = this.lastKept;
          if (!prevIsRight && k !== undefined && this.items[this.items.length - 1] === k.run && k.run.offsets[k.run.offsets.length - 1] === k.offset) {
            k.run.offsets.pop();
            k.run.end = k.offset;
            if (k.run.offsets.length === 0) this.items.pop();
            this.cursor = f.seq - 1;
            this.lose(f.seq, `${k.name}@${k.offset}`, `record ${f.seq - 1} at ${k.name}@${k.offset} does not chain to record ${f.seq} (its bytes were changed on disk)`);
          } else {
            this.lose(f.seq + 1, at(pos), `record ${f.seq} at ${at(pos)}: its prev_hash does not match record ${f.seq - 1} (changed on disk)`);
            pos = f.end;
            continue;
          }
        }
        this.keep(index, name, pos, f);
        pos = f.end;
        continue;
      }
      const r = this.resync(data, pos + 1);
      if (r !== undefined) {
        if (r.seq > this.cursor!) {
          this.lose(r.seq, at(pos), `${f.problem} at ${at(pos)}, followed by valid records from seq ${r.seq} at ${at(r.pos)}: not a torn tail`);
        } else {
          this.damage.push({ where: at(pos), message: `${r.pos - pos} bytes that are not a record (${f.problem}) before seq ${r.seq} at ${at(r.pos)}` });
        }
        this.run = undefined;
        pos = r.pos;
        continue;
      }
      if (isLast && isTornTail(data, pos, f)) {
        this.torn = { seg: index, offset: pos, bytes: data.length - pos, problem: f.problem };
        break;
      }
      const msg = isLast
        ? `${f.problem} at ${at(pos)}, in the newest segment but not a torn write (a crash cuts a frame short or leaves zeros; this frame is whole)`
        : `${f.problem} at ${at(pos)}, in a segment before the newest one (only the newest can be torn by a crash)`;
      // Something record-sized was there: at least one record is lost (a non-last segment's end is set by the next one).
      this.openLost = { cause: msg, min: f.complete || isLast ? this.cursor! + 1 : this.cursor! };
      this.damage.push({ where: at(pos), message: msg, first: this.cursor });
      break;
    }
  }

  finish(): ScanResult {
    const ev = this.ev;
    if (this.cursor === undefined) {
      // No segment at all: the log continues after the acknowledged point.
      this.cursor = ev.ackedSeq + 1;
      this.lastHash = ev.ackedSeq >= 0 ? ev.ackedHash : ZERO_HASH;
    }
    const cursor = this.cursor;
    const evidence: string[] = [];
    let end = Math.max(cursor, this.openLost?.min ?? 0);
    if (ev.treeLeaves > cursor) evidence.push(`tree.hashes holds the leaf hashes of ${ev.treeLeaves} records (seq 0..${ev.treeLeaves - 1})`);
    if (ev.checkpointSize >= cursor) evidence.push(`a checkpoint of ${ev.checkpointSize} records was signed and its record (seq ${ev.checkpointSize}) made durable`);
    if (ev.ackedSeq >= cursor) evidence.push(`acked.json says the collector acknowledged seq ${ev.ackedSeq}`);
    end = Math.max(end, ev.treeLeaves, ev.checkpointSize + 1, ev.ackedSeq + 1);
    if (end > cursor) {
      const parts: string[] = [];
      if (this.openLost) parts.push(this.openLost.cause);
      if (this.torn) parts.push(`the newest segment ends in what looks like a torn write at byte ${this.torn.offset} (${this.torn.problem})`);
      parts.push(`records ${cursor}..${end - 1} are gone from the spool${evidence.length ? `, yet ${evidence.join('; ')}` : ''}`);
      this.openLost = undefined;
      this.lose(end, this.lastName || 'spool', parts.join('; '));
      // This loss is reported once, with everything known about it.
      const i = this.damage.findIndex((d) => d.first === cursor && d.end === undefined);
      if (i >= 0) this.damage.splice(i, 1);
    } else if (this.openLost) {
      this.openLost = undefined;
    }
    for (let i = 0; i < this.items.length; i++) {
      const it = this.items[i];
      if (it.kind !== 'lost') continue;
      const next = this.items[i + 1];
      for (let s = it.first; s < it.end; s++) {
        const fromNext = s === it.end - 1 && next?.kind === 'run' ? next.firstPrev : undefined;
        const tl = ev.treeLeaf(s);
        it.hashes.push(fromNext ?? (tl !== undefined && !isZero(tl) ? tl : undefined));
      }
    }
    const last = this.items[this.items.length - 1];
    const lastHash = this.lastHash ?? (last?.kind === 'lost' ? (last.hashes[last.hashes.length - 1] ?? GAP_LEAF) : GAP_LEAF);
    const undeclared: [number, number][] = [];
    for (const [first, last] of this.markers) {
      const covered = (s: number) => this.declared.some((d) => d.seq > s && d.first <= s && s <= d.last);
      let from = -1;
      for (let s = first; s <= last + 1; s++) {
        if (s <= last && !covered(s)) {
          if (from < 0) from = s;
        } else if (from >= 0) {
          undeclared.push([from, s - 1]);
          from = -1;
        }
      }
    }
    return { items: this.items, nextSeq: this.cursor, lastHash, ...(this.torn ? { torn: this.torn } : {}), damage: this.damage, undeclared };
  }

  private keep(index: number, name: string, pos: number, f: Ok): void {
    if (this.run === undefined) {
      this.run = { kind: 'run', seg: index, firstSeq: f.seq, offsets: [], end: pos, firstPrev: f.prevHash };
      this.items.push(this.run);
    }
    this.run.offsets.push(pos);
    this.run.end = f.end;
    this.lastKept = { run: this.run, offset: pos, name };
    this.cursor = f.seq + 1;
    this.lastHash = f.hash;
    if (f.lost) {
      const m = this.markers[this.markers.length - 1];
      if (m !== undefined && m[1] === f.seq - 1) m[1] = f.seq;
      else this.markers.push([f.seq, f.seq]);
    }
    if (f.declares) this.declared.push({ seq: f.seq, first: f.declares[0], last: f.declares[1] });
  }

  /** Records [cursor, end) are lost; the chain continues unchecked from the next record found. */
  private lose(end: number, where: string, cause: string): void {
    const first = this.cursor!;
    if (end > first) {
      this.items.push({ kind: 'lost', first, end, cause, hashes: [] });
      this.damage.push({ where, message: cause, first, end });
    }
    this.cursor = Math.max(first, end);
    this.run = undefined;
    this.lastKept = undefined;
    this.lastHash = undefined;
  }

  /** A lost range left open by a bad end of the previous segment is closed by the next segment's start. */
  private closeOpenLost(nextFirst: number, name: string): void {
    const o = this.openLost;
    if (!o) return;
    this.openLost = undefined;
    const i = this.damage.findIndex((d) => d.first === this.cursor && d.end === undefined);
    if (i >= 0) this.damage.splice(i, 1);
    if (nextFirst > this.cursor!) this.lose(nextFirst, name, `${o.cause}; the next segment, ${name}, starts at seq ${nextFirst}`);
    else this.damage.push({ where: name, message: o.cause });
  }

  /** The next valid frame after a bad one, with a seq not below the cursor. */
  private resync(data: Buffer, from: number): { pos: number; seq: number } | undefined {
    for (let p = from; p + FRAME_HEADER_BYTES < data.length; p++) {
      const raw = data.readUInt32BE(p);
      if ((raw & LOST_FLAG) !== 0) {
        if (((raw & ~LOST_FLAG) >>> 0) !== LOST_PAYLOAD_BYTES) continue;
      } else if (raw === 0 || raw > MAX_RECORD_BYTES || p + FRAME_HEADER_BYTES + raw > data.length || data[p + FRAME_HEADER_BYTES] !== 0x08) {
        // Every record starts with field 1 (schema_version), tag 0x08: a cheap filter before the CRC.
        continue;
      }
      const f = parseFrame(data, p);
      if (f.ok && f.seq >= this.cursor!) return { pos: p, seq: f.seq };
    }
    return undefined;
  }
}

function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** Filesystems allocate in blocks of at least a sector: data a power loss never wrote reads as zeros from a sector boundary on. */
const SECTOR = 512;

/**
 * A crash leaves either a frame cut short (kill -9 mid-write) or, after a power loss, a file whose
 * size reached the disk before its data (zeros from the frame's start or a sector boundary on). A whole frame
 * that fails its CRC otherwise is damage, and so is a length field damaged in front of a whole record.
 */
function isTornTail(data: Buffer, pos: number, f: Bad): boolean {
  if (!f.complete) {
    if (data.length - pos > FRAME_HEADER_BYTES) {
      const body = data.subarray(pos + FRAME_HEADER_BYTES);
      if (crc32(body) === data.readUInt32BE(pos + 4)) return false;
    }
    return true;
  }
  let z = data.length;
  while (z > pos && data[z - 1] === 0) z--;
  // Zeros from the frame's start (nothing of it reached the disk), or from a sector boundary inside it.
  if (z <= pos) return true;
  const boundary = Math.ceil(z / SECTOR) * SECTOR;
  return boundary < f.end && boundary < data.length;
}
