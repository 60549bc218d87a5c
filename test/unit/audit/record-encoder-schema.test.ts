// The fast audit encoder against the schema itself (docs/architecture.md, Seams: audit events):
// every field of audit.proto, read by protobufjs' reflection from the .proto file, is set to a
// non-default value in turn, and the fast encoder must write exactly what the generated encoder
// writes. A field added to audit.proto that the fast path would drop fails here, whatever
// the hand-listed generators of record-encoder.test.ts know.
import path from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { RecordEncoder } from '../../../src/audit/record-encoder.js';
import { pb, type AuditRecordProps } from '../../../src/audit/schema.js';
import { plantgate } from '../../../protocols/audit/gen/audit.js';

const schema = protobuf.loadSync(path.resolve(__dirname, '../../../protocols/audit/audit.proto'));
schema.resolveAll();
const recordType = schema.lookupType('plantgate.audit.AuditRecord');
const decisionType = schema.lookupType('plantgate.audit.CommandDecision');
/** What the log stamps on every record (AuditRecord fields 1-5). */
const STAMP_FIELDS = new Set(['schemaVersion', 'gatewayId', 'seq', 'timeUnixMs', 'prevHash']);

/** A non-default value for one field: every scalar kind, enums, nested messages, repeated and maps. */
function sampleOf(type: string, resolved: protobuf.ReflectionObject | null, depth: number): unknown {
  if (resolved instanceof protobuf.Type) return sampleMessage(resolved, depth + 1);
  if (resolved instanceof protobuf.Enum) return Object.values(resolved.values).find((v) => v !== 0) ?? 0;
  switch (type) {
    case 'string':
      return 'sé🛠';
    case 'bool':
      return true;
    case 'bytes':
      return new Uint8Array([1, 2, 3]);
    case 'double':
    case 'float':
      return 1.5;
    default:
      return 7; // every integer kind, 32 and 64 bits
  }
}

function sampleField(f: protobuf.Field, depth: number): unknown {
  const one = sampleOf(f.type, f.resolvedType, depth);
  if (f instanceof protobuf.MapField) return { [f.keyType === 'string' ? 'k' : '3']: one };
  return f.repeated ? [one, one] : one;
}

function sampleMessage(type: protobuf.Type, depth = 0): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  if (depth > 4) return m;
  for (const f of type.fieldsArray) m[f.name] = sampleField(f, depth);
  return m;
}

const stamp = { schemaVersion: 1, gatewayId: 'gw-1', seq: 41, timeUnixMs: 1_768_478_400_000, prevHash: new Uint8Array(32).fill(9) };

function fast(rec: AuditRecordProps): Buffer {
  const { schemaVersion, gatewayId, seq, timeUnixMs, prevHash, ...event } = rec;
  expect({ schemaVersion, gatewayId, seq, timeUnixMs, prevHash }).toEqual(stamp);
  return Buffer.from(new RecordEncoder().encodeLeafInput(stamp, event));
}

function reference(rec: AuditRecordProps): Buffer {
  return Buffer.concat([Buffer.from([0]), Buffer.from(pb.AuditRecord.encode(rec).finish())]);
}

describe('the fast audit encoder against audit.proto', () => {
  it('writes every field of a command decision that the schema has, one at a time and all together', () => {
    const all = sampleMessage(decisionType);
    expect(fast({ ...stamp, decision: all })).toEqual(reference({ ...stamp, decision: all }));
    for (const f of decisionType.fieldsArray) {
      const decision = { [f.name]: sampleField(f, 0) };
      expect(fast({ ...stamp, decision }), `CommandDecision.${f.name}`).toEqual(reference({ ...stamp, decision }));
    }
  });

  it('writes every other field of the record next to a command decision', () => {
    const decision = sampleMessage(decisionType);
    for (const f of recordType.fieldsArray) {
      if (STAMP_FIELDS.has(f.name) || f.name === 'decision') continue;
      const rec = { ...stamp, decision, [f.name]: sampleField(f, 0) } as AuditRecordProps;
      expect(fast(rec), `AuditRecord.${f.name}`).toEqual(reference(rec));
    }
  });

  it('runs on generated code that knows every field of audit.proto (npm run proto is not stale)', () => {
    const missing: string[] = [];
    const visit = (ns: protobuf.NamespaceBase): void => {
      for (const nested of ns.nestedArray) {
        if (nested instanceof protobuf.Type) {
          // '.plantgate.audit.Outer.Inner' → the generated class plantgate.audit.Outer.Inner.
          const cls = nested.fullName.split('.').slice(2).reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], plantgate) as { prototype: object };
          for (const f of nested.fieldsArray) if (!(f.name in cls.prototype)) missing.push(`${nested.name}.${f.name}`);
        }
        if (nested instanceof protobuf.Namespace) visit(nested);
      }
    };
    visit(schema);
    expect(missing).toEqual([]);
  });
});
