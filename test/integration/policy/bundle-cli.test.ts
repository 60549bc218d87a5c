// The `plantgate bundle` commands run in-process through commander, against real files.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { exportJWK, generateKeyPair } from 'jose';
import { register } from '../../../src/cli/commands/bundle.js';
import { readBundleFile, verifyBundle } from '../../../src/policy/bundle.js';
import { PolicyEngine } from '../../../src/policy/engine.js';

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const program = new Command().exitOverride();
  register(program);
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  process.exitCode = 0;
  try {
    await program.parseAsync(['node', 'plantgate', 'bundle', ...args]);
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, stdout, stderr };
}

afterEach(() => {
  process.exitCode = 0;
});

async function keyFiles(dir: string, name: string, kid: string): Promise<{ priv: string; jwks: string }> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const priv = path.join(dir, `${name}.private.jwk.json`);
  const jwks = path.join(dir, `${name}.jwks.json`);
  await writeFile(priv, JSON.stringify({ ...(await exportJWK(privateKey)), kid }));
  await writeFile(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid }] }));
  return { priv, jwks };
}

describe('plantgate bundle', () => {
  it('builds the demo bundle, verifies it with the pinned key and inspects it as UNVERIFIED', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-bundle-'));
    const key = await keyFiles(dir, 'policy', 'policy-1');
    const out = path.join(dir, 'demo.jws');
    const built = await run('build', '--src', 'rules/demo/bundle.yaml', '--key', key.priv, '--revision', '3', '--out', out);
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/bundle +demo revision 3/);
    expect(built.stdout).toMatch(/rules +12/);
    expect(built.stdout).toMatch(/kid policy-1/);
    expect(built.stdout).toMatch(/sha256 +[0-9a-f]{64}/);
    expect(built.stdout).not.toContain((JSON.parse(await readFile(key.priv, 'utf8')) as { d: string }).d);

    const ok = await run('verify', out, '--trust', key.jwks);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toContain('OK');
    const rollback = await run('verify', out, '--trust', key.jwks, '--min-revision', '4');
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toContain('ROLLBACK');

    const other = await keyFiles(dir, 'other', 'other-1');
    const unknown = await run('verify', out, '--trust', other.jwks);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('UNKNOWN_KEY');

    const inspected = await run('inspect', out);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout).toMatch(/^# UNVERIFIED/);
    expect(inspected.stdout).toMatch(/header +alg EdDSA, kid policy-1, typ plantgate-bundle\+jws/);
    expect(inspected.stdout).toMatch(/bundle +demo revision 3, mode enforce/);
    expect(inspected.stdout).toMatch(/plc1 +zone treatment, high, modbus unit 1, 9 points/);
    expect(inspected.stdout).toMatch(/rules +12 \(1 in monitor mode\)/);
    expect(inspected.stdout).toMatch(/nightly-maintenance +mon,tue,wed,thu,fri 22:00-06:00 Europe\/Berlin/);
    expect(inspected.stdout).toMatch(/signature +NOT CHECKED/);
    expect((await run('inspect', out, '--json')).stdout).toContain('"agents-read-plant"');

    const trustedInspect = await run('inspect', out, '--trust', key.jwks);
    expect(trustedInspect.code).toBe(0);
    expect(trustedInspect.stdout).toMatch(/^# VERIFIED: signed by pinned key 'policy-1'/);
    expect(trustedInspect.stdout).toMatch(/signature +VERIFIED by pinned key 'policy-1'/);
    const untrustedInspect = await run('inspect', out, '--trust', (await keyFiles(dir, 'x', 'x-1')).jwks);
    expect(untrustedInspect.code).toBe(1);
    expect(untrustedInspect.stdout).toMatch(/^# UNVERIFIED/);
    expect(untrustedInspect.stdout).toMatch(/signature +REFUSED UNKNOWN_KEY/);

    // The built file is what the gateway loads: it verifies and compiles into an engine.
    const payload = await verifyBundle(await readBundleFile(out), [{ kid: 'policy-1', publicJwk: JSON.parse(await readFile(key.jwks, 'utf8')).keys[0] }], { now: Date.now() });
    expect(PolicyEngine.fromPayload(payload).assets.find((a) => a.protocol === 'modbus' && a.unit_id === 1)?.id).toBe('plc1');
  });

  it('prints every source problem and exits 2 without writing a bundle', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-bundle-'));
    const key = await keyFiles(dir, 'policy', 'policy-1');
    const src = path.join(dir, 'bundle.yaml');
    await writeFile(src, 'bundle: { name: x, audience: a, valid_for: 3 days }\n');
    const out = path.join(dir, 'x.jws');
    const r = await run('build', '--src', src, '--key', key.priv, '--revision', '1', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${src}:1:44: bundle.valid_for: bad duration '3 days'`);
    expect(r.stderr).toContain(`${src}:1:1: limits: is required`);
    await expect(readFile(out)).rejects.toThrow(/ENOENT/);
  });

  it('rejects a bad revision as bad usage (exit 2)', async () => {
    const r = await run('build', '--src', 'rules/demo/bundle.yaml', '--key', 'k', '--revision', '0', '--out', '/dev/null');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--revision must be a positive integer');
  });

  it('diffs two bundles: header, rules added, removed and changed field by field, and rule order', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-bundle-'));
    const key = await keyFiles(dir, 'policy', 'policy-1');
    const oldOut = path.join(dir, 'old.jws');
    expect((await run('build', '--src', 'rules/demo/bundle.yaml', '--key', key.priv, '--revision', '3', '--out', oldOut)).code).toBe(0);
    // The candidate: the setpoint bound tightened, the planner rule dropped, a new rule for a reporter.
    const rules = (await readFile('rules/demo/rules.yaml', 'utf8'))
      .replace('tank1.setpoint: { min: 20, max: 80 }', 'tank1.setpoint: { min: 25, max: 75 }')
      .replace(/\n  - id: planner-drain[\s\S]*?approval: required\n/, '\n')
      .concat('\n  - id: reporter-alarms\n    subject: { workload: spiffe://plant.example/agent/reporter }\n    asset: plc1\n    operations: [read]\n    points: ["tank1.*_alarm"]\n');
    const entry = (await readFile('rules/demo/bundle.yaml', 'utf8')).replaceAll('../../', `${path.resolve('.')}/`);
    await writeFile(path.join(dir, 'rules.yaml'), rules);
    await writeFile(path.join(dir, 'bundle.yaml'), entry);
    const newOut = path.join(dir, 'new.jws');
    const built = await run('build', '--src', path.join(dir, 'bundle.yaml'), '--key', key.priv, '--revision', '4', '--out', newOut);
    expect(built.stderr).toBe('');

    const d = await run('diff', oldOut, newOut, '--trust', key.jwks);
    expect(d.stderr).toBe('');
    expect(d.code).toBe(0);
    expect(d.stdout).toContain('~ header revision: revision: 3 -> 4');
    expect(d.stdout).toContain('- rule planner-drain: write on plc1 for spiffe://plant.example/agent/planner');
    expect(d.stdout).toContain('+ rule reporter-alarms: read on plc1');
    expect(d.stdout).toContain('~ rule optimizer-setpoint: bounds: {"tank1.setpoint":{"min":20,"max":80},"pump1.speed":{"min":0,"max":1800}} -> {"tank1.setpoint":{"min":25,"max":75},"pump1.speed":{"min":0,"max":1800}}');
    expect(d.stdout).not.toContain('UNVERIFIED');
    expect(d.stdout).toMatch(/\d+ change\(s\)\n$/);

    const same = await run('diff', oldOut, oldOut);
    expect(same.stdout).toMatch(/^# UNVERIFIED/);
    expect(same.stdout).toContain('! revision 3 is not above 3');
    expect(same.stdout).toMatch(/no changes\n$/);
  });
});
