// The NDJSON line written as text (src/collector/ndjson-text.ts) against its definition,
// `JSON.stringify(recordToJson(record, hash))`: the same characters for arbitrary records of every
// event and field of audit.proto, decoded as the collector decodes them and as protobufjs does
// (64-bit values as Long).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHash } from '../../../src/audit/hash.js';
import { BulkDecoder } from '../../../src/audit/bulk-decode.js';
import { decodeRecord, pb } from '../../../src/audit/schema.js';
import { recordToJson } from '../../../src/collector/ndjson.js';
import { ndjsonLine } from '../../../src/collector/ndjson-text.js';
import { recordBytes, recordType } from './record-arbitrary.js';

describe('the NDJSON line written as text', () => {
  it('is the line recordToJson gives, for arbitrary records', () => {
    fc.assert(
      fc.property(recordBytes(), (bytes) => {
        const hash = leafHash(bytes);
        const rec = decodeRecord(bytes);
        expect(ndjsonLine(rec, hash)).toBe(JSON.stringify(recordToJson(rec, hash)));
      }),
      { numRuns: 1500 },
    );
  });

  it('is the line recordToJson gives, for every event of the schema', () => {
    for (const member of recordType.oneofs.event.oneof) {
      fc.assert(
        fc.property(recordBytes(member), (bytes) => {
          const hash = leafHash(bytes);
          const rec = decodeRecord(bytes);
          const line = ndjsonLine(rec, hash);
          expect(line).toBe(JSON.stringify(recordToJson(rec, hash)));
          expect(JSON.parse(line).event).toBe(member);
        }),
        { numRuns: 60 },
      );
    }
  });

  it('is the same for a record decoded by the collector\'s interning decoder', () => {
    const decoder = new BulkDecoder();
    fc.assert(
      fc.property(recordBytes(), (bytes) => {
        const hash = leafHash(bytes);
        expect(ndjsonLine(decoder.decodeBytes(bytes), hash)).toBe(JSON.stringify(recordToJson(decodeRecord(bytes), hash)));
      }),
      { numRuns: 500 },
    );
  });

  it('reads 64-bit values left as protobufjs decodes them', () => {
    fc.assert(
      fc.property(recordBytes(), (bytes) => {
        const hash = leafHash(bytes);
        expect(ndjsonLine(pb.AuditRecord.decode(bytes), hash)).toBe(JSON.stringify(recordToJson(pb.AuditRecord.decode(bytes), hash)));
      }),
      { numRuns: 300 },
    );
  });

});
