import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ModbusFrameError,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  exceptionPdu,
  validateResponse,
  type Request,
} from '../../../protocols/modbus/codec.js';
import { requestArb } from './arbitraries.js';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** The ModbusFrameError `fn` throws (fails the test if it throws anything else, or nothing). */
function caught(fn: () => unknown): ModbusFrameError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ModbusFrameError);
    return err as ModbusFrameError;
  }
  throw new Error('expected a ModbusFrameError, nothing was thrown');
}

describe('decodeRequest refuses malformed requests with a precise code', () => {
  it.each([
    ['FC3 quantity 0', '03 0000 0000', 'quantity 0 out of range 1..125'],
    ['FC3 quantity 126', '03 0000 007e', 'quantity 126 out of range 1..125'],
    ['FC1 quantity 2001', '01 0000 07d1', 'quantity 2001 out of range 1..2000'],
    ['FC15 quantity 1969', '0f 0000 07b1 f7' + 'ff'.repeat(247), 'quantity 1969 out of range 1..1968'],
    ['FC16 quantity 124', '10 0000 007c f8 0000', 'quantity 124 out of range 1..123'],
    ['FC16 byte count mismatch', '10 0001 0002 02 000a', 'byte count 2 does not match quantity 2 (4)'],
    ['FC16 values shorter than the byte count', '10 0001 0002 04 000a', 'PDU is 8 bytes, byte count 4 needs 10'],
    ['FC15 byte count mismatch', '0f 0013 000a 01 cd', 'byte count 1 does not match quantity 10 (2)'],
    ['FC23 write quantity 122', '17 0000 0001 0000 007a f4 0000', 'write quantity 122 out of range 1..121'],
    ['FC23 read quantity 126', '17 0000 007e 0000 0001 02 0000', 'read quantity 126 out of range 1..125'],
    ['FC5 value 0x1234', '05 00ac 1234', 'coil value 0x1234 must be 0xFF00 (on) or 0x0000 (off)'],
    ['FC3 with a trailing byte', '03 006b 0003 00', 'PDU is 6 bytes, must be exactly 5'],
    ['FC6 truncated', '06 0001', 'PDU is 3 bytes, must be exactly 5'],
    ['FC7 with data', '07 00', 'PDU is 2 bytes, must be exactly 1'],
    ['FC8 odd data length', '08 0000 a5', 'must be 3 + a non-zero even number'],
    ['FC8 restart option 0x1234', '08 0001 1234', 'restart option 0x1234'],
    ['FC20 reference type 5', '14 07 05 0004 0001 0002', 'file reference type 5 must be 6'],
    ['FC20 byte count not a multiple of 7', '14 08 06 0004 0001 0002 00', 'multiple of 7'],
    ['FC20 record number 10000', '14 07 06 0004 2710 0002', 'record number 10000 exceeds 9999'],
    ['FC20 answer too long for a PDU', '14 07 06 0004 0001 007e', 'the response would be 256 bytes'],
    ['FC21 record data runs past the PDU', '15 09 06 0004 0007 0003 06af', 'runs past the PDU'],
    ['FC43/14 Read Device ID code 5', '2b 0e 05 00', 'Read Device ID code 5 must be 1..4'],
    ['an empty PDU', '', 'empty PDU'],
  ])('%s → BAD_PDU', (_name, bytes, message) => {
    const err = caught(() => decodeRequest(hex(bytes)));
    expect(err.code).toBe('BAD_PDU');
    expect(err.reason).toBe('PROTOCOL_VIOLATION');
    expect(err.message).toContain(message);
  });

  it('answers a range running past address 65535 with BAD_PDU and exception 0x02', () => {
    const err = caught(() => decodeRequest(hex('03 ffff 0002')));
    expect(err.code).toBe('BAD_PDU');
    expect(err.exceptionCode).toBe(0x02);
    expect(decodeRequest(hex('03 ffff 0001'))).toEqual({ fc: 3, address: 0xffff, quantity: 1 });
  });

  it('answers a bad quantity with exception 0x03 (illegal data value)', () => {
    expect(caught(() => decodeRequest(hex('03 0000 007e'))).exceptionCode).toBe(0x03);
  });

  it.each([
    ['FC 0x41 (65)', '41 0000'],
    ['FC 0', '00'],
    ['FC 0x83: an exception code in a request', '83 02'],
    ['FC 9 (unassigned)', '09 0000'],
    ['FC43 MEI type 99', '2b 63 00'],
    ['FC8 reserved sub-function 5', '08 0005 0000'],
  ])('%s → UNSUPPORTED_FUNCTION with exception 0x01', (_name, bytes) => {
    const err = caught(() => decodeRequest(hex(bytes)));
    expect(err.code).toBe('UNSUPPORTED_FUNCTION');
    expect(err.reason).toBe('UNSUPPORTED_FUNCTION');
    expect(err.exceptionCode).toBe(0x01);
    expect(err.functionCode).toBe(hex(bytes)[0]);
  });

  it('refuses a PDU over 253 bytes with PDU_TOO_LONG', () => {
    expect(caught(() => decodeRequest(Buffer.alloc(254, 0x10))).code).toBe('PDU_TOO_LONG');
  });
});

