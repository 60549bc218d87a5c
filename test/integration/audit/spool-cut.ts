// Test helper: cutting a spool's tail off the way someone hiding it would (docs/audit.md, Verifying).
import { readdir, readFile, rm, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_DIR } from '../../../src/audit/log.js';
import { storedHashCount } from '../../../src/audit/merkle.js';
import { FRAME_HEADER_BYTES } from '../../../src/audit/spool-scan.js';
import { TREE_FILE } from '../../../src/audit/tree-store.js';

/** Segment files of the spool, oldest first. */
export async function segments(at: string): Promise<string[]> {
  return (await readdir(at)).filter((n) => n.endsWith('.seg')).sort();
}

/**
 * Cuts the log back to its first `size` records the way someone hiding its end would: segments cut
 * at a frame boundary (or deleted), newer checkpoint files deleted, and, with `tree`, tree.hashes
 * cut to match and acked.json removed, so nothing left in the directory says more existed.
 */
export async function cutBackTo(at: string, size: number, tree: boolean): Promise<void> {
  for (const name of await segments(at)) {
    const first = Number(name.slice(0, 16));
    const file = join(at, name);
    if (first >= size) {
      await unlink(file);
      continue;
    }
    const data = await readFile(file);
    let pos = 0;
    for (let seq = first; seq < size && pos < data.length; seq++) pos += FRAME_HEADER_BYTES + data.readUInt32BE(pos);
    await truncate(file, pos);
  }
  for (const f of await readdir(join(at, CHECKPOINT_DIR))) if (Number(f.slice(0, 16)) >= size) await unlink(join(at, CHECKPOINT_DIR, f));
  if (tree) {
    await truncate(join(at, TREE_FILE), storedHashCount(size) * 32);
    await rm(join(at, 'acked.json'), { force: true });
  }
}

