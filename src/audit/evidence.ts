// What a spool directory says, besides its segments, about how far the log reached
// (docs/audit.md, Recovery): acked.json (the collector stored everything up to there), tree.hashes
// (leaf hashes are written only after their records are durable, so a leaf there is a record that
// was on disk) and the signed checkpoint files (each written after its record was durable).
// Reads only; the spool scanner (spool-scan.ts) weighs it against the segments.
import { closeSync, openSync, readSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCheckpointBody } from './checkpoint.js';
import { AuditError } from './errors.js';
import { fromHex, HASH_BYTES, ZERO_HASH } from './hash.js';
import { storedHashIndex } from './merkle.js';
import { parseNote } from './note.js';
import type { Evidence } from './spool-scan.js';
import { ACK_FILE } from './spool.js';
import { leavesCovered, TREE_FILE } from './tree-store.js';

export const CHECKPOINT_DIR = 'checkpoints';

export function checkpointFileName(size: number): string {
  return `${String(size).padStart(16, '0')}.checkpoint`;
}

/** acked.json: the collector's last acknowledged seq and that record's leaf hash (-1 and zeros when absent). */
export async function readAckState(dir: string): Promise<{ ackedSeq: number; ackedHash: Uint8Array }> {
  const path = join(dir, ACK_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ackedSeq: -1, ackedHash: ZERO_HASH };
    throw new AuditError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const v = JSON.parse(text) as { acked_seq?: unknown; acked_hash?: unknown };
    if (typeof v.acked_seq !== 'number' || !Number.isSafeInteger(v.acked_seq) || v.acked_seq < -1) {
      throw new Error('acked_seq must be an integer >= -1');
    }
    const hash = typeof v.acked_hash === 'string' ? fromHex(v.acked_hash) : ZERO_HASH;
    if (hash.length !== HASH_BYTES) throw new Error('acked_hash must be 32 bytes of hex');
    return { ackedSeq: v.acked_seq, ackedHash: hash };
  } catch (err) {
    // The state file is only ever replaced by rename, so it is whole or absent: a bad one was
    // edited by hand or the disk is failing. Refuse rather than guess what was acknowledged.
    throw new AuditError(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Sizes of the checkpoint files whose note names the size its file name says, newest last. */
export async function checkpointSizes(dir: string): Promise<number[]> {
  let names: string[];
  try {
    names = (await readdir(join(dir, CHECKPOINT_DIR))).filter((n) => /^\d{16}\.checkpoint$/.test(n)).sort();
  } catch {
    return [];
  }
  return names.map((n) => Number(n.slice(0, 16)));
}

/** The size a checkpoint file's note signs, or undefined when it is not a checkpoint note. */
async function signedSize(dir: string, size: number): Promise<number | undefined> {
  try {
    const cp = parseCheckpointBody(parseNote(await readFile(join(dir, CHECKPOINT_DIR, checkpointFileName(size)), 'utf8')).text);
    return cp.size;
  } catch {
    return undefined;
  }
}

export interface SpoolEvidence extends Evidence {
  close(): void;
}

/** Reads the evidence of a spool directory; close() when done (tree.hashes stays open for treeLeaf). */
export async function readEvidence(dir: string): Promise<SpoolEvidence> {
  const acked = await readAckState(dir);
  const path = join(dir, TREE_FILE);
  let count = 0;
  try {
    count = Math.floor((await stat(path)).size / HASH_BYTES);
  } catch {
    count = 0;
  }
  let fd: number | undefined;
  // The newest checkpoint file whose note really is a checkpoint of that size (a stray file is not evidence).
  let checkpointSize = -1;
  const sizes = await checkpointSizes(dir);
  for (let i = sizes.length - 1; i >= 0; i--) {
    if ((await signedSize(dir, sizes[i])) === sizes[i]) {
      checkpointSize = sizes[i];
      break;
    }
  }
  return {
    ...acked,
    treeLeaves: leavesCovered(count),
    checkpointSize,
    treeLeaf(seq) {
      const i = storedHashIndex(0, seq);
      if (i >= count) return undefined;
      fd ??= openSync(path, 'r');
      const buf = Buffer.alloc(HASH_BYTES);
      return readSync(fd, buf, 0, HASH_BYTES, i * HASH_BYTES) === HASH_BYTES ? new Uint8Array(buf) : undefined;
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
