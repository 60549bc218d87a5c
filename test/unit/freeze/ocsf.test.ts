// What a SOC's OCSF pipeline receives for an emergency freeze: the record as the gateway encodes
// it, decoded and mapped exactly as the collector does (recordToJson, then toOcsf).
import { describe, expect, it } from 'vitest';
import { freezeRecord } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord } from '../../../src/audit/schema.js';
import { recordToJson } from '../../../src/collector/ndjson.js';
import { toOcsf } from '../../../src/collector/ocsf.js';
import type { FreezeChange } from '../../../src/freeze/store.js';

function ocsfOf(c: FreezeChange): Record<string, any> {
  const bytes = encodeRecord({ schemaVersion: 1, gatewayId: 'gw1', seq: 7, timeUnixMs: 1_767_000_000_000, prevHash: new Uint8Array(32), ...freezeRecord(c) });
  return toOcsf(recordToJson(decodeRecord(bytes), new Uint8Array(32))) as Record<string, any>;
}

describe('OCSF mapping of emergency freezes', () => {
  const freeze = { id: 'frz-abc', scope: 'asset' as const, value: 'plc1', mode: 'writes' as const, reason: 'leak on tank 1', by: 'bob@plant.example', frozenAtMs: 1_767_000_000_000, expiresAtMs: 1_767_003_600_000, unfreezeVotes: [] };

  it('maps a freeze to Entity Management: Create, naming who, what and why', () => {
    const o = ocsfOf({ kind: 'frozen', freeze, by: 'bob@plant.example', reason: 'leak on tank 1', needed: 2 });
    expect(o).toMatchObject({ class_uid: 3004, activity_name: 'Create', type_uid: 300401, actor: { user: { uid: 'bob@plant.example' } }, entity: { uid: 'frz-abc', name: 'asset plc1' } });
    expect(o.message ?? o.status_detail ?? JSON.stringify(o)).toContain('leak on tank 1');
    expect(o.unmapped).toMatchObject({ kind: 'frozen', mode: 'writes', unfreeze_needed: 2 });
  });

  it('maps a two-person vote to Update and a lift or expiry to Delete', () => {
    const vote = { by: 'carol@plant.example', atMs: 1, reason: 'fixed' };
    expect(ocsfOf({ kind: 'unfreeze_requested', freeze: { ...freeze, unfreezeVotes: [vote] }, by: 'carol@plant.example', reason: 'fixed', needed: 2 })).toMatchObject({ activity_name: 'Update', unmapped: { unfreeze_by: ['carol@plant.example'] } });
    expect(ocsfOf({ kind: 'unfrozen', freeze, by: 'dave@plant.example', reason: 'fixed', needed: 2 }).activity_name).toBe('Delete');
    expect(ocsfOf({ kind: 'expired', freeze, by: '', reason: 'expired', needed: 1 }).activity_name).toBe('Delete');
  });
});
