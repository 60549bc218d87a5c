// `make bench`: Modbus throughput of the gateway beside the relays a plant would otherwise deploy,
// in the same run on the same machine, so the ratios matter more than the absolute figures.
// Columns: direct to the simulated PLC; a bare Node pipe() relay; the framing relay (our own
// listeners, codec and upstream pool with every enforcement step off, plaintext and mutual TLS:
// test/bench/relays.ts); haproxy in TCP mode and terminating mutual TLS (Debian's haproxy); the
// gateway's plaintext listener (static source-address identity + token) and the gateway over
// mutual TLS with a token, both with everything on: policy (bench bundle + 1,000 extra rules),
// audit of every decision and outcome shipped to a collector, metrics.
// Rows: reads (FC3, 10 registers), writes (FC16, 10 registers, durable audit) and a 90/10 mix at
// 1, 8 and 32 connections with 1 and 4 requests in flight. The generator validates every answer.
// The collector runs at the lowest CPU priority (nice 19): it stands for the SOC's collector on
// another machine, while the gateway still does all of its shipping work.
// Every part runs as its own process, and every cell is measured twice, in two tables: pinned (the
// proxy under test — haproxy with one thread, a relay, or the gateway with all its threads — on one
// CPU, the load generator, the simulator and the collector on another: one core against one core,
// so ratios do not depend on who wins the scheduler) and unpinned. Each row gives throughput,
// p50/p99, the proxy's CPU (share of its core, and per command) and the collector's CPU per record.
// `--quick` runs a subset; a full run also rewrites the generated part of docs/performance.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { JWK } from 'jose';
import { putToken, type AgentCredentials } from '../../src/cli/demo/agent.js';
import { callOperatorApi } from '../../src/cli/commands/approvals.js';
import { DEV_ISSUER, PACKAGE_ROOT, prepareLabFiles } from '../../src/cli/demo/lab.js';
import { mintToken } from '../../src/identity/dev/mint.js';
import { affinityOf, benchUpstreams, cpuSeconds, freePort, metricValue, rssMb, setAffinity, spawnCli, stop, waitForPort, waitForReady } from './processes.js';
import { writeBenchRules } from './extra-rules.js';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';

const quick = process.argv.includes('--quick');
/** Seconds per cell; BENCH_SECONDS overrides (a quiet machine can afford longer cells). */
const seconds = Number(process.env.BENCH_SECONDS) || (quick ? 1.5 : 3);
const connectionCounts = quick ? [8, 32] : [1, 8, 32];
const depths = quick ? [1] : [1, 4];
const workloads: Workload[] = quick ? ['read', 'write'] : ['read', 'write', 'mix'];
/** RSS is taken after 10,000 commands through the gateway and after this many. */
const footprintCommands = quick ? 50_000 : 100_000;
const EXTRA_RULES = 1000;
/** Spool bound of the bench gateway: the niced collector lags, and the spool must never fill. */
const SPOOL_MAX_BYTES = 8 * 1024 ** 3;
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a]);
const WRITE = Buffer.concat([Buffer.from([0x10, 0x00, 0x00, 0x00, 0x0a, 20]), Buffer.alloc(20, 1)]);
/** The static identity of 127.0.0.1 on the gateway's plaintext listener (a bench rule matches it). */
const LEGACY_WORKLOAD = 'spiffe://plant.example/agent/bench-legacy';
/** Tokens are re-registered when older than this (the bench bundle caps a token at 15 min). */
const TOKEN_REFRESH_MS = 5 * 60_000;

type Workload = 'read' | 'write' | 'mix';
type Transport = 'tcp' | 'mtls';
type Connect = () => Promise<net.Socket>;
interface Result {
  rps: number;
  p50us: number;
  p99us: number;
  commands: number;
  seconds: number;
  genCpu: number;
  /** CPU of the process under test during the cell, % of one core (all threads, from /proc). */
  proxyCpuPct?: number;
  /**
   * CPU of the process under test per command, µs (all threads, from /proc). For the gateway it
   * includes shipping the cell's records that waited for the collector after the cell.
   */
  proxyCpuUs?: number;
  /** Collector CPU per record it verified and stored, from the start of the cell until it caught up. */
  collectorUsPerRecord?: number;
}
/** Answers counted so far in the running cell (read by the footprint sampler). */
interface Progress {
  done: number;
}

