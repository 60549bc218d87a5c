// `make bench` footprint (issue 13): the gateway's memory over a long run of Modbus reads, to tell
// a leak from lazy garbage collection. Starts the simulator and `plantgate serve` (Modbus over
// mutual TLS only, no OPC UA, no collector: the gateway's own footprint), sends FC3 reads over
// mTLS with a token, and every STEP commands prints RSS (anonymous and file-backed, from /proc)
// beside the V8 heap and external memory the gateway exports on /metrics.
// Usage: node dist/test/bench/footprint.js [--quick] [--total N] [--step N] [--conns N]
//        BENCH_GATEWAY_NODE_ARGS="--max-semi-space-size=4" to try node flags on the gateway.
// Reading it: heap and external that fall back after a mark-compact are garbage, not a leak; anon
// RSS that stays up after they fall is memory the allocator kept (see docs/performance.md).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { putToken } from '../../src/cli/demo/agent.js';
import { prepareLabFiles } from '../../src/cli/demo/lab.js';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';
import { benchUpstreams, cpuSeconds, freePort, spawnCli, stop, waitForPort, waitForReady } from './processes.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const arg = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const TOTAL = arg('--total', quick ? 50_000 : 200_000);
const STEP = arg('--step', 10_000);
const CONNS = arg('--conns', 8);
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a]);

interface Sample {
  commands: number;
  rss: number;
  anon: number;
  file: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

function procStatus(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k: string) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) / 1024);
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

async function heap(opsPort: number): Promise<{ heapUsed: number; heapTotal: number; external: number }> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const mb = (n: string) => {
    const m = new RegExp(`^plantgate_process_${n}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Math.round(Number(m[1]) / 1048576) : -1;
  };
  return { heapUsed: mb('nodejs_heap_size_used_bytes'), heapTotal: mb('nodejs_heap_size_total_bytes'), external: mb('nodejs_external_memory_bytes') };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-footprint-'));
  const children = [];
  try {
    const files = await prepareLabFiles({ stateDir: dir, rules: 'rules/bench/bundle.yaml' });
    const [simPort, collectorPort, modbusPort, agentApiPort, opsPort] = await Promise.all(Array.from({ length: 5 }, freePort));
    // Plant defaults for checkpoints, one workload opening all connections, no collector.
    const gatewayYaml = benchUpstreams(files.gatewayYaml({ simPort: simPort!, collectorPort: collectorPort!, modbusPort: modbusPort!, agentApiPort: agentApiPort!, opsPort: opsPort! }))
      .replace(/checkpoint_every_records: \d+/, 'checkpoint_every_records: 1000')
      .replace(/checkpoint_every_ms: \d+/, 'checkpoint_every_ms: 60000')
      .replace(/^audit:/m, 'identity:\n  max_connections_per_workload: 64\naudit:')
      .replace(/^ {2}collector: .*\n/m, '');
    await writeFile(path.join(dir, 'gateway.yaml'), gatewayYaml);
    const sim = spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(simPort)]);
    children.push(sim);
    await waitForPort(simPort!);
    const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const gateway = spawnCli(['serve', '--config', path.join(dir, 'gateway.yaml')], {}, nodeArgs);
    children.push(gateway);
    const readyMs = await waitForReady(opsPort!);
    const pid = gateway.pid!;
    const samples: Sample[] = [{ commands: 0, ...procStatus(pid), ...(await heap(opsPort!)) }];
    const creds = await files.credentials('optimizer');
    const put = await putToken('127.0.0.1', agentApiPort!, creds, await files.token('optimizer', { ttlSec: 900 }));
    if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
    const sockets = await Promise.all(
      Array.from(
        { length: CONNS },
        () =>
          new Promise<tls.TLSSocket>((resolve, reject) => {
            const s = tls.connect({ host: '127.0.0.1', port: modbusPort, ...creds, servername: 'localhost' }, () => {
              s.setNoDelay(true);
              resolve(s);
            });
            s.once('error', reject);
          }),
      ),
    );
    // One request in flight per connection; the run pauses at every STEP to sample.
    let sent = 0;
    let done = 0;
    let invalid = 0;
    let target = 0;
    let reached: (() => void) | undefined;
    const senders = sockets.map((socket) => {
      let tid = 0;
      const c = {
        idle: true,
        send(): void {
          if (sent >= target) {
            c.idle = true;
            return;
          }
          c.idle = false;
          sent++;
          tid = (tid + 1) & 0xffff;
          socket.write(encodeFrame(tid, 1, READ));
        },
      };
      const decoder = new FrameDecoder(
        (frame) => {
          if (frame.transactionId !== tid || frame.pdu[0] !== 0x03 || frame.pdu[1] !== 20) invalid++;
          done++;
          if (done === target) reached?.();
          c.send();
        },
        () => invalid++,
      );
      socket.on('data', (chunk: Buffer) => decoder.push(chunk));
      socket.on('error', () => undefined);
      return c;
    });
    const cpu0 = cpuSeconds(pid);
    for (let n = STEP; n <= TOTAL; n += STEP) {
      target = n;
      await new Promise<void>((resolve) => {
        reached = resolve;
        for (const c of senders) if (c.idle) c.send();
      });
      samples.push({ commands: n, ...procStatus(pid), ...(await heap(opsPort!)) });
    }
    const cpuUs = Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / TOTAL);
    for (const s of sockets) s.destroy();
    if (invalid > 0) throw new Error(`${invalid} invalid answers`);
    console.log(`gateway footprint: Modbus mTLS only, ${CONNS} connections, FC3 reads; ready ${readyMs} ms; node args: ${nodeArgs.join(' ') || '(none)'}`);
    console.log('| commands | RSS MB | anon MB | file MB | heap used MB | heap total MB | external MB |');
    console.log('|---|---|---|---|---|---|---|');
    for (const s of samples) console.log(`| ${s.commands} | ${s.rss} | ${s.anon} | ${s.file} | ${s.heapUsed} | ${s.heapTotal} | ${s.external} |`);
    const at = (n: number) => samples.find((s) => s.commands === n);
    const a = at(10_000);
    const b = at(100_000);
    if (a && b) console.log(`growth 10,000 → 100,000 commands: ${(((b.rss - a.rss) / a.rss) * 100).toFixed(1)} % (target < 5 %)`);
    console.log(`gateway cpu ${cpuUs} µs/command`);
  } finally {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
