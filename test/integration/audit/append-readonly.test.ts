// The audit log reads what it is handed and writes nothing onto it (docs/architecture.md, Seams:
// audit events): the pipeline and the fronts may keep, share or freeze the events they append.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/log.js';
import { decisionRecord, outcomeRecord } from '../../../src/audit/records.js';
import { decodeRecord } from '../../../src/audit/schema.js';
import { ManualClock } from '../../../src/core/clock.js';
import { allow, cmd, subject } from '../../unit/audit/fixtures.js';

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

let dir = '';
afterEach(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('audit append', () => {
  it('records frozen events unchanged, stamping the record and not the caller\'s object', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pg-append-ro-'));
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock: new ManualClock(1_768_478_400_000) });
    const decision = deepFreeze(decisionRecord(cmd, subject, allow, { unitId: 1, transactionId: 7 }));
    const before = JSON.stringify(decision);
    const seq = await log.appendDurable(decision);
    const outcome = deepFreeze(outcomeRecord({ decisionSeq: seq, sessionId: 's-1', status: 'ok', upstreamLatencyUs: 5 }));
    log.append(outcome);
    await log.close();
    expect(JSON.stringify(decision)).toBe(before);
    expect(Object.keys(decision)).toEqual(['decision']);
    expect(Object.keys(outcome)).toEqual(['outcome']);
    const reopened = await AuditLog.open({ dir, gatewayId: 'gw-1', clock: new ManualClock(1_768_478_400_000) });
    const recs = (await reopened.readFrom(0, 10)).map((r) => decodeRecord(r.bytes));
    await reopened.close();
    expect(recs.slice(0, 2).map((r) => [r.seq, r.gatewayId, r.decision?.command?.transactionId ?? r.outcome?.decisionSeq])).toEqual([
      [0, 'gw-1', 7],
      [1, 'gw-1', 0],
    ]);
  });
});