describe('encodeRequest refuses what decodeRequest would refuse', () => {
  it.each<[string, Request]>([
    ['FC3 quantity 0', { fc: 3, address: 0, quantity: 0 }],
    ['FC16 values not matching quantity', { fc: 16, address: 0, quantity: 2, values: [1] }],
    ['FC6 value 65536', { fc: 6, address: 0, value: 65536 }],
    ['FC6 fractional value', { fc: 6, address: 0, value: 1.5 }],
    ['FC16 negative value', { fc: 16, address: 0, quantity: 1, values: [-1] }],
  ])('%s', (_name, req) => {
    expect(() => encodeRequest(req)).toThrow(ModbusFrameError);
  });

  it('refuses an unknown function code with UNSUPPORTED_FUNCTION', () => {
    expect(caught(() => encodeRequest({ fc: 65 } as unknown as Request)).code).toBe('UNSUPPORTED_FUNCTION');
  });
});

describe('validateResponse refuses a malformed or mismatched PLC answer', () => {
  const read3: Request = { fc: 3, address: 0x6b, quantity: 3 };

  it('read response with a byte count that does not match the quantity → RESPONSE_MISMATCH', () => {
    const err = caught(() => validateResponse(read3, hex('03 04 022b 0000')));
    expect(err.code).toBe('RESPONSE_MISMATCH');
    expect(err.message).toContain("byte count 4, the request's quantity implies 6");
  });

  it('read response whose byte count disagrees with its own length → BAD_PDU', () => {
    expect(caught(() => validateResponse(read3, hex('03 06 022b 0000'))).code).toBe('BAD_PDU');
  });

  it('an answer to another function code → RESPONSE_MISMATCH', () => {
    expect(caught(() => validateResponse(read3, hex('04 06 022b 0000 0064'))).code).toBe('RESPONSE_MISMATCH');
    expect(caught(() => validateResponse(read3, hex('84 02'))).code).toBe('RESPONSE_MISMATCH');
  });

  it('an exception response must be exactly 2 bytes with a non-zero code', () => {
    validateResponse(read3, hex('83 02'));
    expect(decodeResponse(read3, hex('83 02'))).toEqual({ fc: 3, exception: 2 });
    expect(caught(() => validateResponse(read3, hex('83 02 00'))).code).toBe('BAD_PDU');
    expect(caught(() => validateResponse(read3, hex('83 00'))).code).toBe('BAD_PDU');
  });

  it('echo responses must echo: FC6 value, FC16 quantity, FC5 address, FC22 masks', () => {
    expect(caught(() => validateResponse({ fc: 6, address: 1, value: 3 }, hex('06 0001 0004'))).code).toBe('RESPONSE_MISMATCH');
    expect(caught(() => validateResponse({ fc: 16, address: 1, quantity: 2, values: [1, 2] }, hex('10 0001 0001'))).code).toBe(
      'RESPONSE_MISMATCH',
    );
    expect(caught(() => validateResponse({ fc: 5, address: 0xac, value: true }, hex('05 00ad ff00'))).code).toBe('RESPONSE_MISMATCH');
    expect(caught(() => validateResponse({ fc: 5, address: 0xac, value: true }, hex('05 00ac 1234'))).code).toBe('BAD_PDU');
    expect(caught(() => validateResponse({ fc: 22, address: 4, andMask: 0xf2, orMask: 0x25 }, hex('16 0004 00f2 0026'))).code).toBe(
      'RESPONSE_MISMATCH',
    );
  });

  it('FC20 sub-responses must answer the sub-requests one for one', () => {
    const req = decodeRequest(hex('14 0e 06 0004 0001 0002 06 0003 0009 0002'));
    validateResponse(req, hex('14 0c 05 06 0dfe 0020 05 06 33cd 0040'));
    expect(caught(() => validateResponse(req, hex('14 06 05 06 0dfe 0020'))).code).toBe('RESPONSE_MISMATCH');
    expect(caught(() => validateResponse(req, hex('14 0c 03 06 0dfe 07 06 33cd 0040 0000'))).code).toBe('RESPONSE_MISMATCH');
  });

  it('FC8 return-query-data must echo the data', () => {
    const req = decodeRequest(hex('08 0000 a537'));
    validateResponse(req, hex('08 0000 a537'));
    expect(caught(() => validateResponse(req, hex('08 0000 a538'))).code).toBe('RESPONSE_MISMATCH');
    expect(caught(() => validateResponse(req, hex('08 0001 a537'))).code).toBe('RESPONSE_MISMATCH');
  });

  it('FC43 Read Device ID objects must fill the PDU exactly', () => {
    const req = decodeRequest(hex('2b 0e 01 00'));
    const ok = hex('2b 0e 01 01 00 00 01 00 03') ;
    validateResponse(req, Buffer.concat([ok, Buffer.from('abc')]));
    expect(caught(() => validateResponse(req, Buffer.concat([ok, Buffer.from('ab')]))).code).toBe('BAD_PDU');
    expect(caught(() => validateResponse(req, Buffer.concat([ok, Buffer.from('abcd')]))).code).toBe('BAD_PDU');
    expect(caught(() => validateResponse(req, hex('2b 0e 02 01 00 00 00'))).code).toBe('RESPONSE_MISMATCH');
  });
});

