// The collector's NDJSON line of a record written as text straight from the decoded record: the
// same characters as `JSON.stringify(recordToJson(record, hash))` (ndjson.ts, which stays the
// mapping's definition), without the object tree protobufjs' toObject builds and JSON.stringify
// walks again. That tree, its text and its garbage were most of the collector's CPU per record
// (docs/performance.md, "Where the collector's floor is"). Driven by the schema's reflection
// (audit.proto's descriptor, generated beside the static code): at load one writer function per
// message type is generated from it, as protobufjs generates its own toObject, reading each field
// by its name (the names are audit.proto's identifiers; a loop reading fields by key was slower
// than toObject). A field added to audit.proto is written without a change here;
// test/unit/collector/ndjson-text.test.ts holds both equal over every event of the schema and over
// arbitrary records.
//
// What toObject({ longs: Number, enums: String, bytes: String, oneofs: true }) does, and so this:
// fields in field-number order; a singular field when it is the message's own and not null, a
// repeated one when not empty, a map when it has keys; a oneof's name right after its member; enums
// by name (the number when unknown), 64-bit values as numbers, bytes in base64. Then recordToJson's
// own rules: the header fields first (even when zero) with `time`, every hash in hex, a Modbus
// target's address 0 written, the leaf hash last.
import protobuf from 'protobufjs/light.js';
import descriptor from '../../protocols/audit/gen/audit-descriptor.js';
import { toHex } from '../audit/hash.js';
import type { DecodedRecord } from '../audit/schema.js';

type Message = Record<string, any>;
type Writer = (m: Message) => string;

