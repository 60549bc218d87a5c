import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../../../src/cli/commands/sim.js';

describe('plantgate sim (command line)', () => {
  let dir: string;
  let stderr: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'plantgate-sim-cli-'));
    stderr = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += chunk.toString();
      return true;
    });
    process.exitCode = undefined;
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function run(...args: string[]): Promise<void> {
    const program = new Command('plantgate').exitOverride();
    register(program);
    await program.parseAsync(['node', 'plantgate', ...args]);
  }

  it('exits 2 and prints file:line:column: field for a bad plant file', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'plant: x\nplcs:\n  - id: a\n    unit_id: 1\n    points:\n      p: { table: holding, address: 0, type: bool }\n');
    await run('sim', '--plant', file, '--port', '0');
    expect(process.exitCode).toBe(2);
    expect(stderr).toBe(`${file}:6:46: plcs[0].points.p.type: bool cannot live in the holding table (use coil or discrete)\n`);
  });

  it('exits 2 when the plant file does not exist', async () => {
    await run('sim', '--plant', join(dir, 'missing.yaml'));
    expect(process.exitCode).toBe(2);
    expect(stderr).toContain('missing.yaml:1:1: file: cannot read plant file (ENOENT)');
  });

  it('exits 2 when the plant lacks a point its model needs', async () => {
    const file = join(dir, 'partial.yaml');
    await writeFile(file, 'plant: x\nplcs:\n  - id: a\n    unit_id: 1\n    points:\n      tank1.level: { table: input, address: 0, type: uint16 }\n    model: water-tank\n');
    await run('sim', '--plant', file, '--port', '0');
    expect(process.exitCode).toBe(2);
    expect(stderr).toContain(`${file}:7:12: plcs[a].model: model water-tank needs point tank1.setpoint`);
  });

  it('exits 2 for a port that is not 0..65535', async () => {
    await run('sim', '--plant', 'whatever.yaml', '--port', '70000');
    expect(process.exitCode).toBe(2);
    expect(stderr).toContain('--port must be an integer 0..65535');
  });
});
