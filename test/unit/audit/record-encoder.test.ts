import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordEncoder } from '../../../src/audit/record-encoder.js';
import { commandInfo, decisionRecord, identityOf, outcomeRecord, sessionRecord } from '../../../src/audit/records.js';
import { pb, type AuditRecordProps, type IdentityProps } from '../../../src/audit/schema.js';
import type { Subject } from '../../../src/core/command.js';
import { allow, cmd, subject as baseSubject } from './fixtures.js';

// What the log hashes, spools and ships must stay exactly the generated encoder's bytes: the tree,
// checkpoints, the collector's verification and stored vectors all depend on them. These
// properties fail if the fast path for command decisions drifts from the schema.

/** 0x00 || pb.AuditRecord.encode(rec): the leaf input the generated code gives. */
function reference(rec: AuditRecordProps): Buffer {
  return Buffer.concat([Buffer.from([0]), Buffer.from(pb.AuditRecord.encode(rec).finish())]);
}

/** The fast encoder's leaf input for a whole record: the stamp (fields 1-5) beside the event. */
function leaf(encoder: RecordEncoder, rec: AuditRecordProps): Buffer {
  const { schemaVersion, gatewayId, seq, timeUnixMs, prevHash, ...event } = rec;
  const stamp = { schemaVersion: schemaVersion ?? 0, gatewayId: gatewayId ?? '', seq: Number(seq ?? 0), timeUnixMs: Number(timeUnixMs ?? 0), prevHash: prevHash ?? new Uint8Array(0) };
  return encoder.encodeLeafInput(stamp, event);
}

// Empty strings, unicode (BMP and astral), long strings whose length prefix needs two bytes.
const text = fc.oneof(
  fc.constant(''),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
);
const u32 = fc.oneof(fc.constant(0), fc.nat({ max: 300 }), fc.nat({ max: 2 ** 32 - 1 }));
const u53 = fc.oneof(fc.constant(0), fc.nat({ max: 200 }), fc.maxSafeNat());

const identity: fc.Arbitrary<IdentityProps> = fc.record({
  workloadId: text,
  owner: text,
  taskId: text,
  taskPurpose: text,
  jti: text,
  actSub: fc.array(text, { maxLength: 3 }),
  roles: fc.array(text, { maxLength: 3 }),
  scopes: fc.array(text, { maxLength: 4 }),
  assurance: text,
  certThumbprint: text,
  issuer: text,
});

const command = fc.record({
  sessionId: text,
  protocol: text,
  assetId: text,
  operation: text,
  functionCode: u32,
  service: text,
  targets: fc.array(fc.record({ table: text, address: u32, count: u32, nodeId: text }), { maxLength: 3 }),
  points: fc.array(text, { maxLength: 4 }),
  rawValues: fc.array(u32, { maxLength: 8 }),
  values: fc.dictionary(text, fc.double(), { maxKeys: 4 }),
  unitId: u32,
  transactionId: u32,
});

const decisionInfo = fc.record({
  effect: fc.constantFrom(pb.Effect.EFFECT_UNSPECIFIED, pb.Effect.ALLOW, pb.Effect.DENY),
  reason: text,
  ruleId: text,
  bundleRevision: u53,
  interlockId: text,
  approvalId: text,
  durable: fc.boolean(),
  shadowReason: text,
  shadowRuleId: text,
  principal: text,
  shadows: fc.array(fc.record({ reason: text, ruleId: text, principal: text }), { maxLength: 3 }),
});

const mcpCall = fc.record({
  clientName: text,
  clientVersion: text,
  protocolVersion: text,
  mcpSessionId: text,
  tool: text,
  arguments: text,
});

/** What the log stamps, with the extremes: seq 0, large seqs, negative and huge times, no prev_hash. */
const header = fc.record({
  schemaVersion: fc.constantFrom(0, 1, 2, 300),
  gatewayId: text,
  seq: u53,
  timeUnixMs: fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 40), max: 2 ** 45 })),
  prevHash: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 32, maxLength: 32 })),
});

