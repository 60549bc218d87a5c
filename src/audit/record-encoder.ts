// Encodes audit records for the log's append path, byte for byte what
// `pb.AuditRecord.encode(record).finish()` produces: those bytes are hashed, spooled and shipped,
// and the tree, checkpoints, the collector and stored vectors all depend on them. Pure: no I/O.
//
// Why not just call the generated encoder: it runs twice per command, and per record it created a
// Writer, grew its buffer twice, copied the result out in finish(), and re-encoded the same
// Identity (eleven strings) for every command of a session. Here one Writer is reused (its buffer
// only grows), the record is encoded behind the RFC 9162 leaf prefix 0x00 so the leaf hash is one
// one-shot SHA-256 over the encoder's own buffer, and a command decision's Identity is encoded
// once per IdentityProps object and copied in as raw bytes (`tag || length || Identity`, the same
// wire bytes the generated CommandDecision encoder writes). Every other record kind, and any
// record this path does not recognise exactly, goes through the generated code unchanged; a
// property test (test/unit/audit/record-encoder.test.ts) holds the two equal.
//
// Sealed: inputs are read-only (the stamp the log assigns is passed beside the event, never written
// onto it), and the fast path takes a record only when every field it carries is one it writes
// itself; any other field, including one audit.proto gains later, sends the record to the generated
// code. test/unit/audit/record-encoder-schema.test.ts sets every field of the schema, read by
// reflection from audit.proto, and holds the two encoders equal.
//
// The Identity cache is keyed by object identity, so it holds only frozen objects: records.ts
// freezes the IdentityProps it maps each (frozen) Subject to; an unfrozen Identity is encoded each time.
import protobuf from 'protobufjs/minimal.js';
import type { AuditEvent } from './records.js';
import { pb, type AuditRecordProps, type CommandDecisionProps, type IdentityProps } from './schema.js';

/** What the log stamps on every record: AuditRecord fields 1-5, which no event carries. */
export interface RecordStamp {
  readonly schemaVersion: number;
  readonly gatewayId: string;
  readonly seq: number;
  readonly timeUnixMs: number;
  readonly prevHash: Uint8Array;
}

const has = Object.prototype.hasOwnProperty;

/** Encoded `CommandDecision.subject` fields (tag 1, wire type 2), one per frozen IdentityProps object. */
const identityFields = new WeakMap<Readonly<IdentityProps>, Uint8Array>();

function identityField(id: Readonly<IdentityProps>): Uint8Array {
  let f = identityFields.get(id);
  if (f === undefined) {
    // finish() copies: the cached bytes own their memory, not a slice of a pooled buffer.
    f = pb.Identity.encode(id, protobuf.Writer.create().uint32(/* id 1, wire type 2 */ 10).fork()).ldelim().finish();
    if (Object.isFrozen(id)) identityFields.set(id, f);
  }
  return f;
}

/** A Writer whose buffer grew past this after a huge record is dropped rather than kept. */
const KEEP_WRITER_BYTES = 64 * 1024;

export class RecordEncoder {
  private w: protobuf.Writer = protobuf.Writer.create();

  /**
   * Encodes `0x00 || record`, the record being the stamp's fields then the event's, as the generated
   * encoder writes `{ ...stamp, ...event }`. Neither argument is modified. The returned view is the
   * encoder's own buffer and is valid only until the next call: the caller hashes it and copies
   * `subarray(1)` (the record) out.
   */
  encodeLeafInput(stamp: RecordStamp, event: Readonly<AuditEvent>): Buffer {
    let w = this.w;
    if (w.buf.length > KEEP_WRITER_BYTES) w = this.w = protobuf.Writer.create();
    w.reset();
    try {
      w.uint32(0);
      // Fields 1-5 come first in field order, so writing them here and the event after gives the
      // generated encoder's bytes for the whole record.
      if (stamp.schemaVersion !== 0) w.uint32(8).uint32(stamp.schemaVersion);
      if (stamp.gatewayId !== '') w.uint32(18).string(stamp.gatewayId);
      if (stamp.seq !== 0) w.uint32(24).uint64(stamp.seq);
      if (stamp.timeUnixMs !== 0) w.uint32(32).int64(stamp.timeUnixMs);
      if (stamp.prevHash.length) w.uint32(42).bytes(stamp.prevHash);
      if (!encodeDecision(event, w)) pb.AuditRecord.encode(event as AuditRecordProps, w);
    } catch (err) {
      // A half-written Writer may hold open forks: start over with a fresh one.
      this.w = protobuf.Writer.create();
      throw err;
    }
    return w.finish(true) as Buffer;
  }
}

/**
 * The generated encoder's output for an event that is a command decision and nothing else, written
 * into `w`; false (nothing written) otherwise. Mirrors the generated code's conditions field by
 * field (presence, own property, default value skipped).
 */
function encodeDecision(event: Readonly<AuditEvent>, w: protobuf.Writer): boolean {
  const d = event.decision;
  if (d == null || !has.call(event, 'decision')) return false;
  // Any other field (another event, $unknowns, a field the schema gained) is the generated code's.
  for (const k in event) if (k !== 'decision') return false;
  for (const k in d) if (k !== 'subject' && k !== 'command' && k !== 'decision' && k !== 'mcp' && k !== 'outcome') return false;
  w.uint32(/* id 12, wire type 2 */ 98).fork();
  encodeDecisionBody(d, w);
  w.ldelim();
  return true;
}

function encodeDecisionBody(d: Readonly<CommandDecisionProps>, w: protobuf.Writer): void {
  if (d.subject != null && has.call(d, 'subject')) w.raw(identityField(d.subject));
  if (d.command != null && has.call(d, 'command')) pb.CommandInfo.encode(d.command, w.uint32(18).fork()).ldelim();
  if (d.decision != null && has.call(d, 'decision')) pb.DecisionInfo.encode(d.decision, w.uint32(26).fork()).ldelim();
  if (d.mcp != null && has.call(d, 'mcp')) pb.McpCall.encode(d.mcp, w.uint32(/* id 10, wire type 2 */ 82).fork()).ldelim();
  if (d.outcome != null && has.call(d, 'outcome')) pb.CommandOutcome.encode(d.outcome, w.uint32(/* id 11, wire type 2 */ 90).fork()).ldelim();
}
