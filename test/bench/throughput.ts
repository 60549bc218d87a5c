// `make bench`: FC3 reads of 10 registers, one request in flight per connection, measured directly
// against the simulated PLC and through the gateway (mutual TLS, token, policy, audit) in the same
// run, so the ratio is what matters, not the absolute figure of this machine.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { putToken } from '../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../src/cli/demo/lab.js';
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
  let lab: Lab | undefined;
  try {
    lab = await startLab({ stateDir: dir, plant: 'fixtures/plants/bench.yaml', rules: 'rules/bench/bundle.yaml' });
    const creds = await lab.credentials('optimizer');
    const api = lab.gateway.agentApi;
    const put = await putToken(api.host, api.port, creds, await lab.token('optimizer', { ttlSec: 900 }));
    if (put.status !== 200) throw new Error(`token refused: ${JSON.stringify(put.body)}`);
    const simPort = lab.sim.port;
    const gw = lab.gateway.modbus;
    const direct: Connect = () =>
      new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: simPort, noDelay: true }, () => resolve(s));
        s.once('error', reject);
      });
    const viaGateway: Connect = () =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: gw.host, port: gw.port, ...creds, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
    console.log(`plantgate bench: FC3 read of 10 registers, 1 in flight per connection, ${seconds} s per run, Node ${process.version}`);
    console.log('connections | direct req/s | gateway req/s | ratio | gateway p50 µs | gateway p99 µs');
    for (const n of connectionCounts) {
      const d = await load(direct, n, seconds * 1000);
      const g = await load(viaGateway, n, seconds * 1000);
      console.log(`${String(n).padStart(11)} | ${String(d.rps).padStart(12)} | ${String(g.rps).padStart(13)} | ${(g.rps / d.rps).toFixed(2).padStart(5)} | ${String(g.p50us).padStart(14)} | ${String(g.p99us).padStart(14)}`);
    }
    console.log(`audit records written: ${lab.gateway.audit.nextSeq}`);
  } finally {
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
