import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModbusFrameError, decodeRequest, encodeRequest, encodeResponse, type Request } from '../../../protocols/modbus/codec.js';
import { handleRequest } from '../../../src/sim/modbus-handler.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { PlcTables } from '../../../src/sim/tables.js';

const FIXTURE = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');
const plant = parsePlant(readFileSync(FIXTURE, 'utf8'), FIXTURE);

describe('simulated PLC request handling', () => {
  it('answers every request the codec accepts with a response the codec can encode', () => {
    const tables = new PlcTables(plant.plcs[0]);
    const fcs = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43];
    fc.assert(
      fc.property(fc.constantFrom(...fcs), fc.uint8Array({ minLength: 0, maxLength: 40 }), (code, body) => {
        let req: Request;
        try {
          req = decodeRequest(Buffer.from([code, ...body]));
        } catch (e) {
          expect(e).toBeInstanceOf(ModbusFrameError);
          return;
        }
        const pdu = encodeResponse(handleRequest(tables, req));
        expect(pdu[0] & 0x7f).toBe(code);
      }),
      { numRuns: 5000 },
    );
  });

  it('answers reads and writes that touch only mapped addresses, and exception 2 otherwise', () => {
    const t = new PlcTables(plant.plcs[0]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 4 }), (address, quantity) => {
        const res = handleRequest(t, { fc: 3, address, quantity });
        const mapped = address + quantity <= 2;
        expect('exception' in res ? res.exception : 0).toBe(mapped ? 0 : 2);
      }),
    );
  });

  it('keeps the mask-write formula of the spec for any register value and masks', () => {
    const t = new PlcTables(plant.plcs[0]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (v, andMask, orMask) => {
        t.holding[1] = v;
        handleRequest(t, decodeRequest(encodeRequest({ fc: 22, address: 1, andMask, orMask })));
        expect(t.holding[1]).toBe(((v & andMask) | (orMask & ~andMask)) & 0xffff);
      }),
    );
  });
});
