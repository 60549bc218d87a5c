// `plantgate serve` starts fully or not at all: with a broken certificate, a key that does not
// match, a missing file or a listener port already taken it exits 2 naming the cause, with nothing
// left open, instead of running without listeners while holding the PLC's connections. And
// `plantgate config check` refuses the same configurations serve refuses.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareLabFiles, type LabFiles } from '../../src/cli/demo/lab.js';
import { PlcDouble } from '../integration/gateway/harness.js';
import { assertBuilt, run } from './cli.js';

describe('plantgate serve starts fully or not at all', () => {
  let dir: string;
  let files: LabFiles;
  let plc: PlcDouble;
  let base: string;
  let n = 0;

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-start-'));
    files = await prepareLabFiles({ stateDir: dir });
    // The PLC: a gateway that half-starts shows here as connections left open.
    plc = await PlcDouble.start();
    base = files.gatewayYaml({ simPort: plc.port, collectorPort: 1 }).replace(/ {2}collector:.*\n/, '');
  });
  afterAll(async () => {
    await plc?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function config(edit: (yaml: string) => string): Promise<string> {
    const file = path.join(dir, `gateway-${++n}.yaml`);
    await writeFile(file, edit(base));
    return file;
  }
  const put = async (name: string, content: string) => {
    const f = path.join(dir, name);
    await writeFile(f, content);
    return f;
  };

  it.each([
    ['a certificate that is not PEM', async (y: string) => y.replace(files.pki.gateway.cert, await put('junk.crt', 'not a certificate\n')), /tls\.cert: .*junk\.crt: not a PEM certificate/],
    ['a key that does not match the certificate', async (y: string) => y.replace(files.pki.gateway.key, files.pki.agents.optimizer!.key), /tls\.key: .* does not match the certificate/],
    ['a missing file', async (y: string) => y.replace(files.pki.ca.cert, path.join(dir, 'missing-ca.crt')), /tls\.ca: cannot read .*missing-ca\.crt \(ENOENT\)/],
  ])('exits 2 naming %s, having opened nothing', async (_what, edit, expected) => {
    const accepted = plc.accepted;
    const yaml = await edit(base);
    const r = await run(['serve', '--config', await config(() => yaml)]);
    expect(r.stderr).toMatch(expected);
    expect(r.code).toBe(2);
    // Refused before anything was opened: the PLC never saw a connection.
    expect(plc.accepted).toBe(accepted);
  });

  it('exits 2 naming the listener whose port is in use, having closed its PLC connections and listeners', async () => {
    // The agent API binds after the PLC connections and the Modbus listener are up: all must be released.
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const file = await config((y) => y.replace(/agent_api: \{ host: 127\.0\.0\.1, port: 0 \}/, `agent_api: { host: 127.0.0.1, port: ${port} }`));
      const r = await run(['serve', '--config', file]);
      expect(r.stderr).toContain(`listeners.agent_api: 127.0.0.1:${port} is in use`);
      expect(r.code).toBe(2);
      // Exited because everything was closed, not because a fallback timer gave up on what was left.
      expect(r.stderr).not.toContain('still open after the failed start');
    } finally {
      holder.close();
    }
  });

  it('config check refuses the configurations serve refuses, naming every problem, and exits 2', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const privateJwks = await put('private.jwks.json', JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: 'p1' }] }));
    const junk = await put('junk2.crt', 'not a certificate\n');
    // One file with four problems: a non-PEM certificate, a private key as the CA, a missing and a private trusted key.
    const first = await config((y) =>
      y
        .replace(files.pki.gateway.cert, junk)
        .replace(`ca: ${JSON.stringify(files.pki.ca.cert)}`, `ca: ${JSON.stringify(files.pki.ca.key)}`)
        .replace(`trusted_keys: [${JSON.stringify(files.policyJwks)}]`, `trusted_keys: [${JSON.stringify(path.join(dir, 'gone.jwks.json'))}, ${JSON.stringify(privateJwks)}]`),
    );
    // Another with a key that does not match and an upstream asset the bundle does not know; a third with a missing certificate.
    const second = await config((y) => y.replace(files.pki.gateway.key, files.pki.agents.reporter!.key).replace('  - asset: plc1\n', '  - asset: plc9\n'));
    const third = await config((y) => y.replace(files.pki.gateway.cert, path.join(dir, 'gone.crt')));
    const [a, b, c] = await Promise.all([run(['config', 'check', first]), run(['config', 'check', second]), run(['config', 'check', third])]);
    expect(a.stderr.trim().split('\n').map((l) => l.split(': ')[1])).toEqual(['tls.ca', 'tls.cert', 'policy.trusted_keys[0]', 'policy.trusted_keys[1]']);
    expect(a.code).toBe(2);
    expect(b.stderr).toMatch(/tls\.key: .* does not match the certificate/);
    expect(b.stderr).toMatch(/upstreams\[0\]\.asset: asset 'plc9' is not in the bundle/);
    expect(b.code).toBe(2);
    expect(c.stderr).toMatch(/tls\.cert: cannot read .*gone\.crt \(ENOENT\)/);
    expect(c.code).toBe(2);
  });

  it('config check --check-ports finds a listener port in use', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const file = await config((y) => y.replace(/ops: \{ host: 127\.0\.0\.1, port: 0 \}/, `ops: { host: 127.0.0.1, port: ${port} }`));
      const [plain, ports] = await Promise.all([run(['config', 'check', file]), run(['config', 'check', '--check-ports', file])]);
      expect(plain.code).toBe(0);
      expect(ports.stderr).toContain(`listeners.ops.port: 127.0.0.1:${port} is in use`);
      expect(ports.code).toBe(2);
    } finally {
      holder.close();
    }
  });
});