async function load(connect: Connect, connections: number, depth: number, workload: Workload, durationMs: number, progress: Progress = { done: 0 }): Promise<Result> {
  const sockets = await Promise.all(Array.from({ length: connections }, connect));
  const latencies: number[] = [];
  let errors = 0;
  let n = 0;
  progress.done = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = Date.now() + durationMs;
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          let tid = 1;
          // Answers come back in request order: the oldest sent is the one answered next.
          const sent: { tid: number; write: boolean; at: bigint }[] = [];
          let ended = false;
          const send = () => {
            if (ended) return;
            if (Date.now() >= deadline) {
              if (sent.length === 0) {
                ended = true;
                socket.destroy();
                resolve();
              }
              return;
            }
            tid = (tid + 1) & 0xffff;
            const write = workload === 'write' || (workload === 'mix' && n++ % 10 === 9);
            sent.push({ tid, write, at: process.hrtime.bigint() });
            socket.write(encodeFrame(tid, 1, write ? WRITE : READ));
          };
          const decoder = new FrameDecoder(
            (frame) => {
              const req = sent.shift();
              // Validate what came back: the right transaction and a full answer to that request
              // (an exception, e.g. a deny, is an invalid answer: the bench stops).
              const ok = req !== undefined && frame.transactionId === req.tid && (req.write ? frame.pdu[0] === 0x10 && frame.pdu.length === 5 : frame.pdu[0] === 0x03 && frame.pdu[1] === 20);
              if (!ok) errors++;
              progress.done++;
              if ((progress.done & 7) === 0 && req) latencies.push(Number(process.hrtime.bigint() - req.at) / 1000);
              send();
            },
            () => {
              errors++;
              socket.destroy();
            },
          );
          socket.on('data', (c: Buffer) => decoder.push(c));
          socket.on('close', () => {
            ended = true;
            resolve();
          });
          socket.on('error', () => undefined);
          for (let i = 0; i < depth; i++) send();
        }),
    ),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (errors > 0) throw new Error(`${errors} invalid answers (${workload}, ${connections} connections)`);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  const done = progress.done;
  return { rps: Math.round(done / secs), p50us: pct(0.5), p99us: pct(0.99), commands: done, seconds: secs, genCpu: Math.round((cpu.user + cpu.system) / 1e4 / secs) };
}

const plainConnect =
  (port: number): Connect =>
  () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
      s.once('error', reject);
    });

const tlsConnect =
  (port: number, creds: tls.ConnectionOptions): Connect =>
  () =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ...creds, servername: 'localhost' }, () => {
        s.setNoDelay(true);
        resolve(s);
      });
      s.once('error', reject);
    });

