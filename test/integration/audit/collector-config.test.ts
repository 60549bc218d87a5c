import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { register } from '../../../src/cli/commands/collector.js';
import { loadCollectorConfig } from '../../../src/collector/config.js';
import { SourceErrors } from '../../../src/core/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-colcfg-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function cfg(text: string): Promise<string> {
  const file = join(dir, 'collector.yaml');
  await writeFile(file, text);
  return file;
}

describe('collector config', () => {
  it('loads a valid config and resolves paths against the config file', async () => {
    const file = await cfg('listen: { host: 127.0.0.1, port: 6514 }\ntls: { ca: pki/ca.crt, cert: pki/collector.crt, key: pki/collector.key }\nout_dir: out\n');
    const c = await loadCollectorConfig(file);
    expect(c).toEqual({
      listen: { host: '127.0.0.1', port: 6514 },
      tls: { ca: join(dir, 'pki/ca.crt'), cert: join(dir, 'pki/collector.crt'), key: join(dir, 'pki/collector.key') },
      outDir: join(dir, 'out'),
      output: { layout: 'daily', ocsf: true },
      gateways: undefined,
      witness: undefined,
      nats: undefined,
    });
  });

  it('reads the gateways a collector takes from JetStream, and refuses one it cannot verify (not in gateways) by field', async () => {
    const vkey = 'plantgate/gw-1+2ac137a9+AavZfm0X8Y8ps34Hegl9A+8NEdzF+fJZKoQUPMhQceLr';
    const head = `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: a, cert: b, key: c }\nout_dir: out\ngateways:\n  - { id: gw-1, verifier_key: "${vkey}" }\n`;
    const c = await loadCollectorConfig(await cfg(`${head}nats: { servers: [nats://nats.soc:4222], gateways: [gw-1], creds_file: nats/collector.creds }\n`));
    expect(c.nats).toEqual({
      servers: ['nats://nats.soc:4222'], gateways: ['gw-1'], stream: 'PLANTGATE_AUDIT', subjectPrefix: 'plantgate.audit', consumerPrefix: 'plantgate-collector', tls: false,
      auth: { credsFile: join(dir, 'nats/collector.creds') },
    });
    const err = (await loadCollectorConfig(await cfg(`${head}nats:\n  servers: [nats://nats.soc:4222]\n  gateways: [gw-1, gw-2]\n`)).catch((e: unknown) => e)) as SourceErrors;
    expect(err).toBeInstanceOf(SourceErrors);
    expect(err.errors.map((e) => e.message)).toEqual([expect.stringMatching(/collector\.yaml:8:\d+: nats\.gateways\[1\]: "gw-2" is not in gateways/)]);
  });

  it('reads a fleet member\'s lease settings with their defaults, and names the field of a lease too short to renew', async () => {
    const vkey = 'plantgate/gw-1+2ac137a9+AavZfm0X8Y8ps34Hegl9A+8NEdzF+fJZKoQUPMhQceLr';
    const head = `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: a, cert: b, key: c }\nout_dir: out\ngateways:\n  - { id: gw-1, verifier_key: "${vkey}" }\n`;
    const c = await loadCollectorConfig(await cfg(`${head}nats: { servers: [nats://nats.soc:4222], gateways: [gw-1], fleet: { member: soc-a }, ack_wait_ms: 5000 }\n`));
    expect(c.nats?.fleet).toEqual({ member: 'soc-a', leaseMs: 15_000, leaseBucket: 'plantgate-collector-leases', stateBucket: 'plantgate-collector-state' });
    expect(c.nats?.ackWaitMs).toBe(5000);
    const err = (await loadCollectorConfig(await cfg(`${head}nats:\n  servers: [nats://nats.soc:4222]\n  gateways: [gw-1]\n  fleet: { lease_ms: 100 }\n`)).catch((e: unknown) => e)) as SourceErrors;
    expect(err).toBeInstanceOf(SourceErrors);
    expect(err.errors.map((e) => e.message)).toEqual([expect.stringMatching(/collector\.yaml:9:\d+: nats\.fleet\.lease_ms: must be at least 1000/)]);
  });

  it('reads the gateways a collector witnesses and its witness key, and rejects a malformed verifier key by field', async () => {
    const vkey = 'plantgate/gw-1+2ac137a9+AavZfm0X8Y8ps34Hegl9A+8NEdzF+fJZKoQUPMhQceLr';
    const file = await cfg(
      `listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: a, cert: b, key: c }\nout_dir: out\noutput: { layout: single, ocsf: false }\n` +
        `gateways:\n  - { id: gw-1, verifier_key: "${vkey}", identity: "spiffe://plant.example/gateway/gw-1" }\nwitness: { name: soc.example/witness, key_file: keys/witness.jwk }\n`,
    );
    const c = await loadCollectorConfig(file);
    expect(c.gateways).toEqual([{ id: 'gw-1', verifierKey: vkey, identity: 'spiffe://plant.example/gateway/gw-1' }]);
    expect(c.witness).toEqual({ name: 'soc.example/witness', keyFile: join(dir, 'keys/witness.jwk') });
    expect(c.output).toEqual({ layout: 'single', ocsf: false });

    const bad = await cfg(`listen: { host: 127.0.0.1, port: 0 }\ntls: { ca: a, cert: b, key: c }\nout_dir: out\ngateways:\n  - { id: gw-1, verifier_key: "nope" }\n`);
    const err = (await loadCollectorConfig(bad).catch((e: unknown) => e)) as SourceErrors;
    expect(err).toBeInstanceOf(SourceErrors);
    expect(err.errors[0].message).toMatch(/collector\.yaml:5:\d+: gateways\[0\]\.verifier_key: not a signed-note Ed25519 verifier key/);
  });

  it('names the file, line and field of each problem', async () => {
    const file = await cfg('listen:\n  host: 127.0.0.1\n  port: 70000\ntls:\n  ca: ca.crt\n  cert: c.crt\nout_dir: out\nextra: 1\n');
    const err = await loadCollectorConfig(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceErrors);
    const msgs = (err as SourceErrors).errors.map((e) => e.message);
    expect(msgs).toContainEqual(expect.stringMatching(new RegExp(`^${file}:3:\\d+: listen\\.port: must be 0\\.\\.65535`)));
    expect(msgs).toContainEqual(expect.stringMatching(/:\d+:\d+: tls\.key: required$/));
    expect(msgs).toContainEqual(expect.stringMatching(/:8:1: extra: unknown field/));
  });

  it('`plantgate collector` exits 2 on a bad config and prints where the problem is', async () => {
    const file = await cfg('listen: { port: "x" }\ntls: { ca: a, cert: b, key: c }\nout_dir: out\n');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const program = new Command().exitOverride();
    register(program);
    await program.parseAsync(['node', 'plantgate', 'collector', '--config', file]);
    expect(process.exitCode).toBe(2);
    expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/collector\.yaml:1:\d+: listen\.port: must be a number/);
  });

  it('`plantgate collector` exits 2 when a TLS file named in the config is missing', async () => {
    const file = await cfg('listen: { port: 0 }\ntls: { ca: nope-ca.crt, cert: nope.crt, key: nope.key }\nout_dir: out\n');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const program = new Command().exitOverride();
    register(program);
    await program.parseAsync(['node', 'plantgate', 'collector', '--config', file]);
    expect(process.exitCode).toBe(2);
    expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/tls\.ca: cannot read .*nope-ca\.crt: ENOENT/);
  });
});
