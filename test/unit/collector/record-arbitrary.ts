// Arbitrary audit records for property tests, built from audit.proto's reflection: every message
// type, every field kind (strings with any characters, doubles with NaN and -0, 64-bit values,
// enums known and unknown, maps, repeated fields), each field present or absent, one event or
// none. Encoded by protobufjs' generated code, so a test sees the bytes a gateway could ship.
import fc from 'fast-check';
import protobuf from 'protobufjs/light.js';
import descriptor from '../../../protocols/audit/gen/audit-descriptor.js';
import { pb } from '../../../src/audit/schema.js';

const root = protobuf.Root.fromJSON(descriptor);
root.resolveAll();
export const recordType = root.lookupType('plantgate.audit.AuditRecord');

function scalar(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case 'string':
      return fc.oneof(fc.constantFrom('', 'ok', 'plc1', 'tank1.level', 'ALLOWED', 'modbus', 'read', 'holding'), fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 6 }));
    case 'bool':
      return fc.boolean();
    case 'bytes':
      return fc.uint8Array({ maxLength: 33 });
    case 'double':
    case 'float':
      return fc.oneof(fc.double(), fc.integer({ min: -70_000, max: 70_000 }));
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case 'uint32':
    case 'fixed32':
      return fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 });
    default:
      return fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 53 - 1 }));
  }
}

function value(f: protobuf.Field): fc.Arbitrary<unknown> {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) return message(t);
  if (t instanceof protobuf.Enum) return fc.oneof(fc.constantFrom(...Object.values(t.values)), fc.integer({ min: 0, max: 40 }));
  return scalar(f.type);
}

const messages = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** A message of `type` with any of its fields set (at most one member of each oneof). */
export function message(type: protobuf.Type): fc.Arbitrary<Record<string, unknown>> {
  const cached = messages.get(type.fullName);
  if (cached) return cached;
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of type.fieldsArray) {
    if (f.partOf) continue;
    const v = value(f);
    plain[f.name] = f.map ? fc.dictionary(fc.string({ maxLength: 8 }), scalar(f.type), { maxKeys: 3 }) : f.repeated ? fc.array(v, { maxLength: 3 }) : v;
  }
  let arb = fc.record(plain, { requiredKeys: [] });
  for (const o of type.oneofsArray) {
    const member = fc.option(fc.oneof(...o.fieldsArray.map((f) => value(f).map((v) => [f.name, v] as const))), { nil: undefined });
    arb = fc.tuple(arb, member).map(([m, chosen]) => (chosen ? { ...m, [chosen[0]]: chosen[1] } : m));
  }
  messages.set(type.fullName, arb);
  return arb;
}

/** The encoded bytes of an arbitrary record; `event` narrows it to records carrying that event. */
export function recordBytes(event?: string): fc.Arbitrary<Uint8Array> {
  let arb = message(recordType);
  if (event) {
    const f = recordType.fields[event];
    arb = fc.tuple(arb, message(f.resolvedType as protobuf.Type)).map(([r, e]) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) if (!recordType.fields[k]?.partOf) out[k] = v;
      out[event] = e;
      return out;
    });
  }
  // Times a Date can hold (the collector writes each record's time as ISO 8601).
  return arb.map((r) => pb.AuditRecord.encode(pb.AuditRecord.fromObject({ ...r, timeUnixMs: Number(r.timeUnixMs ?? 0) % 8.64e15 })).finish());
}
