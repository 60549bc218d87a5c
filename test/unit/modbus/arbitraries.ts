// fast-check generators of valid Modbus requests and of (request, response) pairs, shared by the
// codec's property tests. Each generator stays inside the spec's limits, so anything the codec
// rejects from them is a codec bug.
import fc from 'fast-check';
import type { Request, Response } from '../../../protocols/modbus/codec.js';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });

/** quantity in 1..max and an address such that the range stays inside 0..65535. */
function span(max: number): fc.Arbitrary<{ address: number; quantity: number }> {
  return fc
    .integer({ min: 1, max })
    .chain((quantity) => fc.record({ address: fc.integer({ min: 0, max: 0x10000 - quantity }), quantity: fc.constant(quantity) }));
}

function bytes(min: number, max: number): fc.Arbitrary<Buffer> {
  return fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
}

const fileRef = (maxLen: number) =>
  fc.record({ file: u16, record: fc.integer({ min: 0, max: 0x270f }), length: fc.integer({ min: 1, max: maxLen }) });

function readFileRecordData(refs: { file: number; record: number; length: number }[]): Buffer {
  const out = Buffer.alloc(7 * refs.length);
  refs.forEach((r, i) => {
    out[7 * i] = 6;
    out.writeUInt16BE(r.file, 7 * i + 1);
    out.writeUInt16BE(r.record, 7 * i + 3);
    out.writeUInt16BE(r.length, 7 * i + 5);
  });
  return out;
}

const readFileRecordRequest = fc
  .oneof(fc.array(fileRef(2), { minLength: 1, maxLength: 35 }), fc.array(fileRef(10), { minLength: 1, maxLength: 10 }))
  .map((refs): Request => ({ fc: 20, data: readFileRecordData(refs) }));

const writeFileRecordRequest = fc
  .oneof(
    fc.array(fileRef(10), { minLength: 1, maxLength: 5 }),
    fc.array(fileRef(122), { minLength: 1, maxLength: 1 }),
  )
  .chain((refs) => fc.tuple(...refs.map((r) => fc.constant(r)), ...refs.map((r) => bytes(2 * r.length, 2 * r.length))))
  .map((parts): Request => {
    const n = parts.length / 2;
    const chunks: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const r = parts[i] as { file: number; record: number; length: number };
      chunks.push(readFileRecordData([r]), parts[n + i] as Buffer);
    }
    return { fc: 21, data: Buffer.concat(chunks) };
  });

const diagnosticRequest = fc.oneof(
  fc
    .integer({ min: 1, max: 125 })
    .chain((words) => bytes(2 * words, 2 * words))
    .map((data): Request => ({ fc: 8, subFunction: 0, data })),
  fc.constantFrom(0x0000, 0xff00).map((v): Request => ({ fc: 8, subFunction: 1, data: Buffer.from([v >> 8, v & 0xff]) })),
  u8.map((c): Request => ({ fc: 8, subFunction: 3, data: Buffer.from([c, 0]) })),
  fc
    .constantFrom(0x02, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x14)
    .map((subFunction): Request => ({ fc: 8, subFunction, data: Buffer.from([0, 0]) })),
);

const meiRequest = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 4 }), u8).map(([code, id]): Request => ({ fc: 43, meiType: 14, data: Buffer.from([code, id]) })),
  bytes(0, 251).map((data): Request => ({ fc: 43, meiType: 13, data })),
);

/** Every request variant the codec knows, inside the spec's limits. */
export const requestArb: fc.Arbitrary<Request> = fc.oneof(
  fc.constantFrom(1, 2).chain((f) => span(2000).map((s): Request => ({ fc: f as 1 | 2, ...s }))),
  fc.constantFrom(3, 4).chain((f) => span(125).map((s): Request => ({ fc: f as 3 | 4, ...s }))),
  fc.record({ address: u16, value: fc.boolean() }).map((r): Request => ({ fc: 5, ...r })),
  fc.record({ address: u16, value: u16 }).map((r): Request => ({ fc: 6, ...r })),
  span(1968).chain((s) =>
    fc.array(fc.boolean(), { minLength: s.quantity, maxLength: s.quantity }).map((values): Request => ({ fc: 15, ...s, values })),
  ),
  span(123).chain((s) => fc.array(u16, { minLength: s.quantity, maxLength: s.quantity }).map((values): Request => ({ fc: 16, ...s, values }))),
  fc.record({ address: u16, andMask: u16, orMask: u16 }).map((r): Request => ({ fc: 22, ...r })),
  fc.tuple(span(125), span(121)).chain(([r, w]) =>
    fc.array(u16, { minLength: w.quantity, maxLength: w.quantity }).map(
      (values): Request => ({
        fc: 23,
        readAddress: r.address,
        readQuantity: r.quantity,
        writeAddress: w.address,
        writeQuantity: w.quantity,
        values,
      }),
    ),
  ),
  u16.map((address): Request => ({ fc: 24, address })),
  fc.constantFrom(7, 11, 12, 17).map((f): Request => ({ fc: f as 7 | 11 | 12 | 17 })),
  diagnosticRequest,
  readFileRecordRequest,
  writeFileRecordRequest,
  meiRequest,
);

