// The collector's output for SIEMs: NDJSON per gateway per UTC day, and OCSF-shaped lines
// (API Activity for commands, Authorize Session for tokens), with no gap and no duplicate after a
// collector crash between the two files.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/log.js';
import { decisionRecord, outcomeRecord, revocationRecord, sessionRecord, tokenRecord } from '../../../src/audit/records.js';
import { startShipper, type Shipper } from '../../../src/audit/shipper.js';
import { startCollector, type Collector } from '../../../src/collector/server.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Subject } from '../../../src/core/command.js';
import { initPki } from '../../../src/identity/dev/pki.js';

let pem: { ca: string; gateway: { cert: string; key: string }; collector: { cert: string; key: string } };
let root: string;
let outDir: string;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'plantgate-pki-'));
  const p = await initPki(dir, { agents: [] });
  const read = (f: string) => readFile(f, 'utf8');
  pem = {
    ca: await read(p.ca.cert),
    gateway: { cert: await read(p.gateway.cert), key: await read(p.gateway.key) },
    collector: { cert: await read(p.collector.cert), key: await read(p.collector.key) },
  };
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'plantgate-colout-'));
  outDir = join(root, 'out');
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
  await rm(root, { recursive: true, force: true });
});

const subject: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer',
  owner: 'alice@plant.example',
  taskId: 'T-1',
  taskPurpose: 'tune',
  jti: 'jti-1',
  actSub: [],
  roles: [],
  scopes: ['read', 'write'],
  assurance: 'mtls+token',
  certThumbprint: 'thumb',
  issuer: 'https://issuer.example',
  expiresAtMs: 0,
  issuedAtMs: 0,
};
const write: Command = {
  sessionId: 's-1',
  protocol: 'modbus',
  assetId: 'plc1',
  operation: 'write',
  functionCode: 6,
  targets: [{ table: 'holding', address: 0, count: 1 }],
  points: ['tank1.setpoint'],
  rawValues: [600],
  values: { 'tank1.setpoint': 60 },
};

async function collector(port = 0): Promise<Collector> {
  const c = await startCollector({ host: '127.0.0.1', port, tls: { ca: pem.ca, ...pem.collector }, outDir, output: { layout: 'daily', ocsf: true } });
  cleanup.push(() => c.close());
  return c;
}

function ship(log: AuditLog, port: number): Shipper {
  const s = startShipper({ log, host: '127.0.0.1', port, tls: { ca: pem.ca, ...pem.gateway }, gatewayId: 'gw-1', reconnect: { minMs: 10, maxMs: 50 } });
  cleanup.push(() => s.close());
  return s;
}

function acked(s: Shipper, seq: number): Promise<void> {
  if (s.stats().ackedSeq >= seq) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (a: number) => a >= seq && (s.off('acked', on), resolve());
    s.on('acked', on);
  });
}

const lines = async (file: string) => (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);

