// SHA-256 digests for the log's append path (leaf hashes and Merkle interior nodes, RFC 9162
// §2.1.1), laid out back to back in shared slabs instead of one Buffer each. Every digest made
// here is a stored hash of the tree, made in stored-hash order; drain() hands the ones made since
// the last drain to the log's batch as a few runs (tree-store.ts writes them as they are).
// Why: `crypto.hash(..., 'buffer')` hands back a Buffer with its own ArrayBuffer and backing store
// per call, and the append path makes about two per record; each costs an external allocation and
// GC work. A one-byte (latin1) string digest is an ordinary heap string, and copying its 32 char
// codes into a slab is cheap. The views come out in the order the tree stores them (a leaf, then
// the nodes it completes), so a batch's stored hashes are contiguous and reach tree.hashes in a
// few iovecs. A slab is replaced when full, never rewritten; views keep theirs alive.
// Pure: no I/O. The digests are SHA-256, byte for byte what `crypto.hash(..., 'buffer')` returns.
import { hash } from 'node:crypto';
import { HASH_BYTES } from './hash.js';
import { SlabRuns } from './slab-runs.js';

/** 512 digests per slab: the Merkle frontier pins at most one slab per level it keeps. */
const SLAB_BYTES = 16 * 1024;

export class DigestArena extends SlabRuns {
  /** Scratch 0x01 ‖ left ‖ right: appends run one at a time on the event loop. */
  private readonly nodeInput = Buffer.alloc(1 + 2 * HASH_BYTES, 0x01);

  constructor() {
    super(SLAB_BYTES);
  }

  /** SHA-256 of `input`. */
  digest(input: Uint8Array): Uint8Array {
    // 'binary' (latin1) maps each byte to one char code 0-255: lossless, and no ArrayBuffer per digest.
    const s = hash('sha256', input, 'binary');
    const { slab, off } = this.take(HASH_BYTES);
    for (let i = 0; i < HASH_BYTES; i++) slab[off + i] = s.charCodeAt(i);
    return new Uint8Array(slab.buffer, slab.byteOffset + off, HASH_BYTES);
  }

  /** RFC 9162 interior node hash SHA-256(0x01 ‖ left ‖ right). */
  readonly node = (left: Uint8Array, right: Uint8Array): Uint8Array => {
    this.nodeInput.set(left, 1);
    this.nodeInput.set(right, 1 + HASH_BYTES);
    return this.digest(this.nodeInput);
  };
}
