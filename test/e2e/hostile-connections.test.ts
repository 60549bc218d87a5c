// `plantgate serve` under hostile connections, as a real process: 2,000 connections that open TCP
// and never finish a TLS handshake (silent, or stopping half-way through a ClientHello) from four
// source addresses are all closed — over the per-source cap at once, the rest at the handshake
// deadline — and each is audited; the gateway's file descriptors and memory stay bounded while a
// legitimate agent keeps reading and a new one still connects. Connections over a workload's limit
// are closed at once and audited. Figures (fds, RSS, read latency) are printed, never asserted
// against the clock.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSpool } from '../../src/audit/offline.js';
import { decodeRecord } from '../../src/audit/schema.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { prepareLabFiles, PACKAGE_ROOT, type LabFiles } from '../../src/cli/demo/lab.js';
import { startSimulator, type SimHandle } from '../../src/sim/modbus-server.js';
import { freePort } from '../bench/processes.js';
import { rawAgent } from '../integration/gateway/harness.js';
import { assertBuilt, CLI, waitReady } from './cli.js';

const STALLED = 2000;
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
const LIMITS = { handshake_timeout_ms: 3000, max_pending_handshakes: 512, max_pending_handshakes_per_source: 64 };

/** Open file descriptors and resident memory of a process, from /proc. */
function footprint(pid: number): { fds: number; rssMiB: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return { fds, rssMiB: Math.round(rssKiB / 102.4) / 10 };
}

/** The first bytes a real TLS client sends (its ClientHello), captured on a plain TCP server. */
async function clientHello(): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const first = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (b: Buffer) => (resolve(b), s.destroy()))));
  const c = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
  c.on('error', () => undefined);
  const hello = await first;
  server.close();
  return hello;
}

/** Opens a TCP connection from `localAddress` and, optionally, writes `bytes`; resolves once connected. */
function openStalled(port: number, localAddress: string, bytes: Buffer | undefined): Promise<{ closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.once('connect', () => {
      s.on('error', () => undefined);
      if (bytes !== undefined) s.write(bytes);
      resolve({ closed });
    });
    s.once('error', reject);
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 100) / 100;
}

