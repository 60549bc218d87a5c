import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PlantgateError } from '../../../src/core/errors.js';
import type { PointDef, PointType } from '../../../src/assets/plant.js';
import { engineeringToRaw, engineeringToWords, rawToWords, wordsToEngineering, wordsToRaw } from '../../../src/assets/points.js';
import { PlcTables } from '../../../src/sim/tables.js';

function point(type: PointType, extra: Partial<PointDef> = {}): PointDef {
  const words = type === 'int32' || type === 'uint32' || type === 'float32' ? 2 : 1;
  return {
    name: 'p',
    table: type === 'bool' ? 'coil' : 'holding',
    address: 0,
    type,
    words,
    wordOrder: 'big',
    scale: 1,
    offset: 0,
    source: { line: 1, column: 1 },
    ...extra,
  };
}

describe('point value conversion', () => {
  it('puts the high word first for big word order and last for little', () => {
    expect(engineeringToWords(point('uint32'), 0x12345678)).toEqual([0x1234, 0x5678]);
    expect(engineeringToWords(point('uint32', { wordOrder: 'little' }), 0x12345678)).toEqual([0x5678, 0x1234]);
    expect(engineeringToWords(point('float32'), 1.5)).toEqual([0x3fc0, 0x0000]);
  });

  it('reads signed registers as two’s complement', () => {
    expect(wordsToRaw(point('int16'), [0xffff])).toBe(-1);
    expect(wordsToRaw(point('int32'), [0xffff, 0xfffe])).toBe(-2);
  });

  it('applies scale and offset: engineering = raw * scale + offset', () => {
    const p = point('int16', { scale: 0.5, offset: -10 });
    expect(engineeringToRaw(p, 0)).toBe(20);
    expect(wordsToEngineering(p, [20])).toBe(0);
  });

  it('refuses a value the point type cannot hold instead of wrapping', () => {
    const p = point('uint16', { scale: 0.1 });
    expect(() => engineeringToRaw(p, 6553.6)).toThrow(PlantgateError);
    expect(() => engineeringToRaw(p, -0.1)).toThrow(/outside uint16 0\.\.65535/);
    expect(() => engineeringToRaw(point('bool'), 2)).toThrow(PlantgateError);
    expect(() => engineeringToRaw(point('int16'), Number.NaN)).toThrow(PlantgateError);
  });

  it('round-trips every integer raw value of every integer type through words', () => {
    const cases: [PointType, number, number][] = [
      ['uint16', 0, 0xffff],
      ['int16', -0x8000, 0x7fff],
      ['uint32', 0, 0xffffffff],
      ['int32', -0x80000000, 0x7fffffff],
    ];
    for (const [type, min, max] of cases) {
      fc.assert(
        fc.property(fc.integer({ min, max }), fc.constantFrom('big', 'little'), (raw, wordOrder) => {
          const p = point(type, { wordOrder: wordOrder as 'big' | 'little' });
          const words = [0, 0];
          rawToWords(p, raw, words);
          expect(words.every((w) => w >= 0 && w <= 0xffff)).toBe(true);
          expect(wordsToRaw(p, words)).toBe(raw);
        }),
      );
    }
  });

  it('round-trips float32 values exactly as float32 stores them', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (v) => {
        const p = point('float32');
        // -0 and +0 are the same engineering value (offset 0 is added).
        expect(wordsToEngineering(p, engineeringToWords(p, v)) === Math.fround(v)).toBe(true);
      }),
    );
  });

  it('decodes any pair of register words without throwing', () => {
    fc.assert(
      fc.property(fc.constantFrom<PointType>('int16', 'uint16', 'int32', 'uint32', 'float32'), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (type, a, b) => {
        wordsToEngineering(point(type, { scale: 0.1 }), [a, b]);
      }),
    );
  });
});

describe('PLC data tables', () => {
  const plc = {
    id: 'plc1',
    unitId: 1,
    source: { line: 1, column: 1 },
    points: [point('uint16', { name: 'a', address: 10 }), point('float32', { name: 'f', address: 11 }), point('bool', { name: 'c', address: 3 })],
    registers: [],
    openMap: false,
  };

  it('covers a range only when every address in it belongs to a point', () => {
    const t = new PlcTables(plc);
    expect(t.covers('holding', 10, 3)).toBe(true);
    expect(t.covers('holding', 11, 1)).toBe(true);
    expect(t.covers('holding', 9, 2)).toBe(false);
    expect(t.covers('holding', 10, 4)).toBe(false);
    expect(t.covers('input', 10, 1)).toBe(false);
    expect(t.covers('coil', 3, 1)).toBe(true);
    expect(t.covers('coil', 3, 0)).toBe(false);
    expect(t.covers('coil', 65535, 2)).toBe(false);
  });

  it('stores points as raw words at their addresses', () => {
    const t = new PlcTables(plc);
    t.write(t.point('f')!, 1.5);
    expect(Array.from(t.holding.subarray(11, 13))).toEqual([0x3fc0, 0]);
    t.write(t.point('c')!, 1);
    expect(t.coils[3]).toBe(1);
    expect(t.read(t.point('f')!)).toBe(1.5);
  });
});
