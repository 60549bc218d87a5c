// Collector bench (issue 24 item 4): `node dist/test/bench/collector.js [--quick]`. How many audit
// records one collector core verifies and stores: a real `plantgate collector` process, configured
// as a SOC runs it (every gateway listed with its checkpoint verifier key, a witness key, daily
// NDJSON + OCSF output), pinned to one CPU, receives spools written beforehand by real audit logs
// (the records a read and a write produce, a signed checkpoint every 1,000 records) from real
// shippers in this process, pinned to the other CPU. It verifies every record (chain, tree,
// checkpoint signatures), stores NDJSON, OCSF and the tree and state files, cosigns checkpoints
// and acknowledges. Measured from the first byte to the last acknowledgement: records/s on the
// clock, the collector process's CPU per record (all threads, from /proc) and what that makes per
// core, and the shippers' CPU per record (the gateway's side of shipping). One gateway, then
// several gateways into the same collector. The output goes to tmpfs (/dev/shm) as in the
// throughput bench: a SOC's disk is not this machine's one busy disk.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import { noteSigner, verifierKey } from '../../src/audit/note.js';
import { decisionRecord, outcomeRecord, withOutcome } from '../../src/audit/records.js';
import { Shipper } from '../../src/audit/shipper.js';
import { systemClock } from '../../src/core/clock.js';
import type { Command, Decision, Subject } from '../../src/core/command.js';
import { initPki, type PkiPaths } from '../../src/identity/dev/pki.js';
import { affinityOf, cpuSeconds, freePort, setAffinity, spawnCli, stop, waitForPort } from './processes.js';

const quick = process.argv.includes('--quick');
/** Records in each scenario (split evenly over its gateways); BENCH_COLLECTOR_RECORDS overrides. */
const RECORDS = Number(process.env.BENCH_COLLECTOR_RECORDS ?? (quick ? 30_000 : 600_000));
const SCENARIOS = [1, 4];
/** The target of issue 24: records verified and stored per second per core. */
const TARGET_PER_CORE = 100_000;
/** The target of issue 24 for shipping: gateway CPU per record. */
const SHIPPER_TARGET_US = 3;

