// Runs the built `plantgate` CLI as a real process (make test builds dist/ first).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'dist/src/cli/main.js');

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'make build' (make test does it) before the end-to-end tests`);
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function run(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`plantgate ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Starts a long-running command and resolves once its stdout contains `marker`. */
export function start(args: string[], marker: string, timeoutMs = 60_000): Promise<{ child: ChildProcess; output: () => string; exited: Promise<Run> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let ready = false;
    const exited = new Promise<Run>((res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr })));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`'${marker}' not seen within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (!ready && stdout.includes(marker)) {
        ready = true;
        clearTimeout(timer);
        resolve({ child, output: () => stdout, exited });
      }
    });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    void exited.then((r) => {
      if (!ready) {
        clearTimeout(timer);
        reject(new Error(`exited (${r.code}) before '${marker}'\n${stdout}\n${stderr}`));
      }
    });
  });
}

/**
 * Resolves once a `plantgate serve` child answers /readyz on its ops port (bundle, spool and
 * listeners up). A separate process offers no event to await, so this polls its endpoint.
 */
export async function waitReady(opsPort: number): Promise<void> {
  for (let i = 0; i < 800; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('gateway did not become ready');
}
