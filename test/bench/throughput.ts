// `make bench`: FC3 reads of 10 registers, one request in flight per connection, measured directly
// against the simulated PLC and through the gateway (mutual TLS, token, policy, audit) in the same
// run, so the ratio is what matters, not the absolute figure of this machine.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { putToken } from '../../src/cli/demo/agent.js';
import { prepareLabFiles } from '../../src/cli/demo/lab.js';
import { freePort, spawnCli, stop, waitForPort, waitForReady } from './processes.js';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';

const quick = process.argv.includes('--quick');
const seconds = quick ? 3 : 10;
const connectionCounts = quick ? [8] : [8, 32];
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a]);

type Connect = () => Promise<net.Socket>;

async function load(connect: Connect, connections: number, durationMs: number): Promise<{ rps: number; p50us: number; p99us: number }> {
  const sockets = await Promise.all(Array.from({ length: connections }, connect));
  const latencies: number[] = [];
  let done = 0;
  let errors = 0;
  const deadline = Date.now() + durationMs;
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          let tid = 1;
          let sent = 0n;
          const send = () => {
            if (Date.now() >= deadline) {
              socket.destroy();
              resolve();
              return;
            }
            tid = (tid + 1) & 0xffff;
            sent = process.hrtime.bigint();
            socket.write(encodeFrame(tid, 1, READ));
          };
          const decoder = new FrameDecoder(
            (frame) => {
              // Validate what came back: right transaction, a read answer with 10 registers.
              if (frame.transactionId !== tid || frame.pdu[0] !== 0x03 || frame.pdu[1] !== 20) errors++;
              done++;
              if ((done & 15) === 0) latencies.push(Number(process.hrtime.bigint() - sent) / 1000);
              send();
            },
            () => {
              errors++;
              socket.destroy();
              resolve();
            },
          );
          socket.on('data', (c: Buffer) => decoder.push(c));
          socket.on('error', () => resolve());
          send();
        }),
    ),
  );
  if (errors > 0) throw new Error(`${errors} invalid answers`);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return { rps: Math.round(done / (durationMs / 1000)), p50us: pct(0.5), p99us: pct(0.99) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-'));
  const children: ChildProcess[] = [];
  try {
    const files = await prepareLabFiles({ stateDir: dir, rules: 'rules/bench/bundle.yaml' });
    const [simPort, collectorPort, modbusPort, agentApiPort, opsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    await writeFile(path.join(dir, 'collector.yaml'), files.collectorYaml(collectorPort));
    await writeFile(path.join(dir, 'gateway.yaml'), files.gatewayYaml({ simPort, collectorPort, modbusPort, agentApiPort, opsPort }));
    children.push(spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(simPort)]));
    children.push(spawnCli(['collector', '--config', path.join(dir, 'collector.yaml')]));
    await Promise.all([waitForPort(simPort), waitForPort(collectorPort)]);
    children.push(spawnCli(['serve', '--config', path.join(dir, 'gateway.yaml')], {}, (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean)));
    const readyMs = await waitForReady(opsPort);

    const creds = await files.credentials('optimizer');
    const put = await putToken('127.0.0.1', agentApiPort, creds, await files.token('optimizer', { ttlSec: 900 }));
    if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
    const direct: Connect = () =>
      new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: simPort, noDelay: true }, () => resolve(s));
        s.once('error', reject);
      });
    const viaGateway: Connect = () =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: modbusPort, ...creds, servername: 'localhost' }, () => {
          s.setNoDelay(true);
          resolve(s);
        });
        s.once('error', reject);
      });
    console.log(`plantgate bench: FC3 read of 10 registers, 1 in flight per connection, ${seconds} s per run, Node ${process.version}`);
    console.log(`simulator, collector and gateway run as separate processes; gateway ready ${readyMs} ms after start`);
    console.log('connections | direct req/s | gateway req/s | ratio | gateway p50 µs | gateway p99 µs');
    for (const n of connectionCounts) {
      const d = await load(direct, n, seconds * 1000);
      const g = await load(viaGateway, n, seconds * 1000);
      console.log(`${String(n).padStart(11)} | ${String(d.rps).padStart(12)} | ${String(g.rps).padStart(13)} | ${(g.rps / d.rps).toFixed(2).padStart(5)} | ${String(g.p50us).padStart(14)} | ${String(g.p99us).padStart(14)}`);
    }
    if (process.env.BENCH_METRICS) {
      const m = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
      console.log(m.split('\n').filter((l) => /^plantgate_(decision|upstream)_seconds/.test(l)).join('\n'));
    }
  } finally {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
