// The collector as a witness of one gateway's log (C2SP tlog-witness, in spirit): it keeps the
// gateway's Merkle tree frontier, recomputed from the leaf hash of every record it stored, and
// checks each checkpoint record against it: the note must verify with the gateway's configured
// verifier key, its origin must be that key's name, and its size and root must be the recomputed
// tree's. Since the frontier only ever grows by appending, a checkpoint that matches it is
// consistent with every earlier one (no separate consistency proof needed). Then it countersigns
// (tlog-cosignature/v1). Pure: no I/O; the caller stores records and state.
import { openCheckpoint, parseCheckpointBody, type Cosigner } from '../audit/checkpoint.js';
import { hashEquals, toHex } from '../audit/hash.js';
import type { Frontier } from '../audit/merkle.js';
import type { NoteVerifier } from '../audit/note.js';
import type { DecodedRecord } from '../audit/schema.js';

export type WitnessProblemKind = 'bad_signature' | 'inconsistent_checkpoint';

export interface WitnessProblem {
  kind: WitnessProblemKind;
  message: string;
  expected?: string;
  actual?: string;
}

export interface CheckpointVerdict {
  size: number;
  root: Uint8Array;
  body: string;
}

/**
 * Checks a checkpoint record (seq n, so the frontier must hold exactly the records before it).
 * Returns the verified checkpoint, or the problem. `verifier` undefined: the gateway has no
 * configured key (open mode), only the tree is checked and nothing may be cosigned.
 */
export function checkCheckpointRecord(
  rec: DecodedRecord,
  frontier: Frontier,
  verifier: NoteVerifier | undefined,
): { ok: CheckpointVerdict; signed: boolean } | { problem: WitnessProblem } {
  const cp = rec.checkpoint!;
  const note = cp.note ?? '';
  let size: number;
  let root: Uint8Array;
  let body: string;
  try {
    if (verifier) {
      const opened = openCheckpoint(note, verifier);
      ({ size, root, body } = opened);
    } else {
      // Unsigned check: parse the body (text before the blank line), the signature is not verifiable.
      body = note.slice(0, note.indexOf('\n\n') + 1);
      ({ size, root } = parseCheckpointBody(body));
    }
  } catch (err) {
    return { problem: { kind: 'bad_signature', message: `checkpoint at seq ${rec.seq}: ${(err as Error).message}` } };
  }
  if (Number(cp.treeSize) !== size || !hashEquals(cp.rootHash, root)) {
    return { problem: { kind: 'inconsistent_checkpoint', message: `checkpoint record at seq ${rec.seq}: its fields differ from its signed note`, expected: `${size} ${toHex(root)}`, actual: `${String(cp.treeSize)} ${toHex(cp.rootHash)}` } };
  }
  if (size !== frontier.size) {
    return {
      problem: { kind: 'inconsistent_checkpoint', message: `checkpoint at seq ${rec.seq} claims tree size ${size}, the records before it make ${frontier.size}`, expected: String(frontier.size), actual: String(size) },
    };
  }
  const mine = frontier.root();
  if (!hashEquals(root, mine)) {
    return {
      problem: {
        kind: 'inconsistent_checkpoint',
        message: `checkpoint of size ${size} signs a root that differs from the tree of the records received: history was rewritten`,
        expected: toHex(mine),
        actual: toHex(root),
      },
    };
  }
  return { ok: { size, root, body }, signed: verifier !== undefined };
}

/** The cosignature line for a verified checkpoint. */
export function cosign(cosigner: Cosigner, v: CheckpointVerdict, timeSec: number): string {
  return cosigner.cosign(v.body, timeSec);
}
