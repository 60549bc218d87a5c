// Per-gateway resume point on the collector's disk: next_seq and last_hash in
// <out>/<gateway>.state.json, reconciled with the NDJSON file, which is the record of truth.
// The state file is replaced by rename only (whole or absent). Never trusts a state that is
// behind what the NDJSON already holds: that would write duplicates after a crash.
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../audit/spool.js';
import { fromHex, toHex, ZERO_HASH } from '../audit/hash.js';

export interface ResumePoint {
  nextSeq: number;
  lastHash: Uint8Array;
}

export class CollectorStateError extends Error {
  override readonly name = 'CollectorStateError';
}

export function statePath(outDir: string, gatewayId: string): string {
  return join(outDir, `${gatewayId}.state.json`);
}
export function ndjsonPath(outDir: string, gatewayId: string): string {
  return join(outDir, `${gatewayId}.ndjson`);
}

export async function readState(path: string): Promise<ResumePoint> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { nextSeq: 0, lastHash: ZERO_HASH };
    throw err;
  }
  const v = JSON.parse(text) as { next_seq?: unknown; last_hash?: unknown };
  if (typeof v.next_seq !== 'number' || !Number.isSafeInteger(v.next_seq) || v.next_seq < 0) {
    throw new CollectorStateError(`${path}: next_seq must be a non-negative integer`);
  }
  const lastHash = typeof v.last_hash === 'string' ? fromHex(v.last_hash) : new Uint8Array(0);
  if (lastHash.length !== 32) throw new CollectorStateError(`${path}: last_hash must be 64 hex characters`);
  return { nextSeq: v.next_seq, lastHash };
}

export async function writeState(path: string, point: ResumePoint): Promise<void> {
  const tmp = `${path}.tmp`;
  const h = await open(tmp, 'w');
  try {
    await h.writeFile(JSON.stringify({ next_seq: point.nextSeq, last_hash: toHex(point.lastHash) }) + '\n');
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, path);
  await fsyncDir(join(path, '..'));
}

/**
 * Opens the gateway's NDJSON for appending; cuts a torn last line (crash mid-write) and returns
 * the resume point of its last whole line, if any.
 */
export async function openNdjson(path: string): Promise<{ handle: FileHandle; last: ResumePoint | undefined }> {
  const handle = await open(path, 'a+');
  try {
    const { size } = await handle.stat();
    if (size === 0) return { handle, last: undefined };
    const len = Math.min(size, 1 << 20);
    const buf = Buffer.alloc(len);
    await handle.read(buf, 0, len, size - len);
    let end = len;
    if (buf[len - 1] !== 0x0a) {
      const nl = buf.lastIndexOf(0x0a);
      end = nl + 1;
      await handle.truncate(size - len + end);
      await handle.sync();
    }
    if (end === 0) return { handle, last: undefined };
    const start = buf.lastIndexOf(0x0a, end - 2) + 1;
    const line = JSON.parse(buf.subarray(start, end - 1).toString('utf8')) as { seq?: number; hash?: string };
    if (typeof line.seq !== 'number' || typeof line.hash !== 'string') {
      throw new CollectorStateError(`${path}: last line has no seq and hash`);
    }
    return { handle, last: { nextSeq: line.seq + 1, lastHash: fromHex(line.hash) } };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
