// Audit append bench: `node dist/test/bench/audit.js [--quick]`. Appends realistic command-decision
// records to a real spool (group commit, fsync, tree hashes, a signed checkpoint every 1,000
// records) and prints records/s for three cases: fire-and-forget appends (what a read costs: the
// record joins the next group commit, nobody waits), appends that each wait for durability from
// 64 concurrent writers (what a write costs: forwarded only once its record is fsynced), and one
// writer waiting for each record in turn (the worst case: one fsync per record). Then the CPU a
// command's two records cost the event loop: decisionRecord + append and outcomeRecord + append,
// timed by the main thread's own CPU clock over synchronous runs (flushes in between are not
// counted), several repetitions, median and range: wall-clock figures on a shared 2-core machine
// mostly measure the neighbours. A warm-up of a few thousand appends to a scratch spool comes first,
// untimed: a gateway appends for weeks, and in quick mode the JIT's first thousands of calls would
// otherwise dominate the first case.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import { noteSigner } from '../../src/audit/note.js';
import { decisionRecord, outcomeRecord } from '../../src/audit/records.js';
import { systemClock } from '../../src/core/clock.js';
import type { Command, Decision, Subject } from '../../src/core/command.js';

const quick = process.argv.includes('--quick');
const N = quick ? 20_000 : 200_000;
const SERIAL = quick ? 300 : 2_000;

// Frozen, as src/identity/verify.ts hands out every Subject: the audit caches a frozen Subject's
// encoded identity, and the gateway's commands all carry one.
const subject: Subject = Object.freeze({
  workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'alice@plant.example', taskId: 'T-1', taskPurpose: 'tune',
  jti: 'b0c4f1f2-jti', actSub: [], roles: ['agent'], scopes: ['read', 'write'], assurance: 'mtls+token',
  certThumbprint: 'q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c', issuer: 'https://issuer.plant.example', expiresAtMs: 0, issuedAtMs: 0,
});
const cmd: Command = {
  sessionId: 'sess-42', protocol: 'modbus', assetId: 'plc1', operation: 'write', functionCode: 6,
  targets: [{ table: 'holding', address: 0, count: 1 }], points: ['tank1.setpoint'], rawValues: [600], values: { 'tank1.setpoint': 60 },
};
const decision: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint', bundleRevision: 7, durable: true };
const event = decisionRecord(cmd, subject, decision, { unitId: 1, transactionId: 1 });

async function open(dir: string): Promise<AuditLog> {
  return AuditLog.open({
    dir,
    gatewayId: 'bench-gw',
    clock: systemClock,
    maxBytes: 4 * 1024 * 1024 * 1024,
    checkpoints: { signer: noteSigner('plantgate/bench-gw', generateKeyPairSync('ed25519').privateKey), everyRecords: 1000, everyMs: 60_000 },
  });
}

async function run(name: string, dir: string, body: (log: AuditLog) => Promise<number>): Promise<void> {
  const log = await open(dir);
  const c0 = threadCpuNs();
  const t0 = process.hrtime.bigint();
  const n = await body(log);
  const appended = Number(process.hrtime.bigint() - t0) / 1e9;
  await log.sync();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuUs = (threadCpuNs() - c0) / 1000 / n;
  const st = log.stats();
  await log.close();
  console.log(
    `${name.padEnd(44)} ${String(Math.round(n / s)).padStart(9)} records/s durable  (${n} records in ${s.toFixed(2)} s; appends took ${((appended * 1e6) / n).toFixed(1)} us each, main thread ${cpuUs.toFixed(1)} us CPU each; ${st.fsyncs} fsyncs, ${(n / Math.max(1, st.fsyncs)).toFixed(1)} records/fsync)`,
  );
}

/** CPU time of the main thread in ns (Linux schedstat); the whole process's user+system elsewhere. */
function threadCpuNs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'latin1').split(' ')[0]);
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) * 1000;
  }
}

async function microbench(dir: string): Promise<void> {
  const log = await AuditLog.open({ dir, gatewayId: 'bench-gw', clock: systemClock, maxBytes: 4 * 1024 * 1024 * 1024 });
  const read: Command = { ...cmd, operation: 'read', functionCode: 3, targets: [{ table: 'holding', address: 0, count: 10 }], rawValues: undefined, values: undefined };
  const allowRead: Decision = { ...decision, durable: false };
  const block = 1000;
  const blocks = quick ? 10 : 40;
  const reps = quick ? 5 : 9;
  const dec: number[] = [];
  const out: number[] = [];
  for (let r = 0; r < reps; r++) {
    let d = 0;
    let o = 0;
    for (let b = 0; b < blocks; b++) {
      const t0 = threadCpuNs();
      for (let i = 0; i < block; i++) log.append(decisionRecord(read, subject, allowRead, { unitId: 1, transactionId: i }));
      const t1 = threadCpuNs();
      for (let i = 0; i < block; i++) log.append(outcomeRecord({ decisionSeq: i, sessionId: 'sess-42', status: 'ok', upstreamLatencyUs: 350, transactionId: i }));
      const t2 = threadCpuNs();
      d += t1 - t0;
      o += t2 - t1;
      await new Promise((res) => setImmediate(res));
    }
    await log.sync();
    dec.push(d / 1000 / (block * blocks));
    out.push(o / 1000 / (block * blocks));
  }
  await log.close();
  const show = (name: string, a: number[]): void => {
    const s = [...a].sort((x, y) => x - y);
    console.log(`${name.padEnd(44)} ${s[s.length >> 1].toFixed(2).padStart(9)} us CPU per record (median of ${a.length}; range ${s[0].toFixed(2)}-${s[s.length - 1].toFixed(2)})`);
  };
  show('decisionRecord + append (main thread)', dec);
  show('outcomeRecord + append (main thread)', out);
}

const root = await mkdtemp(join(tmpdir(), 'plantgate-bench-audit-'));
try {
  console.log(`audit append bench (${quick ? 'quick' : 'full'}), spool in ${root}`);
  const warm = await open(join(root, 'warm-up'));
  for (let i = 0; i < 20_000; i++) {
    warm.append(decisionRecord(cmd, subject, decision, { unitId: 1, transactionId: i }));
    warm.append(outcomeRecord({ decisionSeq: i, sessionId: 'sess-42', status: 'ok', upstreamLatencyUs: 350, transactionId: i }));
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await warm.close();
  await rm(join(root, 'warm-up'), { recursive: true, force: true });
  await run('append, not waiting (reads)', join(root, 'a'), async (log) => {
    for (let i = 0; i < N; i++) {
      log.append(event);
      // Yield now and then, as a gateway's event loop does between socket reads.
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    return N;
  });
  await run('appendDurable, 64 concurrent writers', join(root, 'b'), async (log) => {
    const per = Math.floor(N / 4 / 64);
    await Promise.all(Array.from({ length: 64 }, async () => {
      for (let i = 0; i < per; i++) await log.appendDurable(event);
    }));
    return per * 64;
  });
  await run('appendDurable, one writer (fsync per record)', join(root, 'c'), async (log) => {
    for (let i = 0; i < SERIAL; i++) await log.appendDurable(event);
    return SERIAL;
  });
  await microbench(join(root, 'd'));
} finally {
  await rm(root, { recursive: true, force: true });
}