const subject: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'alice@plant.example', taskId: 'T-7', taskPurpose: 'optimize tank level setpoint',
  jti: '0d6f1f4e-3b1c-4c55-9a55-4bb0d84c2a11', roles: ['agent'], scopes: ['read', 'write'], assurance: 'mtls+token',
  certThumbprint: 'q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c', issuer: 'https://issuer.plant.example', expiresAtMs: 0, issuedAtMs: 0,
};
// The throughput bench's commands: FC3 reads of 10 registers, FC16 writes of 10 registers.
const read: Command = { sessionId: 'sess-42', protocol: 'modbus', assetId: 'plc1', operation: 'read', functionCode: 3, targets: [{ table: 'holding', address: 0, count: 10 }], points: ['tank1.setpoint', 'pump1.speed'] };
const write: Command = {
  ...read, operation: 'write', functionCode: 16, rawValues: [600, 1000], values: { 'tank1.setpoint': 60, 'pump1.speed': 1000 },
};
const allowRead: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'agents-read-plant', bundleRevision: 7, durable: false };
const allowWrite: Decision = { effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint', bundleRevision: 7, durable: true };

interface Gw {
  id: string;
  dir: string;
  key: KeyObject;
  records: number;
}

function newGateway(root: string, id: string): Gw {
  return { id, dir: path.join(root, id), key: generateKeyPairSync('ed25519').privateKey, records: 0 };
}

/**
 * A gateway's spool as a busy gateway writes it: 9 reads to 1 write, a read one record (decision
 * with its answer), a write a decision and an outcome record. With `ship`, a shipper streams the records live as they become durable (from the log's
 * recent-records ring, as in a running gateway: docs/audit.md, Shipping) and the spool is closed once all are acknowledged.
 */
async function writeSpool(g: Gw, records: number, ship?: (log: AuditLog) => { acked(seq: number): Promise<void>; close(): Promise<void> }): Promise<void> {
  const log = await AuditLog.open({
    dir: g.dir, gatewayId: g.id, clock: systemClock, maxBytes: 8 * 1024 ** 3,
    checkpoints: { signer: noteSigner(`plantgate/${g.id}`, g.key), everyRecords: 1000, everyMs: 3_600_000 },
  });
  const shipper = ship?.(log);
  for (let i = 0; log.nextSeq < records; i++) {
    const w = i % 10 === 9;
    if (w) {
      const decisionSeq = log.append(decisionRecord(write, subject, allowWrite, { unitId: 1, transactionId: i & 0xffff }));
      log.append(outcomeRecord({ decisionSeq, sessionId: read.sessionId, status: 'ok', upstreamLatencyUs: 180, transactionId: i & 0xffff }));
    } else {
      log.append(withOutcome(decisionRecord(read, subject, allowRead, { unitId: 1, transactionId: i & 0xffff }), { sessionId: read.sessionId, status: 'ok', upstreamLatencyUs: 180, transactionId: i & 0xffff }));
    }
    if (i % 2000 === 0) await log.sync();
  }
  await log.sync();
  if (shipper) {
    await shipper.acked(log.durableSeq - 1);
    await shipper.close();
  }
  g.records = log.nextSeq;
  await log.close();
}

function collectorYaml(port: number, outDir: string, pki: PkiPaths, gateways: Gw[], witnessKeyFile: string): string {
  const list = gateways.map((g) => `  - { id: ${g.id}, verifier_key: "${verifierKey(`plantgate/${g.id}`, g.key)}", identity: "${pki.gateway.spiffeId}" }`).join('\n');
  return [
    `listen: { host: 127.0.0.1, port: ${port} }`,
    `tls: { ca: ${JSON.stringify(pki.ca.cert)}, cert: ${JSON.stringify(pki.collector.cert)}, key: ${JSON.stringify(pki.collector.key)} }`,
    `out_dir: ${JSON.stringify(outDir)}`,
    'output: { layout: daily, ocsf: true }',
    `witness: { name: soc.example/witness, key_file: ${JSON.stringify(witnessKeyFile)} }`,
    'gateways:',
    list,
    '',
  ].join('\n');
}

interface Outcome {
  gateways: number;
  records: number;
  seconds: number;
  collectorCpu: number;
  shipperCpu: number;
}

type Cpus = { collector: string; bench: string } | undefined;
type TlsFiles = { ca: Buffer; cert: Buffer; key: Buffer };

/** Runs `fn` against a fresh collector process for these gateways, pinned to its CPU. */
async function withCollector<T>(root: string, pki: PkiPaths, witnessKeyFile: string, gateways: Gw[], cpus: Cpus, fn: (port: number, pid: number | undefined) => Promise<T>): Promise<T> {
  const outDir = await mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'plantgate-bench-collector-'));
  const port = await freePort();
  const cfg = path.join(root, `collector-${gateways[0].id}.yaml`);
  await writeFile(cfg, collectorYaml(port, outDir, pki, gateways, witnessKeyFile));
  const collector = spawnCli(['collector', '--config', cfg], {}, (process.env.BENCH_COLLECTOR_NODE_ARGS ?? '').split(' ').filter(Boolean));
  try {
    await waitForPort(port);
    if (cpus) {
      const err = setAffinity(collector.pid, cpus.collector);
      if (err) throw new Error(err);
    }
    return await fn(port, collector.pid);
  } finally {
    await stop(collector);
    await rm(outDir, { recursive: true, force: true });
  }
}

/** A shipper of `log` to the collector at `port`, and a wait for the acknowledgement of a seq. */
function shipper(log: AuditLog, port: number, g: Gw, tlsFiles: TlsFiles): { acked(seq: number): Promise<void>; close(): Promise<void> } {
  const s = new Shipper({ log, host: '127.0.0.1', port, gatewayId: g.id, tls: { ...tlsFiles, servername: 'localhost' } });
  let failure: Error | undefined;
  s.on('alert', (a: { message: string }) => {
    failure = new Error(`shipper ${g.id}: ${a.message}`);
    s.emit('acked', -1);
  });
  return {
    // Acknowledgements are cumulative: one may cover the last record and many before it.
    acked: (seq) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (failure) reject(failure);
          else if (s.stats().ackedSeq >= seq) resolve();
          else s.once('acked', check);
        };
        check();
      }),
    close: () => s.close(),
  };
}

