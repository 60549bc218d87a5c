// The simulator's own throughput (issue 12: it must never be the bottleneck of the gateway's
// benchmark): FC3 reads of 10 registers from `plantgate sim` running as its own process, at 8
// connections, first one request in flight per connection (how the gateway bench drives it),
// then 8 pipelined per connection (its headroom). Run after build:
//   node dist/test/bench/sim.js [--quick]
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { FrameDecoder, encodeFrame } from '../../protocols/modbus/codec.js';
import { freePort, spawnCli, stop, waitForPort } from './processes.js';

const quick = process.argv.includes('--quick');
const seconds = quick ? 2 : 8;
const CONNECTIONS = 8;
const READ = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a]);

interface Result {
  rps: number;
  p50us: number;
  p99us: number;
}

async function load(port: number, depth: number, durationMs: number): Promise<Result> {
  const sockets = await Promise.all(
    Array.from(
      { length: CONNECTIONS },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
          s.once('error', reject);
        }),
    ),
  );
  const latencies: number[] = [];
  let done = 0;
  let errors = 0;
  const deadline = Date.now() + durationMs;
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          let tid = 0;
          const sentAt = new Map<number, bigint>();
          let stopping = false;
          const send = (): void => {
            if (Date.now() >= deadline) stopping = true;
            if (stopping) {
              if (sentAt.size === 0) {
                socket.destroy();
                resolve();
              }
              return;
            }
            tid = (tid + 1) & 0xffff;
            sentAt.set(tid, process.hrtime.bigint());
            socket.write(encodeFrame(tid, 1, READ));
          };
          const decoder = new FrameDecoder(
            (frame) => {
              const t0 = sentAt.get(frame.transactionId);
              // A read answer with 10 registers to a transaction we sent.
              if (t0 === undefined || frame.pdu[0] !== 0x03 || frame.pdu[1] !== 20) errors++;
              sentAt.delete(frame.transactionId);
              done++;
              if ((done & 15) === 0 && t0 !== undefined) latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
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
          for (let i = 0; i < depth; i++) send();
        }),
    ),
  );
  if (errors > 0) throw new Error(`${errors} invalid answers`);
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return { rps: Math.round(done / (durationMs / 1000)), p50us: pct(0.5), p99us: pct(0.99) };
}

async function main(): Promise<void> {
  const port = await freePort();
  const children: ChildProcess[] = [spawnCli(['sim', '--plant', 'fixtures/plants/bench.yaml', '--port', String(port)])];
  try {
    await waitForPort(port);
    await load(port, 1, 500); // warm-up: JIT, socket buffers
    console.log(`plantgate sim bench: FC3 read of 10 registers, ${CONNECTIONS} connections, ${seconds} s per run, Node ${process.version}`);
    console.log('in flight per connection | req/s | p50 µs | p99 µs');
    for (const depth of [1, 8]) {
      const r = await load(port, depth, seconds * 1000);
      console.log(`${String(depth).padStart(24)} | ${String(r.rps).padStart(5)} | ${String(r.p50us).padStart(6)} | ${String(r.p99us).padStart(6)}`);
    }
  } finally {
    await Promise.all(children.map(stop));
  }
}

await main();
