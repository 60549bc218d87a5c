// The OCSF line written as text (src/collector/ocsf-text.ts) against its definition,
// `JSON.stringify(toOcsf(recordToJson(record, hash)))`: the same characters for arbitrary command
// decisions and outcomes (every field of their messages, set or not) and for every other event.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHash } from '../../../src/audit/hash.js';
import { BulkDecoder } from '../../../src/audit/bulk-decode.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { recordToJson } from '../../../src/collector/ndjson.js';
import { toOcsf } from '../../../src/collector/ocsf.js';
import { ocsfLine } from '../../../src/collector/ocsf-text.js';
import { recordBytes } from './record-arbitrary.js';

const decoder = new BulkDecoder();

/** The same line from the record as decodeRecord and as the collector's interning decoder give it. */
function sameLine(bytes: Uint8Array): void {
  const hash = leafHash(bytes);
  const rec = decodeRecord(bytes);
  const o = toOcsf(recordToJson(rec, hash));
  expect(ocsfLine(rec, hash)).toBe(o ? JSON.stringify(o) : undefined);
  expect(ocsfLine(decoder.decodeBytes(bytes), hash)).toBe(o ? JSON.stringify(o) : undefined);
}

describe('the OCSF line written as text', () => {
  it('is the line toOcsf gives, for arbitrary command decisions', () => {
    fc.assert(fc.property(recordBytes('decision'), sameLine), { numRuns: 2000 });
  });

  it('is the line toOcsf gives, for arbitrary command outcomes', () => {
    fc.assert(fc.property(recordBytes('outcome'), sameLine), { numRuns: 500 });
  });

  it('is the line toOcsf gives (or none), for any record', () => {
    fc.assert(fc.property(recordBytes(), sameLine), { numRuns: 500 });
  });
});