/** Ships every gateway's spool (written beforehand) to a fresh collector process and waits for the last acknowledgement. */
async function run(root: string, pki: PkiPaths, tlsFiles: TlsFiles, witnessKeyFile: string, gateways: Gw[], cpus: Cpus): Promise<Outcome> {
  return withCollector(root, pki, witnessKeyFile, gateways, cpus, async (port, pid) => {
    const logs: AuditLog[] = [];
    const shippers: ReturnType<typeof shipper>[] = [];
    try {
      for (const g of gateways) logs.push(await AuditLog.open({ dir: g.dir, gatewayId: g.id, clock: systemClock, maxBytes: 8 * 1024 ** 3 }));
      const c0 = cpuSeconds(pid);
      const s0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        gateways.map((g, i) => {
          // Everything in the spool, the checkpoint the writer's close appended included.
          g.records = logs[i].durableSeq;
          const s = shipper(logs[i], port, g, tlsFiles);
          shippers.push(s);
          return s.acked(g.records - 1);
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      const s = process.cpuUsage(s0);
      return { gateways: gateways.length, records: gateways.reduce((n, g) => n + g.records, 0), seconds, collectorCpu: cpuSeconds(pid) - c0, shipperCpu: (s.user + s.system) / 1e6 };
    } finally {
      for (const s of shippers) await s.close();
      for (const l of logs) await l.close();
    }
  });
}

/**
 * The gateway's side of live shipping (issue 24 item 2): the same records written twice in this
 * process, once without a shipper and once streamed live to a collector as they become durable;
 * the difference in this process's CPU per record is what shipping costs a gateway.
 */
async function liveShipping(root: string, pki: PkiPaths, tlsFiles: TlsFiles, witnessKeyFile: string, cpus: Cpus): Promise<{ records: number; baseUs: number; liveUs: number }> {
  const cpu = (since: NodeJS.CpuUsage): number => {
    const u = process.cpuUsage(since);
    return (u.user + u.system) / 1e6;
  };
  const base = newGateway(root, 'gw-live-base');
  const b0 = process.cpuUsage();
  await writeSpool(base, RECORDS);
  const baseCpu = cpu(b0);
  const live = newGateway(root, 'gw-live');
  const liveCpu = await withCollector(root, pki, witnessKeyFile, [live], cpus, async (port) => {
    const l0 = process.cpuUsage();
    await writeSpool(live, RECORDS, (log) => shipper(log, port, live, tlsFiles));
    return cpu(l0);
  });
  return { records: live.records, baseUs: (baseCpu * 1e6) / base.records, liveUs: (liveCpu * 1e6) / live.records };
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-collector-'));
  try {
    const pki = await initPki(path.join(root, 'pki'), { agents: [], overwrite: true });
    const tlsFiles = { ca: await readFile(pki.ca.cert), cert: await readFile(pki.gateway.cert), key: await readFile(pki.gateway.key) };
    const witnessKeyFile = path.join(root, 'witness.pem');
    await writeFile(witnessKeyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const cpuList = affinityOf(process.pid);
    const cpus = cpuList.length >= 2 ? { collector: String(cpuList[0]), bench: String(cpuList[1]) } : undefined;
    if (cpus) {
      const err = setAffinity(process.pid, cpus.bench);
      if (err) throw new Error(err);
    }
    const t = performance.now();
    const spools = new Map<number, Gw[]>();
    for (const n of SCENARIOS) {
      const list: Gw[] = [];
      for (let i = 0; i < n; i++) {
        const g = newGateway(root, `gw-${n}-${i + 1}`);
        await writeSpool(g, Math.ceil(RECORDS / n));
        list.push(g);
      }
      spools.set(n, list);
    }
    console.log(`collector bench (${quick ? 'quick' : 'full'}): spools of ${RECORDS.toLocaleString('en')} records per scenario written in ${((performance.now() - t) / 1000).toFixed(1)} s; collector ${cpus ? `pinned to CPU ${cpus.collector}, shippers on CPU ${cpus.bench}` : 'unpinned (one CPU only)'}; load average ${os.loadavg()[0].toFixed(1)}`);
    console.log('');
    console.log('| gateways → 1 collector | records | seconds | records/s | collector CPU µs/record | records/s per collector core | shipper CPU µs/record |');
    console.log('|---|---|---|---|---|---|---|');
    const outcomes: Outcome[] = [];
    for (const n of SCENARIOS) {
      const o = await run(root, pki, tlsFiles, witnessKeyFile, spools.get(n)!, cpus);
      outcomes.push(o);
      const us = (o.collectorCpu * 1e6) / o.records;
      console.log(`| ${o.gateways} | ${o.records} | ${o.seconds.toFixed(2)} | ${Math.round(o.records / o.seconds)} | ${us.toFixed(1)} | ${Math.round(1e6 / us)} | ${((o.shipperCpu * 1e6) / o.records).toFixed(1)} |`);
    }
    console.log('');
    for (const o of outcomes) {
      const perCore = o.records / o.collectorCpu;
      console.log(`- ${perCore >= TARGET_PER_CORE ? 'met' : 'MISSED'}: collector ≥ ${TARGET_PER_CORE.toLocaleString('en')} records/s verified and stored per core, ${o.gateways} gateway(s): ${Math.round(perCore).toLocaleString('en')}`);
    }
    const l = await liveShipping(root, pki, tlsFiles, witnessKeyFile, cpus);
    const shipUs = l.liveUs - l.baseUs;
    console.log(
      `- ${shipUs <= SHIPPER_TARGET_US ? 'met' : 'MISSED'}: shipping ≤ ${SHIPPER_TARGET_US} µs of gateway CPU per record, live: ${shipUs.toFixed(1)} µs ` +
        `(${l.records.toLocaleString('en')} records appended, hashed, fsynced: ${l.baseUs.toFixed(1)} µs each without a shipper, ${l.liveUs.toFixed(1)} µs streamed live to the collector)`,
    );
    console.log(`load average at the end ${os.loadavg()[0].toFixed(1)}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
