// RFC 9162 (RFC 6962) Merkle tree algebra for the audit log, in the shape of Go's sumdb/tlog:
// leaves hashed SHA-256(0x00 || bytes), interior nodes SHA-256(0x01 || left || right); the tree is
// kept as "stored hashes" (the hash of every complete, aligned subtree, in the order they become
// complete), so appending costs O(log n) and every proof is computed from stored hashes without
// rereading a record. Pure: no I/O. Readers of stored hashes are passed in.
//
// Terms: a subtree (level L, index k) covers leaves [k * 2^L, (k + 1) * 2^L). The frontier is the
// list of complete subtrees along the right edge of a tree of size n (one per set bit of n, largest
// first); it is all that appending needs.
import { createHash, hash } from 'node:crypto';
import { HASH_BYTES, leafHash } from './hash.js';

export { leafHash };

/** Scratch input 0x01 ‖ left ‖ right, reused: appends run one at a time on the event loop. */
const NODE_INPUT = Buffer.alloc(65, 0x01);

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  // One-shot hashing: no Hash object per interior node (several per appended leaf).
  if (left.length !== HASH_BYTES || right.length !== HASH_BYTES) throw new MerkleError('interior nodes hash two 32-byte children');
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 33);
  return hash('sha256', NODE_INPUT, 'buffer');
}

/** MTH({}) = SHA-256() (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

export class MerkleError extends Error {
  override readonly name = 'MerkleError';
}

function checkSize(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new MerkleError(`${name} must be a non-negative integer, got ${v}`);
}

/**
 * Position of the stored hash of subtree (level, k) in the stored-hash sequence. Leaf n's hash is
 * followed by the hashes of the subtrees that leaf n completes, lowest first (as tlog stores them).
 */
export function storedHashIndex(level: number, k: number): number {
  // The subtree (level, k) is completed by leaf n = (k + 1) * 2^level - 1. The stored hashes before
  // leaf n's own are, for every level l, one per complete subtree of that level below n:
  // sum over l of floor(n / 2^l). Leaf n's hash comes next, then one per level it completes.
  const n = (k + 1) * 2 ** level - 1;
  let before = 0;
  for (let m = n; m > 0; m = Math.floor(m / 2)) before += m;
  return before + level;
}

/** Number of stored hashes for a tree of n leaves: 2n - popcount(n). */
export function storedHashCount(n: number): number {
  checkSize('tree size', n);
  let pop = 0;
  for (let m = n; m > 0; m = Math.floor(m / 2)) pop += m % 2;
  return 2 * n - pop;
}

/** Largest power of two strictly less than n (n >= 2), RFC 9162's k. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The right edge of a tree: appending a leaf returns the stored hashes it creates (its leaf hash,
 * then the hash of each subtree it completes), which the caller persists in that order.
 */
export class Frontier {
  private hashes: Uint8Array[];
  private n: number;

  constructor(size = 0, hashes: Uint8Array[] = []) {
    checkSize('tree size', size);
    let bits = 0;
    for (let m = size; m > 0; m = Math.floor(m / 2)) bits += m % 2;
    if (hashes.length !== bits) throw new MerkleError(`a frontier of size ${size} has ${bits} hashes, got ${hashes.length}`);
    this.n = size;
    this.hashes = hashes.slice();
  }

  /** Rebuilds the frontier of size n from stored hashes. */
  static fromStored(n: number, read: StoredHashReader): Frontier {
    const idx = frontierIndexes(n);
    const got = read(idx.map((s) => s.index));
    return new Frontier(n, got);
  }

  get size(): number {
    return this.n;
  }

  /** The complete subtree hashes along the right edge, largest (leftmost) first. */
  get edge(): readonly Uint8Array[] {
    return this.hashes;
  }

  /** Appends a leaf hash; returns the new stored hashes (leaf first, then completed subtrees). */
  append(leaf: Uint8Array): Uint8Array[] {
    const created: Uint8Array[] = [leaf];
    let h: Uint8Array = leaf;
    // Each trailing 1 bit of n is a complete subtree that merges with the new one.
    for (let m = this.n; m % 2 === 1; m = Math.floor(m / 2)) {
      h = nodeHash(this.hashes.pop()!, h);
      created.push(h);
    }
    this.hashes.push(h);
    this.n++;
    return created;
  }

  /**
   * Same as append for a caller that keeps the stored hashes itself: interior nodes are hashed by
   * `node` (RFC 9162's node hash; the log's digest arena records each one, in stored order) and
   * nothing is returned. One interior hash per leaf on average.
   */
  appendWith(leaf: Uint8Array, node: (left: Uint8Array, right: Uint8Array) => Uint8Array): void {
    let h: Uint8Array = leaf;
    for (let m = this.n; m % 2 === 1; m = Math.floor(m / 2)) h = node(this.hashes.pop()!, h);
    this.hashes.push(h);
    this.n++;
  }

  /** MTH of the tree so far. */
  root(): Buffer {
    if (this.hashes.length === 0) return EMPTY_ROOT;
    let h = this.hashes[this.hashes.length - 1];
    for (let i = this.hashes.length - 2; i >= 0; i--) h = nodeHash(this.hashes[i], h);
    return Buffer.from(h);
  }

  clone(): Frontier {
    return new Frontier(this.n, this.hashes);
  }
}

/** Synchronous access to stored hashes by index (an in-memory array, or a hash file). */
export type StoredHashReader = (indexes: number[]) => Uint8Array[];

