// OPC UA through the whole gateway (issue 4, issue 21): `plantgate serve` runs as a child process
// with its OPC UA front and an upstream session to the simulator's OPC UA face, full enforcement on
// (the demo bundle's identity, policy and interlocks, audit durable before each write). The
// simulated PLC runs in a process of its own (opcua-plc.ts), as a PLC is a device of its own: a
// "direct" session to a server inside the bench's own process would cross no process boundary at
// all (its requests are served on the agent's own event loop), which no real direct session does.
// One agent session (SignAndEncrypt, Basic256Sha256, its application certificate, a JWT in
// ActivateSession through the project's client helper) reads and writes through the gateway; the
// same agent reads and writes directly against the PLC, in the same run, direct and gateway round
// trips alternating block by block. Reports p50/p99 of sequential round trips, the load average,
// the PLC's CPU per direct command and the gateway's CPU time per command (from /proc/<pid>/stat:
// less sensitive to other load on the machine than wall-clock latency), its RSS idle and after the
// run, and start-to-ready time.
// Run after build:
//   node dist/test/bench/opcua.js [--quick]
// Knobs for profiling (docs/opcua.md, "Where an OPC UA command's CPU goes"):
//   BENCH_GATEWAY_NODE_ARGS  node flags for the gateway child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/uaprof"
//                            (written when the gateway exits on SIGTERM at the end of the run)
//   BENCH_GATEWAY_PIDFILE    file that receives the gateway's pid once it is ready (perf record -p)
//   BENCH_GATEWAY_LOG        file that receives the gateway's stdout/stderr (e.g. --trace-deopt)
//   BENCH_OPCUA_N, BENCH_OPCUA_WARMUP  round trips per measured run, and before the first one
//   BENCH_OPCUA_ONLY         read | write: measure (and profile) one operation only
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AttributeIds, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes, type ClientSession } from 'node-opcua';
import { DEMO_AGENTS, LAB_GATEWAY_ID, LAB_GATEWAY_OPCUA_URI, LAB_OPCUA_NAMESPACE, PACKAGE_ROOT, prepareLabFiles } from '../../src/cli/demo/lab.js';
import { createAppCert, writeAppCert } from '../../protocols/opcua/app-cert.js';
import { createJwtSession } from '../../protocols/opcua/jwt-token.js';
import { readSpool } from '../../src/audit/offline.js';

const quick = process.argv.includes('--quick');
// BENCH_OPCUA_N overrides the round trips per run (a longer run for a steady-state profile).
const N = Number(process.env.BENCH_OPCUA_N ?? 0) || (quick ? 1000 : 3000);
const REPEATS = quick ? 1 : 3;
// Round trips before the first measured run of each operation. node-opcua's request path is large
// (~800 functions optimized by V8 on the way); measured cold, a run of a few hundred round trips
// counts the optimizing compiler's threads and unoptimized code, not the steady state: 2.1 ms of
// CPU per read over 300 cold reads, 0.3-0.4 ms of main-thread CPU once warm (docs/opcua.md).
const WARMUP = Number(process.env.BENCH_OPCUA_WARMUP ?? (quick ? 1500 : 3000));
const CLI = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');
/** Linux USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const TICKS_PER_S = 100;

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** utime and stime (fields 14 and 15 of a /proc stat line), in microseconds. */
function statTimes(stat: string): { user: number; sys: number } {
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(f[11]) * 1e6) / TICKS_PER_S, sys: (Number(f[12]) * 1e6) / TICKS_PER_S };
}