describe('audit record encoder', () => {
  it('encodes command decisions byte for byte as the generated encoder, identity cached or not', () => {
    // One encoder for the whole run: a reused Writer must not leak bytes from one record to the next.
    const encoder = new RecordEncoder();
    fc.assert(
      fc.property(
        header,
        fc.array(identity, { minLength: 1, maxLength: 3 }),
        fc.array(
          fc.record({
            who: fc.nat(),
            subject: fc.constantFrom('shared', 'fresh', 'absent', 'null'),
            command: fc.option(command, { nil: undefined }),
            decision: fc.option(decisionInfo, { nil: undefined }),
            // Commands from MCP tool calls carry the call (docs/mcp.md, Audit).
            mcp: fc.option(mcpCall, { nil: undefined }),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        (h, identities, events) => {
          for (const e of events) {
            const shared = identities[e.who % identities.length];
            const d: Record<string, unknown> = {};
            // The same object for every command of a session (cache hit), or a fresh copy (miss).
            if (e.subject === 'shared') d.subject = shared;
            else if (e.subject === 'fresh') d.subject = { ...shared };
            else if (e.subject === 'null') d.subject = null;
            if (e.command) d.command = e.command;
            if (e.decision) d.decision = e.decision;
            if (e.mcp) d.mcp = e.mcp;
            const rec: AuditRecordProps = { decision: d, ...h };
            expect(Buffer.from(leaf(encoder, rec))).toEqual(reference(rec));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('encodes outcome, session and other records as the generated encoder', () => {
    const encoder = new RecordEncoder();
    fc.assert(
      fc.property(
        header,
        fc.record({ decisionSeq: u53, status: text, exceptionCode: u32, upstreamLatencyUs: u53, sessionId: text, transactionId: u32 }),
        identity,
        text,
        (h, outcome, id, detail) => {
          for (const rec of [
            { outcome, ...h },
            { session: { kind: 'open', sessionId: detail, protocol: 'modbus', remoteAddress: '127.0.0.1:1', subject: id, detail }, ...h },
            { checkpoint: { treeSize: h.seq, rootHash: h.prevHash, origin: detail, note: detail }, ...h },
            h,
          ] as AuditRecordProps[]) {
            expect(Buffer.from(leaf(encoder, rec))).toEqual(reference(rec));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('encodes a record with two events set as the generated encoder does (no fast path)', () => {
    const encoder = new RecordEncoder();
    const rec: AuditRecordProps = {
      ...decisionRecord(cmd, subject, allow),
      outcome: { decisionSeq: 3, status: 'ok' },
      seq: 4,
    };
    expect(Buffer.from(leaf(encoder, rec))).toEqual(reference(rec));
  });

  it('encodes what the gateway builds: decisions with the session identity, and outcomes', () => {
    const encoder = new RecordEncoder();
    const id = identityOf(subject);
    for (let i = 0; i < 50; i++) {
      const d = { ...decisionRecord(cmd, subject, allow, { unitId: 1, transactionId: i }), schemaVersion: 1, gatewayId: 'gw-1', seq: 2 * i, timeUnixMs: 1_768_478_400_000 + i, prevHash: new Uint8Array(32).fill(i) };
      expect(d.decision?.subject).toBe(id);
      expect(Buffer.from(leaf(encoder, d))).toEqual(reference(d));
      const o = { ...outcomeRecord({ decisionSeq: 2 * i, sessionId: 's-1', status: 'ok', upstreamLatencyUs: 420 }), seq: 2 * i + 1 };
      expect(Buffer.from(leaf(encoder, o))).toEqual(reference(o));
    }
    const s = sessionRecord({ kind: 'open', sessionId: 's-1', protocol: 'modbus', remoteAddress: '127.0.0.1:1', subject });
    expect(Buffer.from(leaf(encoder, s))).toEqual(reference(s));
  });

  it('never records a stale identity for a Subject or Identity changed after an earlier record', () => {
    const encoder = new RecordEncoder();
    const mutable: Subject = { ...baseSubject };
    expect(identityOf(mutable).owner).toBe(baseSubject.owner);
    mutable.owner = 'someone-else';
    expect(identityOf(mutable).owner).toBe('someone-else');
    const id: IdentityProps = { ...identityOf(subject) };
    const rec = (): AuditRecordProps => ({ decision: { subject: id, command: commandInfo(cmd) }, seq: 1 });
    expect(leaf(encoder, rec())).toEqual(reference(rec()));
    id.jti = 'another-token';
    expect(leaf(encoder, rec())).toEqual(reference(rec()));
  });

  it('keeps encoding correctly after a record that cannot be encoded threw', () => {
    const encoder = new RecordEncoder();
    const bad = { decision: { command: { targets: [null] } } } as unknown as AuditRecordProps;
    expect(() => leaf(encoder, bad)).toThrow();
    const rec = { ...decisionRecord(cmd, subject, allow), seq: 9, gatewayId: 'gw-1' };
    expect(Buffer.from(leaf(encoder, rec))).toEqual(reference(rec));
  });

  it('encodes a record far larger than the reused buffer, then small ones again', () => {
    const encoder = new RecordEncoder();
    const big = { ...decisionRecord({ ...cmd, points: Array.from({ length: 2000 }, (_, i) => `tank${i}.level`) }, subject, allow), seq: 1 };
    expect(Buffer.from(leaf(encoder, big))).toEqual(reference(big));
    const small = { ...outcomeRecord({ decisionSeq: 1, sessionId: 's', status: 'ok' }), seq: 2 };
    expect(Buffer.from(leaf(encoder, small))).toEqual(reference(small));
  });
});

// The shared fixture, with unicode in the identity (BMP and astral), which the cached Identity bytes must carry.
// Frozen, as verify.ts hands Subjects out: only a frozen Subject's identity is cached.
const subject: Subject = Object.freeze({ ...baseSubject, owner: 'team-énergie', taskPurpose: 'tune pump schedule 🛠' });
