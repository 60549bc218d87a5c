// Runs plantgate parts as separate processes for benchmarks, so the load generator, the gateway
// and the simulator each have their own event loop, as on a real gateway device.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { LAB_OPCUA_ASSET, PACKAGE_ROOT } from '../../src/cli/demo/lab.js';

const CLI = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');
/**
 * The node flags of the `plantgate` bin's shebang (`#!/usr/bin/env -S node …`): the benches run
 * the CLI as an installed `plantgate` (and the systemd unit, and the container) runs it.
 */
export const BIN_NODE_FLAGS = readFileSync(CLI, 'utf8')
  .split('\n', 1)[0]
  .replace(/^#!\S*env (-S )?node ?/, '')
  .split(' ')
  .filter(Boolean);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface SpawnOptions {
  /**
   * Run at this niceness (`nice -n`), every thread of the process included. 19 (the lowest
   * priority) makes a process stand for one on another machine: it only gets the CPU the measured
   * processes leave idle.
   */
  niceness?: number;
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = [], opts: SpawnOptions = {}): ChildProcess {
  const argv = [...BIN_NODE_FLAGS, ...nodeArgs, CLI, ...args];
  // Through nice(1) rather than os.setPriority after the start: Linux niceness is per thread, and
  // V8's and libuv's threads would keep the priority they were started with.
  const [cmd, cmdArgs] = opts.niceness === undefined ? [process.execPath, argv] : ['nice', ['-n', String(opts.niceness), process.execPath, ...argv]];
  const child = spawn(cmd, cmdArgs, {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, PLANTGATE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return child;
}

/**
 * The lab's gateway config for the bench bundle (rules/bench/bundle.yaml): without the lab's OPC UA
 * asset's upstream, which that bundle does not know (serve refuses an upstream asset the bundle
 * lacks: docs/configuration.md, Checking a configuration).
 */
export function benchUpstreams(gatewayYaml: string): string {
  return gatewayYaml.replace(new RegExp(`(?: {2}#[^\\n]*\\n)* {2}- asset: ${LAB_OPCUA_ASSET}\\n(?: {4}[^\\n]*\\n)*`), '');
}

/** Resolves when something accepts TCP connections on the port (the child finished starting). */
export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function waitForReady(opsPort: number, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`);
      if (res.status === 200) return Date.now() - started;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > timeoutMs) throw new Error(`gateway not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at state (field 3).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Sets the CPU affinity of every thread of a running process (`taskset -a -p`, util-linux), so a
 * bench can pin the process under test to one core and its load to the other, and unpin them
 * again between tables. Threads started later inherit the affinity of the thread that starts them.
 * Reads the affinity back (taskset -a reports success for a process that does not exist).
 * Returns why it could not, or undefined.
 */
export function setAffinity(pid: number | undefined, cpus: string): string | undefined {
  if (pid === undefined) return 'no process';
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { encoding: 'utf8' });
  if (r.error) return `taskset: ${r.error.message}`;
  if (r.status !== 0) return `taskset -a -p -c ${cpus} ${pid}: ${r.stderr.trim() || `exit ${r.status}`}`;
  const want = parseCpuList(cpus).join(',');
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) {
      let got: string;
      try {
        got = affinityOf(pid, tid).join(',');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // the thread ended meanwhile
        throw err;
      }
      if (got !== want) return `taskset -a -p -c ${cpus} ${pid}: thread ${tid} runs on ${got}`;
    }
  } catch (err) {
    return `taskset -a -p -c ${cpus} ${pid}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  return undefined;
}

/** Parses a Linux CPU list ("0-2,5"), as in /proc/<pid>/status and taskset -c. */
export function parseCpuList(list: string): number[] {
  return list
    .trim()
    .split(',')
    .filter(Boolean)
    .flatMap((part) => {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
      if (!m) throw new Error(`"${list}" is not a CPU list`);
      const [a, b] = [Number(m[1]), Number(m[2] ?? m[1])];
      return Array.from({ length: b - a + 1 }, (_, i) => a + i);
    });
}

/** The CPUs a thread may run on (Cpus_allowed_list of /proc/<pid>/task/<tid>/status; the main thread by default). */
export function affinityOf(pid: number, tid = pid): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
  if (!m) throw new Error(`no Cpus_allowed_list for ${pid}/${tid}`);
  return parseCpuList(m[1]);
}

/** Resident set size of a process in MB, from /proc (Linux). */
export function rssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** The value of one unlabelled metric on the gateway's ops port (undefined: not exported). */
export async function metricValue(opsPort: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}
