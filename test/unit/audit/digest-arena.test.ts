import { hash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DigestArena } from '../../../src/audit/digest-arena.js';
import { nodeHash } from '../../../src/audit/merkle.js';
import { coalesce } from '../../../src/audit/spool.js';

describe('digest arena', () => {
  it('gives the SHA-256 of any input, every byte value included', () => {
    const arena = new DigestArena();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (input) => {
        expect(Buffer.from(arena.digest(input))).toEqual(hash('sha256', input, 'buffer'));
      }),
      { numRuns: 500 },
    );
  });

  it('hashes interior nodes as RFC 9162 does (0x01 || left || right)', () => {
    const arena = new DigestArena();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (l, r) => {
        expect(Buffer.from(arena.node(l, r))).toEqual(nodeHash(l, r));
      }),
    );
  });

  it('never changes a digest it handed out, across many slabs', () => {
    const arena = new DigestArena();
    const inputs = Array.from({ length: 3000 }, (_, i) => Buffer.from(`record ${i}`));
    const got = inputs.map((b) => arena.digest(b));
    expect(got.every((d, i) => Buffer.from(d).equals(hash('sha256', inputs[i], 'buffer')))).toBe(true);
    // Digests of one slab lie back to back: a batch's stored hashes reach the file in few writes.
    expect(coalesce(got).length).toBeLessThan(10);
    expect(Buffer.concat(coalesce(got)).equals(Buffer.concat(got))).toBe(true);
  });
});

describe('coalesce', () => {
  it('joins only views that are back to back in one buffer, keeping every byte in order', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ len: fc.nat({ max: 40 }), gap: fc.nat({ max: 2 }), own: fc.boolean() }), { maxLength: 30 }), (specs) => {
        const slab = Buffer.from(Array.from({ length: 4096 }, (_, i) => i & 0xff));
        const views: Uint8Array[] = [];
        let pos = 0;
        for (const s of specs) {
          pos += s.gap;
          views.push(s.own ? Buffer.from(slab.subarray(pos, pos + s.len)) : slab.subarray(pos, pos + s.len));
          pos += s.len;
        }
        const out = coalesce(views);
        expect(Buffer.concat(out)).toEqual(Buffer.concat(views));
        expect(out.length).toBeLessThanOrEqual(views.length);
      }),
    );
  });
});
