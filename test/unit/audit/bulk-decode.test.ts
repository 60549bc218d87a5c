// The offline readers' record decoder (src/audit/bulk-decode.ts, used by policy learn and replay)
// gives exactly the records decodeRecord gives, across many records through one decoder (its
// string table shared), and refuses what decodeRecord refuses.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BulkDecoder } from '../../../src/audit/bulk-decode.js';
import { decodeRecord, encodeRecord, pb, type AuditRecordProps } from '../../../src/audit/schema.js';

// Repeating short strings (the table's hits), unicode, and strings past the table's 64 bytes.
const text = fc.oneof(
  fc.constantFrom('', 'gw-1', 'tank1.level', 'ALLOWED', 'spiffe://plant.example/agent/optimizer'),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
);
const u32 = fc.oneof(fc.constant(0), fc.nat({ max: 300 }), fc.nat({ max: 2 ** 32 - 1 }));

const decision = fc.record({
  subject: fc.record({ workloadId: text, owner: text, jti: text, scopes: fc.array(text, { maxLength: 3 }), assurance: text }),
  command: fc.record({
    sessionId: text,
    protocol: text,
    assetId: text,
    operation: text,
    functionCode: u32,
    targets: fc.array(fc.record({ table: text, address: u32, count: u32, nodeId: text }), { maxLength: 3 }),
    points: fc.array(text, { maxLength: 4 }),
    rawValues: fc.array(u32, { maxLength: 4 }),
    values: fc.dictionary(text, fc.double(), { maxKeys: 3 }),
  }),
  decision: fc.record({ effect: fc.constantFrom(pb.Effect.ALLOW, pb.Effect.DENY), reason: text, ruleId: text, bundleRevision: u32 }),
});

const record: fc.Arbitrary<AuditRecordProps> = fc
  .tuple(
    fc.record({ schemaVersion: fc.constantFrom(0, 1), gatewayId: text, seq: fc.maxSafeNat(), timeUnixMs: fc.integer({ min: 0, max: 2 ** 45 }) }),
    fc.oneof(
      decision.map((decision) => ({ decision })),
      fc.record({ decisionSeq: fc.maxSafeNat(), status: text, sessionId: text }).map((outcome) => ({ outcome })),
      fc.record({ kind: text, sessionId: text, detail: text }).map((session) => ({ session })),
      fc.constant({}),
    ),
  )
  .map(([h, e]) => ({ ...h, ...e }) as AuditRecordProps);

/** The encoded records one after another in one buffer, as the spool reader holds them. */
function packed(records: AuditRecordProps[]): { buf: Buffer; at: [number, number][] } {
  const parts = records.map((r) => Buffer.from(encodeRecord(r)));
  const at: [number, number][] = [];
  let pos = 3; // not at the buffer's start
  for (const p of parts) {
    at.push([pos, pos + p.length]);
    pos += p.length;
  }
  return { buf: Buffer.concat([Buffer.alloc(3), ...parts]), at };
}

describe('bulk record decoding (policy learn and replay)', () => {
  it('gives the records decodeRecord gives, record after record through one decoder', () => {
    const decoder = new BulkDecoder();
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 8 }), (records) => {
        const { buf, at } = packed(records);
        for (const [start, end] of at) {
          const plain = decodeRecord(buf.subarray(start, end));
          const bulk = decoder.decode(buf, start, end);
          expect(bulk).toEqual(plain);
          expect(bulk.event).toBe(plain.event);
          expect(Object.keys(bulk)).toEqual(Object.keys(plain));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the last event of a record that carries two, as protobufjs does', () => {
    const two = Buffer.concat([
      encodeRecord({ gatewayId: 'gw', decision: { decision: { reason: 'ALLOWED' } } }),
      encodeRecord({ outcome: { status: 'ok' } }),
    ]);
    const bulk = new BulkDecoder().decode(two, 0, two.length);
    expect(bulk.event).toBe('outcome');
    expect(bulk.decision).toBeNull();
    expect(bulk).toEqual(decodeRecord(two));
    // The first event again after another: a new member, not the first one's merged into.
    const three = Buffer.concat([two, encodeRecord({ decision: { command: { assetId: 'plc2' } } })]);
    const again = new BulkDecoder().decode(three, 0, three.length);
    expect(again.event).toBe('decision');
    expect(again.outcome).toBeNull();
    expect(again).toEqual(decodeRecord(three));
    expect(again.decision?.decision).toBeNull();
  });

  it('refuses a string that is not UTF-8, short or long, as decodeRecord does', () => {
    const decoder = new BulkDecoder();
    for (const bad of [Buffer.from([0x67, 0xff, 0x77]), Buffer.from([0xc3]), Buffer.concat([Buffer.alloc(70, 0x61), Buffer.from([0xed, 0xa0, 0x80])])]) {
      // field 2 (gateway_id), length-delimited
      const bytes = Buffer.concat([Buffer.from([0x12, bad.length]), bad]);
      expect(() => decodeRecord(bytes)).toThrow();
      expect(() => decoder.decode(bytes, 0, bytes.length)).toThrow();
    }
    // The decoder goes on with the next record after a refusal.
    const ok = Buffer.from(encodeRecord({ gatewayId: 'gw-2', seq: 5 }));
    expect(decoder.decode(ok, 0, ok.length)).toEqual(decodeRecord(ok));
  });

  it('cuts a string whose length runs past its record, as decodeRecord does', () => {
    const bytes = Buffer.concat([Buffer.from([0x12, 0x05]), Buffer.from('gw'), Buffer.from('tail-of-next')]);
    expect(() => decodeRecord(bytes.subarray(0, 4))).toThrow();
    expect(() => new BulkDecoder().decode(bytes, 0, 4)).toThrow();
  });
});
