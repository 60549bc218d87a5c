// Streams the records of a spool directory (its segment files, oldest first) in bounded memory:
// one read buffer, records handed out in batches, for offline tools that read a day of a busy
// gateway (`plantgate policy learn|replay`, docs/policy.md). Decodes with schema.ts' decoder like
// every other reader of the spool (through bulk-decode.ts: the same records, less work each).
// Never writes to the spool, never repairs it: damage is reported with the file and byte offset
// and reading goes on with the next frame that can be found.
//
// A decoded record's `bytes` fields (prev_hash, checkpoint roots) are views into the read buffer:
// they are valid until the consumer asks for the next batch. Copy what must outlive it.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { BulkDecoder } from './bulk-decode.js';
import type { DecodedRecord } from './schema.js';
import { FRAME_HEADER_BYTES, LOST_FLAG, MAX_RECORD_BYTES } from './spool-scan.js';

const SEGMENT_RE = /^\d{16}\.seg$/;
const CHUNK_BYTES = 4 << 20;
/**
 * Records per batch: small enough that a batch's decoded objects die young (a whole 4 MiB chunk
 * of decoded records outlived the young generation and made half the CPU time garbage collection).
 */
export const BATCH_RECORDS = 64;

export interface SpoolReadProblem {
  /** `<segment file>@<byte offset>` */
  where: string;
  message: string;
  /** A partial frame at the very end of the newest segment: a live spool's write in progress. */
  tornTail: boolean;
}

export interface RecordBatch {
  records: DecodedRecord[];
  /** Input bytes consumed since the previous batch (for a progress line). */
  bytes: number;
}

/** The segment files of a spool directory, oldest first, with their sizes. */
export async function spoolSegments(dir: string): Promise<{ path: string; bytes: number }[]> {
  const names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
  return Promise.all(names.map(async (n) => ({ path: join(dir, n), bytes: (await stat(join(dir, n))).size })));
}

/**
 * Every record of `segments` (spoolSegments' order) in batches. A frame whose CRC or protobuf does
 * not check out is reported and skipped; a length that cannot be a frame ends that segment (what
 * follows cannot be framed again safely).
 */
export async function* spoolBatches(
  segments: readonly { path: string; bytes: number }[],
  onProblem: (p: SpoolReadProblem) => void,
): AsyncGenerator<RecordBatch> {
  const buf = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, MAX_RECORD_BYTES + FRAME_HEADER_BYTES));
  const decoder = new BulkDecoder();
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s]!;
    const name = seg.path.slice(seg.path.lastIndexOf('/') + 1);
    const last = s === segments.length - 1;
    const fh = await open(seg.path, 'r');
    try {
      let filePos = 0; // file offset of buf[0]
      let have = 0;
      let eof = false;
      let stop = false;
      while (!stop) {
        if (!eof && have < buf.length) {
          const { bytesRead } = await fh.read(buf, have, buf.length - have, filePos + have);
          if (bytesRead === 0) eof = true;
          have += bytesRead;
        }
        let records: DecodedRecord[] = [];
        let pos = 0;
        let yielded = 0;
        while (have - pos >= FRAME_HEADER_BYTES) {
          const raw = buf.readUInt32BE(pos);
          // A lost-record marker (audit recover --accept-loss): the seq is known, the record is not.
          const lost = (raw & LOST_FLAG) !== 0;
          const len = lost ? (raw & ~LOST_FLAG) >>> 0 : raw;
          if (len === 0 || len > MAX_RECORD_BYTES) {
            onProblem({ where: `${name}@${filePos + pos}`, message: len === 0 ? 'zero-filled frame: the rest of the segment is unreadable' : `frame length ${len} is not a record: the rest of the segment is unreadable`, tornTail: false });
            stop = true;
            break;
          }
          if (have - pos - FRAME_HEADER_BYTES < len) break;
          const bytes = buf.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len);
          if (lost) {
            const seq = len >= 8 ? Number(bytes.readBigUInt64BE(0)) : -1;
            onProblem({ where: `${name}@${filePos + pos}`, message: `record ${seq} was lost (an AUDIT_GAP record declares it): not read`, tornTail: false });
          } else if (crc32(bytes) !== buf.readUInt32BE(pos + 4)) {
            onProblem({ where: `${name}@${filePos + pos}`, message: 'record bytes do not match their CRC (changed on disk): skipped', tornTail: false });
          } else {
            try {
              records.push(decoder.decode(buf, pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len));
            } catch {
              onProblem({ where: `${name}@${filePos + pos}`, message: 'record does not decode: skipped', tornTail: false });
            }
          }
          pos += FRAME_HEADER_BYTES + len;
          if (records.length === BATCH_RECORDS) {
            yield { records, bytes: pos - yielded };
            yielded = pos;
            records = [];
          }
        }
        if (records.length > 0 || pos > yielded) yield { records, bytes: pos - yielded };
        if (stop) break;
        // Keep the partial frame at the end for the next read.
        buf.copyWithin(0, pos, have);
        filePos += pos;
        have -= pos;
        if (eof) {
          if (have > 0) {
            onProblem({
              where: `${name}@${filePos}`,
              message: last ? `partial frame of ${have} bytes at the end (torn tail, or a write in progress)` : `partial frame of ${have} bytes at the end of a segment that is not the newest`,
              tornTail: last,
            });
          }
          break;
        }
      }
    } finally {
      await fh.close();
    }
  }
}
