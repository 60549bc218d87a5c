// The published package works on its own: `npm pack` → extract → the CLI's --help and the whole
// demo run from the extracted files (with the repo's node_modules standing in for `npm install`).
// Proves package.json "files" ships everything the CLI reads at run time (dist, rules, plant
// fixtures, dev issuer key, proto).
// `make test` has just built dist/, so the pack skips the prepack build (--ignore-scripts):
// rebuilding dist/ here would rewrite files other end-to-end tests are executing. That prepack
// still builds on a real `npm pack` / `npm publish` is asserted separately below.
import { execFile } from 'node:child_process';
import { readFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ROOT } from './cli.js';

const exec = promisify(execFile);

describe('npm pack', () => {
  let dir: string;
  let cli: string;
  let files: string[];

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-pack-'));
    const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const packed = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    files = packed[0]!.files.map((f) => f.path);
    await exec('tar', ['xzf', path.join(dir, packed[0]!.filename), '-C', dir]);
    await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'package', 'node_modules'), 'dir');
    cli = path.join(dir, 'package', 'dist', 'src', 'cli', 'main.js');
  }, 60_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds before packing (prepack) and names the CLI as the package binary', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    expect(pkg.scripts.prepack).toMatch(/npm run build/);
    expect(pkg.bin.plantgate).toBe('dist/src/cli/main.js');
    expect(files).toContain('dist/src/cli/main.js');
  });

  it('ships no private key except the documented development issuer key, and no test sources', () => {
    expect(files.filter((f) => /private/i.test(f))).toEqual(['fixtures/keys/dev-issuer.private.jwk.json']);
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('dist/test/'))).toEqual([]);
  });

  it('runs --help from the extracted package', async () => {
    const { stdout } = await exec(process.execPath, [cli, '--help'], { cwd: dir });
    for (const c of ['serve', 'demo', 'bundle', 'audit', 'approvals', 'revoke', 'config']) expect(stdout).toContain(c);
  });

  it('runs the whole demo from the extracted package', async () => {
    const { stdout } = await exec(process.execPath, [cli, 'demo', '--state-dir', path.join(dir, 'demo')], { cwd: dir, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    expect(stdout).toMatch(/All \d+ commands answered as expected/);
    expect(stdout).toMatch(/Audit log verified/);
  }, 70_000);
});