const root = protobuf.Root.fromJSON(descriptor);
root.resolveAll();
const HEX_BYTES = new Set(['.plantgate.audit.CheckpointEvent.rootHash', '.plantgate.audit.AuditGapEvent.lastCheckpointRoot']);
/** AuditRecord fields 1-5, written first by ndjsonLine itself. */
const HEADER = new Set(['schemaVersion', 'gatewayId', 'seq', 'timeUnixMs', 'prevHash']);
const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const NUMBER_TYPES = new Set(['double', 'float', 'int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);

/** A JSON number as JSON.stringify writes it (NaN and the infinities are null). */
export function numberText(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** Characters JSON.stringify escapes in a string (any surrogate: it escapes the lone ones). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * A string as JSON.stringify writes it. Most of the audit's strings need no escaping, and quoting
 * them is a third of the cost of a JSON.stringify call (measured: 65 vs 200 ns on a 40-character
 * workload id).
 */
export function quote(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * The line as one flat string. A line built by concatenation is a tree of string pieces (V8's cons
 * strings); the collector keeps a batch of lines until it writes them, so the trees outlive the
 * young generation and the garbage collector copies every piece (measured: the collector's CPU per
 * record went up by a third with the trees kept). Reading a character flattens the tree into one
 * string (measured: 1.07 heap bytes per character kept, JSON.stringify's own lines 1.25, the
 * trees 3.6); the pieces then die young.
 */
export function flat(s: string): string {
  s.charCodeAt(s.length - 1);
  return s;
}

/** What the generated writers call (passed in by name, so the generated code names nothing else). */
const helpers = {
  has: Object.prototype.hasOwnProperty,
  str: quote,
  num: numberText,
  long: (v: any, unsigned: boolean): string => numberText(typeof v === 'number' ? v : new protobuf.util.LongBits(v.low >>> 0, v.high >>> 0).toNumber(unsigned)),
  hex: (v: Uint8Array): string => `"${toHex(v)}"`,
  b64: (v: Uint8Array): string => `"${protobuf.util.base64.encode(v, 0, v.length)}"`,
  /** An enum value by name, its number when the schema does not know it. */
  enm: (names: Record<number, string>, v: number): string => (names[v] === undefined ? numberText(v) : quote(names[v])),
};

/** Writers by type: each writes the message's fields as toObject would, without the braces. */
const writers = new Map<protobuf.Type, { fields: Writer }>();
/** What generated code refers to by index: enum names, and the writers of nested messages. */
const enums: Record<number, string>[] = [];
const children: { fields: Writer }[] = [];

/** The expression that writes value `x` of field `f`. */
function valueCode(f: protobuf.Field, x: string, type: protobuf.Type): string {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) return `'{'+C[${children.push(writerOf(t)) - 1}].fields(${x})+'}'`;
  if (t instanceof protobuf.Enum) return `h.enm(E[${enums.push(t.valuesById) - 1}],${x})`;
  if (LONG_TYPES.has(f.type)) return `h.long(${x},${f.type.startsWith('u') || f.type.startsWith('fixed')})`;
  if (NUMBER_TYPES.has(f.type)) return `h.num(${x})`;
  if (f.type === 'bool') return `(${x}?'true':'false')`;
  if (f.type === 'bytes') return HEX_BYTES.has(`${type.fullName}.${f.name}`) ? `h.hex(${x})` : `h.b64(${x})`;
  return `h.str(${x})`;
}

function writerOf(type: protobuf.Type): { fields: Writer } {
  let w = writers.get(type);
  if (w) return w;
  w = { fields: () => '' };
  writers.set(type, w);
  const target = type.fullName === '.plantgate.audit.Target';
  const skip = type.fullName === '.plantgate.audit.AuditRecord' ? HEADER : undefined;
  let code = "let s='',v;";
  for (const f of type.fieldsArray.slice().sort((a, b) => a.id - b.id)) {
    if (skip?.has(f.name)) continue;
    const key = JSON.stringify(`"${f.name}":`);
    const m = `m.${f.name}`;
    const add = (text: string): string => `s+=(s.length===0?${key}:','+${key})+${text};`;
    if (f.map) {
      code += `if(${m}){const ks=Object.keys(${m});if(ks.length>0){let b='';for(let j=0;j<ks.length;j++){if(j>0)b+=',';b+=h.str(ks[j])+':'+${valueCode(f, `${m}[ks[j]]`, type)};}${add("'{'+b+'}'")}}}`;
    } else if (f.repeated) {
      code += `if(${m}&&${m}.length>0){let b='';for(let j=0;j<${m}.length;j++){if(j>0)b+=',';b+=${valueCode(f, `${m}[j]`, type)};}${add("'['+b+']'")}}`;
    } else {
      // Decoding keeps one member of a oneof (setting one deletes the others): one tail at most.
      const tail = f.partOf ? `s+=${JSON.stringify(`,"${f.partOf.name}":"${f.name}"`)};` : '';
      code += `if((v=${m})!=null&&h.has.call(m,${JSON.stringify(f.name)})){${add(valueCode(f, 'v', type))}${tail}}`;
    }
  }
  // recordToJson writes a Modbus target's address even when 0, after the target's other fields.
  if (target) code += `if(m.table!=null&&h.has.call(m,'table')&&!(m.address!=null&&h.has.call(m,'address')))s+=',"address":0';`;
  code += 'return s;';
  w.fields = new Function('h', 'E', 'C', `return function(m){${code}}`)(helpers, enums, children) as Writer;
  return w;
}

const recordFields = writerOf(root.lookupType('plantgate.audit.AuditRecord')).fields;
const targetFields = writerOf(root.lookupType('plantgate.audit.Target')).fields;

/** A record's Target list as its NDJSON line writes it (the OCSF line repeats it). */
export function targetsText(targets: Message[]): string {
  let s = '';
  for (let i = 0; i < targets.length; i++) s += `${i > 0 ? ',' : ''}{${targetFields(targets[i])}}`;
  return `[${s}]`;
}

/** The record's NDJSON line: `JSON.stringify(recordToJson(record, hash))`, character for character. */
export function ndjsonLine(record: DecodedRecord, hash: Uint8Array): string {
  const r = record as unknown as Message;
  const timeMs = Number(r.timeUnixMs);
  const event = recordFields(r);
  return flat(`{"schemaVersion":${numberText(r.schemaVersion ?? 0)},"gatewayId":${quote(r.gatewayId ?? '')},"seq":${numberText(Number(r.seq))},"time":"${new Date(timeMs).toISOString()}","timeUnixMs":${numberText(timeMs)},"prevHash":"${toHex(r.prevHash)}"${event.length > 0 ? ',' : ''}${event},"hash":"${toHex(hash)}"}`);
}