describe('exceptionPdu', () => {
  it('sets the exception bit on the function code', () => {
    expect([...exceptionPdu(16, 0x0b)]).toEqual([0x90, 0x0b]);
  });
  it('refuses function codes that cannot carry an exception', () => {
    expect(() => exceptionPdu(0, 1)).toThrow(ModbusFrameError);
    expect(() => exceptionPdu(0x80, 1)).toThrow(ModbusFrameError);
    expect(() => exceptionPdu(3, 0)).toThrow(ModbusFrameError);
  });
});

describe('random bytes never escape as anything but ModbusFrameError', () => {
  const knownFc = fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43);
  const pduArb = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.tuple(knownFc, fc.uint8Array({ maxLength: 20 })).map(([f, rest]) => Buffer.from([f, ...rest])),
    fc.tuple(knownFc, fc.uint8Array({ maxLength: 260 })).map(([f, rest]) => Buffer.from([f, ...rest])),
  );

  function onlyFrameErrors(fn: () => unknown): void {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ModbusFrameError)) throw err;
    }
  }

  it('decodeRequest', () => {
    fc.assert(
      fc.property(pduArb, (pdu) => {
        onlyFrameErrors(() => {
          const req = decodeRequest(pdu);
          // Whatever it accepts, it can encode again, and the encoding decodes to the same request.
          expect(decodeRequest(encodeRequest(req))).toEqual(req);
        });
      }),
      { numRuns: 5000 },
    );
  });

  it('validateResponse and decodeResponse, for any valid request', () => {
    const responseArb = fc.tuple(requestArb, fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 30 })));
    fc.assert(
      fc.property(responseArb, ([req, tail]) => {
        const candidates = [Buffer.from(tail), Buffer.from([req.fc, ...tail]), Buffer.from([req.fc | 0x80, ...tail])];
        for (const pdu of candidates) {
          onlyFrameErrors(() => validateResponse(req, pdu));
          onlyFrameErrors(() => {
            const res = decodeResponse(req, pdu);
            // An accepted response re-encodes to bytes that are accepted again.
            validateResponse(req, encodeResponse(res));
          });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('encodeRequest / encodeResponse on garbage objects', () => {
    fc.assert(
      fc.property(fc.object(), fc.integer({ min: -5, max: 300 }), (obj, f) => {
        onlyFrameErrors(() => encodeRequest({ ...obj, fc: f } as unknown as Request));
        onlyFrameErrors(() => encodeResponse({ ...obj, fc: f } as never));
      }),
      { numRuns: 2000 },
    );
  });
});
