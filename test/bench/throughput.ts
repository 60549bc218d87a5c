// `make bench`: Modbus throughput of the gateway beside the relays a plant would otherwise deploy,
// in the same run on the same machine, so the ratios matter more than the absolute figures.
// Columns: direct to the simulated PLC; a bare Node pipe() relay; a framing relay built from our own
// codec and upstream pool with enforcement off (test/bench/relays.ts); haproxy in TCP mode and
// terminating mutual TLS (Debian's haproxy, when installed); the gateway over mutual TLS with a
// token, policy, audit of every decision and outcome, shipping to a collector, and metrics.
// Rows: reads (FC3, 10 registers), writes (FC16, 10 registers, durable audit) and a 90/10 mix at
// 1, 8 and 32 connections with 1 and 4 requests in flight. The generator validates every answer.
// Every part runs as its own process. `--quick` runs a subset in well under a minute; a full run
// also rewrites docs/performance.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { putToken } from '../../src/cli/demo/agent.js';
import { PACKAGE_ROOT, prepareLabFiles } from '../../src/cli/demo/lab.js';
import { cpuSeconds, freePort, rssMb, spawnCli, stop, waitForPort, waitForReady } from './processes.js';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';

const quick = process.argv.includes('--quick');
const seconds = quick ? 2 : 5;
const connectionCounts = quick ? [8, 32] : [1, 8, 32];
const depths = quick ? [1] : [1, 4];
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a]);
const WRITE = Buffer.concat([Buffer.from([0x10, 0x00, 0x00, 0x00, 0x0a, 20]), Buffer.alloc(20, 1)]);

type Workload = 'read' | 'write' | 'mix';
type Connect = () => Promise<net.Socket>;
interface Result {
  rps: number;
  p50us: number;
  p99us: number;
  commands: number;
  genCpu: number;
}

