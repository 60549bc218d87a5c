import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyProof,
  EMPTY_ROOT,
  Frontier,
  inclusionProof,
  leafHash,
  MemoryHashStore,
  storedHashCount,
  treeHash,
  verifyConsistency,
  verifyInclusion,
} from '../../../src/audit/merkle.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

// The test tree of the RFC 6962 reference implementations (certificate-transparency merkle_tree_test).
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(unhex);
const CT_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const CT_INCLUSION: { index: number; size: number; path: string[] }[] = [
  { index: 0, size: 1, path: [] },
  {
    index: 0,
    size: 8,
    path: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    path: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  { index: 2, size: 3, path: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    path: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];
const CT_CONSISTENCY: { m: number; n: number; path: string[] }[] = [
  { m: 1, n: 1, path: [] },
  {
    m: 1,
    n: 8,
    path: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    m: 6,
    n: 8,
    path: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    m: 2,
    n: 5,
    path: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'],
  },
];

// ---- a second implementation, written straight from RFC 9162 §2.1's recursive definitions ----
const sha = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const k = (n: number): number => {
  let v = 1;
  while (v * 2 < n) v *= 2;
  return v;
};
function refMth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha();
  if (d.length === 1) return sha(new Uint8Array([0]), d[0]);
  const s = k(d.length);
  return sha(new Uint8Array([1]), refMth(d.slice(0, s)), refMth(d.slice(s)));
}
function refPath(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length <= 1) return [];
  const s = k(d.length);
  return m < s ? [...refPath(m, d.slice(0, s)), refMth(d.slice(s))] : [...refPath(m - s, d.slice(s)), refMth(d.slice(0, s))];
}
function refSubproof(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  const n = d.length;
  if (m === n) return b ? [] : [refMth(d)];
  const s = k(n);
  return m <= s
    ? [...refSubproof(m, d.slice(0, s), b), refMth(d.slice(s))]
    : [...refSubproof(m - s, d.slice(s), false), refMth(d.slice(0, s))];
}
const refProof = (m: number, d: Uint8Array[]): Uint8Array[] => (m === 0 || m === d.length ? [] : refSubproof(m, d, true));

function storeOf(leaves: Uint8Array[]): MemoryHashStore {
  const s = new MemoryHashStore();
  for (const l of leaves) s.append(leafHash(l));
  return s;
}

