import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  FrameDecoder,
  ModbusFrameError,
  encodeFrame,
  MAX_ADU_LENGTH,
  type Frame,
} from '../../../protocols/modbus/codec.js';

interface Sent {
  transactionId: number;
  unitId: number;
  pdu: Buffer;
}

const frameArb: fc.Arbitrary<Sent> = fc.record({
  transactionId: fc.integer({ min: 0, max: 0xffff }),
  unitId: fc.integer({ min: 0, max: 0xff }),
  pdu: fc.uint8Array({ minLength: 1, maxLength: 253 }).map((a) => Buffer.from(a)),
});

function collect(): { decoder: FrameDecoder; frames: Frame[]; errors: ModbusFrameError[] } {
  const frames: Frame[] = [];
  const errors: ModbusFrameError[] = [];
  const decoder = new FrameDecoder(
    (f) => frames.push({ ...f, pdu: Buffer.from(f.pdu) }),
    (e) => errors.push(e),
  );
  return { decoder, frames, errors };
}

/** Cuts `stream` at the given (sorted, deduplicated) offsets. */
function cut(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(stream.subarray(prev, p));
    prev = p;
  }
  chunks.push(stream.subarray(prev));
  return chunks;
}

describe('FrameDecoder reassembles MBAP frames', () => {
  it('yields exactly the frames sent, in order, however the stream is split into segments', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (sent, cuts) => {
          const stream = Buffer.concat(sent.map((s) => encodeFrame(s.transactionId, s.unitId, s.pdu)));
          const { decoder, frames, errors } = collect();
          for (const chunk of cut(stream, cuts)) {
            decoder.push(chunk);
            expect(decoder.pendingBytes).toBeLessThan(MAX_ADU_LENGTH);
          }
          expect(errors).toEqual([]);
          expect(decoder.pendingBytes).toBe(0);
          expect(frames).toEqual(sent.map((s) => ({ ...s, functionCode: s.pdu[0] })));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('delivers a frame split byte by byte', () => {
    const adu = encodeFrame(0x1234, 0x11, Buffer.from([3, 0, 0x6b, 0, 3]));
    const { decoder, frames } = collect();
    for (const b of adu) decoder.push(Buffer.from([b]));
    expect(frames).toEqual([{ transactionId: 0x1234, unitId: 0x11, functionCode: 3, pdu: Buffer.from([3, 0, 0x6b, 0, 3]) }]);
  });

  it('hands out views into the segment, without copying, when a segment holds whole frames', () => {
    const chunk = Buffer.concat([encodeFrame(1, 1, Buffer.from([3, 0, 0, 0, 1])), encodeFrame(2, 1, Buffer.from([4, 0, 0, 0, 2]))]);
    const seen: Buffer[] = [];
    const decoder = new FrameDecoder((f) => seen.push(f.pdu), () => {});
    decoder.push(chunk);
    expect(seen).toHaveLength(2);
    for (const pdu of seen) expect(pdu.buffer).toBe(chunk.buffer);
    expect(seen[1].byteOffset - chunk.byteOffset).toBe(12 + 7);
  });

  it('gives a straddling frame its own buffer, which later segments never overwrite', () => {
    const a = encodeFrame(1, 1, Buffer.from([16, 0, 0, 0, 1, 2, 0xaa, 0xbb]));
    const b = encodeFrame(2, 1, Buffer.from([16, 0, 0, 0, 1, 2, 0xcc, 0xdd]));
    const seen: Buffer[] = [];
    const decoder = new FrameDecoder((f) => seen.push(f.pdu), () => {});
    decoder.push(a.subarray(0, 5));
    decoder.push(a.subarray(5));
    decoder.push(b.subarray(0, 9));
    decoder.push(b.subarray(9));
    expect(seen.map((p) => p.toString('hex'))).toEqual(['100000000102aabb', '100000000102ccdd']);
  });
});

describe('FrameDecoder refuses broken framing and then stays closed', () => {
  function firstError(bytes: number[]): { errors: ModbusFrameError[]; frames: Frame[]; decoder: FrameDecoder } {
    const c = collect();
    c.decoder.push(Buffer.from(bytes));
    return c;
  }

  it('rejects protocol id 1 with BAD_PROTOCOL_ID as soon as 4 bytes arrived', () => {
    const { errors, decoder } = firstError([0, 1, 0, 1]);
    expect(errors.map((e) => e.code)).toEqual(['BAD_PROTOCOL_ID']);
    expect(errors[0].reason).toBe('PROTOCOL_VIOLATION');
    expect(decoder.failed).toBe(true);
  });

  it.each([
    [0, [0, 0]],
    [1, [0, 1]],
    [255, [0, 255]],
    [65535, [255, 255]],
  ])('rejects MBAP length %i with BAD_LENGTH', (_len, lengthBytes) => {
    const { errors } = firstError([0, 1, 0, 0, ...lengthBytes]);
    expect(errors.map((e) => e.code)).toEqual(['BAD_LENGTH']);
  });

  it('accepts the largest legal frame (length 254, a 253-byte PDU)', () => {
    const pdu = Buffer.alloc(253, 0x42);
    const { frames, errors } = firstError([...encodeFrame(9, 1, pdu)]);
    expect(errors).toEqual([]);
    expect(frames[0].pdu.length).toBe(253);
  });

  it('emits the good frames before a bad header, reports the error once and ignores all later input', () => {
    const good = encodeFrame(7, 1, Buffer.from([3, 0, 0, 0, 1]));
    const c = collect();
    c.decoder.push(Buffer.concat([good, Buffer.from([0, 8, 0, 2, 0, 6])]));
    c.decoder.push(good);
    c.decoder.push(Buffer.from([0, 1, 0, 7, 0, 0]));
    expect(c.frames.map((f) => f.transactionId)).toEqual([7]);
    expect(c.errors.map((e) => e.code)).toEqual(['BAD_PROTOCOL_ID']);
    expect(c.decoder.pendingBytes).toBe(0);
  });

  it('detects a bad header that straddles segments', () => {
    const c = collect();
    c.decoder.push(Buffer.from([0, 1, 0]));
    expect(c.errors).toEqual([]);
    c.decoder.push(Buffer.from([0, 1, 0x05]));
    expect(c.errors.map((e) => e.code)).toEqual(['BAD_LENGTH']);
  });

  it('marks the stream failed when the frame handler throws, and rethrows', () => {
    const decoder = new FrameDecoder(
      () => {
        throw new Error('handler bug');
      },
      () => {},
    );
    expect(() => decoder.push(encodeFrame(1, 1, Buffer.from([7])))).toThrow('handler bug');
    expect(decoder.failed).toBe(true);
  });

  it('never throws, never buffers more than one ADU, and reports at most one error on random bytes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 300 }),
            // A plausible header keeps the decoder busy past the first few bytes.
            fc.tuple(fc.uint8Array({ minLength: 2, maxLength: 2 }), fc.integer({ min: 0, max: 300 }), fc.uint8Array({ maxLength: 300 })).map(
              ([tid, len, rest]) => Uint8Array.from([...tid, 0, 0, len >> 8, len & 0xff, ...rest]),
            ),
          ),
          { maxLength: 10 },
        ),
        (chunks) => {
          const c = collect();
          for (const chunk of chunks) {
            c.decoder.push(Buffer.from(chunk));
            expect(c.decoder.pendingBytes).toBeLessThan(MAX_ADU_LENGTH);
          }
          expect(c.errors.length).toBeLessThanOrEqual(1);
          for (const e of c.errors) expect(e).toBeInstanceOf(ModbusFrameError);
          expect(c.decoder.failed).toBe(c.errors.length === 1);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('encodeFrame', () => {
  it('writes the MBAP header of the Messaging Implementation Guide: tid, protocol 0, length = pdu + 1, unit', () => {
    expect(encodeFrame(0x0102, 0xff, Buffer.from([3, 0, 0x6b, 0, 3])).toString('hex')).toBe('010200000006ff03006b0003');
  });

  it('refuses an empty PDU, a PDU over 253 bytes, and out-of-range ids with a ModbusFrameError', () => {
    expect(() => encodeFrame(1, 1, Buffer.alloc(0))).toThrow(ModbusFrameError);
    expect(() => encodeFrame(1, 1, Buffer.alloc(254, 3))).toThrow(expect.objectContaining({ code: 'PDU_TOO_LONG' }));
    expect(() => encodeFrame(0x10000, 1, Buffer.from([7]))).toThrow(ModbusFrameError);
    expect(() => encodeFrame(1, 256, Buffer.from([7]))).toThrow(ModbusFrameError);
  });
});
