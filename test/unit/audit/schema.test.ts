import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHash, toHex, ZERO_HASH } from '../../../src/audit/hash.js';
import { decisionRecord, outcomeRecord, violationRecord } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord, pb } from '../../../src/audit/schema.js';
import { allow, cmd, subject } from './fixtures.js';

const decision = allow;

describe('audit record schema', () => {
  it('round-trips a decision record with identity, targets, values and 64-bit fields as numbers', () => {
    const bytes = encodeRecord({
      ...decisionRecord(cmd, subject, decision, { unitId: 1, transactionId: 77 }),
      schemaVersion: 1,
      gatewayId: 'gw-1',
      seq: 2 ** 40 + 3,
      timeUnixMs: 1_768_478_400_123,
      prevHash: ZERO_HASH,
    });
    const r = decodeRecord(bytes);
    expect(r.seq).toBe(2 ** 40 + 3);
    expect(r.timeUnixMs).toBe(1_768_478_400_123);
    expect(r.event).toBe('decision');
    expect(r.decision?.subject?.workloadId).toBe(subject.workloadId);
    expect(r.decision?.subject?.actSub).toEqual(['alice@plant.example']);
    expect(r.decision?.command?.targets?.[0]).toMatchObject({ table: 'holding', address: 40, count: 1 });
    expect(r.decision?.command?.values).toEqual({ 'pump1.speed_setpoint': 150 });
    expect(r.decision?.command?.rawValues).toEqual([1500]);
    expect(r.decision?.command?.transactionId).toBe(77);
    expect(r.decision?.decision).toMatchObject({ effect: pb.Effect.ALLOW, reason: 'ALLOWED', ruleId: 'r-7', bundleRevision: 12 });
  });

  it('records an OPC UA write of typed values (string, array, 64-bit, time, bytes) with its browse path, and cuts a huge string with its length and SHA-256', () => {
    const huge = 'x'.repeat(5000);
    const ua: typeof cmd = {
      ...cmd,
      protocol: 'opcua',
      targets: [{ nodeId: 'nsu=urn:acme:plc:line1;s=Line1.Recipe', browsePath: '/Line1/Recipe', attribute: 'Value' }],
      points: ['/Line1/Recipe'],
      values: {},
      typedValues: { recipe: 'B-7', setpoints: [1.5, 2], count: 2n ** 60n, at: new Date(Date.UTC(2026, 0, 15, 8)), raw: Uint8Array.of(1, 2, 255), huge },
    };
    const r = decodeRecord(encodeRecord({ ...decisionRecord(ua, subject, decision), schemaVersion: 1, gatewayId: 'gw-1', seq: 1, timeUnixMs: 1, prevHash: ZERO_HASH }));
    expect(r.decision?.command?.targets?.[0]).toMatchObject({ nodeId: 'nsu=urn:acme:plc:line1;s=Line1.Recipe', browsePath: '/Line1/Recipe', attribute: 'Value' });
    const t = r.decision?.command?.typedValues ?? {};
    expect(t.recipe).toBe('"B-7"');
    expect(t.setpoints).toBe('[1.5,2]');
    expect(t.count).toBe('"1152921504606846976"');
    expect(t.at).toBe('"2026-01-15T08:00:00.000Z"');
    expect(t.raw).toBe('"base64:AQL/"');
    expect(t.huge!.length).toBeLessThan(1200);
    expect(t.huge).toContain(`(5002 chars, sha256 ${createHash('sha256').update(JSON.stringify(huge)).digest('hex')})`);
  });

  it('reads seq 0 and absent 64-bit fields as the number 0, not a Long', () => {
    const r = decodeRecord(encodeRecord({ ...outcomeRecord({ decisionSeq: 0, sessionId: 's', status: 'ok' }) }));
    expect(r.seq).toBe(0);
    expect(r.timeUnixMs).toBe(0);
    expect(r.outcome?.decisionSeq).toBe(0);
    expect(r.outcome?.upstreamLatencyUs).toBe(0);
  });

  it('never carries a token: identity holds the token id and thumbprint only', () => {
    const bytes = encodeRecord(decisionRecord(cmd, subject, decision));
    const text = Buffer.from(bytes).toString('latin1');
    expect(text).toContain('jti-1');
    const fields = Object.keys(pb.Identity.toObject(decodeRecord(bytes).decision!.subject as never, { defaults: true }));
    expect(fields.some((f) => /token|key|secret/i.test(f))).toBe(false);
  });

  it('round-trips arbitrary violation records', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 50 }), fc.string(), fc.nat({ max: 255 }), (seq, detail, fc_) => {
        const bytes = encodeRecord({
          ...violationRecord({ sessionId: 's', protocol: 'modbus', remoteAddress: '127.0.0.1:1', detail, functionCode: fc_ }),
          seq,
        });
        const r = decodeRecord(bytes);
        expect(r.seq).toBe(seq);
        expect(r.violation?.detail ?? '').toBe(detail);
        expect(r.violation?.functionCode ?? 0).toBe(fc_);
      }),
    );
  });
});

describe('leaf hash', () => {
  it('is SHA-256 over 0x00 followed by the record bytes (RFC 9162 leaf)', () => {
    const bytes = encodeRecord({ seq: 1, gatewayId: 'gw' });
    const expected = createHash('sha256').update(Buffer.concat([Buffer.from([0]), Buffer.from(bytes)])).digest('hex');
    expect(toHex(leafHash(bytes))).toBe(expected);
  });

  it('matches the RFC 6962 empty-leaf test vector', () => {
    // SHA-256(0x00): the leaf hash of an empty entry, published in RFC 6962 test data.
    expect(toHex(leafHash(new Uint8Array(0)))).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });
});
