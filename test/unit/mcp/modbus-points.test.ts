// The MCP front writes a point as the Modbus request a Modbus agent would send: its encoding must
// be the exact inverse of the gateway's own decoding (src/policy/values.ts), which is what policy
// judges, and a value the point's type cannot hold must be refused, never wrapped.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PointDef } from '../../../src/policy/payload.js';
import { decodePoint } from '../../../src/assets/values.js';
import { readRequest, typeRange, valueFromResponse, writeRequest } from '../../../protocols/mcp/modbus-points.js';

const numericPoint: fc.Arbitrary<PointDef> = fc.record({
  table: fc.constant('holding' as const),
  address: fc.nat({ max: 60000 }),
  type: fc.constantFrom('int16', 'uint16', 'int32', 'uint32', 'float32') as fc.Arbitrary<PointDef['type']>,
  word_order: fc.constantFrom('big', 'little') as fc.Arbitrary<'big' | 'little'>,
  scale: fc.constantFrom(1, 0.1, 0.01, 2, 0.5),
  offset: fc.constantFrom(0, -40, 100),
});

function decoded(def: PointDef, value: number): number | string {
  const r = writeRequest(def, value);
  if ('refused' in r) return r.refused;
  if (r.fc === 6) return decodePoint(def, r.value, 0);
  if (r.fc === 16) return decodePoint(def, r.values[0]!, r.values[1]!);
  if (r.fc === 5) return r.value ? 1 : 0;
  throw new Error(`unexpected fc ${r.fc}`);
}

describe('MCP point writes as Modbus requests', () => {
  it('decode to the written value, to the point\'s resolution, for every value its type can hold', () => {
    fc.assert(
      fc.property(numericPoint, fc.double({ min: 0, max: 1, noNaN: true }), (def, t) => {
        const [lo, hi] = typeRange(def);
        const value = def.type === 'float32' ? Math.fround(t * 1000) * (def.scale ?? 1) + (def.offset ?? 0) : lo + t * (hi - lo);
        const back = decoded(def, value);
        expect(typeof back).toBe('number');
        const resolution = def.type === 'float32' ? Math.abs(value) * 1e-6 + 1e-6 : Math.abs(def.scale ?? 1) / 2 + 1e-9;
        expect(Math.abs((back as number) - value)).toBeLessThanOrEqual(resolution);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuse a value outside the type\'s range with VALUE_OUT_OF_BOUNDS instead of wrapping it', () => {
    fc.assert(
      fc.property(numericPoint.filter((d) => d.type !== 'float32'), fc.double({ min: 1.01, max: 1e6, noNaN: true }), (def, over) => {
        const [lo, hi] = typeRange(def);
        const span = Math.max(hi - lo, 1);
        expect(decoded(def, hi + span * (over - 1) + Math.abs(def.scale ?? 1))).toBe('VALUE_OUT_OF_BOUNDS');
        expect(decoded(def, lo - span * (over - 1) - Math.abs(def.scale ?? 1))).toBe('VALUE_OUT_OF_BOUNDS');
      }),
    );
    expect(decoded({ table: 'holding', address: 0, type: 'uint16' }, Number.NaN)).toBe('VALUE_OUT_OF_BOUNDS');
    expect(decoded({ table: 'holding', address: 0, type: 'float32' }, 1e300)).toBe('VALUE_OUT_OF_BOUNDS');
  });

  it('write coils with FC 5, bool holding registers 0/1, and refuse anything else for a bool', () => {
    expect(writeRequest({ table: 'coil', address: 3, type: 'bool' }, 1)).toEqual({ fc: 5, address: 3, value: true });
    expect(writeRequest({ table: 'holding', address: 3, type: 'bool' }, 0)).toEqual({ fc: 6, address: 3, value: 0 });
    expect(writeRequest({ table: 'coil', address: 3, type: 'bool' }, 2)).toMatchObject({ refused: 'VALUE_OUT_OF_BOUNDS' });
  });

  it('refuse writes to input registers and discrete inputs (Modbus cannot write them)', () => {
    expect(writeRequest({ table: 'input', address: 0, type: 'uint16' }, 1)).toMatchObject({ refused: 'UNSUPPORTED_FUNCTION' });
    expect(writeRequest({ table: 'discrete', address: 0, type: 'bool' }, 1)).toMatchObject({ refused: 'UNSUPPORTED_FUNCTION' });
  });

  it('read a scaled register at the point\'s resolution (538 × 0.1 reads 53.8)', () => {
    const def: PointDef = { table: 'input', address: 0, type: 'uint16', scale: 0.1 };
    expect(readRequest(def)).toEqual({ fc: 4, address: 0, quantity: 1 });
    expect(valueFromResponse(def, { fc: 4, values: [538] })).toBe(53.8);
    expect(valueFromResponse({ table: 'holding', address: 0, type: 'int16', scale: 0.25, offset: -40 }, { fc: 3, values: [0xffff] })).toBe(-40.25);
    expect(valueFromResponse({ table: 'coil', address: 0, type: 'bool' }, { fc: 1, values: [true] })).toBe(1);
  });
});
