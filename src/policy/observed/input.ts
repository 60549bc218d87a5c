// Where `policy learn` and `policy replay` read recorded traffic from: the gateway's own spool
// directory, the collector's output directory or single NDJSON files (docs/policy.md, "From
// monitor mode to enforce"). Owns telling these apart and streaming their records in batches with
// a byte count for the progress line; the reading itself belongs to the audit's and the
// collector's readers (spool-reader.ts, ndjson-reader.ts), so record decoding lives in one place.
// Never writes to an input.
import { stat } from 'node:fs/promises';
import { spoolBatches, spoolSegments, type RecordBatch } from '../../audit/spool-reader.js';
import { collectorNdjsonFiles, ndjsonBatches } from '../../collector/ndjson-reader.js';

export class InputError extends Error {
  override readonly name = 'InputError';
}

export interface InputProblem {
  where: string;
  message: string;
  /** Benign: the partial last frame of a spool being written. */
  tornTail: boolean;
}

interface Source {
  kind: 'spool' | 'ndjson';
  files: { path: string; bytes: number }[];
}

export interface AuditInputs {
  /** What was found, one line per input, for the report. */
  describe: string[];
  totalBytes: number;
  batches(onProblem: (p: InputProblem) => void): AsyncGenerator<RecordBatch>;
}

/**
 * Opens the inputs: a spool directory (segment files), a collector output directory (its record
 * NDJSON files, every gateway), or one `.ndjson` file. Throws InputError naming the path otherwise.
 */
export async function openAuditInputs(paths: readonly string[]): Promise<AuditInputs> {
  if (paths.length === 0) throw new InputError('no audit input given');
  const sources: Source[] = [];
  const describe: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = await stat(p);
    } catch (err) {
      throw new InputError(`${p}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (st.isFile()) {
      if (!p.endsWith('.ndjson') || p.endsWith('.ocsf.ndjson')) throw new InputError(`${p}: not a record NDJSON file (the collector's <gateway>.ndjson) nor a directory`);
      sources.push({ kind: 'ndjson', files: [{ path: p, bytes: st.size }] });
      describe.push(`${p}: collector NDJSON`);
      continue;
    }
    const segments = await spoolSegments(p);
    if (segments.length > 0) {
      sources.push({ kind: 'spool', files: segments });
      describe.push(`${p}: spool, ${segments.length} segment(s)`);
      continue;
    }
    const files = await collectorNdjsonFiles(p);
    if (files.length > 0) {
      sources.push({ kind: 'ndjson', files });
      describe.push(`${p}: collector output, ${files.length} NDJSON file(s)`);
      continue;
    }
    throw new InputError(`${p}: neither a spool (NNNNNNNNNNNNNNNN.seg files) nor a collector output directory (*.ndjson)`);
  }
  const totalBytes = sources.reduce((n, s) => n + s.files.reduce((m, f) => m + f.bytes, 0), 0);
  return {
    describe,
    totalBytes,
    async *batches(onProblem) {
      for (const s of sources) {
        if (s.kind === 'spool') yield* spoolBatches(s.files, onProblem);
        else yield* ndjsonBatches(s.files, (p) => onProblem({ ...p, tornTail: false }));
      }
    },
  };
}