/** User + system CPU time of a process (all its threads), in microseconds. */
function cpuUsOf(pid: number): number {
  const t = statTimes(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return t.user + t.sys;
}

/**
 * Where a process's CPU goes: its main thread (JavaScript, and the syscalls it makes) in user and
 * system time, and all other threads (GC helpers, the compiler, libuv's pool) together. A sampling
 * profiler cannot tell this apart: it charges wall time, including time the main thread waited
 * for a core, to whatever function was on the stack.
 */
interface CpuSplit {
  mainUser: number;
  mainSys: number;
  others: number;
}

function cpuSplitOf(pid: number): CpuSplit {
  const main = statTimes(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'));
  let others = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    if (tid === String(pid)) continue;
    try {
      const t = statTimes(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      others += t.user + t.sys;
    } catch {
      // The thread ended between the listing and the read: its time is in the process total.
    }
  }
  return { mainUser: main.user, mainSys: main.sys, others };
}

async function waitReady(opsPort: number, child: ChildProcess, output: () => string): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}):\n${output()}`);
    const ok = await fetch(`http://127.0.0.1:${opsPort}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** p50 of appending one record-sized block with O_DSYNC in `dir` (what the spool does per batch), µs. */
async function dsyncAppendP50(dir: string): Promise<number> {
  const file = path.join(dir, 'dsync-probe.bin');
  const fh = await open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_DSYNC, 0o600);
  const block = Buffer.alloc(300, 1);
  const us: number[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await fh.write(block);
      us.push((performance.now() - t0) * 1000);
    }
  } finally {
    await fh.close();
    await rm(file, { force: true });
  }
  us.sort((a, b) => a - b);
  return pct(us, 50);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Figures {
  p50: number;
  p99: number;
  /** CPU µs per command: the gateway's through it, the PLC's for a direct one. */
  cpuUs?: number;
  /** The same, split by thread and user/system (µs per command). */
  split?: CpuSplit;
  /** CPU µs per command of every run, in run order (the spread on a shared machine). */
  all?: number[];
}

/** Blocks per run: direct and gateway round trips alternate block by block. */
const BLOCKS = 10;

/**
 * Direct and through-the-gateway round trips of one operation, after a warm-up of each, in
 * alternating blocks (REPEATS runs of BLOCKS blocks of N/BLOCKS round trips each way), so both
 * see the same load on a shared machine: measured one after the other, a change of load between
 * them would pass for a difference of the gateway. Percentiles over every round trip of a side;
 * the gateway's CPU counted over its blocks only, the PLC's over the direct blocks.
 */
