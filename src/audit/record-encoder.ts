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
// The Identity cache is keyed by object identity: records.ts maps each Subject to one
// IdentityProps object once and never mutates it; nobody else may either.
import protobuf from 'protobufjs/minimal.js';
import { pb, type AuditRecordProps, type CommandDecisionProps, type IdentityProps } from './schema.js';

const has = Object.prototype.hasOwnProperty;

/** Encoded `CommandDecision.subject` fields (tag 1, wire type 2), one per IdentityProps object. */
const identityFields = new WeakMap<IdentityProps, Uint8Array>();

function identityField(id: IdentityProps): Uint8Array {
  let f = identityFields.get(id);
  if (f === undefined) {
    // finish() copies: the cached bytes own their memory, not a slice of a pooled buffer.
    f = pb.Identity.encode(id, protobuf.Writer.create().uint32(/* id 1, wire type 2 */ 10).fork()).ldelim().finish();
    identityFields.set(id, f);
  }
  return f;
}

/** A Writer whose buffer grew past this after a huge record is dropped rather than kept. */
const KEEP_WRITER_BYTES = 64 * 1024;

export class RecordEncoder {
  private w: protobuf.Writer = protobuf.Writer.create();

  /**
   * Encodes `0x00 || record`. The returned view is the encoder's own buffer and is valid only
   * until the next call: the caller hashes it and copies `subarray(1)` (the record) out.
   */
  encodeLeafInput(rec: AuditRecordProps): Buffer {
    let w = this.w;
    if (w.buf.length > KEEP_WRITER_BYTES) w = this.w = protobuf.Writer.create();
    w.reset();
    try {
      w.uint32(0);
      if (!encodeDecision(rec, w)) pb.AuditRecord.encode(rec, w);
    } catch (err) {
      // A half-written Writer may hold open forks: start over with a fresh one.
      this.w = protobuf.Writer.create();
      throw err;
    }
    return w.finish(true) as Buffer;
  }
}

/**
 * The generated AuditRecord encoder's output for a record whose event is a command decision,
 * written into `w`; false (nothing written) when `rec` is anything else. Mirrors the generated
 * code's conditions field by field (presence, own property, default value skipped).
 */
function encodeDecision(rec: AuditRecordProps, w: protobuf.Writer): boolean {
  const d = rec.decision;
  if (
    d == null ||
    !has.call(rec, 'decision') ||
    rec.session != null ||
    rec.token != null ||
    rec.outcome != null ||
    rec.bundle != null ||
    rec.violation != null ||
    rec.checkpoint != null ||
    rec.revocation != null ||
    rec.interlockTrip != null ||
    rec.approval != null ||
    rec.freeze != null ||
    rec.auditGap != null ||
    rec.restart != null ||
    rec.dropped != null ||
    rec.sinkAlert != null ||
    (rec as { $unknowns?: unknown }).$unknowns != null ||
    (d as { $unknowns?: unknown }).$unknowns != null ||
    // 64-bit fields as Long objects (never from the log, which stamps numbers): generated path.
    (rec.seq != null && typeof rec.seq !== 'number') ||
    (rec.timeUnixMs != null && typeof rec.timeUnixMs !== 'number')
  ) {
    return false;
  }
  if (rec.schemaVersion != null && has.call(rec, 'schemaVersion') && rec.schemaVersion !== 0) w.uint32(8).uint32(rec.schemaVersion);
  if (rec.gatewayId != null && has.call(rec, 'gatewayId') && rec.gatewayId !== '') w.uint32(18).string(rec.gatewayId);
  if (rec.seq != null && has.call(rec, 'seq') && rec.seq !== 0) w.uint32(24).uint64(rec.seq);
  if (rec.timeUnixMs != null && has.call(rec, 'timeUnixMs') && rec.timeUnixMs !== 0) w.uint32(32).int64(rec.timeUnixMs);
  if (rec.prevHash != null && has.call(rec, 'prevHash') && rec.prevHash.length) w.uint32(42).bytes(rec.prevHash);
  w.uint32(/* id 12, wire type 2 */ 98).fork();
  encodeDecisionBody(d, w);
  w.ldelim();
  return true;
}

function encodeDecisionBody(d: CommandDecisionProps, w: protobuf.Writer): void {
  if (d.subject != null && has.call(d, 'subject')) w.raw(identityField(d.subject));
  if (d.command != null && has.call(d, 'command')) pb.CommandInfo.encode(d.command, w.uint32(18).fork()).ldelim();
  if (d.decision != null && has.call(d, 'decision')) pb.DecisionInfo.encode(d.decision, w.uint32(26).fork()).ldelim();
  if (d.mcp != null && has.call(d, 'mcp')) pb.McpCall.encode(d.mcp, w.uint32(/* id 10, wire type 2 */ 82).fork()).ldelim();
}
