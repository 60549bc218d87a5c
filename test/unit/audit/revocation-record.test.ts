import { describe, expect, it } from 'vitest';
import { revocationRecord } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord } from '../../../src/audit/schema.js';
import { ZERO_HASH } from '../../../src/audit/hash.js';
import type { Revocation } from '../../../src/identity/revocation.js';
import { recordToJson } from '../../../src/collector/ndjson.js';
import { leafHash } from '../../../src/audit/hash.js';

const stamp = { schemaVersion: 1, gatewayId: 'gw-1', seq: 9, timeUnixMs: 1_768_478_400_000, prevHash: ZERO_HASH };

describe('revocation audit record', () => {
  it('records who revoked which task of which workload, when and why, as its own event', () => {
    const r: Revocation = {
      kind: 'task',
      value: 'T-42',
      workloadId: 'spiffe://plant.example/agent/optimizer',
      reason: 'task complete',
      revokedAtMs: 1_768_478_399_000,
      source: 'agent',
      by: 'spiffe://plant.example/agent/optimizer',
    };
    const bytes = encodeRecord({ ...revocationRecord(r), ...stamp });
    const rec = decodeRecord(bytes);
    expect(rec.event).toBe('revocation');
    expect(rec.revocation).toMatchObject({
      kind: 'task',
      value: 'T-42',
      workloadId: 'spiffe://plant.example/agent/optimizer',
      reason: 'task complete',
      revokedAtUnixMs: 1_768_478_399_000,
      source: 'agent',
      by: 'spiffe://plant.example/agent/optimizer',
    });
    expect(recordToJson(rec, leafHash(bytes))).toMatchObject({ revocation: { kind: 'task', revokedAtUnixMs: 1_768_478_399_000 } });
  });

  it('names the operator given as `by` over the one stored in the revocation', () => {
    const r: Revocation = { kind: 'jti', value: 'jti-7', reason: 'leaked', revokedAtMs: 5, source: 'operator', by: 'svc' };
    const rec = decodeRecord(encodeRecord({ ...revocationRecord(r, 'alice@plant.example'), ...stamp }));
    expect(rec.revocation?.by).toBe('alice@plant.example');
    expect(rec.revocation?.workloadId).toBe('');
  });
});