async function compare(direct: () => Promise<void>, via: () => Promise<void>, pids: { gateway: number; plc: number }): Promise<{ direct: Figures; via: Figures }> {
  for (let i = 0; i < WARMUP; i++) await direct();
  for (let i = 0; i < WARMUP; i++) await via();
  const per = Math.max(1, Math.floor(N / BLOCKS));
  const us = { direct: [] as number[], via: [] as number[] };
  const cpu = { direct: 0, via: 0 };
  const split: CpuSplit = { mainUser: 0, mainSys: 0, others: 0 };
  const all: number[] = [];
  const block = async (op: () => Promise<void>, out: number[]) => {
    for (let i = 0; i < per; i++) {
      const t0 = performance.now();
      await op();
      out.push((performance.now() - t0) * 1000);
    }
  };
  for (let r = 0; r < REPEATS; r++) {
    let runCpu = 0;
    for (let b = 0; b < BLOCKS; b++) {
      const p0 = cpuUsOf(pids.plc);
      await block(direct, us.direct);
      cpu.direct += cpuUsOf(pids.plc) - p0;
      const g0 = cpuUsOf(pids.gateway);
      const s0 = cpuSplitOf(pids.gateway);
      await block(via, us.via);
      const g = cpuUsOf(pids.gateway) - g0;
      const s1 = cpuSplitOf(pids.gateway);
      cpu.via += g;
      runCpu += g;
      split.mainUser += s1.mainUser - s0.mainUser;
      split.mainSys += s1.mainSys - s0.mainSys;
      split.others += s1.others - s0.others;
    }
    all.push(runCpu / (per * BLOCKS));
  }
  const n = per * BLOCKS * REPEATS;
  const figures = (xs: number[]): Figures => {
    xs.sort((a, b) => a - b);
    return { p50: pct(xs, 50), p99: pct(xs, 99) };
  };
  return {
    direct: { ...figures(us.direct), cpuUs: cpu.direct / n },
    via: { ...figures(us.via), cpuUs: cpu.via / n, split: { mainUser: split.mainUser / n, mainSys: split.mainSys / n, others: split.others / n }, all },
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-opcua-'));
  const files = await prepareLabFiles({ stateDir: dir });
  // The simulated plant, served over Modbus (plc1, and the interlock poll) and OPC UA (plc1-ua).
  const uaDir = path.join(dir, 'opcua');
  const [gwCert, simCert, agentCert] = await Promise.all([
    createAppCert({ applicationUri: LAB_GATEWAY_OPCUA_URI, commonName: LAB_GATEWAY_ID, hosts: ['127.0.0.1', 'localhost'] }),
    createAppCert({ applicationUri: 'urn:plantgate:sim:water-treatment', commonName: 'water-treatment simulator', hosts: ['127.0.0.1', 'localhost'] }),
    createAppCert({ applicationUri: DEMO_AGENTS.optimizer, commonName: 'optimizer' }),
  ]);
  const gwFiles = await writeAppCert(uaDir, 'gateway', gwCert!);
  const simFiles = await writeAppCert(uaDir, 'sim', simCert!);
  const agentFiles = await writeAppCert(uaDir, 'agent-optimizer', agentCert!);
  const plc = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'dist/test/bench/opcua-plc.js'), simFiles.cert, simFiles.key, path.join(uaDir, 'sim-pki')], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const plcReady = await new Promise<{ modbusPort: number; endpointUrl: string }>((resolve, reject) => {
    let buf = '';
    plc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      // node-opcua writes its warnings to stdout too: the ready line is the JSON one.
      const line = buf.split('\n').find((l) => l.startsWith('{"modbusPort"'));
      if (line !== undefined) resolve(JSON.parse(line) as { modbusPort: number; endpointUrl: string });
    });
    plc.once('exit', (code) => reject(new Error(`the PLC process exited (${code}) before listening`)));
  });
  const sim = { port: plcReady.modbusPort };
  const uaSim = { endpointUrl: plcReady.endpointUrl };

  const [opsPort, uaPort] = await Promise.all([freePort(), freePort()]);
  const yaml = files
    .gatewayYaml({ simPort: sim.port, collectorPort: 1, opsPort, opcua: { endpointUrl: uaSim.endpointUrl, gateway: gwFiles, simCert: simFiles.cert, agentCerts: [agentFiles.cert], port: uaPort } })
    // The lab signs a checkpoint every 16 records so the demo shows some at once (a signature and
    // a fsynced file every 8 reads here); a gateway in a plant runs the defaults (1000 records /
    // 60 s), and that is what is measured, as in throughput.js and enforcement.js.
    .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
    .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
    // No collector: shipping is not on a command's path (the spool is, and stays durable).
    .replace(/ {2}collector:.*\n/, '');
  const configFile = path.join(dir, 'gateway.yaml');
  await writeFile(configFile, yaml);

  let out = '';
  const t0 = performance.now();
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const gateway = spawn(process.execPath, [...nodeArgs, CLI, 'serve', '--config', configFile], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  gateway.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  gateway.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const clients: { client: OPCUAClient; session: ClientSession }[] = [];
  try {
    await waitReady(opsPort, gateway, () => out);
    const readyMs = performance.now() - t0;
    const pid = gateway.pid!;
    // For an outside profiler (perf record -p): the gateway's pid, once it is ready.
    if (process.env.BENCH_GATEWAY_PIDFILE) await writeFile(process.env.BENCH_GATEWAY_PIDFILE, `${pid}\n`);
    const rssIdle = rssOf(pid);
    // What the gateway burns with no commands (subscription publishing, interlock polls, timers):
    // part of every CPU-per-command figure below, so it is shown on its own.
    const idle0 = cpuUsOf(pid);
    const idleT0 = performance.now();
    await new Promise((r) => setTimeout(r, Number(process.env.BENCH_OPCUA_IDLE_MS ?? 0) || (quick ? 1000 : 3000)));
    const idleCpuPct = ((cpuUsOf(pid) - idle0) / ((performance.now() - idleT0) * 1000)) * 100;

    const jwt = await files.mintFor('optimizer', await readFile(agentFiles.cert), { scope: ['read', 'write'], ttlSec: 900 });
    const open = async (url: string, withJwt: boolean): Promise<{ session: ClientSession; ns: number }> => {
      const client = OPCUAClient.create({
        applicationUri: DEMO_AGENTS.optimizer, securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
        certificateFile: agentFiles.cert, privateKeyFile: agentFiles.key, endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
        clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(uaDir, `agent-pki-${withJwt}`), automaticallyAcceptUnknownCertificate: true }),
      });
      await client.connect(url);
      const session = withJwt ? await createJwtSession(client, jwt) : await client.createSession();
      clients.push({ client, session });
      return { session, ns: (await session.readNamespaceArray()).indexOf(LAB_OPCUA_NAMESPACE) };
    };
    const direct = await open(uaSim.endpointUrl, false);
    const via = await open(`opc.tcp://127.0.0.1:${uaPort}`, true);

    const read = (c: { session: ClientSession; ns: number }) => async () => {
      const dv = await c.session.read({ nodeId: `ns=${c.ns};s=tank1.level`, attributeId: AttributeIds.Value });
      // Every answer is checked: a denial or an upstream error must not pass as a fast read.
      if (!dv.statusCode.isGood()) throw new Error(`read answered ${dv.statusCode.name}`);
    };
    let v = 0;
    const write = (c: { session: ClientSession; ns: number }) => async () => {
      const s = await c.session.write({ nodeId: `ns=${c.ns};s=tank1.setpoint`, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 40 + (v++ % 20) } } });
      if (s !== StatusCodes.Good) throw new Error(`write answered ${s.name}`);
    };
    // The upstream subscription may not have delivered the first value yet.
    for (let i = 0; i < 100; i++) {
      const dv = await via.session.read({ nodeId: `ns=${via.ns};s=tank1.level`, attributeId: AttributeIds.Value });
      if (dv.statusCode.isGood()) break;
      await new Promise((r) => setTimeout(r, 50));
    }

    const cpuReads0 = process.cpuUsage();
    const rows: [string, Figures, Figures][] = [];
    // BENCH_OPCUA_ONLY=read|write: one operation only (a profile of just that path).
    const only = process.env.BENCH_OPCUA_ONLY;
    const load0 = os.loadavg()[0]!;
    const pids = { gateway: pid, plc: plc.pid! };
    const row = async (name: string, op: (c: { session: ClientSession; ns: number }) => () => Promise<void>) => {
      const r = await compare(op(direct), op(via), pids);
      rows.push([name, r.direct, r.via]);
    };
    if (only !== 'write') await row('read (tank1.level)', read);
    // The floor of a durable write on this disk, measured on the spool's file system in this run.
    const disk = only === 'read' ? undefined : await dsyncAppendP50(dir);
    if (only !== 'read') await row('write (tank1.setpoint, durable audit)', write);
    const benchCpu = process.cpuUsage(cpuReads0);
    const rssAfter = rssOf(pid);
    const spool = out.includes('"level":50') ? ' (gateway logged errors)' : '';

    const f = (x: number) => `${(x / 1000).toFixed(2)} ms`;
    const load = `load average ${load0.toFixed(2)} at the start of the measured runs, ${os.loadavg()[0]!.toFixed(2)} at their end, ${os.cpus().length} cores`;
    console.log(`\n### OPC UA through the gateway (${quick ? 'quick' : 'full'}: ${N * REPEATS} sequential round trips each way, direct and gateway alternating in blocks of ${Math.floor(N / BLOCKS)}; ${load})${spool}\n`);
    console.log('| operation | direct p50 | direct p99 | gateway p50 | gateway p99 | gateway ÷ direct (p50) | PLC CPU / direct command | gateway CPU / command |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const [name, d, g] of rows) {
      console.log(`| ${name} | ${f(d.p50)} | ${f(d.p99)} | ${f(g.p50)} | ${f(g.p99)} | ${(g.p50 / d.p50).toFixed(2)}× | ${d.cpuUs!.toFixed(0)} µs | ${g.cpuUs!.toFixed(0)} µs |`);
    }
    console.log('');
    console.log('| gateway CPU / command, by thread | main thread user | main thread system | other threads (GC, compiler, libuv pool) |');
    console.log('|---|---|---|---|');
    for (const [name, , g] of rows) {
      const sp = g.split!;
      console.log(`| ${name} | ${sp.mainUser.toFixed(0)} µs | ${sp.mainSys.toFixed(0)} µs | ${sp.others.toFixed(0)} µs |`);
    }
    console.log(`(per-run gateway CPU / command: ${rows.map(([name, , g]) => `${name.split(' ')[0]} ${g.all!.map((x) => x.toFixed(0)).join(', ')} µs`).join('; ')})`);
    console.log('');
    console.log('| gateway process (plantgate serve, Modbus + OPC UA) | figure |');
    console.log('|---|---|');
    console.log(`| start to ready (/readyz 200, OPC UA front listening) | ${readyMs.toFixed(0)} ms |`);
    console.log(`| RSS idle (after ready) | ${mb(rssIdle)} |`);
    console.log(`| CPU idle (no commands) | ${idleCpuPct.toFixed(1)} % of a core |`);
    console.log(`| RSS after ${rows.length * (N * REPEATS + WARMUP)} commands through it | ${mb(rssAfter)} |`);
    console.log(`\nbench process (agent clients) CPU: ${((benchCpu.user + benchCpu.system) / 1000).toFixed(0)} ms; machine has ${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(2)}`);

    // Where a write's time goes: its upstream leg (each outcome record's upstream latency: the
    // gateway's session to the PLC and back) and the disk's durable append, the rest is the front.
    const w = rows.find(([name]) => name.startsWith('write'));
    if (w !== undefined && disk !== undefined) {
      const exited = new Promise((r) => gateway.once('exit', r));
      gateway.kill('SIGTERM');
      await exited;
      const { records } = await readSpool(path.join(dir, 'spool'));
      const ups = records.flatMap((r) => (r.record?.outcome?.status === 'ok' ? [Number(r.record.outcome.upstreamLatencyUs)] : [])).slice(-Math.floor(N / BLOCKS) * BLOCKS * REPEATS);
      ups.sort((a, b) => a - b);
      const up = pct(ups, 50);
      const g = w[2].p50;
      console.log('');
      console.log('| a write through the gateway (p50) | figure |');
      console.log('|---|---|');
      console.log(`| through the gateway | ${f(g)} |`);
      console.log(`| upstream leg: the gateway's session to the PLC and back (outcome records) | ${f(up)} (direct from the agent: ${f(w[1].p50)}) |`);
      console.log(`| durable audit floor: one O_DSYNC append of a record on the spool's disk, this run | ${f(disk)} |`);
      console.log(`| the rest: front (decode, gate, policy, audit encode, answer) and scheduling | ${f(Math.max(0, g - up - disk))} |`);
    }
  } finally {
    for (const c of clients) {
      await c.session.close().catch(() => undefined);
      await c.client.disconnect().catch(() => undefined);
    }
    if (gateway.exitCode === null) {
      const exited = new Promise((r) => gateway.once('exit', r));
      gateway.kill('SIGTERM');
      await exited;
    }
    // The gateway's own output (e.g. with --trace-deopt in BENCH_GATEWAY_NODE_ARGS), for reading later.
    if (process.env.BENCH_GATEWAY_LOG) await writeFile(process.env.BENCH_GATEWAY_LOG, out);
    const plcExited = new Promise((r) => plc.once('exit', r));
    plc.kill('SIGTERM');
    await plcExited;
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