function spawnNode(script: string, args: string[]): ChildProcess {
  // Diagnosis only: BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the relays.
  const nodeArgs = (process.env.BENCH_RELAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return spawn(process.execPath, [...nodeArgs, path.join(PACKAGE_ROOT, 'dist/test/bench', script), ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Undefined when haproxy can run; otherwise why its columns are skipped. Installs Debian's package when it can. */
function ensureHaproxy(): string | undefined {
  const installed = () => {
    const v = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
    return !v.error && v.status === 0;
  };
  if (installed()) return undefined;
  if (process.getuid?.() !== 0) return 'haproxy is not installed and the bench is not root to run apt-get install -y haproxy';
  console.log('haproxy is not installed: apt-get install -y haproxy');
  const apt = spawnSync('apt-get', ['install', '-y', 'haproxy'], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (apt.error || apt.status !== 0) return `haproxy is not installed and apt-get install -y haproxy failed: ${(apt.error?.message ?? apt.stderr.trim().split('\n').pop()) || `exit ${apt.status}`}`;
  return installed() ? undefined : 'apt-get installed haproxy but `haproxy -v` still fails';
}

/** haproxy 1 thread: TCP mode, and terminating mutual TLS with the gateway's own certificate. */
async function startHaproxy(dir: string, simPort: number, pki: { ca: string; cert: string; key: string }): Promise<{ child: ChildProcess; tcpPort: number; tlsPort: number } | string> {
  const missing = ensureHaproxy();
  if (missing !== undefined) return missing;
  const [tcpPort, tlsPort] = await Promise.all([freePort(), freePort()]);
  const pem = path.join(dir, 'haproxy.pem');
  await writeFile(pem, (await readFile(pki.cert, 'utf8')) + (await readFile(pki.key, 'utf8')));
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(
    cfg,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tcp_in
  bind 127.0.0.1:${tcpPort}
  default_backend plc
frontend tls_in
  bind 127.0.0.1:${tlsPort} ssl crt ${pem} ca-file ${pki.ca} verify required
  default_backend plc
backend plc
  server plc1 127.0.0.1:${simPort}
`,
  );
  const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  await Promise.all([waitForPort(tcpPort), waitForPort(tlsPort)]);
  return { child, tcpPort, tlsPort };
}

interface Column {
  name: string;
  kind: 'direct' | 'relay' | 'haproxy' | 'gateway';
  transport?: Transport;
  connect: Connect;
  /** The process under test (its CPU per command is reported). */
  pid?: number;
  workloads: Workload[];
}

/** × haproxy: against the haproxy column of the same transport. */
function haproxyOf(col: Column): string | undefined {
  return col.kind !== 'haproxy' && col.kind !== 'direct' && col.transport ? `haproxy ${col.transport}` : undefined;
}
/** × framing: the gateway against the framing relay of the same transport (the cost of enforcement). */
function framingOf(col: Column): string | undefined {
  return col.kind === 'gateway' && col.transport ? `framing relay ${col.transport}` : undefined;
}

const key = (workload: Workload, conns: number, depth: number, column: string) => `${workload}|${conns}|${depth}|${column}`;
const ratio = (a: Result | undefined, b: Result | undefined) => (a && b && b.rps > 0 ? a.rps / b.rps : undefined);
const fmt = (x: number | undefined) => (x === undefined ? '' : x.toFixed(2));

/** Follows the gateway's RSS while commands go through it: peak under load, and at two command counts. */
class Footprint {
  commands = 0;
  peakUnderLoadMb = 0;
  readonly at = new Map<number, number>();
  constructor(
    private readonly pid: number | undefined,
    private readonly marks: number[],
  ) {}

  /** Samples every 100 ms during a cell through the gateway; `progress` is the cell's running count. */
  watch(progress: Progress): () => void {
    const sample = () => {
      const total = this.commands + progress.done;
      const rss = rssMb(this.pid);
      this.peakUnderLoadMb = Math.max(this.peakUnderLoadMb, rss);
      for (const m of this.marks) if (total >= m && !this.at.has(m)) this.at.set(m, rss);
    };
    const timer = setInterval(sample, 100);
    return () => {
      clearInterval(timer);
      sample();
      this.commands += progress.done;
    };
  }
}

interface TargetLine {
  target: string;
  met: boolean | undefined;
  figures: string;
}

/** The targets of issue 24, from one table (the pinned one when it was measured). */
function targets(results: Map<string, Result>, fp: { rssMaxMb: number; growthPct: number | undefined; readyMs: number; at: number }): { lines: TargetLine[]; absolute: string } {
  const r = (w: Workload, n: number, c: string) => results.get(key(w, n, 1, c));
  const lines: TargetLine[] = [];
  /** a ≥ min × b in ops/s, and a's p99 ≤ p99Max × b's when given. */
  const vs = (target: string, a: Result | undefined, b: Result | undefined, min: number, p99Max?: number) => {
    const x = ratio(a, b);
    if (x === undefined || a === undefined || b === undefined) {
      lines.push({ target, met: undefined, figures: 'not measured in this run' });
      return;
    }
    const p99ok = p99Max === undefined || a.p99us <= p99Max * b.p99us;
    lines.push({
      target,
      met: x >= min && p99ok,
      // CPU per command of the two processes, the figure a noisy machine disturbs least: what
      // the throughput ratio would be if each were bound by its own CPU.
      figures: `${x.toFixed(2)}× (${a.rps} vs ${b.rps} ops/s)${p99Max !== undefined ? `; p99 ${a.p99us} vs ${b.p99us} µs (${(a.p99us / b.p99us).toFixed(2)}×)` : ''}${a.proxyCpuUs && b.proxyCpuUs ? `; CPU per command ${a.proxyCpuUs} vs ${b.proxyCpuUs} µs (${(b.proxyCpuUs / a.proxyCpuUs).toFixed(2)}×)` : ''}`,
    });
  };
  vs('gateway mtls reads ≥ 1.0× haproxy mtls at 32 conns, p99 ≤ 1.5× haproxy’s', r('read', 32, 'gateway mtls'), r('read', 32, 'haproxy mtls'), 1.0, 1.5);
  vs('gateway mtls reads ≥ 0.9× haproxy mtls at 8 conns, p99 ≤ 1.5× haproxy’s', r('read', 8, 'gateway mtls'), r('read', 8, 'haproxy mtls'), 0.9, 1.5);
  vs('gateway tcp reads ≥ 1.0× haproxy tcp at 32 conns', r('read', 32, 'gateway tcp'), r('read', 32, 'haproxy tcp'), 1.0);
  for (const t of ['mtls', 'tcp'] as const) {
    if (!results.has(key('read', 32, 1, `framing relay ${t}`))) continue;
    vs(`gateway ${t} reads ≥ 0.85× framing relay ${t} at 32 conns`, r('read', 32, `gateway ${t}`), r('read', 32, `framing relay ${t}`), 0.85);
  }
  for (const t of ['mtls', 'tcp'] as const) vs(`gateway ${t} writes (durable audit) ≥ 0.6× its reads at 32 conns`, r('write', 32, `gateway ${t}`), r('read', 32, `gateway ${t}`), 0.6);
  lines.push({ target: 'RSS ≤ 120 MB (Modbus only, peak of every sample)', met: fp.rssMaxMb <= 120, figures: `${fp.rssMaxMb} MB` });
  lines.push({
    target: `RSS flat: < 5 % growth from 10,000 to ${fp.at.toLocaleString('en')} commands`,
    met: fp.growthPct === undefined ? undefined : fp.growthPct < 5,
    figures: fp.growthPct === undefined ? 'not measured' : `${fp.growthPct.toFixed(1)} %`,
  });
  lines.push({ target: 'ready ≤ 1.5 s without OPC UA', met: fp.readyMs <= 1500, figures: `${fp.readyMs} ms` });
  const collector = [...results].filter(([k, v]) => k.startsWith('read|') && v.collectorUsPerRecord !== undefined).map(([, v]) => v.collectorUsPerRecord!);
  if (collector.length > 0) {
    const us = collector.reduce((a, b) => a + b, 0) / collector.length;
    lines.push({ target: 'collector ≥ 100,000 records/s per core (its own bench, collector.js, decides; here: during the read cells)', met: 1e6 / us >= 100_000, figures: `${us.toFixed(1)} µs per record = ${Math.round(1e6 / us)} records/s per core` });
  }
  const best = (c: string) => Math.max(0, ...[...results].filter(([k]) => k.startsWith('read|') && k.endsWith(`|${c}`)).map(([, v]) => v.rps));
  const mix = Math.max(0, ...[...results].filter(([k]) => k.startsWith('mix|') && k.endsWith('|gateway mtls')).map(([, v]) => v.rps));
  const absolute = `commands/s through one gateway with everything on (best read cell): ${best('gateway mtls')} over mutual TLS, ${best('gateway tcp')} on the plaintext listener${mix > 0 ? `; 90/10 mix over mutual TLS ${mix}` : ''} (an appliance-class ICS firewall: ~8,000 packets/s)`;
  return { lines, absolute };
}

/** Waits until the gateway has at most `maxLag` records the collector has not acknowledged (at most 60 s). */
async function collectorCaughtUp(opsPort: number, maxLag: number): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const lag = await metricValue(opsPort, 'plantgate_shipper_lag_records');
    if (lag !== undefined && lag <= maxLag) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log('  (collector still behind after 60 s; measuring anyway)');
  return false;
}

/** Records the collector has verified and stored, over every gateway (next_seq of its state files). */
async function storedRecords(outDir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(outDir)) {
    if (!f.endsWith('.state.json')) continue;
    total += (JSON.parse(await readFile(path.join(outDir, f), 'utf8')) as { next_seq: number }).next_seq;
  }
  return total;
}

/**
 * Where the processes run for one table. Pinned: the proxy under test (haproxy with one thread, a
 * relay, or the gateway with all its threads) on one CPU, the load generator (this process), the
 * simulator and the collector on another: one core against one core, so a ratio does not depend
 * on who wins the scheduler. Unpinned: every process on every CPU this bench may use.
 */
interface Placement {
  name: 'pinned' | 'unpinned';
  proxy: string;
  load: string;
  title: string;
}

function placements(): { list: Placement[]; pinnedSkipped?: string } {
  const cpus = affinityOf(process.pid);
  const all = cpus.join(',');
  const unpinned: Placement = { name: 'unpinned', proxy: all, load: all, title: `Unpinned: every process on CPUs ${all}, as the scheduler places them` };
  if (spawnSync('taskset', ['-V']).error) return { list: [unpinned], pinnedSkipped: 'taskset (util-linux) is not installed' };
  if (cpus.length < 2) return { list: [unpinned], pinnedSkipped: `only CPU ${all} is available` };
  // BENCH_PROXY_CPU / BENCH_LOAD_CPU choose other CPUs (e.g. two cores that share no SMT sibling).
  const proxy = process.env.BENCH_PROXY_CPU ?? String(cpus[0]);
  const load = process.env.BENCH_LOAD_CPU ?? String(cpus[1]);
  const pinned: Placement = {
    name: 'pinned',
    proxy,
    load,
    title: `Pinned, one core against one core: the proxy under test (haproxy with 1 thread, the relays, the gateway with all its threads) on CPU ${proxy}; the load generator, the simulator and the collector (nice 19) on CPU ${load}`,
  };
  return { list: [pinned, unpinned] };
}

interface Rig {
  columns: Column[];
  opsPort: number;
  /** Processes that are a proxy under test, and processes that make or absorb the load. */
  proxyPids: (number | undefined)[];
  loadPids: (number | undefined)[];
  collectorPid: number | undefined;
  collectorOut: string;
  shipping: boolean;
  footprint: Footprint;
  registerTokens: () => Promise<void>;
  /** The idle gateway's own CPU per second (interlock polls, timers), not charged to a cell's catch-up. */
  gatewayIdleCpuPerSec: number;
}

function place(rig: Rig, p: Placement): void {
  for (const pid of rig.proxyPids) {
    const err = setAffinity(pid, p.proxy);
    if (err) throw new Error(`cannot place the proxies for the ${p.name} table: ${err}`);
  }
  for (const pid of rig.loadPids) {
    const err = setAffinity(pid, p.load);
    if (err) throw new Error(`cannot place the load for the ${p.name} table: ${err}`);
  }
}

/** One cell: the load for a fixed time, then (gateway cells) until the collector has stored the cell's records. */
async function measureCell(rig: Rig, col: Column, n: number, depth: number, workload: Workload): Promise<{ r: Result; note?: string }> {
  if (col.kind === 'gateway') await rig.registerTokens();
  // Every cell starts with the collector caught up: otherwise it works off the last gateway
  // cell's backlog during the next cells (nice 19 still takes idle CPU), and the gateway's
  // shipping of it is charged to whatever gateway cell comes next.
  if (rig.shipping) await collectorCaughtUp(rig.opsPort, 1000);
  const progress: Progress = { done: 0 };
  const watching = col.kind === 'gateway' ? rig.footprint.watch(progress) : undefined;
  const proxy0 = cpuSeconds(col.pid);
  const collector0 = cpuSeconds(rig.collectorPid);
  const stored0 = rig.shipping ? await storedRecords(rig.collectorOut) : 0;
  const r = await load(col.connect, n, depth, workload, seconds * 1000, progress);
  watching?.();
  const proxy1 = cpuSeconds(col.pid);
  let proxyCpu = proxy1 - proxy0;
  if (col.pid !== undefined) r.proxyCpuPct = Math.round((proxyCpu * 100) / r.seconds);
  let note: string | undefined;
  if (col.kind === 'gateway' && rig.shipping) {
    // The collector (nice 19) lags during the cell, and the shipper holds back what is past its
    // window: the gateway's shipping of the cell's records is charged to the cell until the
    // collector has acknowledged them, less what the idle gateway spends anyway in that time.
    const lag = await metricValue(rig.opsPort, 'plantgate_shipper_lag_records');
    const t = performance.now();
    await collectorCaughtUp(rig.opsPort, 0);
    const catchUp = (performance.now() - t) / 1000;
    proxyCpu += Math.max(0, cpuSeconds(col.pid) - proxy1 - rig.gatewayIdleCpuPerSec * catchUp);
    const records = (await storedRecords(rig.collectorOut)) - stored0;
    const collectorCpu = cpuSeconds(rig.collectorPid) - collector0;
    if (records > 0) r.collectorUsPerRecord = Math.round((collectorCpu * 1e7) / records) / 10;
    note = `${workload} ${n}×${depth} ${col.name}: collector lag ${lag ?? '?'} records after the cell, caught up ${catchUp.toFixed(1)} s later; ${records} records stored, collector cpu ${Math.round((collectorCpu * 100) / (r.seconds + catchUp))}% of a core`;
  }
  if (col.pid !== undefined) r.proxyCpuUs = Math.round((proxyCpu * 1e6) / r.commands);
  return { r, note };
}

const TABLE_HEADER = [
  '| workload | conns | in flight | column | ops/s | p50 µs | p99 µs | × direct | × haproxy | × framing | gen cpu | proxy cpu | proxy µs/cmd | collector µs/record |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
];

/** Every cell of one table; prints each row as it completes and returns the table's lines. */
async function runTable(rig: Rig, p: Placement): Promise<{ results: Map<string, Result>; lines: string[]; notes: string[] }> {
  place(rig, p);
  const load0 = os.loadavg()[0];
  const lines: string[] = [];
  const out = (l: string) => {
    console.log(l);
    lines.push(l);
  };
  console.log(`\n${p.title}\n`);
  for (const l of TABLE_HEADER) out(l);
  const results = new Map<string, Result>();
  const notes: string[] = [];
  // Quick: the unpinned table (the second opinion) measures reads only, to keep make bench QUICK=1 short.
  for (const workload of quick && p.name === 'unpinned' ? workloads.filter((w) => w === 'read') : workloads) {
    for (const n of connectionCounts) {
      for (const depth of depths) {
        const rowNotes: string[] = [];
        for (const col of rig.columns) {
          if (!col.workloads.includes(workload)) continue;
          // Diagnosis only: BENCH_ONLY="gateway mtls" runs one column (e.g. to profile it alone).
          if (process.env.BENCH_ONLY && col.name !== process.env.BENCH_ONLY) continue;
          const { r, note } = await measureCell(rig, col, n, depth, workload);
          results.set(key(workload, n, depth, col.name), r);
          if (note) rowNotes.push(note);
        }
        const d = results.get(key(workload, n, depth, 'direct'));
        for (const col of rig.columns) {
          const r = results.get(key(workload, n, depth, col.name));
          if (r === undefined) continue;
          const h = haproxyOf(col);
          const f = framingOf(col);
          out(
            `| ${workload} | ${n} | ${depth} | ${col.name} | ${r.rps} | ${r.p50us} | ${r.p99us} | ${col.kind === 'direct' ? '' : fmt(ratio(r, d))} | ${h ? fmt(ratio(r, results.get(key(workload, n, depth, h)))) : ''} | ${f ? fmt(ratio(r, results.get(key(workload, n, depth, f)))) : ''} | ${r.genCpu}% | ${r.proxyCpuPct === undefined ? '' : `${r.proxyCpuPct}%`} | ${r.proxyCpuUs ?? ''} | ${r.collectorUsPerRecord ?? ''} |`,
          );
        }
        // Under the row, on the console only: how far the niced collector was behind.
        for (const note of rowNotes) console.log(`  (${note})`);
        notes.push(...rowNotes);
      }
    }
  }
  const loadNote = `Load average (1 min) ${load0.toFixed(1)} when this table started, ${os.loadavg()[0].toFixed(1)} when it ended (the bench's own processes account for up to ~2; above that, other work shared the cores).`;
  console.log(loadNote);
  return { results, lines: [`**${p.title}.** ${loadNote}`, '', ...lines], notes };
}

async function main(): Promise<void> {
  const started = performance.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-'));
  const cleanupDirs = [dir];
  const children: ChildProcess[] = [];
  try {
    // prepareLabFiles compiles `rules` relative to the package root; the generated entry lives in
    // the temp dir, so it is named by a relative path that leads there.
    const rulesEntry = await writeBenchRules(path.join(dir, 'rules'), EXTRA_RULES);
    const files = await prepareLabFiles({ stateDir: dir, rules: path.relative(PACKAGE_ROOT, rulesEntry) });
    const [simPort, collectorPort, modbusPort, plainPort, agentApiPort, operatorApiPort, opsPort, pipePort, framingPort, framingTlsPort] = await Promise.all(Array.from({ length: 10 }, freePort));
    // The collector's disk is the SOC's, not the gateway's: its files go to memory (tmpfs), so its
    // writes and fsyncs do not queue behind or ahead of the gateway's on the one disk here.
    const collectorOut = await mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'plantgate-bench-collector-'));
    cleanupDirs.push(collectorOut);
    await writeFile(path.join(dir, 'collector.yaml'), files.collectorYaml(collectorPort).replace(/^out_dir: .*$/m, `out_dir: ${JSON.stringify(collectorOut)}`));
    const shipping = !process.env.BENCH_NO_COLLECTOR;
    // The bench bundle has only plc1: without the lab's OPC UA upstream (benchUpstreams).
    const gatewayYaml = benchUpstreams(files.gatewayYaml({ simPort, collectorPort, modbusPort, agentApiPort, opsPort }))
      // The lab signs a checkpoint every 16 records so the demo shows some at once; a gateway in a
      // plant runs the defaults (1000 records / 60 s), and that is what is measured here.
      .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
      .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
      // The plaintext listener, with 127.0.0.1 as the static identity of a legacy device.
      .replace(/^listeners:\n/m, `listeners:\n  modbus_plain:\n    host: 127.0.0.1\n    port: ${plainPort}\n    identities:\n      - { address: 127.0.0.1, workload: "${LEGACY_WORKLOAD}" }\n`)
      .replace(/operator_api: \{ host: 127\.0\.0\.1, port: 0 \}/, `operator_api: { host: 127.0.0.1, port: ${operatorApiPort} }`)
      // One workload identity opens all 32 connections of the load generator. The collector runs
      // niced and falls behind during the cells: the spool holds everything until it catches up.
      .replace(/^audit:\n/m, `identity:\n  max_connections_per_workload: 64\naudit:\n  max_bytes: ${SPOOL_MAX_BYTES}\n`)
      // Diagnosis only: BENCH_NO_COLLECTOR=1 leaves shipping out, to see what the collector costs
      // the shared cores (the records are still written, hashed and fsynced).
      .replace(shipping ? /(?!)/ : /^ {2}collector: .*\n/m, '');
    await writeFile(path.join(dir, 'gateway.yaml'), gatewayYaml);
    const sim = spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(simPort)]);
    // The collector stands for the SOC's, on another machine: the lowest CPU priority, so it only
    // gets what the generator, the gateway and the simulator leave idle. Acks arrive when it
    // catches up; the gateway still encrypts and streams every record.
    const collector = spawnCli(['collector', '--config', path.join(dir, 'collector.yaml')], {}, [], { niceness: 19 });
    children.push(sim, collector);
    await Promise.all([waitForPort(simPort), waitForPort(collectorPort)]);
    const relayTls = [String(framingTlsPort), files.pki.ca.cert, files.pki.gateway.cert, files.pki.gateway.key];
    const pipe = quick ? undefined : spawnNode('relays.js', ['pipe', String(pipePort), String(simPort)]);
    const framing = spawnNode('relays.js', ['framing', String(framingPort), String(simPort), ...relayTls]);
    if (pipe) children.push(pipe);
    children.push(framing);
    const haproxy = await startHaproxy(dir, simPort, { ca: files.pki.ca.cert, cert: files.pki.gateway.cert, key: files.pki.gateway.key });
    if (typeof haproxy !== 'string') children.push(haproxy.child);
    await Promise.all([...(pipe ? [waitForPort(pipePort)] : []), waitForPort(framingPort), waitForPort(framingTlsPort)]);

    const gateway = spawnCli(['serve', '--config', path.join(dir, 'gateway.yaml')], {}, (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean));
    children.push(gateway);
    const readyMs = await waitForReady(opsPort);
    const rssIdle = rssMb(gateway.pid);

    const creds = await files.credentials('optimizer');
    const issuerKey = JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK;
    let tokensAt = 0;
    const registerTokens = async () => {
      if (Date.now() - tokensAt < TOKEN_REFRESH_MS) return;
      const put = await putToken('127.0.0.1', agentApiPort, creds, await files.token('optimizer', { ttlSec: 900 }));
      if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
      // A static-IP device cannot reach the agent API: an operator registers its token (no cnf).
      const staticToken = await mintToken({
        privateJwk: issuerKey,
        iss: DEV_ISSUER,
        sub: LEGACY_WORKLOAD,
        aud: files.audience,
        owner: 'alice@plant.example',
        task: { id: 'bench-legacy', purpose: 'benchmark the plaintext listener' },
        scope: ['read', 'write'],
        ttlSec: 900,
      });
      const api = { api: `https://127.0.0.1:${operatorApiPort}/`, token: await files.operatorToken(), ca: creds.ca };
      const answer = await callOperatorApi(api, 'PUT', `v1/static-tokens/${encodeURIComponent(LEGACY_WORKLOAD)}`, staticToken);
      if (answer.status !== 200) throw new Error(`static token refused: ${JSON.stringify(answer.body)}`);
      tokensAt = Date.now();
    };
    await registerTokens();

    const columns = buildColumns({ simPort, pipePort, framingPort, framingTlsPort, plainPort, modbusPort, creds, haproxy, pids: { pipe: pipe?.pid, framing: framing.pid, gateway: gateway.pid } });
    const versions = `Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}, ${os.type()} ${os.release()}${typeof haproxy === 'string' ? '' : `, ${spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]}`}`;
    const { list: tables, pinnedSkipped } = placements();
    console.log(`plantgate bench (${quick ? 'quick' : 'full'}): ${seconds} s per cell; ${versions}; load average ${os.loadavg()[0].toFixed(1)}`);
    console.log(`policy: rules/bench/bundle.yaml + ${EXTRA_RULES} generated rules; collector ${shipping ? 'at nice 19' : 'OFF (BENCH_NO_COLLECTOR)'}`);
    if (typeof haproxy === 'string') console.log(`haproxy columns skipped: ${haproxy}`);
    if (pinnedSkipped) console.log(`pinned table skipped: ${pinnedSkipped}`);

    const footprint = new Footprint(gateway.pid, [10_000, footprintCommands]);
    const rig: Rig = {
      columns,
      opsPort,
      proxyPids: [gateway.pid, framing.pid, pipe?.pid, typeof haproxy === 'string' ? undefined : haproxy.child.pid].filter((p) => p !== undefined),
      loadPids: [process.pid, sim.pid, collector.pid],
      collectorPid: collector.pid,
      collectorOut,
      shipping,
      footprint,
      registerTokens,
      gatewayIdleCpuPerSec: 0,
    };
    // Warm-up (not reported): every column's JIT, TLS session and pool settle before the first cell.
    for (const col of columns) {
      const progress: Progress = { done: 0 };
      const done = col.kind === 'gateway' ? footprint.watch(progress) : undefined;
      await load(col.connect, 8, 1, 'read', 300, progress);
      done?.();
    }
    // What the idle gateway spends anyway (interlock polls of the PLC, timers, the bench's metric
    // scrapes), measured once the collector has caught up with the warm-up.
    if (shipping) await collectorCaughtUp(opsPort, 0);
    const idle0 = cpuSeconds(gateway.pid);
    const idleT0 = performance.now();
    for (let i = 0; i < 10; i++) {
      await metricValue(opsPort, 'plantgate_shipper_lag_records');
      await new Promise((r) => setTimeout(r, 100));
    }
    rig.gatewayIdleCpuPerSec = (cpuSeconds(gateway.pid) - idle0) / ((performance.now() - idleT0) / 1000);

    const measured: { p: Placement; results: Map<string, Result>; lines: string[]; notes: string[] }[] = [];
    for (const p of tables) measured.push({ p, ...(await runTable(rig, p)) });
    // The footprint reads run as a plant runs: unpinned.
    place(rig, tables[tables.length - 1]);

    // Footprint: drive reads through the gateway until the second mark is reached.
    const mtls = columns.find((c) => c.name === 'gateway mtls');
    while (mtls && !process.env.BENCH_ONLY && footprint.commands < footprintCommands) {
      await registerTokens();
      const progress: Progress = { done: 0 };
      const watching = footprint.watch(progress);
      await load(mtls.connect, 32, 1, 'read', 2000, progress);
      watching();
    }
    const rss10k = footprint.at.get(10_000);
    const rssEnd = footprint.at.get(footprintCommands);
    const growthPct = rss10k !== undefined && rssEnd !== undefined ? ((rssEnd - rss10k) / rss10k) * 100 : undefined;
    const rssAfter = rssMb(gateway.pid);
    const lag = shipping ? await metricValue(opsPort, 'plantgate_shipper_lag_records') : undefined;
    const spoolBytes = await metricValue(opsPort, 'plantgate_spool_bytes');
    const footprintLines = [
      `gateway ready ${readyMs} ms after start (no OPC UA; simulator and collector already up)`,
      `gateway RSS: idle ${rssIdle} MB; under load (peak sampled during its cells) ${footprint.peakUnderLoadMb} MB; after 10,000 commands ${rss10k ?? '?'} MB; after ${footprintCommands.toLocaleString('en')} commands ${rssEnd ?? '?'} MB (growth ${growthPct === undefined ? '?' : growthPct.toFixed(1)} %); at the end (${footprint.commands.toLocaleString('en')} commands, idle) ${rssAfter} MB${quick ? '; quick mode stops at 50,000 commands, a full run at 100,000' : ''}`,
      shipping
        ? `collector (nice 19, standing for an off-box collector): lag ${lag ?? '?'} records at the end; spool ${spoolBytes === undefined ? '?' : `${Math.round(spoolBytes / 1024 ** 2)} MB`} of ${SPOOL_MAX_BYTES / 1024 ** 3} GiB; the idle gateway's own CPU (interlock polls, timers, metric scrapes) ${(rig.gatewayIdleCpuPerSec * 100).toFixed(1)} % of a core, not charged to a cell's catch-up`
        : 'collector: off (BENCH_NO_COLLECTOR=1)',
      ...(pinnedSkipped ? [`pinned table skipped: ${pinnedSkipped}`] : []),
    ];
    for (const f of footprintLines) console.log(f);
    const headline = measured[0];
    const summary = targets(headline.results, { rssMaxMb: Math.max(footprint.peakUnderLoadMb, rssAfter, rssIdle), growthPct, readyMs, at: footprintCommands });
    const summaryLines = [
      `Targets (issue 24), from the ${headline.p.name} table of this run${quick ? ' (quick mode)' : ''}, 1 request in flight:`,
      ...summary.lines.map((l) => `- ${l.met === undefined ? 'n/a' : l.met ? 'met' : 'MISSED'}: ${l.target}: ${l.figures}`),
      `- absolute: ${summary.absolute}`,
    ];
    for (const l of summaryLines) console.log(l);
    console.log(`throughput bench took ${Math.round((performance.now() - started) / 1000)} s`);
    if (!quick && !process.env.BENCH_ONLY) {
      const sections = measured.flatMap((m) => [...m.lines, '']);
      const notes = measured.flatMap((m) => m.notes.filter((n) => n.startsWith(`${workloads[workloads.length - 1]} 32×`)).map((n) => `${m.p.name}: ${n}`));
      await writeDoc(versions, sections, [...footprintLines, ...notes], summaryLines, typeof haproxy === 'string' ? haproxy : undefined);
    }
  } finally {
    await Promise.all(children.map(stop));
    await Promise.all(cleanupDirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

function buildColumns(p: {
  simPort: number;
  pipePort: number;
  framingPort: number;
  framingTlsPort: number;
  plainPort: number;
  modbusPort: number;
  creds: AgentCredentials;
  haproxy: { tcpPort: number; tlsPort: number; child: ChildProcess } | string;
  pids: { pipe?: number; framing?: number; gateway?: number };
}): Column[] {
  const all: Workload[] = ['read', 'write', 'mix'];
  // Quick mode keeps writes to the columns whose write path differs (the gateway's durable audit)
  // and the framing relay they are measured against.
  const readsOnlyInQuick = quick ? (['read'] as Workload[]) : all;
  const columns: Column[] = [{ name: 'direct', kind: 'direct', connect: plainConnect(p.simPort), workloads: all }];
  if (!quick) columns.push({ name: 'node pipe', kind: 'relay', transport: 'tcp', connect: plainConnect(p.pipePort), pid: p.pids.pipe, workloads: all });
  if (!quick) columns.push({ name: 'framing relay tcp', kind: 'relay', transport: 'tcp', connect: plainConnect(p.framingPort), pid: p.pids.framing, workloads: all });
  columns.push({ name: 'framing relay mtls', kind: 'relay', transport: 'mtls', connect: tlsConnect(p.framingTlsPort, p.creds), pid: p.pids.framing, workloads: all });
  if (typeof p.haproxy !== 'string') {
    const pid = p.haproxy.child.pid;
    columns.push({ name: 'haproxy tcp', kind: 'haproxy', transport: 'tcp', connect: plainConnect(p.haproxy.tcpPort), pid, workloads: readsOnlyInQuick });
    columns.push({ name: 'haproxy mtls', kind: 'haproxy', transport: 'mtls', connect: tlsConnect(p.haproxy.tlsPort, p.creds), pid, workloads: readsOnlyInQuick });
  }
  columns.push({ name: 'gateway tcp', kind: 'gateway', transport: 'tcp', connect: plainConnect(p.plainPort), pid: p.pids.gateway, workloads: all });
  columns.push({ name: 'gateway mtls', kind: 'gateway', transport: 'mtls', connect: tlsConnect(p.modbusPort, p.creds), pid: p.pids.gateway, workloads: all });
  return columns;
}


/** Rewrites the generated part of docs/performance.md (between the markers), keeping the prose. */
async function writeDoc(versions: string, tables: string[], footprint: string[], summary: string[], haproxySkipped: string | undefined): Promise<void> {
  const file = path.join(PACKAGE_ROOT, 'docs/performance.md');
  let doc: string;
  try {
    doc = await readFile(file, 'utf8');
  } catch {
    doc = '# Performance\n\n<!-- bench:begin -->\n<!-- bench:end -->\n';
  }
  const generated = [
    '<!-- bench:begin -->',
    `Generated by \`make bench\` on ${new Date().toISOString().slice(0, 10)} (${seconds} s per cell): ${versions}. The collector runs at nice 19${process.env.BENCH_NO_COLLECTOR ? ' (here: off, BENCH_NO_COLLECTOR=1)' : ''}. Columns: \`gen cpu\` the load generator's CPU (% of a core); \`proxy cpu\` the proxy's CPU during the cell (% of a core: 100 % pinned means the proxy was the bottleneck); \`proxy µs/cmd\` its CPU per command (for the gateway including shipping the cell's records until the collector acknowledged them); \`collector µs/record\` the collector's CPU per record it verified and stored.`,
    ...(haproxySkipped ? [`haproxy columns skipped: ${haproxySkipped}.`] : []),
    '',
    ...tables,
    ...footprint.map((f) => `- ${f}`),
    '',
    ...summary,
    '<!-- bench:end -->',
  ].join('\n');
  const begin = doc.indexOf('<!-- bench:begin -->');
  const end = doc.indexOf('<!-- bench:end -->');
  const next = begin >= 0 && end > begin ? doc.slice(0, begin) + generated + doc.slice(end + '<!-- bench:end -->'.length) : `${doc}\n${generated}\n`;
  await writeFile(file, next);
  console.log(`wrote ${file}`);
}

await main();
