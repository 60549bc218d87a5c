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

/** 512 digests per slab: the Merkle frontier pins at most one slab per level it keeps. */
const SLAB_BYTES = 16 * 1024;

export class DigestArena {
  private slab: Buffer = Buffer.alloc(0);
  private pos = 0;
  private runStart = 0;
  private runs: Buffer[] = [];
  /** Scratch 0x01 ‖ left ‖ right: appends run one at a time on the event loop. */
  private readonly nodeInput = Buffer.alloc(1 + 2 * HASH_BYTES, 0x01);

  /** SHA-256 of `input`. */
  digest(input: Uint8Array): Uint8Array {
    // 'binary' (latin1) maps each byte to one char code 0-255: lossless, and no ArrayBuffer per digest.
    const s = hash('sha256', input, 'binary');
    if (this.slab.length - this.pos < HASH_BYTES) {
      this.closeRun();
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.pos = 0;
      this.runStart = 0;
    }
    const slab = this.slab;
    const off = this.pos;
    for (let i = 0; i < HASH_BYTES; i++) slab[off + i] = s.charCodeAt(i);
    this.pos = off + HASH_BYTES;
    return new Uint8Array(slab.buffer, slab.byteOffset + off, HASH_BYTES);
  }

  /** The digests made since the last drain, in order, back to back in a few runs. */
  drain(): Buffer[] {
    this.closeRun();
    const runs = this.runs;
    this.runs = [];
    return runs;
  }

  private closeRun(): void {
    if (this.pos > this.runStart) this.runs.push(this.slab.subarray(this.runStart, this.pos));
    this.runStart = this.pos;
  }

  /** RFC 9162 interior node hash SHA-256(0x01 ‖ left ‖ right). */
  readonly node = (left: Uint8Array, right: Uint8Array): Uint8Array => {
    this.nodeInput.set(left, 1);
    this.nodeInput.set(right, 1 + HASH_BYTES);
    return this.digest(this.nodeInput);
  };
}
