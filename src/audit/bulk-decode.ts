// Decoding records one after another, for the readers that go through many of them: offline
// readers of a day of a busy gateway's spool (spool-reader.ts: `plantgate policy learn|replay`,
// docs/policy.md, "From monitor mode to enforce") and the SOC collector (collector/server.ts).
// Owns only doing schema.ts' decoding with less work per record; the result is the same record
// decodeRecord gives for the same bytes, and bytes that do not decode (bad UTF-8 included) still
// throw. Never used by the gateway's own log.
//
// Where the work goes (node --cpu-prof of a replay): the audit's strings are short and repeat
// record after record (gateway, workloads, assets, points, reasons, rule ids), and protobufjs
// builds each one again in JavaScript after checking it is UTF-8; and setting the record's
// `event` oneof deletes each of the other 14 members from the new record. So:
// - one reader, moved along the caller's buffer instead of a reader (and a subarray) per record;
// - short ASCII strings are interned in a fixed-size table keyed by their bytes: a hit compares
//   the bytes and hands back the string made before (ASCII is valid UTF-8, so the check
//   protobufjs does would pass); anything else goes through protobufjs' strict read unchanged;
// - records are built from a subclass of AuditRecord whose `event` setter deletes the other
//   members only in a record that carried several (a record has one: deleting the 14 others from
//   each new record did nothing but cost).
import $protobuf from 'protobufjs/minimal.js';
import { normalizeLongs, pb, type DecodedRecord } from './schema.js';

/** Strings up to this length are interned (protobufjs hands longer ones to TextDecoder). */
const MAX_INTERNED_BYTES = 64;
/** Slots of the intern table (a power of two): bounded memory whatever the input. */
const SLOTS = 4096;

class InterningReader extends $protobuf.BufferReader {
  private readonly keys: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(SLOTS).fill(undefined);
  private readonly strings: string[] = new Array<string>(SLOTS).fill('');

  constructor() {
    super(Buffer.alloc(0));
  }

  /** Points the reader at `buf[start, end)`. */
  reset(buf: Buffer, start: number, end: number): void {
    this.buf = buf;
    this.pos = start;
    this.len = end;
    this.view = null;
  }

  override stringVerify(): string {
    const at = this.pos;
    const n = this.size();
    const start = this.pos;
    const end = start + n;
    if (n === 0) return '';
    if (n > MAX_INTERNED_BYTES || end > this.len) return this.strict(at);
    const buf = this.buf;
    // The slot from the length and 8 bytes spread over the string; the comparison below checks
    // all of them (a key was ASCII when it went in, so equal bytes are valid UTF-8).
    let h = Math.imul(n, 0x9e3779b1);
    h = Math.imul(h ^ buf[start]!, 0x01000193);
    h = Math.imul(h ^ buf[start + (n >> 3)]!, 0x01000193);
    h = Math.imul(h ^ buf[start + (n >> 2)]!, 0x01000193);
    h = Math.imul(h ^ buf[start + ((3 * n) >> 3)]!, 0x01000193);
    h = Math.imul(h ^ buf[start + (n >> 1)]!, 0x01000193);
    h = Math.imul(h ^ buf[start + ((5 * n) >> 3)]!, 0x01000193);
    h = Math.imul(h ^ buf[start + ((3 * n) >> 2)]!, 0x01000193);
    h = Math.imul(h ^ buf[end - 1]!, 0x01000193);
    const slot = (h ^ (h >>> 15)) & (SLOTS - 1);
    const key = this.keys[slot];
    if (key !== undefined && key.length === n) {
      let i = 0;
      while (i < n && key[i] === buf[start + i]) i++;
      if (i === n) {
        this.pos = end;
        return this.strings[slot]!;
      }
    }
    let bits = 0;
    for (let i = start; i < end; i++) bits |= buf[i]!;
    if ((bits & 0x80) !== 0) return this.strict(at);
    this.pos = end;
    const s = (buf as Buffer).toString('latin1', start, end);
    this.keys[slot] = Uint8Array.from(buf.subarray(start, end));
    this.strings[slot] = s;
    return s;
  }

  /** protobufjs' own strict read, from the string's length prefix at `at`. */
  private strict(at: number): string {
    this.pos = at;
    return super.stringVerify();
  }
}

const PROTO = pb.AuditRecord.prototype as unknown as Record<string, unknown>;
const EVENT = Object.getOwnPropertyDescriptor(PROTO, 'event')!;
/** The members of the `event` oneof, found with its own getter (it names the member set). */
const EVENT_MEMBERS = Object.keys(PROTO).filter((k) => PROTO[k] === null && EVENT.get!.call({ [k]: {} }) === k);

/** Members of `event` set in the record being decoded (BulkDecoder.decode zeroes it). */
let eventsSet = 0;

/**
 * AuditRecord whose `event` setter deletes the other members only when the record carried more
 * than one (protobufjs deletes all 14 others from every new record). The decoder assigns a member
 * and then sets `event`, so at the first set no other member can be there. Reads the same;
 * AuditRecord's constructor does nothing without properties (its defaults live on the
 * prototype), so neither does this one.
 */
function BulkRecord(): void {}
BulkRecord.prototype = Object.create(PROTO, {
  constructor: { value: BulkRecord, writable: true, configurable: true },
  event: {
    get: EVENT.get,
    set(this: Record<string, unknown>, name: string): void {
      if (++eventsSet === 1) return;
      for (let i = 0; i < EVENT_MEMBERS.length; i++) {
        const k = EVENT_MEMBERS[i]!;
        if (k !== name && this[k] != null) delete this[k];
      }
    },
    configurable: true,
  },
});
const NewRecord = BulkRecord as unknown as new () => DecodedRecord;

/** The generated decode with its arguments the .d.ts leaves out: end-group tag, depth, target. */
type DecodeInto = (r: $protobuf.Reader, l: undefined, z: undefined, q: undefined, into: DecodedRecord) => DecodedRecord;
const decodeInto = pb.AuditRecord.decode as unknown as DecodeInto;

export class BulkDecoder {
  private readonly reader = new InterningReader();

  /** The record in `buf[start, end)`, as decodeRecord would give it. Throws on malformed bytes. */
  decode(buf: Buffer, start: number, end: number): DecodedRecord {
    const r = this.reader;
    r.reset(buf, start, end);
    eventsSet = 0;
    return normalizeLongs(decodeInto(r, undefined, undefined, undefined, new NewRecord()));
  }

  /** The record that is all of `bytes`. */
  decodeBytes(bytes: Uint8Array): DecodedRecord {
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return this.decode(buf, 0, buf.length);
  }
}