describe('collector output', () => {
  it('writes NDJSON per gateway per UTC day and an OCSF export: API Activity for commands, Authorize Session for tokens', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 15, 23, 59, 59, 500));
    const col = await collector();
    const log = await AuditLog.open({ dir: join(root, 'spool'), gatewayId: 'gw-1', clock });
    cleanup.push(() => log.close());
    const s = ship(log, col.port);
    log.append(tokenRecord({ kind: 'accepted', sessionId: '', subject, reason: 'ALLOWED' }));
    log.append(decisionRecord(write, subject, { effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint', bundleRevision: 3, durable: true }));
    clock.advance(1000); // past midnight
    log.append(outcomeRecord({ decisionSeq: 1, sessionId: 's-1', status: 'ok', upstreamLatencyUs: 2500 }));
    log.append(decisionRecord({ ...write, rawValues: [950], values: { 'tank1.setpoint': 95 } }, subject, { effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint', bundleRevision: 3, durable: false }));
    log.append(sessionRecord({ kind: 'close', sessionId: 's-1', protocol: 'modbus', remoteAddress: '127.0.0.1:5' }));
    log.append(revocationRecord({ kind: 'jti', value: 'jti-1', reason: 'leaked', revokedAtMs: clock.now(), source: 'operator', by: 'bob@plant.example' }));
    await log.sync();
    await acked(s, 5);

    const dir = join(outDir, 'gw-1');
    expect((await readdir(dir)).sort()).toEqual(['2026-01-15.ndjson', '2026-01-15.ocsf.ndjson', '2026-01-16.ndjson', '2026-01-16.ocsf.ndjson']);
    expect((await lines(join(dir, '2026-01-15.ndjson'))).map((l) => l.seq)).toEqual([0, 1]);
    expect((await lines(join(dir, '2026-01-16.ndjson'))).map((l) => l.seq)).toEqual([2, 3, 4, 5]);

    const [token, allowed] = await lines(join(dir, '2026-01-15.ocsf.ndjson'));
    expect(token).toMatchObject({
      class_uid: 3003,
      class_name: 'Authorize Session',
      activity_id: 1,
      type_uid: 300301,
      status_id: 1,
      user: { uid: subject.workloadId },
      session: { uid: 'jti-1' },
      privileges: ['read', 'write'],
      metadata: { product: { name: 'plantgate' }, log_name: 'gw-1', sequence: 0, uid: 'gw-1:0' },
    });
    expect(allowed).toMatchObject({
      class_uid: 6003,
      category_uid: 6,
      activity_id: 3,
      activity_name: 'Update',
      type_uid: 600303,
      status: 'Success',
      status_code: 'ALLOWED',
      time: Date.UTC(2026, 0, 15, 23, 59, 59, 500),
      actor: { app_uid: subject.workloadId, user: { uid: subject.owner, type: 'User' }, session: { uid: 's-1' }, authorizations: [{ decision: 'allow', policy: { uid: 'optimizer-setpoint', version: '3' } }] },
      api: { service: { name: 'modbus' } },
      resources: [{ uid: 'plc1', type: 'asset' }, { uid: 'tank1.setpoint', type: 'point', data: { value: 60 } }],
    });
    expect(allowed.unmapped.hash).toMatch(/^[0-9a-f]{64}$/);
    const day2 = await lines(join(dir, '2026-01-16.ocsf.ndjson'));
    // The session close has no OCSF mapping; outcome, denial and revocation do.
    expect(day2.map((l) => [l.metadata.sequence, l.class_uid, l.status])).toEqual([
      [2, 6003, 'Success'],
      [3, 6003, 'Failure'],
      [5, 3003, 'Success'],
    ]);
    expect(day2[1]).toMatchObject({ status_code: 'VALUE_OUT_OF_BOUNDS', severity_id: 3, actor: { authorizations: [{ decision: 'deny' }] } });
  });

  it('after a crash between the NDJSON and the OCSF write, regenerates the missing OCSF lines and writes no duplicates', async () => {
    const clock = new ManualClock();
    const col = await collector();
    const port = col.port;
    const log = await AuditLog.open({ dir: join(root, 'spool'), gatewayId: 'gw-1', clock });
    cleanup.push(() => log.close());
    const s = ship(log, port);
    for (let i = 0; i < 20; i++) log.append(decisionRecord(write, subject, { effect: 'allow', reason: 'ALLOWED', ruleId: 'r', bundleRevision: 1, durable: true }));
    await log.sync();
    await acked(s, 19);
    await col.close();
    const day = new Date(clock.now()).toISOString().slice(0, 10);
    const ocsfFile = join(outDir, 'gw-1', `${day}.ocsf.ndjson`);
    // Lose the last 5 OCSF lines and leave half a line; the state file is behind the NDJSON too.
    const text = await readFile(ocsfFile, 'utf8');
    const keep = text.split('\n').slice(0, 15).join('\n') + '\n';
    await writeFile(ocsfFile, keep + text.split('\n')[15].slice(0, 40));
    await writeFile(join(outDir, 'gw-1.state.json'), JSON.stringify({ next_seq: 12, last_hash: '00'.repeat(32) }));
    await collector(port);
    for (let i = 20; i < 25; i++) log.append(decisionRecord(write, subject, { effect: 'allow', reason: 'ALLOWED', ruleId: 'r', bundleRevision: 1, durable: true }));
    await log.sync();
    await acked(s, 24);
    expect((await lines(join(outDir, 'gw-1', `${day}.ndjson`))).map((l) => l.seq)).toEqual([...Array(25).keys()]);
    expect((await lines(ocsfFile)).map((l) => l.metadata.sequence)).toEqual([...Array(25).keys()]);
  });
});
