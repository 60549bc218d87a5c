import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeRecordFrames, FrameReader, FramingError } from '../../../src/audit/framing.js';
import { pb } from '../../../src/audit/schema.js';

describe('audit stream framing', () => {
  it('gives back exactly the frames written, however the bytes are split', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 400 }), { maxLength: 20 }),
        fc.array(fc.nat({ max: 50 }), { minLength: 1, maxLength: 30 }),
        (payloads, cuts) => {
          const wire = Buffer.concat(payloads.map(encodeFrame));
          const reader = new FrameReader();
          const got: Buffer[] = [];
          let pos = 0;
          let i = 0;
          while (pos < wire.length) {
            const n = Math.max(1, cuts[i++ % cuts.length]);
            for (const f of reader.push(wire.subarray(pos, pos + n))) got.push(Buffer.from(f));
            pos += n;
          }
          expect(got).toEqual(payloads.map((p) => Buffer.from(p)));
          expect(reader.pending).toBe(0);
        },
      ),
    );
  });

  it('ships records as exactly the ShipperFrame bytes protobuf writes, whatever their size', () => {
    const check = (records: Uint8Array[]): void => {
      const want = Buffer.concat(records.map((record) => pb.ShipperFrame.encodeDelimited({ record }).finish()));
      const got = encodeRecordFrames(records);
      expect(got.equals(want)).toBe(true);
      const back = new FrameReader().push(got).map((f) => Buffer.from(pb.ShipperFrame.decode(f).record!));
      expect(back.every((r, i) => r.equals(records[i]))).toBe(true);
    };
    // Sizes around the one/two-byte length prefix boundary (127/128 for record and frame).
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), check));
    // Three-byte length prefixes.
    check([new Uint8Array(16_381).fill(7), new Uint8Array(20_000).fill(9), new Uint8Array(0)]);
  });

  it('uses the same framing as protobuf encodeDelimited', () => {
    const msg = { ack: { lastSeq: 123456 } };
    const delimited = pb.CollectorFrame.encodeDelimited(msg).finish();
    const framed = encodeFrame(pb.CollectorFrame.encode(msg).finish());
    expect(Buffer.from(delimited)).toEqual(framed);
  });

  it('rejects a frame longer than the limit instead of buffering it', () => {
    const reader = new FrameReader(1024);
    expect(() => reader.push(encodeFrame(new Uint8Array(2048)).subarray(0, 10))).toThrow(FramingError);
  });

  it('never throws anything but FramingError on random bytes, and holds at most one frame', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const reader = new FrameReader(256);
        try {
          reader.push(bytes);
          expect(reader.pending).toBeLessThanOrEqual(256 + 5);
        } catch (err) {
          expect(err).toBeInstanceOf(FramingError);
        }
      }),
    );
  });
});