function pdu(...parts: (number | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : p)));
}
function be16(v: number): Buffer {
  return Buffer.from([v >> 8, v & 0xff]);
}

/** A raw (kept-as-bytes) response that validly answers `req`, for the FCs without a decoded form. */
function rawResponseFor(req: Request): fc.Arbitrary<Buffer> | undefined {
  switch (req.fc) {
    case 7:
      return u8.map((b) => pdu(7, b));
    case 11:
      return fc.tuple(u16, u16).map(([s, c]) => pdu(11, be16(s), be16(c)));
    case 12:
      return bytes(6, 70).map((b) => pdu(12, b.length, b));
    case 17:
      return bytes(1, 251).map((b) => pdu(17, b.length, b));
    case 8:
      if ([0, 1, 3, 0x0a, 0x14].includes(req.subFunction)) return fc.constant(pdu(8, be16(req.subFunction), req.data));
      if (req.subFunction === 4) return undefined; // listen-only mode never answers
      return u16.map((v) => pdu(8, be16(req.subFunction), be16(v)));
    case 20: {
      const lengths: number[] = [];
      for (let off = 0; off < req.data.length; off += 7) lengths.push(req.data.readUInt16BE(off + 5));
      return fc
        .tuple(...lengths.map((l) => bytes(2 * l, 2 * l)))
        .map((records) => {
          const body = Buffer.concat(records.map((r) => pdu(1 + r.length, 6, r)));
          return pdu(20, body.length, body);
        });
    }
    case 21:
      return fc.constant(pdu(21, req.data.length, req.data));
    case 24:
      return fc.array(u16, { maxLength: 31 }).map((values) => {
        const body = Buffer.concat(values.map(be16));
        return pdu(24, be16(2 + body.length), be16(values.length), body);
      });
    case 43:
      if (req.meiType === 13) return bytes(0, 251).map((b) => pdu(43, 13, b));
      return fc
        .tuple(
          fc.constantFrom(0x01, 0x02, 0x03, 0x81, 0x82, 0x83),
          fc.constantFrom(0x00, 0xff),
          u8,
          fc.array(fc.tuple(u8, bytes(0, 20)), { maxLength: 8 }),
        )
        .map(([conformity, more, next, objects]) =>
          pdu(43, 14, req.data[0], conformity, more, next, objects.length, ...objects.flatMap(([id, v]) => [pdu(id, v.length, v)])),
        );
    default:
      return undefined;
  }
}

/** The decoded (or raw) response that validly answers `req`. */
function responseFor(req: Request): fc.Arbitrary<Response> | undefined {
  switch (req.fc) {
    case 1:
    case 2:
      return fc.array(fc.boolean(), { minLength: req.quantity, maxLength: req.quantity }).map((values): Response => ({ fc: req.fc as 1 | 2, values }));
    case 3:
    case 4:
      return fc.array(u16, { minLength: req.quantity, maxLength: req.quantity }).map((values): Response => ({ fc: req.fc as 3 | 4, values }));
    case 23:
      return fc.array(u16, { minLength: req.readQuantity, maxLength: req.readQuantity }).map((values) => ({ fc: 23, values }));
    case 5:
      return fc.constant({ fc: 5, address: req.address, value: req.value });
    case 6:
      return fc.constant({ fc: 6, address: req.address, value: req.value });
    case 15:
    case 16:
      return fc.constant({ fc: req.fc, address: req.address, quantity: req.quantity });
    case 22:
      return fc.constant({ fc: 22, address: req.address, andMask: req.andMask, orMask: req.orMask });
    default:
      return rawResponseFor(req)?.map((raw) => ({ fc: req.fc, raw }));
  }
}

/** A request and a response that validly answers it: normal or exception. */
export const exchangeArb: fc.Arbitrary<{ request: Request; response: Response }> = requestArb.chain((request) => {
  const normal = responseFor(request);
  const exception = fc.integer({ min: 1, max: 255 }).map((code): Response => ({ fc: request.fc, exception: code }));
  const response = normal === undefined ? exception : fc.oneof({ arbitrary: normal, weight: 4 }, { arbitrary: exception, weight: 1 });
  return response.map((r) => ({ request, response: r }));
});
