// `plantgate … | head`: when the reader of the output goes away, a command ends quietly with its
// own exit code — never an EPIPE stack trace.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI, ROOT, run } from './cli.js';

/**
 * Runs the CLI with its stdout a pipe whose reader closes after the first chunk (what `| head -1`
 * does), or before the command writes anything at all.
 */
function intoClosedPipe(args: string[], when: 'first-chunk' | 'at-once'): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    if (when === 'at-once') child.stdout.destroy();
    else child.stdout.once('data', () => child.stdout.destroy());
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`plantgate ${args.join(' ')} did not end\n${stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe('plantgate output into a closed pipe', () => {
  let dir: string;
  let bundle: string;
  let key: string;
  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-pipe-'));
    expect((await run(['keys', 'gen', '--out', dir, '--name', 'policy'])).code).toBe(0);
    key = path.join(dir, 'policy.private.jwk.json');
    bundle = path.join(dir, 'bundle.jws');
    expect((await run(['bundle', 'build', '--src', 'rules/demo/bundle.yaml', '--key', key, '--revision', '1', '--out', bundle])).code).toBe(0);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each([
    ['bundle build', () => ['bundle', 'build', '--src', 'rules/demo/bundle.yaml', '--key', key, '--revision', '2', '--out', path.join(dir, 'b2.jws')]],
    ['bundle inspect', () => ['bundle', 'inspect', bundle]],
    ['--help', () => ['--help']],
  ])('%s | head ends quietly with exit 0', async (_name, args) => {
    for (const when of ['first-chunk', 'at-once'] as const) {
      const r = await intoClosedPipe(args(), when);
      expect(r.stderr, when).not.toMatch(/EPIPE|Unhandled|\n\s+at /);
      expect(r.code, `${when}: ${r.stderr}`).toBe(0);
    }
  }, 60_000);

  it('a command that fails still says so (exit code and message) when nobody reads its output', async () => {
    const r = await intoClosedPipe(['bundle', 'inspect', path.join(dir, 'missing.jws')], 'at-once');
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
  });
});
