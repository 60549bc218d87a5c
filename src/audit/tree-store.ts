// The Merkle tree's stored hashes on disk: <spool>/tree.hashes, 32-byte hashes in tlog's
// stored-hash order (see merkle.ts), append-only. It outlives the spool's segments: acknowledged
// records are deleted, their hashes stay, so proofs for any seq and checkpoints of any size can
// still be computed. Owns that one file; knows nothing of records.
// Durability: the hashes follow from the records, so a write waits only for the spool's fsync; this
// file is fsynced before anything relies on it (a checkpoint file, deleting acknowledged records).
// Recovery: a length that is not a whole number of leaves' hashes is a torn tail and is cut; hashes
// beyond what was known fsynced, or of leaves the spool does not hold (its own torn tail was cut),
// are cut; leaves the file lacks are recomputed from the spool's records. If those records are
// gone, it refuses to guess.
import { closeSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditError } from './errors.js';
import { HASH_BYTES } from './hash.js';
import { Frontier, storedHashCount, type StoredHashReader } from './merkle.js';
import { coalesce } from './spool.js';

export const TREE_FILE = 'tree.hashes';

/** Largest n with storedHashCount(n) <= count. */
export function leavesCovered(count: number): number {
  let lo = 0;
  let hi = Math.ceil(count / 2) + 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (storedHashCount(mid) <= count) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Synchronous positional reads of a hash file (tools and proofs, never the per-command path). */
export function fileHashReader(fd: number, count: number, path: string): StoredHashReader {
  return (indexes) =>
    indexes.map((i) => {
      if (i >= count) throw new AuditError(`${path}: stored hash ${i} is beyond the ${count} on disk`);
      const buf = Buffer.alloc(HASH_BYTES);
      if (readSync(fd, buf, 0, HASH_BYTES, i * HASH_BYTES) !== HASH_BYTES) throw new AuditError(`${path}: short read at hash ${i}`);
      return buf;
    });
}

export class TreeStore {
  private count: number;
  /** Hashes known to be on disk (fsynced); the rest are written but may still be in the page cache. */
  private syncedCount: number;
  fsyncs = 0;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    count: number,
  ) {
    this.count = count;
    this.syncedCount = count;
  }

  /**
   * Opens the hash file for a spool whose records end at `nextSeq`, and returns the frontier of
   * that size. `readLeaves(from, to)` yields the leaf hashes of seqs [from, to) from the spool.
   * `trustedLeaves`: how many leaves' hashes are known to have been fsynced (see sync()); hashes
   * beyond are recomputed from the spool's records rather than trusted, since a power loss may
   * have left them torn or, on some filesystems, zeroed.
   */
  static async open(
    dir: string,
    nextSeq: number,
    firstSeqOnDisk: number,
    readLeaves: (from: number, to: number) => Promise<Uint8Array[]>,
    trustedLeaves = Number.MAX_SAFE_INTEGER,
    file = TREE_FILE,
  ): Promise<{ store: TreeStore; frontier: Frontier; rebuiltLeaves: number }> {
    const path = join(dir, file);
    const handle = await open(path, 'a+');
    try {
      const { size } = await handle.stat();
      const leaves = Math.min(leavesCovered(Math.floor(size / HASH_BYTES)), nextSeq, trustedLeaves);
      const keep = storedHashCount(leaves) * HASH_BYTES;
      if (keep !== size) {
        await handle.truncate(keep);
        await handle.sync();
      }
      const store = new TreeStore(path, handle, keep / HASH_BYTES);
      const frontier = store.withReader((read) => Frontier.fromStored(leaves, read));
      let rebuilt = 0;
      if (leaves < nextSeq) {
        if (firstSeqOnDisk > leaves) {
          throw new AuditError(
            `${path}: holds the tree up to seq ${leaves - 1} but the spool's records start at ${firstSeqOnDisk}: the tree cannot be rebuilt`,
          );
        }
        const created: Uint8Array[] = [];
        for (const h of await readLeaves(leaves, nextSeq)) for (const s of frontier.append(h)) created.push(s);
        await store.append(created);
        rebuilt = nextSeq - leaves;
      }
      return { store, frontier, rebuiltLeaves: rebuilt };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Stored hashes on disk. */
  get hashCount(): number {
    return this.count;
  }

  /**
   * Appends stored hashes with one write and no fsync: 32-byte hashes, or runs of them back to
   * back (the log's digest arena hands over a batch's hashes so). The hashes follow from the
   * spool's records, which are what a write waits on; sync() makes them durable before anything
   * that needs them to be (a checkpoint file, deleting acknowledged records).
   */
  async append(hashes: Uint8Array[]): Promise<void> {
    let total = 0;
    for (const h of hashes) {
      // A run that is not whole hashes would shift every later one in the file.
      if (h.length % HASH_BYTES !== 0) throw new AuditError(`stored hashes are ${HASH_BYTES} bytes each, got a run of ${h.length}`);
      total += h.length;
    }
    if (total === 0) return;
    let written = 0;
    let pending = coalesce(hashes);
    for (;;) {
      const { bytesWritten } = await this.handle.writev(pending);
      written += bytesWritten;
      if (written >= total) break;
      // A short write (rare on regular files): write the rest, then fsync once.
      pending = [Buffer.concat(hashes).subarray(written)];
    }
    this.count += total / HASH_BYTES;
  }

  /** Fsyncs the hashes written so far, if any are not yet. */
  async sync(): Promise<void> {
    const count = this.count;
    if (count === this.syncedCount) return;
    await this.handle.sync();
    this.fsyncs++;
    this.syncedCount = Math.max(this.syncedCount, count);
  }

  /** Runs `fn` with a synchronous reader over the hashes written so far. */
  withReader<T>(fn: (read: StoredHashReader) => T): T {
    const fd = openSync(this.path, 'r');
    try {
      return fn(fileHashReader(fd, this.count, this.path));
    } finally {
      closeSync(fd);
    }
  }

  async close(): Promise<void> {
    await this.sync();
    await this.handle.close();
  }
}
