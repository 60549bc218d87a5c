// A synthetic day of a busy gateway's audit, for the policy learn / replay bench (its rate and
// memory figures, docs/policy.md): the demo plant's agents reading and writing (decision records, an outcome
// record after each allowed write, session records now and then), some of it what the demo bundle
// denies, written as real spool segments (framed, CRC'd, hash-chained) or as the collector's NDJSON.
// Deterministic: the same count gives the same records.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { leafHash, ZERO_HASH } from '../../src/audit/hash.js';
import { decisionRecord, outcomeRecord, sessionRecord, withOutcome } from '../../src/audit/records.js';
import { decodeRecord, encodeRecord, SCHEMA_VERSION } from '../../src/audit/schema.js';
import { encodeSpoolFrame } from '../../src/audit/spool.js';
import { recordToJson } from '../../src/collector/ndjson.js';
import type { Command, Decision, Subject } from '../../src/core/command.js';

export const SYNTHETIC_GATEWAY = 'bench-gw';
/** Thursday 2026-01-15 00:00 UTC; records are spread over the 24 hours after it. */
export const SYNTHETIC_START_MS = Date.UTC(2026, 0, 15, 0, 0, 0);

function subject(name: string, extra: Partial<Subject> = {}): Subject {
  return {
    workloadId: `spiffe://plant.example/agent/${name}`, owner: 'alice@plant.example', taskId: `T-${name}`, taskPurpose: `${name} duty`,
    jti: `jti-${name}-0001`, roles: [], scopes: ['read', 'write'], assurance: 'mtls+token',
    certThumbprint: 'q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c', issuer: 'https://issuer.dev.plantgate.local', expiresAtMs: 0, issuedAtMs: 0, ...extra,
  };
}

const REPORTER = subject('reporter', { scopes: ['read'] });
const OPTIMIZER = subject('optimizer');
const PLANNER = subject('planner');
const ASSISTANT = subject('assistant', { actSub: ['alice@plant.example'] });

function modbus(op: 'read' | 'write', fc: number, table: 'coil' | 'holding' | 'input', address: number, count: number, points: string[], raw?: number[], values?: Record<string, number>): Command {
  const c: Command = { sessionId: '', protocol: 'modbus', unitId: 1, assetId: 'plc1', operation: op, functionCode: fc, targets: [{ table, address, count }], points };
  if (raw) c.rawValues = raw;
  if (values) c.values = values;
  return c;
}

const allow = (ruleId: string, durable: boolean): Decision => ({ effect: 'allow', reason: 'ALLOWED', ruleId, bundleRevision: 7, durable });
const deny = (reason: Decision['reason'], ruleId: string): Decision => ({ effect: 'deny', reason, ruleId, bundleRevision: 7, durable: false });

/** The i-th command of the day: what it was, who sent it and what the demo bundle decided. */
function command(i: number): { cmd: Command; subject: Subject; decision: Decision } {
  const k = i % 20;
  if (k < 10) return { cmd: modbus('read', 4, 'input', 0, 1, ['tank1.level']), subject: REPORTER, decision: allow('agents-read-plant', false) };
  if (k < 12) return { cmd: modbus('read', 3, 'holding', 0, 2, ['tank1.setpoint', 'pump1.speed']), subject: OPTIMIZER, decision: allow('agents-read-plant', false) };
  if (k < 16) {
    const raw = 400 + ((i * 7919) % 400); // 40.0 .. 79.9 %
    return { cmd: modbus('write', 6, 'holding', 0, 1, ['tank1.setpoint'], [raw], { 'tank1.setpoint': raw / 10 }), subject: OPTIMIZER, decision: allow('optimizer-setpoint', true) };
  }
  if (k === 16) return { cmd: modbus('write', 5, 'coil', 0, 1, ['pump1.run'], [0], { 'pump1.run': 0 }), subject: OPTIMIZER, decision: allow('optimizer-pump', true) };
  if (k === 17) return { cmd: modbus('write', 6, 'holding', 0, 1, ['tank1.setpoint'], [950], { 'tank1.setpoint': 95 }), subject: OPTIMIZER, decision: deny('VALUE_OUT_OF_BOUNDS', 'optimizer-setpoint') };
  if (k === 18) return { cmd: modbus('write', 5, 'coil', 1, 1, ['valve1.open'], [0xff00], { 'valve1.open': 1 }), subject: PLANNER, decision: deny('APPROVAL_REQUIRED', 'planner-drain') };
  const speed = 1000 + ((i >> 4) % 5) * 20;
  // max_step measures from the PLC's value the gateway read: sometimes too old to measure from.
  if ((i >> 4) % 2 === 0) return { cmd: modbus('write', 6, 'holding', 1, 1, ['pump1.speed'], [speed], { 'pump1.speed': speed }), subject: ASSISTANT, decision: deny('STEP_BASE_STALE', 'assistant-speed-for-operator') };
  return { cmd: modbus('write', 6, 'holding', 1, 1, ['pump1.speed'], [speed], { 'pump1.speed': speed }), subject: OPTIMIZER, decision: allow('optimizer-setpoint', true) };
}