describe('plantgate serve under hostile connections', () => {
  let dir: string;
  let files: LabFiles;
  let sim: SimHandle;
  let gateway: ChildProcess;
  let exited: Promise<number | null>;
  let stderr = '';
  const ports = { modbus: 0, api: 0, ops: 0 };
  let steady: ModbusAgent;

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-hostile-conn-'));
    files = await prepareLabFiles({ stateDir: dir });
    sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, 'fixtures/plants/water-treatment.yaml'), port: 0 });
    [ports.modbus, ports.api, ports.ops] = await Promise.all([freePort(), freePort(), freePort()]);
    const yaml = files
      .gatewayYaml({ simPort: sim.port, collectorPort: 1, modbusPort: ports.modbus, agentApiPort: ports.api, opsPort: ports.ops })
      .replace(/ {2}collector:.*\n/, '');
    const connections = `connections:\n${Object.entries(LIMITS).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`;
    await writeFile(path.join(dir, 'gateway.yaml'), `${yaml}${connections}`);
    gateway = spawn(process.execPath, [CLI, 'serve', '--config', path.join(dir, 'gateway.yaml')], {
      env: { ...process.env, PLANTGATE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    gateway.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-20_000)));
    exited = new Promise((resolve) => gateway.once('exit', (code) => resolve(code)));
    await waitReady(ports.ops);
    for (const a of ['optimizer', 'reporter'] as const) {
      expect((await putToken('127.0.0.1', ports.api, await files.credentials(a), await files.token(a))).status).toBe(200);
    }
    steady = await connectModbusAgent('127.0.0.1', ports.modbus, await files.credentials('reporter'));
  }, 120_000);

  afterAll(async () => {
    await steady?.close();
    if (gateway !== undefined && gateway.exitCode === null) gateway.kill('SIGKILL');
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The gateway's audited violations, read from its spool once it has stopped (and flushed it). */
  async function violationsAfterStop(): Promise<string[]> {
    gateway.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
    const { records, problems } = await readSpool(path.join(dir, 'spool'));
    expect(problems).toEqual([]);
    return records.flatMap((r) => {
      const v = decodeRecord(r.bytes).violation;
      return v ? [v.detail ?? ''] : [];
    });
  }

  it(
    `closes ${STALLED} stalled handshakes (over the cap at once, the rest at the deadline) with bounded fds and memory, while a legitimate agent keeps reading`,
    async () => {
      const pid = gateway.pid!;
      const read = async (): Promise<number> => {
        const t = performance.now();
        const r = await steady.client.readInputRegisters(0, 1);
        expect(r.data).toHaveLength(1);
        return performance.now() - t;
      };
      const before: number[] = [];
      for (let i = 0; i < 50; i++) before.push(await read());
      const baseline = footprint(pid);
      let peak = { ...baseline };
      const sampler = setInterval(() => {
        const f = footprint(pid);
        peak = { fds: Math.max(peak.fds, f.fds), rssMiB: Math.max(peak.rssMiB, f.rssMiB) };
      }, 50);

      // The legitimate agent reads all through the flood.
      const during: number[] = [];
      let flooding = true;
      const reader = (async () => {
        while (flooding) during.push(await read());
      })();

      const hello = await clientHello();
      const half = hello.subarray(0, Math.floor(hello.length / 2));
      const closes: Array<Promise<void>> = [];
      for (let i = 0; i < STALLED; i += 100) {
        const opened = await Promise.all(Array.from({ length: 100 }, (_, j) => openStalled(ports.modbus, SOURCES[(i + j) % SOURCES.length]!, (i + j) % 2 === 0 ? undefined : half)));
        closes.push(...opened.map((o) => o.closed));
      }
      // A new agent from another address completes its handshake and is served mid-flood.
      const newcomer = await connectModbusAgent('127.0.0.1', ports.modbus, await files.credentials('optimizer'));
      expect((await newcomer.client.readInputRegisters(0, 1)).data).toHaveLength(1);
      await newcomer.close();

      // Every stalled connection is closed by the gateway (none of them ever closes its own side).
      await Promise.all(closes);
      flooding = false;
      await reader;
      clearInterval(sampler);
      const after = footprint(pid);
      const figures = {
        stalled: STALLED,
        fds: { baseline: baseline.fds, peak: peak.fds, after: after.fds },
        rssMiB: { baseline: baseline.rssMiB, peak: peak.rssMiB, after: after.rssMiB },
        readMs: { before: { p50: percentile(before, 50), p99: percentile(before, 99) }, during: { n: during.length, p50: percentile(during, 50), p99: percentile(during, 99) } },
      };
      console.log(`stalled handshakes: ${JSON.stringify(figures)}`);
      // Bounded: never more sockets than handshakes the caps allow in progress (4 sources × 64),
      // plus the few being closed at accept; memory does not grow with the number of attackers
      // (seen: +41 and +48 MiB, most of it V8 garbage not yet collected; unbounded state for 2,000
      // handshakes plus the reads would be far above this bound).
      expect(peak.fds - baseline.fds).toBeLessThanOrEqual(SOURCES.length * LIMITS.max_pending_handshakes_per_source + 64);
      expect(peak.rssMiB - baseline.rssMiB).toBeLessThan(96);
      expect(after.fds).toBeLessThanOrEqual(baseline.fds + 2);

      // Connections over a workload's limit (8) are closed at once: the gateway, not the agent, ends them.
      const creds = await files.credentials('optimizer');
      const extra = await Promise.all(Array.from({ length: 40 }, () => rawAgent(ports.modbus, creds)));
      // Each asks for a read: an admitted connection answers it, one over the limit is closed instead.
      const admitted = await Promise.all(
        extra.map(async (a, i) => {
          a.send(i + 1, 1, [0x04, 0x00, 0x00, 0x00, 0x01]);
          return a.receive(1).then(
            () => true,
            () => false,
          );
        }),
      );
      expect(admitted.filter(Boolean)).toHaveLength(8);
      for (const a of extra) a.socket.destroy();

      const violations = await violationsAfterStop();
      const timeouts = violations.filter((v) => v.startsWith('NO_IDENTITY TLS_HANDSHAKE_TIMEOUT:'));
      const capped = violations.filter((v) => v.startsWith('RATE_LIMITED TOO_MANY_HANDSHAKES:'));
      const overLimit = violations.filter((v) => v.startsWith('RATE_LIMITED TOO_MANY_CONNECTIONS:'));
      console.log(
        `audited: ${timeouts.length} handshake timeouts, ${capped.length} closed at accept over the cap, ${overLimit.length} of ${extra.length - admitted.filter(Boolean).length} closed over the workload's connection limit`,
      );
      // Each stalled connection audited exactly once, as one or the other.
      expect(timeouts.length + capped.length).toBe(STALLED);
      expect(timeouts.length).toBeGreaterThan(0);
      expect(capped.length).toBeGreaterThan(0);
      expect(overLimit).toHaveLength(32);
    },
    300_000,
  );
});