describe('Merkle tree (RFC 9162)', () => {
  it('gives the empty tree the root SHA-256 of the empty string', () => {
    expect(hex(EMPTY_ROOT)).toBe(CT_ROOTS[0]);
    expect(hex(new Frontier().root())).toBe(CT_ROOTS[0]);
    expect(hex(treeHash(0, new MemoryHashStore().read))).toBe(CT_ROOTS[0]);
  });

  it('reproduces the certificate-transparency test tree roots for sizes 1 to 8, from the frontier and from stored hashes', () => {
    const store = storeOf(CT_LEAVES);
    const f = new Frontier();
    for (let n = 1; n <= 8; n++) {
      f.append(leafHash(CT_LEAVES[n - 1]));
      expect(hex(f.root()), `size ${n}`).toBe(CT_ROOTS[n]);
      expect(hex(treeHash(n, store.read)), `size ${n}`).toBe(CT_ROOTS[n]);
    }
  });

  it('produces and accepts the published inclusion proofs', () => {
    const store = storeOf(CT_LEAVES);
    for (const v of CT_INCLUSION) {
      const proof = inclusionProof(v.index, v.size, store.read);
      expect(proof.map(hex), `leaf ${v.index} of ${v.size}`).toEqual(v.path);
      expect(verifyInclusion(v.index, v.size, leafHash(CT_LEAVES[v.index]), v.path.map(unhex), unhex(CT_ROOTS[v.size]))).toBe(true);
    }
  });

  it('produces and accepts the published consistency proofs', () => {
    const store = storeOf(CT_LEAVES);
    for (const v of CT_CONSISTENCY) {
      const proof = consistencyProof(v.m, v.n, store.read);
      expect(proof.map(hex), `${v.m} -> ${v.n}`).toEqual(v.path);
      expect(verifyConsistency(v.m, v.n, unhex(CT_ROOTS[v.m]), unhex(CT_ROOTS[v.n]), v.path.map(unhex))).toBe(true);
    }
  });

  it('keeps 2n - popcount(n) stored hashes and rebuilds the frontier from them', () => {
    const store = new MemoryHashStore();
    for (let n = 1; n <= 300; n++) {
      store.append(leafHash(new Uint8Array([n & 0xff, n >> 8])));
      expect(store.hashes.length).toBe(storedHashCount(n));
      const rebuilt = Frontier.fromStored(n, store.read);
      expect(hex(rebuilt.root())).toBe(hex(store.frontier.root()));
    }
  });

  it('agrees with the recursive reference on roots, inclusion and consistency proofs for random trees', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 6 }), { minLength: 1, maxLength: 70 }),
        fc.nat(),
        fc.nat(),
        (leaves, a, b) => {
          const store = storeOf(leaves);
          const n = leaves.length;
          const i = a % n;
          const m = b % (n + 1);
          expect(hex(treeHash(n, store.read))).toBe(hex(refMth(leaves)));
          const incl = inclusionProof(i, n, store.read);
          expect(incl.map(hex)).toEqual(refPath(i, leaves).map(hex));
          expect(verifyInclusion(i, n, leafHash(leaves[i]), incl, refMth(leaves))).toBe(true);
          const cons = consistencyProof(m, n, store.read);
          expect(cons.map(hex)).toEqual(refProof(m, leaves).map(hex));
          expect(verifyConsistency(m, n, refMth(leaves.slice(0, m)), refMth(leaves), cons)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects an inclusion proof for another leaf, index, size or with a flipped byte', () => {
    const store = storeOf(CT_LEAVES);
    const root = unhex(CT_ROOTS[8]);
    const proof = inclusionProof(5, 8, store.read);
    const leaf = leafHash(CT_LEAVES[5]);
    expect(verifyInclusion(5, 8, leaf, proof, root)).toBe(true);
    expect(verifyInclusion(4, 8, leaf, proof, root)).toBe(false);
    expect(verifyInclusion(5, 6, leaf, proof, root)).toBe(false);
    expect(verifyInclusion(5, 8, leafHash(CT_LEAVES[4]), proof, root)).toBe(false);
    expect(verifyInclusion(5, 8, leaf, proof.slice(1), root)).toBe(false);
    expect(verifyInclusion(5, 8, leaf, [...proof, proof[0]], root)).toBe(false);
    const bad = proof.map((p) => Uint8Array.from(p));
    bad[1][7] ^= 1;
    expect(verifyInclusion(5, 8, leaf, bad, root)).toBe(false);
    expect(verifyInclusion(8, 8, leaf, proof, root)).toBe(false);
  });

  it('rejects a consistency proof between a tree and a rewritten history', () => {
    const store = storeOf(CT_LEAVES);
    const forked = storeOf([...CT_LEAVES.slice(0, 3), unhex('ff'), ...CT_LEAVES.slice(4)]);
    const proof = consistencyProof(6, 8, store.read);
    expect(verifyConsistency(6, 8, treeHash(6, store.read), treeHash(8, store.read), proof)).toBe(true);
    expect(verifyConsistency(6, 8, treeHash(6, forked.read), treeHash(8, store.read), proof)).toBe(false);
    expect(verifyConsistency(6, 8, treeHash(6, store.read), treeHash(8, forked.read), consistencyProof(6, 8, forked.read))).toBe(false);
    expect(verifyConsistency(6, 8, treeHash(6, store.read), treeHash(8, store.read), proof.slice(0, 2))).toBe(false);
    expect(verifyConsistency(9, 8, treeHash(6, store.read), treeHash(8, store.read), proof)).toBe(false);
  });

  it('refuses to prove a leaf outside the tree', () => {
    const store = storeOf(CT_LEAVES);
    expect(() => inclusionProof(8, 8, store.read)).toThrow(/not in a tree of size 8/);
    expect(() => consistencyProof(9, 8, store.read)).toThrow(/larger than/);
  });
});