/**
 * `n` records (a command's decision, with its answer when it was an allowed read, its outcome
 * record when it was an allowed write, a session record
 * every 1,000 commands), hash-chained, in seq order.
 */
export function* syntheticRecords(n: number): Generator<Uint8Array> {
  const stepMs = 86_400_000 / n;
  let prev: Uint8Array = ZERO_HASH;
  let seq = 0;
  const encode = (event: object): Uint8Array => {
    const bytes = encodeRecord({ schemaVersion: SCHEMA_VERSION, gatewayId: SYNTHETIC_GATEWAY, seq, timeUnixMs: Math.floor(SYNTHETIC_START_MS + seq * stepMs), prevHash: prev, ...event });
    prev = leafHash(bytes);
    seq++;
    return bytes;
  };
  for (let i = 0; seq < n; i++) {
    if (i % 1000 === 0) {
      yield encode(sessionRecord({ kind: 'open', sessionId: `s-${i}`, protocol: 'modbus', remoteAddress: '10.0.0.7:50211', subject: OPTIMIZER }));
      if (seq >= n) return;
    }
    const c = command(i);
    c.cmd.sessionId = `s-${i - (i % 1000)}`;
    const decisionSeq = seq;
    const decided = decisionRecord(c.cmd, c.subject, c.decision, { unitId: 1, transactionId: i & 0xffff });
    // One record per read (docs/audit.md): an allowed read carries its answer.
    const oneRecord = c.decision.effect === 'allow' && !c.decision.durable;
    yield encode(oneRecord ? withOutcome(decided, { sessionId: c.cmd.sessionId, status: 'ok', upstreamLatencyUs: 850, transactionId: i & 0xffff }) : decided);
    if (c.decision.effect === 'allow' && c.decision.durable && seq < n) {
      yield encode(outcomeRecord({ decisionSeq, sessionId: c.cmd.sessionId, status: 'ok', upstreamLatencyUs: 850, transactionId: i & 0xffff }));
    }
  }
}

/** Writes `n` records as a spool directory of segments of about `segmentBytes`; returns the bytes. */
export async function writeSyntheticSpool(dir: string, n: number, segmentBytes = 64 << 20): Promise<number> {
  let file = await open(join(dir, `${'0'.padStart(16, '0')}.seg`), 'w');
  let size = 0;
  let total = 0;
  let seq = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    await file.write(Buffer.concat(pending, pendingBytes));
    pending = [];
    pendingBytes = 0;
  };
  for (const bytes of syntheticRecords(n)) {
    const f = encodeSpoolFrame(bytes);
    if (size + f.length > segmentBytes && size > 0) {
      await flush();
      await file.close();
      file = await open(join(dir, `${String(seq).padStart(16, '0')}.seg`), 'w');
      size = 0;
    }
    pending.push(f);
    pendingBytes += f.length;
    if (pendingBytes >= 1 << 20) await flush();
    size += f.length;
    total += f.length;
    seq++;
  }
  await flush();
  await file.close();
  return total;
}

/** Writes `n` records as one collector NDJSON file (what `recordToJson` makes of each); returns the bytes. */
export async function writeSyntheticNdjson(file: string, n: number): Promise<number> {
  const fh = await open(file, 'w');
  let total = 0;
  let lines: string[] = [];
  for (const bytes of syntheticRecords(n)) {
    lines.push(JSON.stringify(recordToJson(decodeRecord(bytes), leafHash(bytes))));
    if (lines.length >= 10_000) {
      const chunk = lines.join('\n') + '\n';
      total += Buffer.byteLength(chunk);
      await fh.write(chunk);
      lines = [];
    }
  }
  if (lines.length > 0) {
    const chunk = lines.join('\n') + '\n';
    total += Buffer.byteLength(chunk);
    await fh.write(chunk);
  }
  await fh.close();
  return total;
}
