// Streams the records of the collector's NDJSON files (output.ts writes them; ndjson.ts maps each
// line back to a record) in bounded memory: one read buffer, records handed out in batches, for
// offline tools that read a day of a busy gateway (`plantgate policy learn|replay`,
// docs/policy.md). Never writes; a line that is not a record is reported (file:line) and skipped.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BATCH_RECORDS, type RecordBatch } from '../audit/spool-reader.js';
import type { DecodedRecord } from '../audit/schema.js';
import { recordFromJson } from './ndjson.js';

const CHUNK_BYTES = 4 << 20;
/** Far above any record line; a longer "line" is not the collector's output. */
const MAX_LINE_BYTES = 16 << 20;
const NDJSON_RE = /\.ndjson$/;
const OCSF_RE = /\.ocsf\.ndjson$/;

export interface NdjsonReadProblem {
  /** `<file>:<line>` */
  where: string;
  message: string;
}

/**
 * The record NDJSON files under a collector output directory, per gateway oldest first: the
 * `single` layout's `<gw>.ndjson` and the `daily` layout's `<gw>/<YYYY-MM-DD>.ndjson` (OCSF files
 * are a lossy mapping and are left out).
 */
export async function collectorNdjsonFiles(dir: string): Promise<{ path: string; bytes: number }[]> {
  const out: string[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.isFile() && NDJSON_RE.test(e.name) && !OCSF_RE.test(e.name)) out.push(join(dir, e.name));
    else if (e.isDirectory()) {
      const days = (await readdir(join(dir, e.name))).filter((n) => /^\d{4}-\d{2}-\d{2}\.ndjson$/.test(n)).sort();
      for (const d of days) out.push(join(dir, e.name, d));
    }
  }
  return Promise.all(out.map(async (p) => ({ path: p, bytes: (await stat(p)).size })));
}

/** Every record of the NDJSON `files`, in file order, in batches. */
export async function* ndjsonBatches(files: readonly { path: string; bytes: number }[], onProblem: (p: NdjsonReadProblem) => void): AsyncGenerator<RecordBatch> {
  let buf = Buffer.allocUnsafe(CHUNK_BYTES);
  for (const file of files) {
    const fh = await open(file.path, 'r');
    try {
      let filePos = 0;
      let have = 0;
      let line = 0;
      let eof = false;
      while (!eof || have > 0) {
        if (!eof) {
          if (have === buf.length) {
            if (buf.length >= MAX_LINE_BYTES) {
              onProblem({ where: `${file.path}:${line + 1}`, message: `a line longer than ${MAX_LINE_BYTES} bytes: not the collector's output; the rest of the file is skipped` });
              break;
            }
            const bigger = Buffer.allocUnsafe(buf.length * 2);
            buf.copy(bigger, 0, 0, have);
            buf = bigger;
          }
          const { bytesRead } = await fh.read(buf, have, buf.length - have, filePos + have);
          if (bytesRead === 0) eof = true;
          have += bytesRead;
        }
        let records: DecodedRecord[] = [];
        let pos = 0;
        let yielded = 0;
        for (;;) {
          let nl = buf.indexOf(0x0a, pos);
          if (nl < 0 || nl >= have) {
            // The last line of a file may lack its newline.
            if (!eof || pos >= have) break;
            nl = have;
          }
          line++;
          if (nl > pos) {
            const text = buf.toString('utf8', pos, nl);
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            if (json === null || typeof json !== 'object' || Array.isArray(json)) {
              onProblem({ where: `${file.path}:${line}`, message: eof && nl === have ? 'the last line is not JSON (torn, or a write in progress): skipped' : 'not a JSON object: skipped' });
            } else if ((json as { lost?: unknown }).lost === true) {
              onProblem({ where: `${file.path}:${line}`, message: `record ${String((json as { seq?: unknown }).seq)} was lost by the gateway (an AUDIT_GAP record declares it): not read` });
            } else {
              try {
                records.push(recordFromJson(json as Record<string, unknown>));
              } catch (err) {
                onProblem({ where: `${file.path}:${line}`, message: `not an audit record (${(err as Error).message}): skipped` });
              }
            }
          }
          pos = Math.min(nl + 1, have);
          if (records.length === BATCH_RECORDS) {
            yield { records, bytes: pos - yielded };
            yielded = pos;
            records = [];
          }
        }
        if (records.length > 0 || pos > yielded) yield { records, bytes: pos - yielded };
        buf.copyWithin(0, pos, have);
        filePos += pos;
        have -= pos;
      }
    } finally {
      await fh.close();
    }
  }
}
