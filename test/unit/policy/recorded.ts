// Recorded traffic for the learn / replay unit tests: commands, subjects and decisions turned into
// audit records through the real record builders and the real codec (encode, then decode), as
// they would come out of a spool.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { decisionRecord, interlockTripRecord, outcomeRecord, type AuditEvent } from '../../../src/audit/records.js';
import { decodeRecord, encodeRecord, SCHEMA_VERSION, type DecodedRecord } from '../../../src/audit/schema.js';
import { encodeSpoolFrame } from '../../../src/audit/spool.js';
import type { Command, Decision, Subject } from '../../../src/core/command.js';

export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0); // a Thursday

export function agent(name: string, extra: Partial<Subject> = {}): Subject {
  return {
    workloadId: `spiffe://plant.example/agent/${name}`, owner: 'alice@plant.example', taskId: 't', taskPurpose: 'test', jti: `jti-${name}`,
    roles: [], scopes: ['read', 'write'], assurance: 'mtls+token', issuer: 'https://issuer.dev.plantgate.local', expiresAtMs: 0, issuedAtMs: 0, ...extra,
  };
}

/** A Modbus command to the demo plant's plc1 (unit 1), as the adapter builds it. */
export function modbus(op: 'read' | 'write', fc: number, table: 'coil' | 'holding' | 'input', address: number, raw?: number[], count = raw?.length ?? 1): Command {
  const c: Command = { sessionId: 's-1', protocol: 'modbus', unitId: 1, assetId: 'plc1', operation: op, functionCode: fc, targets: [{ table, address, count }], points: [] };
  if (raw) c.rawValues = raw;
  return c;
}

export const allowed = (ruleId = 'r'): Decision => ({ effect: 'allow', reason: 'ALLOWED', ruleId, bundleRevision: 1, durable: true });
export const denied = (reason: Decision['reason'], ruleId = ''): Decision => ({ effect: 'deny', reason, ruleId, bundleRevision: 1, durable: false });
export const shadowed = (reason: Decision['reason'], ruleId = ''): Decision => ({ effect: 'allow', reason: 'ALLOWED', ruleId, bundleRevision: 1, durable: true, shadow: { reason, ruleId } });

export class Recorder {
  seq = 0;
  readonly records: DecodedRecord[] = [];
  /** The records as the gateway encoded them. */
  readonly encoded: Uint8Array[] = [];
  constructor(readonly gatewayId = 'gw-1') {}

  private put(timeMs: number, event: AuditEvent): DecodedRecord {
    const bytes = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: this.gatewayId, seq: this.seq++, timeUnixMs: timeMs, prevHash: new Uint8Array(32), ...event });
    const r = decodeRecord(bytes);
    this.records.push(r);
    this.encoded.push(bytes);
    return r;
  }

  decision(timeMs: number, cmd: Command, subject: Subject | undefined, decision: Decision): DecodedRecord {
    const r = this.put(timeMs, decisionRecord(cmd, subject, decision, { unitId: cmd.unitId ?? 0, transactionId: 1 }));
    if (decision.effect === 'allow' && decision.durable) this.put(timeMs + 1, outcomeRecord({ decisionSeq: r.seq as number, sessionId: cmd.sessionId, status: 'ok' }));
    return r;
  }

  trip(timeMs: number, cmd: Command, subject: Subject, inputs: { point: string; value: number; ageMs: number; maxAgeMs: number }[], reason: 'INTERLOCK' | 'INTERLOCK_INPUT_STALE' | 'INTERLOCK_INPUT_IMPLAUSIBLE' = 'INTERLOCK'): DecodedRecord {
    return this.put(timeMs, interlockTripRecord({ sessionId: cmd.sessionId, subject, assetId: cmd.assetId, trip: { reason, interlockId: 'tank1-overfill', point: 'pump1.run', detail: '', inputs } }));
  }

  /** The records as one spool segment in `dir` (the gateway's framing: length, CRC, record). */
  async writeSpool(dir: string): Promise<string> {
    const file = path.join(dir, `${'0'.repeat(16)}.seg`);
    await writeFile(file, Buffer.concat(this.encoded.map((b) => encodeSpoolFrame(b))));
    return file;
  }
}
