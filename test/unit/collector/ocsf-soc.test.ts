// What a SOC analyst queries in the collector's output (docs/audit.md, Collector output): the OCSF
// line of a command names the accountable owner, the workload, the task and the agent's address;
// an outcome names the agent and the points; a refusal before policy has no empty policy uid; a
// Modbus address 0 survives; every hash in the NDJSON is hex. Records go through the real encoder
// and decoder, as the collector gets them.
import { describe, expect, it } from 'vitest';
import { auditGapRecord, decisionRecord, outcomeRecord, type AuditEvent } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord } from '../../../src/audit/schema.js';
import { leafHash } from '../../../src/audit/hash.js';
import { recordFromJson, recordToJson } from '../../../src/collector/ndjson.js';
import { toOcsf } from '../../../src/collector/ocsf.js';
import { readable } from '../../../src/cli/commands/audit.js';
import { allow, cmd, subject } from '../audit/fixtures.js';

function collected(event: AuditEvent, seq = 7): Record<string, any> {
  const bytes = encodeRecord({ ...event, schemaVersion: 1, gatewayId: 'gw-1', seq, timeUnixMs: 1_780_000_000_000, prevHash: new Uint8Array(32).fill(0xab) });
  return recordToJson(decodeRecord(bytes), leafHash(bytes));
}

describe('OCSF lines a SOC can query', () => {
  it('a decision names the owner as the accountable user, the workload, the task and purpose, and the agent address', () => {
    const e = toOcsf(collected(decisionRecord(cmd, subject, allow, { transactionId: 3 }, '10.1.2.3:50512')))!;
    expect(e.actor.user).toEqual({ uid: 'team-energy', name: 'team-energy', type_id: 1, type: 'User' });
    expect(e.actor).toMatchObject({ app_uid: subject.workloadId, invoked_by: 'alice@plant.example' });
    expect(e.metadata.correlation_uid).toBe('T-42');
    expect(e.unmapped).toMatchObject({ task_id: 'T-42', task_purpose: 'tune pump schedule' });
    expect(e.message).toContain('for task T-42 (tune pump schedule)');
    expect(e.src_endpoint).toEqual({ ip: '10.1.2.3', port: 50512 });
    expect(e.actor.authorizations).toEqual([{ decision: 'allow', policy: { uid: 'r-7', version: '12' } }]);
  });

  it('an IPv6 agent address is split into ip and port', () => {
    expect(toOcsf(collected(decisionRecord(cmd, subject, allow, undefined, '[fd00::7]:5020')))!.src_endpoint).toEqual({ ip: 'fd00::7', port: 5020 });
  });

  it('a refusal before policy (no rule) carries no empty policy uid', () => {
    const e = toOcsf(collected(decisionRecord(cmd, undefined, { effect: 'deny', reason: 'NO_TOKEN', ruleId: '', bundleRevision: 0, durable: false }, undefined, '10.1.2.3:1')))!;
    expect(e.actor.authorizations).toEqual([{ decision: 'deny' }]);
    expect(e.actor.user).toMatchObject({ name: 'unidentified' });
    expect(JSON.stringify(e)).not.toContain('"uid":""');
  });

  it('an outcome names the agent, the asset and the points, as a Read or Update', () => {
    const e = toOcsf(collected(outcomeRecord({ decisionSeq: 6, sessionId: 's-1', status: 'ok', workloadId: subject.workloadId, assetId: 'pump1', points: ['pump1.speed_setpoint'], operation: 'write' })))!;
    expect(e).toMatchObject({ activity_name: 'Update', actor: { app_uid: subject.workloadId }, resources: [{ uid: 'pump1', type: 'asset' }, { uid: 'pump1.speed_setpoint', type: 'point' }] });
  });

  it('keeps a Modbus address 0 in the NDJSON, the OCSF line and audit tail', () => {
    const json = collected(decisionRecord({ ...cmd, targets: [{ table: 'holding', address: 0, count: 1 }] }, subject, allow));
    expect(json.decision.command.targets).toEqual([{ table: 'holding', address: 0, count: 1 }]);
    expect(toOcsf(json)!.unmapped.targets[0].address).toBe(0);
    expect(readable(JSON.stringify(json))).toContain('holding:0');
  });

  it('writes every hash of the NDJSON in hex, and reads it back to the same record bytes', () => {
    const event = auditGapRecord({ firstSeq: 3, lastSeq: 4, cause: 'test', lastCheckpoint: { size: 2, root: new Uint8Array(32).fill(0xcd) }, unknownHashes: 0, detail: '' });
    const bytes = encodeRecord({ ...event, schemaVersion: 1, gatewayId: 'gw-1', seq: 9, timeUnixMs: 1, prevHash: new Uint8Array(32).fill(0xab) });
    const json = recordToJson(decodeRecord(bytes), leafHash(bytes)) as Record<string, any>;
    expect(json.auditGap.lastCheckpointRoot).toBe('cd'.repeat(32));
    expect(json.prevHash).toBe('ab'.repeat(32));
    expect(Buffer.from(encodeRecord(recordFromJson(JSON.parse(JSON.stringify(json))))).equals(Buffer.from(bytes))).toBe(true);
  });
});