/** The stored-hash indexes of the frontier of size n, largest subtree first. */
function frontierIndexes(n: number): { level: number; k: number; index: number }[] {
  const out: { level: number; k: number; index: number }[] = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const w = 2 ** level;
    if (n - start >= w) {
      const k = start / w;
      out.push({ level, k, index: storedHashIndex(level, k) });
      start += w;
    }
  }
  return out;
}

/**
 * The aligned complete subtrees that make up leaves [lo, hi) when lo is a multiple of the largest
 * power of two <= hi - lo (true for every range RFC 9162's recursion visits), largest first.
 */
function rangePieces(lo: number, hi: number): number[] {
  const idx: number[] = [];
  while (lo < hi) {
    let w = 1;
    while (w * 2 <= hi - lo && lo % (w * 2) === 0) w *= 2;
    idx.push(storedHashIndex(Math.log2(w), lo / w));
    lo += w;
  }
  return idx;
}

/** MTH(D[lo:hi]) from stored hashes. */
function rangeHash(lo: number, hi: number, read: StoredHashReader): Uint8Array {
  const hashes = read(rangePieces(lo, hi));
  let h = hashes[hashes.length - 1];
  for (let i = hashes.length - 2; i >= 0; i--) h = nodeHash(hashes[i], h);
  return h;
}

/** Root hash of the tree of size n (n <= stored leaves). */
export function treeHash(n: number, read: StoredHashReader): Uint8Array {
  checkSize('tree size', n);
  return n === 0 ? EMPTY_ROOT : rangeHash(0, n, read);
}

/** Inclusion proof of leaf `index` in the tree of size n: RFC 9162 §2.1.3.1 PATH(m, D[n]). */
export function inclusionProof(index: number, n: number, read: StoredHashReader): Uint8Array[] {
  checkSize('index', index);
  checkSize('tree size', n);
  if (index >= n) throw new MerkleError(`leaf ${index} is not in a tree of size ${n}`);
  const proof: Uint8Array[] = [];
  const path = (m: number, lo: number, hi: number): void => {
    if (hi - lo <= 1) return;
    const k = splitPoint(hi - lo);
    if (m < k) {
      path(m, lo, lo + k);
      proof.push(rangeHash(lo + k, hi, read));
    } else {
      path(m - k, lo + k, hi);
      proof.push(rangeHash(lo, lo + k, read));
    }
  };
  path(index, 0, n);
  return proof;
}

/** Consistency proof from size m to size n: RFC 9162 §2.1.4.1 PROOF(m, D[n]). */
export function consistencyProof(m: number, n: number, read: StoredHashReader): Uint8Array[] {
  checkSize('old size', m);
  checkSize('new size', n);
  if (m > n) throw new MerkleError(`old size ${m} is larger than new size ${n}`);
  if (m === 0 || m === n) return [];
  const proof: Uint8Array[] = [];
  const sub = (m: number, lo: number, hi: number, b: boolean): void => {
    const size = hi - lo;
    if (m === size) {
      if (!b) proof.push(rangeHash(lo, hi, read));
      return;
    }
    const k = splitPoint(size);
    if (m <= k) {
      sub(m, lo, lo + k, b);
      proof.push(rangeHash(lo + k, hi, read));
    } else {
      sub(m - k, lo + k, hi, false);
      proof.push(rangeHash(lo, lo + k, read));
    }
  };
  sub(m, 0, n, true);
  return proof;
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or undefined when the proof has the
 * wrong shape. Written from the RFC's verification algorithm, independently of inclusionProof.
 */
export function rootFromInclusionProof(index: number, n: number, leaf: Uint8Array, proof: Uint8Array[]): Uint8Array | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(n) || index < 0 || index >= n) return undefined;
  let fn = index;
  let sn = n - 1;
  let r: Uint8Array = leaf;
  for (const p of proof) {
    if (p.length !== HASH_BYTES || sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

export function verifyInclusion(index: number, n: number, leaf: Uint8Array, proof: Uint8Array[], root: Uint8Array): boolean {
  const r = rootFromInclusionProof(index, n, leaf, proof);
  return r !== undefined && eq(r, root);
}

/** RFC 9162 §2.1.4.2: does `proof` show that the tree (n, newRoot) extends (m, oldRoot)? */
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: Uint8Array[]): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return false;
  if (m === n) return proof.length === 0 && eq(oldRoot, newRoot);
  if (m === 0) return proof.length === 0;
  if (proof.some((p) => p.length !== HASH_BYTES)) return false;
  // When m is a power of two the old tree is a complete subtree of the new one and the proof
  // omits its root: the verifier starts from oldRoot.
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : proof;
  if (path.length === 0) return false;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Uint8Array = path[0];
  let sr: Uint8Array = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(fr, oldRoot) && eq(sr, newRoot);
}

function isPowerOfTwo(v: number): boolean {
  return v > 0 && 2 ** Math.round(Math.log2(v)) === v;
}

/** Stored hashes held in memory: for tests, and for tools that load a hash file whole. */
export class MemoryHashStore {
  readonly hashes: Uint8Array[] = [];
  readonly frontier = new Frontier();
  append(leaf: Uint8Array): void {
    for (const h of this.frontier.append(leaf)) this.hashes.push(h);
  }
  readonly read: StoredHashReader = (indexes) =>
    indexes.map((i) => {
      const h = this.hashes[i];
      if (h === undefined) throw new MerkleError(`stored hash ${i} is not available (have ${this.hashes.length})`);
      return h;
    });
}
