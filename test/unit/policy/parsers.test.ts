import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseDurationSec } from '../../../src/policy/duration.js';
import { pointGlob, workloadMatcher } from '../../../src/core/glob.js';
import { decodePoint } from '../../../src/assets/values.js';
import { BundleError, verifyBundle } from '../../../src/policy/bundle.js';

describe('durations in policy sources', () => {
  it('reads s, m, h and d', () => {
    expect([parseDurationSec('90s'), parseDurationSec('15m'), parseDurationSec('12h'), parseDurationSec('30d')]).toEqual([90, 900, 43200, 2592000]);
  });
  it('refuses anything else, including zero and negatives', () => {
    for (const bad of ['', '0m', '-1m', '15', 'm', '1.5h', '15 m', '1w', '1h30m']) expect(parseDurationSec(bad)).toBeNull();
  });
  it('never throws and only returns positive whole seconds (property)', () => {
    fc.assert(fc.property(fc.string(), (s) => {
      const v = parseDurationSec(s);
      expect(v === null || (Number.isInteger(v) && v > 0)).toBe(true);
    }));
  });
});

describe('globs', () => {
  it("matches one SPIFFE path segment with '*' and any depth with '**'", () => {
    const one = workloadMatcher('spiffe://plant.example/agent/*');
    expect(one('spiffe://plant.example/agent/optimizer')).toBe(true);
    expect(one('spiffe://plant.example/agent/a/b')).toBe(false);
    expect(workloadMatcher('spiffe://plant.example/**')('spiffe://plant.example/agent/a/b')).toBe(true);
    expect(workloadMatcher('spiffe://plant.example/agent/x')('spiffe://plant.example/agent/xy')).toBe(false);
  });
  it("matches point names across dots with '*' and treats other characters literally", () => {
    expect(pointGlob('tank1.*').test('tank1.level')).toBe(true);
    expect(pointGlob('*').test('tank1.level')).toBe(true);
    expect(pointGlob('tank1.level').test('tank1xlevel')).toBe(false);
  });
});

describe('decoding written values', () => {
  it('round-trips int16, uint32 and float32 in both word orders (property)', () => {
    fc.assert(fc.property(fc.integer({ min: -32768, max: 32767 }), (v) => {
      expect(decodePoint({ table: 'holding', address: 0, type: 'int16' }, v & 0xffff, 0)).toBe(v);
    }));
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.boolean(), (v, little) => {
      const hi = Math.floor(v / 65536);
      const lo = v % 65536;
      const def = { table: 'holding' as const, address: 0, type: 'uint32' as const, word_order: little ? ('little' as const) : ('big' as const) };
      expect(decodePoint(def, little ? lo : hi, little ? hi : lo)).toBe(v);
    }));
    fc.assert(fc.property(fc.float({ noNaN: true }), (f) => {
      const b = Buffer.alloc(4);
      b.writeFloatBE(f);
      // === rather than toBe: the offset makes -0 into +0, which is the same engineering value.
      expect(decodePoint({ table: 'holding', address: 0, type: 'float32' }, b.readUInt16BE(0), b.readUInt16BE(2)) === Math.fround(f)).toBe(true);
    }));
  });
  it('applies scale and offset, and cannot decode half a 32-bit value', () => {
    expect(decodePoint({ table: 'holding', address: 0, type: 'uint16', scale: 0.5, offset: -10 }, 100, 0)).toBe(40);
    expect(decodePoint({ table: 'holding', address: 0, type: 'int32' }, 1, NaN)).toBeNaN();
  });
});

describe('bundle verification on hostile input', () => {
  it('answers any string with a BundleError, never another exception (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join('.'))), async (s) => {
        await expect(verifyBundle(s, [], { now: 0 })).rejects.toBeInstanceOf(BundleError);
      }),
      { numRuns: 200 },
    );
  });
});
