// The `plantgate` command as a plant engineer runs it: help everywhere, exit codes, config errors
// that name the line and field.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareLabFiles } from '../../src/cli/demo/lab.js';
import { assertBuilt, run } from './cli.js';

describe('plantgate CLI', () => {
  let dir: string;
  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints help for the program and for every command, exiting 0', async () => {
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    const commands = [...top.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['serve', 'sim', 'demo', 'collector', 'bundle', 'pki', 'keys', 'token', 'config']));
    for (const command of commands) {
      const r = await run([command, '--help']);
      expect(r.code, `plantgate ${command} --help`).toBe(0);
      expect(r.stdout).toContain('Usage: plantgate');
    }
    // One process per command (~1.5 s each on a busy 2-core machine): far more than the default.
  }, 120_000);

  it('exits 2 on an unknown command or a missing required option', async () => {
    expect((await run(['frobnicate'])).code).toBe(2);
    expect((await run(['serve'])).code).toBe(2);
  });

  it('config check names the file, line and field of every problem and exits 2', async () => {
    const file = path.join(dir, 'gateway.yaml');
    await writeFile(
      file,
      [
        'gateway_id: gw1',
        'state_dir: ./state',
        'tls: { ca: ca.crt, cert: gw.crt, key: gw.key }',
        'listeners:',
        '  modbus_tls: { host: 127.0.0.1, port: 80200 }',
        '  agent_api: { host: 127.0.0.1, port: 8443 }',
        'upstreams:',
        '  - { asset: plc1, host: 127.0.0.1, port: 502, timout_ms: 100 }',
        'policy: { bundle_file: b.jws, trusted_keys: [k.jwks.json] }',
        'audit: { spool_dir: ./spool, max_bytes: 65536 }',
        '',
      ].join('\n'),
    );
    const r = await run(['config', 'check', file]);
    expect(r.code).toBe(2);
    // A spool too small for the room a full spool keeps for reads and denials (docs/audit.md, Full spool).
    expect(r.stderr).toMatch(/:10:\d+: audit\.max_bytes: must be at least 262144/);
    expect(r.stderr).toContain(`${file}:5:`);
    expect(r.stderr).toContain('listeners.modbus_tls.port');
    expect(r.stderr).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:\\d+: upstreams\\[0\\]\\.timout_ms: unknown field`));
  });

  it('config check accepts a working configuration (real certificates, keys and bundle) and exits 0', async () => {
    // config check opens every file serve would (src/gateway/preflight.ts): the lab's PKI, policy key
    // and signed bundle make a configuration that passes for real.
    const lab = await prepareLabFiles({ stateDir: path.join(dir, 'lab') });
    const file = path.join(dir, 'ok.yaml');
    await writeFile(file, lab.gatewayYaml({ simPort: 1502, collectorPort: 1 }));
    const r = await run(['config', 'check', file]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`${file}: ok`);
    expect(r.code).toBe(0);
  });

  it('serve refuses a broken config with exit 2 and starts nothing', async () => {
    const file = path.join(dir, 'broken.yaml');
    await writeFile(file, 'gateway_id: [unclosed\n');
    const r = await run(['serve', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:`);
  });
});