async function load(connect: Connect, connections: number, depth: number, workload: Workload, durationMs: number): Promise<Result> {
  const sockets = await Promise.all(Array.from({ length: connections }, connect));
  const latencies: number[] = [];
  let done = 0;
  let errors = 0;
  let n = 0;
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
              // Validate what came back: the right transaction and a full answer to that request.
              const ok = req !== undefined && frame.transactionId === req.tid && (req.write ? frame.pdu[0] === 0x10 && frame.pdu.length === 5 : frame.pdu[0] === 0x03 && frame.pdu[1] === 20);
              if (!ok) errors++;
              done++;
              if ((done & 7) === 0 && req) latencies.push(Number(process.hrtime.bigint() - req.at) / 1000);
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
  return { rps: Math.round(done / secs), p50us: pct(0.5), p99us: pct(0.99), commands: done, genCpu: Math.round((cpu.user + cpu.system) / 1e4 / secs) };
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
  return spawn(process.execPath, [path.join(PACKAGE_ROOT, 'dist/test/bench', script), ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** haproxy 1 thread: TCP mode, and terminating mutual TLS with the gateway's own certificate. */
async function startHaproxy(dir: string, simPort: number, pki: { ca: string; cert: string; key: string }): Promise<{ child: ChildProcess; tcpPort: number; tlsPort: number } | string> {
  const which = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (which.error || which.status !== 0) return 'haproxy is not installed (apt-get install -y haproxy)';
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
  connect: Connect;
  /** The haproxy column the ratio is taken to. */
  versus?: string;
  writes: boolean;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-'));
  const children: ChildProcess[] = [];
  try {
    const files = await prepareLabFiles({ stateDir: dir, rules: 'rules/bench/bundle.yaml' });
    const [simPort, collectorPort, modbusPort, agentApiPort, opsPort, pipePort, framingPort] = await Promise.all(Array.from({ length: 7 }, freePort));
    await writeFile(path.join(dir, 'collector.yaml'), files.collectorYaml(collectorPort));
    // The lab signs a checkpoint every 16 records so the demo shows some at once; a gateway in a
    // plant runs the defaults (1000 records / 60 s), and that is what is measured here.
    const gatewayYaml = files
      .gatewayYaml({ simPort, collectorPort, modbusPort, agentApiPort, opsPort })
      .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
      .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
      // One workload identity opens all 32 connections of the load generator.
      .replace(/^audit:/m, 'identity:\n  max_connections_per_workload: 64\naudit:')
      // Diagnosis only: BENCH_NO_COLLECTOR=1 leaves shipping out, to see what the collector costs
      // the shared cores (the records are still written, hashed and fsynced).
      .replace(process.env.BENCH_NO_COLLECTOR ? /^ {2}collector: .*\n/m : /(?!)/, '');
    await writeFile(path.join(dir, 'gateway.yaml'), gatewayYaml);
    const sim = spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(simPort)]);
    const collector = spawnCli(['collector', '--config', path.join(dir, 'collector.yaml')]);
    children.push(sim, collector);
    await Promise.all([waitForPort(simPort), waitForPort(collectorPort)]);
    const pipe = spawnNode('relays.js', ['pipe', String(pipePort), String(simPort)]);
    const framing = spawnNode('relays.js', ['framing', String(framingPort), String(simPort)]);
    children.push(pipe, framing);
    const haproxy = await startHaproxy(dir, simPort, { ca: files.pki.ca.cert, cert: files.pki.gateway.cert, key: files.pki.gateway.key });
    if (typeof haproxy !== 'string') children.push(haproxy.child);
    await Promise.all([waitForPort(pipePort), waitForPort(framingPort)]);

    const gateway = spawnCli(['serve', '--config', path.join(dir, 'gateway.yaml')], {}, (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean));
    children.push(gateway);
    const readyMs = await waitForReady(opsPort);
    const rssIdle = rssMb(gateway.pid);

    const creds = await files.credentials('optimizer');
    const put = await putToken('127.0.0.1', agentApiPort, creds, await files.token('optimizer', { ttlSec: 900 }));
    if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);

    const columns: Column[] = [
      { name: 'direct', connect: plainConnect(simPort), writes: true },
      { name: 'node pipe', connect: plainConnect(pipePort), versus: 'haproxy tcp', writes: false },
      { name: 'framing relay', connect: plainConnect(framingPort), versus: 'haproxy tcp', writes: true },
    ];
    if (typeof haproxy !== 'string') {
      columns.push({ name: 'haproxy tcp', connect: plainConnect(haproxy.tcpPort), writes: false });
      columns.push({ name: 'haproxy mtls', connect: tlsConnect(haproxy.tlsPort, creds), writes: false });
    }
    columns.push({ name: 'gateway mtls', connect: tlsConnect(modbusPort, creds), versus: 'haproxy mtls', writes: true });

    const versions = `Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${os.type()} ${os.release()}${typeof haproxy === 'string' ? '' : `, ${spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]}`}`;
    const lines: string[] = [];
    const out = (l: string) => {
      console.log(l);
      lines.push(l);
    };
    console.log(`plantgate bench (${quick ? 'quick' : 'full'}): ${seconds} s per cell; ${versions}`);
    if (typeof haproxy === 'string') console.log(`haproxy columns skipped: ${haproxy}`);
    out('| workload | conns | in flight | column | ops/s | p50 µs | p99 µs | × direct | × haproxy | gen cpu | gateway cpu µs/cmd |');
    out('|---|---|---|---|---|---|---|---|---|---|---|');
    let gatewayCommands = 0;
    const rssSeries: string[] = [];
    const workloads: Workload[] = quick ? ['read', 'write'] : ['read', 'write', 'mix'];
    for (const workload of workloads) {
      for (const n of connectionCounts) {
        for (const depth of depths) {
          const got = new Map<string, Result>();
          const gwCpu = new Map<string, string>();
          for (const col of columns) {
            if (workload !== 'read' && !col.writes) continue;
            // Diagnosis only: BENCH_ONLY="gateway mtls" runs one column (e.g. to profile it alone).
            if (process.env.BENCH_ONLY && col.name !== process.env.BENCH_ONLY) continue;
            const gw0 = cpuSeconds(gateway.pid);
            const r = await load(col.connect, n, depth, workload, seconds * 1000);
            got.set(col.name, r);
            if (col.name === 'gateway mtls') {
              gwCpu.set(col.name, String(Math.round(((cpuSeconds(gateway.pid) - gw0) * 1e6) / r.commands)));
              gatewayCommands += r.commands;
              rssSeries.push(`${gatewayCommands}: ${rssMb(gateway.pid)} MB`);
            }
          }
          const d = got.get('direct');
          for (const col of columns) {
            const r = got.get(col.name);
            if (r === undefined) continue;
            const vs = col.versus ? got.get(col.versus) : undefined;
            out(
              `| ${workload} | ${n} | ${depth} | ${col.name} | ${r.rps} | ${r.p50us} | ${r.p99us} | ${d ? (r.rps / d.rps).toFixed(2) : ''} | ${vs ? (r.rps / vs.rps).toFixed(2) : ''} | ${r.genCpu}% | ${gwCpu.get(col.name) ?? ''} |`,
            );
          }
        }
      }
    }
    const footprint = [
      `gateway ready ${readyMs} ms after start (sim and collector already up)`,
      `gateway RSS idle ${rssIdle} MB; after N commands through it: ${rssSeries.join(', ')}`,
    ];
    for (const f of footprint) console.log(f);
    if (!quick) await writeDoc(versions, lines, footprint, typeof haproxy === 'string' ? haproxy : undefined);
  } finally {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Rewrites the generated part of docs/performance.md (between the markers), keeping the prose. */
async function writeDoc(versions: string, table: string[], footprint: string[], haproxySkipped: string | undefined): Promise<void> {
  const file = path.join(PACKAGE_ROOT, 'docs/performance.md');
  let doc: string;
  try {
    doc = await readFile(file, 'utf8');
  } catch {
    doc = '# Performance\n\n<!-- bench:begin -->\n<!-- bench:end -->\n';
  }
  const generated = [
    '<!-- bench:begin -->',
    `Generated by \`make bench\` on ${new Date().toISOString().slice(0, 10)}: ${versions}.`,
    haproxySkipped ? `haproxy columns skipped: ${haproxySkipped}.` : '',
    '',
    ...table,
    '',
    ...footprint.map((f) => `- ${f}`),
    '<!-- bench:end -->',
  ].join('\n');
  const begin = doc.indexOf('<!-- bench:begin -->');
  const end = doc.indexOf('<!-- bench:end -->');
  const next = begin >= 0 && end > begin ? doc.slice(0, begin) + generated + doc.slice(end + '<!-- bench:end -->'.length) : `${doc}\n${generated}\n`;
  await writeFile(file, next);
  console.log(`wrote ${file}`);
}

await main();
