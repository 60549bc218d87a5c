// The audit wire schema as TypeScript sees it: re-exports the generated protobuf code
// (protocols/audit/gen, from `npm run proto`) and turns protobufjs' 64-bit values into numbers.
// Owns decoding of untrusted bytes into records and frames; never hashes or does I/O.
import { plantgate } from '../../protocols/audit/gen/audit.js';

export const pb = plantgate.audit;
export type AuditRecordProps = plantgate.audit.AuditRecord.$Properties;
export type IdentityProps = plantgate.audit.Identity.$Properties;
export type CommandInfoProps = plantgate.audit.CommandInfo.$Properties;
export type DecisionInfoProps = plantgate.audit.DecisionInfo.$Properties;
export type CommandDecisionProps = plantgate.audit.CommandDecision.$Properties;
export type CommandOutcomeProps = plantgate.audit.CommandOutcome.$Properties;
export type SessionEventProps = plantgate.audit.SessionEvent.$Properties;
export type TokenEventProps = plantgate.audit.TokenEvent.$Properties;
export type BundleEventProps = plantgate.audit.BundleEvent.$Properties;
export type ProtocolViolationProps = plantgate.audit.ProtocolViolation.$Properties;
export type CheckpointEventProps = plantgate.audit.CheckpointEvent.$Properties;
export type RevocationEventProps = plantgate.audit.RevocationEvent.$Properties;
export type DecodedRecord = plantgate.audit.AuditRecord;

export const SCHEMA_VERSION = 1;

/**
 * protobufjs decodes 64-bit fields as Long whenever the `long` package is installed (it is, as a
 * dependency of protobufjs), whatever the generator was told. Seqs, times and revisions stay far
 * below 2^53, so we convert them once, here, at the boundary.
 */
export function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v !== null && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return 0;
}

/** Decodes a record and normalises its 64-bit fields to numbers. Throws on malformed bytes. */
export function decodeRecord(bytes: Uint8Array): DecodedRecord {
  return normalizeLongs(pb.AuditRecord.decode(bytes));
}

/** Turns a record's 64-bit fields (Long when decoded or built from an object) into numbers. */
export function normalizeLongs(r: DecodedRecord): DecodedRecord {
  r.seq = num(r.seq);
  r.timeUnixMs = num(r.timeUnixMs);
  if (r.decision?.decision) r.decision.decision.bundleRevision = num(r.decision.decision.bundleRevision);
  if (r.outcome) {
    r.outcome.decisionSeq = num(r.outcome.decisionSeq);
    r.outcome.upstreamLatencyUs = num(r.outcome.upstreamLatencyUs);
  }
  if (r.bundle) r.bundle.revision = num(r.bundle.revision);
  if (r.token) r.token.expiresAtUnixMs = num(r.token.expiresAtUnixMs);
  if (r.checkpoint) r.checkpoint.treeSize = num(r.checkpoint.treeSize);
  if (r.revocation) r.revocation.revokedAtUnixMs = num(r.revocation.revokedAtUnixMs);
  if (r.interlockTrip) for (const i of r.interlockTrip.inputs ?? []) {
    i.ageMs = num(i.ageMs);
    i.maxAgeMs = num(i.maxAgeMs);
  }
  if (r.approval) r.approval.expiresAtUnixMs = num(r.approval.expiresAtUnixMs);
  if (r.auditGap) {
    const g = r.auditGap;
    g.firstSeq = num(g.firstSeq);
    g.lastSeq = num(g.lastSeq);
    g.lastCheckpointSize = num(g.lastCheckpointSize);
    g.unknownHashes = num(g.unknownHashes);
  }
  if (r.restart) {
    const x = r.restart;
    x.lastSeq = num(x.lastSeq);
    x.lastTimeUnixMs = num(x.lastTimeUnixMs);
    x.outcomeUnknown = (x.outcomeUnknown ?? []).map(num);
    x.tornBytes = num(x.tornBytes);
  }
  if (r.dropped) {
    const d = r.dropped;
    d.count = num(d.count);
    d.denials = num(d.denials);
    d.firstUnixMs = num(d.firstUnixMs);
    d.lastUnixMs = num(d.lastUnixMs);
    const by = d.byEvent ?? {};
    for (const k of Object.keys(by)) by[k] = num(by[k]);
  }
  if (r.sinkAlert) r.sinkAlert.streamSeq = num(r.sinkAlert.streamSeq);
  if (r.freeze) {
    r.freeze.frozenAtUnixMs = num(r.freeze.frozenAtUnixMs);
    r.freeze.expiresAtUnixMs = num(r.freeze.expiresAtUnixMs);
  }
  return r;
}

/** The record bytes that get hashed, spooled and shipped. */
export function encodeRecord(record: AuditRecordProps): Uint8Array {
  return pb.AuditRecord.encode(record).finish();
}
