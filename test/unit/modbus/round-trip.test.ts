import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  validateResponse,
  MAX_PDU_LENGTH,
} from '../../../protocols/modbus/codec.js';
import { exchangeArb, requestArb } from './arbitraries.js';

describe('request PDUs round-trip', () => {
  it('decodes every valid request back to exactly what was encoded', () => {
    fc.assert(
      fc.property(requestArb, (req) => {
        const bytes = encodeRequest(req);
        expect(bytes.length).toBeLessThanOrEqual(MAX_PDU_LENGTH);
        expect(bytes[0]).toBe(req.fc);
        expect(decodeRequest(bytes)).toEqual(req);
      }),
      { numRuns: 2000 },
    );
  });

  it('re-encodes a decoded request to the same bytes', () => {
    fc.assert(
      fc.property(requestArb, (req) => {
        const bytes = encodeRequest(req);
        expect(encodeRequest(decodeRequest(bytes)).equals(bytes)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('hands out data buffers that do not alias the input PDU', () => {
    const pdu = Buffer.from([8, 0, 0, 0xa5, 0x37]);
    const req = decodeRequest(pdu);
    pdu[3] = 0;
    expect(req).toEqual({ fc: 8, subFunction: 0, data: Buffer.from([0xa5, 0x37]) });
  });
});

describe('response PDUs round-trip against their request', () => {
  it('decodes every valid response (normal and exception) back to what was encoded', () => {
    fc.assert(
      fc.property(exchangeArb, ({ request, response }) => {
        const bytes = encodeResponse(response);
        expect(bytes.length).toBeLessThanOrEqual(MAX_PDU_LENGTH);
        validateResponse(request, bytes);
        expect(decodeResponse(request, bytes)).toEqual(response);
      }),
      { numRuns: 2000 },
    );
  });

  it('encodes an exception with the 0x80 bit whether or not the caller set it', () => {
    expect([...encodeResponse({ fc: 3, exception: 2 })]).toEqual([0x83, 0x02]);
    expect([...encodeResponse({ fc: 0x83, exception: 2 })]).toEqual([0x83, 0x02]);
  });
});
