// `make soak` (issue 18 item 3): the gateway's memory under connection churn. Starts the simulator
// and `plantgate serve` (Modbus over mutual TLS, no collector) as separate processes, then opens and
// closes agent connections, each a full mutual-TLS handshake (no session resumption), one FC3 read
// and a close, CONCURRENCY at a time, and every STEP cycles prints the gateway's RSS (anonymous and
// file-backed, from /proc) beside the V8 heap and external memory it exports on /metrics. After the
// churn it waits IDLE seconds and prints where RSS settled against the idle baseline.
// Usage: node dist/test/bench/soak.js [--quick] [--cycles N] [--step N] [--concurrency N] [--idle S]
// Exit 1 when RSS after the idle wait is more than 10 % above the baseline (docs/deployment.md).
// The baseline is the idle gateway after WARMUP cycles: the first connections load code, grow the
// V8 heap to its working size and the allocator's arenas to theirs; what counts is what stays after.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { putToken } from '../../src/cli/demo/agent.js';
import { prepareLabFiles } from '../../src/cli/demo/lab.js';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';
import { benchUpstreams, cpuSeconds, freePort, metricValue, spawnCli, stop, waitForPort, waitForReady } from './processes.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const arg = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const CYCLES = arg('--cycles', quick ? 10_000 : 100_000);
const STEP = arg('--step', quick ? 1_000 : 10_000);
const CONCURRENCY = arg('--concurrency', 8);
const WARMUP = arg('--warmup', quick ? 1_000 : 2_000);
// V8's memory reducer gives the old generation back some 10-40 s after the allocation rate drops.
const IDLE_S = arg('--idle', quick ? 45 : 60);
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x01]);
const MIB = 1048576;

interface Sample {
  cycles: number;
  rss: number;
  anon: number;
  file: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

function procStatus(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k: string) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) / 102.4) / 10;
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

async function sample(pid: number, opsPort: number, cycles: number): Promise<Sample> {
  const mb = async (n: string) => Math.round(((await metricValue(opsPort, `plantgate_process_${n}`)) ?? -MIB) / MIB);
  return { cycles, ...procStatus(pid), heapUsed: await mb('nodejs_heap_size_used_bytes'), heapTotal: await mb('nodejs_heap_size_total_bytes'), external: await mb('nodejs_external_memory_bytes') };
}

/** One cycle: connect (full mutual-TLS handshake), read one register, close; resolves when closed. */
function cycle(port: number, context: tls.SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, secureContext: context, servername: 'localhost' });
    const fail = (err: Error) => {
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('close', () => resolve());
    const decoder = new FrameDecoder(
      (frame) => {
        if (frame.pdu[0] !== 0x03) return fail(new Error(`answer ${frame.pdu.toString('hex')} to a read`));
        s.end();
      },
      (err) => fail(new Error(`bad frame: ${String(err)}`)),
    );
    s.on('data', (chunk: Buffer) => decoder.push(chunk));
    s.once('secureConnect', () => s.write(encodeFrame(1, 1, READ)));
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-soak-'));
  const children = [];
  try {
    const files = await prepareLabFiles({ stateDir: dir, rules: 'rules/bench/bundle.yaml' });
    const [simPort, collectorPort, modbusPort, agentApiPort, opsPort] = await Promise.all(Array.from({ length: 5 }, freePort));
    const gatewayYaml = benchUpstreams(files.gatewayYaml({ simPort: simPort!, collectorPort: collectorPort!, modbusPort: modbusPort!, agentApiPort: agentApiPort!, opsPort: opsPort! }))
      // A plant's checkpoint cadence (the lab signs one every 16 records so the demo shows some).
      .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
      .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
      .replace(/^audit:/m, `identity:\n  max_connections_per_workload: ${CONCURRENCY * 2}\naudit:`)
      .replace(/^ {2}collector: .*\n/m, '');
    await writeFile(path.join(dir, 'gateway.yaml'), gatewayYaml);
    const sim = spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(simPort)]);
    children.push(sim);
    await waitForPort(simPort!);
    const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const gateway = spawnCli(['serve', '--config', path.join(dir, 'gateway.yaml')], {}, nodeArgs);
    children.push(gateway);
    await waitForReady(opsPort!);
    const pid = gateway.pid!;
    const creds = await files.credentials('optimizer');
    // Tokens live at most 15 minutes (the bundle's max_token_ttl): a long soak puts a fresh one every 5.
    const refreshToken = async () => {
      const put = await putToken('127.0.0.1', agentApiPort!, creds, await files.token('optimizer', { ttlSec: 900 }));
      if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
    };
    await refreshToken();
    const refresher = setInterval(() => void refreshToken().catch((err: Error) => console.error(err.message)), 300_000);
    const context = tls.createSecureContext({ ca: creds.ca, cert: creds.cert, key: creds.key });

    let started = 0;
    let finished = 0;
    let failures = 0;
    let firstFailure: string | undefined;
    const runTo = async (target: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (started < target) {
            started++;
            await cycle(modbusPort!, context).catch((err: Error) => {
              failures++;
              firstFailure ??= err.message;
            });
            finished++;
          }
        }),
      );
    };
    const idle = async (seconds: number) => new Promise((r) => setTimeout(r, seconds * 1000));

    const atStart = await sample(pid, opsPort!, 0);
    await runTo(WARMUP);
    await idle(Math.min(IDLE_S, 5));
    const baseline = await sample(pid, opsPort!, WARMUP);
    const samples: Sample[] = [baseline];
    const cpu0 = cpuSeconds(pid);
    const t0 = Date.now();
    for (let n = WARMUP + STEP; n <= WARMUP + CYCLES; n += STEP) {
      await runTo(n);
      samples.push(await sample(pid, opsPort!, n));
    }
    const seconds = (Date.now() - t0) / 1000;
    const cpuMs = ((cpuSeconds(pid) - cpu0) * 1000) / CYCLES;
    clearInterval(refresher);
    await idle(IDLE_S);
    const settled = await sample(pid, opsPort!, finished);

    const growth = ((settled.rss - baseline.rss) / baseline.rss) * 100;
    console.log(`gateway under connection churn: ${CYCLES} cycles (mTLS handshake, one FC3 read, close), ${CONCURRENCY} at a time, after ${WARMUP} warm-up; node args: ${nodeArgs.join(' ') || '(none)'}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    console.log('| cycles | RSS MiB | anon MiB | file MiB | heap used MiB | heap total MiB | external MiB |');
    console.log('|---|---|---|---|---|---|---|');
    const row = (label: string, s: Sample) => console.log(`| ${label} | ${s.rss} | ${s.anon} | ${s.file} | ${s.heapUsed} | ${s.heapTotal} | ${s.external} |`);
    row('0 (idle, before warm-up)', atStart);
    for (const s of samples) row(s === baseline ? `${s.cycles} (baseline)` : String(s.cycles - WARMUP), s);
    row(`after ${IDLE_S} s idle`, settled);
    console.log(`${Math.round(CYCLES / seconds)} cycles/s, gateway cpu ${cpuMs.toFixed(2)} ms/cycle; ${failures} failed cycles${firstFailure ? ` (first: ${firstFailure})` : ''}`);
    const ok = growth <= 10 && failures === 0;
    console.log(`RSS after the churn and ${IDLE_S} s idle: ${settled.rss} MiB, ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} % against the baseline ${baseline.rss} MiB (bound +10 %): ${ok ? 'flat' : 'NOT flat'}`);
    if (!ok) process.exitCode = 1;
  } finally {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
