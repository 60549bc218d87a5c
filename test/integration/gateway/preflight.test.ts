// The checks serve makes before it opens anything, and config check makes without starting: each
// broken configuration is refused naming the file, the line and the field, and a working one passes
// clean. Real files: the lab's PKI, policy key, signed bundle and audit key.
import { writeFile, mkdtemp, rm, readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareLabFiles, type LabFiles } from '../../../src/cli/demo/lab.js';
import { loadGatewayConfig } from '../../../src/gateway/config.js';
import { preflight, type PreflightReport } from '../../../src/gateway/preflight.js';
import { signBundle, writeBundleFile } from '../../../src/policy/bundle.js';
import { compileSources } from '../../../src/policy/sources.js';
import { PACKAGE_ROOT } from '../../../src/cli/demo/lab.js';

describe('preflight: what serve checks before it starts', () => {
  let dir: string;
  let files: LabFiles;
  let base: string;
  let n = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-preflight-'));
    files = await prepareLabFiles({ stateDir: dir });
    base = files.gatewayYaml({ simPort: 1502, collectorPort: 1 });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** Writes a variant of the lab config and runs the checks on it; `file` is where the config is. */
  async function check(edit: (yaml: string) => string, opts: { ports?: boolean } = {}): Promise<PreflightReport & { file: string; yaml: string }> {
    const file = path.join(dir, `gateway-${++n}.yaml`);
    const yaml = edit(base);
    expect(yaml === base && edit !== same, 'the edit changed nothing').toBe(false);
    await writeFile(file, yaml);
    return { ...(await preflight(await loadGatewayConfig(file), opts)), file, yaml };
  }
  const same = (y: string) => y;
  /** The 1-based line of the first line of `yaml` containing `needle`. */
  const lineOf = (yaml: string, needle: string) => yaml.split('\n').findIndex((l) => l.includes(needle)) + 1;
  const messages = (r: PreflightReport) => r.errors.map((e) => e.message);
  const put = async (name: string, content: string | Buffer) => {
    const f = path.join(dir, name);
    await writeFile(f, content);
    return f;
  };

  it('passes the lab configuration with no error and no warning', async () => {
    const r = await check(same);
    expect(messages(r)).toEqual([]);
    expect(r.warnings.map((w) => w.message)).toEqual([]);
  });

  it('keeps the gateway\'s memory flat unless the config trades it for throughput, and names a bad choice by file, line and field', async () => {
    const load = async (yaml: string) => {
      const file = await put(`memory-${++n}.yaml`, yaml);
      return loadGatewayConfig(file).catch((e: unknown) => e);
    };
    expect(((await load(base)) as { memory: string }).memory).toBe('flat');
    expect(((await load(`memory: throughput\n${base}`)) as { memory: string }).memory).toBe('throughput');
    const err = (await load(`memory: small\n${base}`)) as { errors: { message: string }[] };
    expect(err.errors.map((e) => e.message)).toEqual([expect.stringMatching(/memory-\d+\.yaml:1:\d+: memory: .*"flat".*"throughput"/)]);
  });

  it('refuses a certificate file that is missing, naming file, line and field', async () => {
    const r = await check((y) => y.replace(files.pki.gateway.cert, path.join(dir, 'nowhere.crt')));
    expect(messages(r)).toEqual([expect.stringMatching(new RegExp(`^${esc(r.file)}:${lineOf(r.yaml, '  cert:')}:\\d+: tls\\.cert: cannot read .*nowhere\\.crt \\(ENOENT\\)$`))]);
  });

  it('refuses a certificate file that is not PEM', async () => {
    const junk = await put('junk.crt', 'this is not a certificate\n');
    const r = await check((y) => y.replace(files.pki.gateway.cert, junk));
    expect(messages(r)).toEqual([expect.stringMatching(/tls\.cert: .*junk\.crt: not a PEM certificate$/)]);
  });

  it('refuses a private key given as the CA', async () => {
    const r = await check((y) => y.replace(`ca: ${JSON.stringify(files.pki.ca.cert)}`, `ca: ${JSON.stringify(files.pki.ca.key)}`));
    expect(messages(r)).toEqual([expect.stringMatching(/tls\.ca: .*: holds a private key, not a certificate$/)]);
  });

  it('refuses a CA file that holds a leaf certificate, not a CA certificate', async () => {
    const r = await check((y) => y.replace(`ca: ${JSON.stringify(files.pki.ca.cert)}`, `ca: ${JSON.stringify(files.pki.gateway.cert)}`));
    expect(messages(r)).toEqual([expect.stringMatching(/tls\.ca: .* is not a CA certificate \(basicConstraints CA:FALSE\)$/)]);
  });

  it('refuses a key that does not match the certificate', async () => {
    const r = await check((y) => y.replace(files.pki.gateway.key, files.pki.agents.optimizer!.key));
    expect(messages(r)).toEqual([expect.stringMatching(new RegExp(`:${lineOf(r.yaml, '  key:')}:\\d+: tls\\.key: .* does not match the certificate `))]);
  });

  it('refuses a trusted key file that is missing', async () => {
    const r = await check((y) => y.replace(files.policyJwks, path.join(dir, 'gone.jwks.json')));
    expect(messages(r)).toEqual([expect.stringMatching(/policy\.trusted_keys\[0\]: cannot read .*gone\.jwks\.json \(ENOENT\)$/)]);
  });

  it('refuses a private key pinned as a trusted key', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const priv = await put('private.jwks.json', JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: 'p1' }] }));
    const r = await check((y) => y.replace(files.policyJwks, priv));
    expect(messages(r)).toEqual([expect.stringMatching(/policy\.trusted_keys\[0\]: .* is a private key; pin public keys only$/)]);
  });

  it('refuses an upstream bound to an asset the bundle does not know', async () => {
    const r = await check((y) => y.replace('  - asset: plc1\n', '  - asset: plc9\n'));
    expect(messages(r)).toEqual([
      expect.stringMatching(new RegExp(`:${lineOf(r.yaml, 'asset: plc9')}:\\d+: upstreams\\[0\\]\\.asset: asset 'plc9' is not in the bundle \\(revision 1 of .*; its assets: plc1, `)),
    ]);
  });

  it('refuses an audit key that is not Ed25519', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const ec = await put('audit-ec.jwk.json', JSON.stringify(await exportJWK(privateKey)));
    const r = await check((y) => y.replace(files.auditKeyFile, ec));
    expect(messages(r)).toEqual([expect.stringMatching(/audit\.key_file: .*Ed25519/)]);
  });

  it('refuses a state directory that is a file', async () => {
    const f = await put('state-is-a-file', 'x');
    const r = await check((y) => y.replace(/^state_dir: .*$/m, `state_dir: ${JSON.stringify(f)}`));
    expect(messages(r)).toEqual([expect.stringMatching(/state_dir: .*state-is-a-file is not a directory$/)]);
  });

  it('refuses two listeners on one address', async () => {
    const r = await check((y) => y.replace(/modbus_tls: \{ host: 127\.0\.0\.1, port: 0 \}/, 'modbus_tls: { host: 127.0.0.1, port: 15020 }').replace(/ops: \{ host: 127\.0\.0\.1, port: 0 \}/, 'ops: { host: 0.0.0.0, port: 15020 }'));
    expect(messages(r)).toEqual([expect.stringMatching(/listeners\.ops\.port: 0\.0\.0\.0:15020 is also the address of listeners\.modbus_tls$/)]);
  });

  it('finds a listener port in use only when asked to check ports', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const edit = (y: string) => y.replace(/agent_api: \{ host: 127\.0\.0\.1, port: 0 \}/, `agent_api: { host: 127.0.0.1, port: ${port} }`);
      expect(messages(await check(edit))).toEqual([]);
      expect(messages(await check(edit, { ports: true }))).toEqual([expect.stringMatching(new RegExp(`listeners\\.agent_api\\.port: 127\\.0\\.0\\.1:${port} is in use$`))]);
    } finally {
      holder.close();
    }
  });

  it('warns, without refusing, when the bundle does not verify: serve starts from the last-known-good copy or in safe mode', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const payload = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: Date.now(), revision: 2 });
    const rogue = path.join(dir, 'rogue.jws');
    await writeBundleFile(rogue, await signBundle(payload, await exportJWK(privateKey), 'rogue-1'));
    const r = await check((y) => y.replace(files.bundleFile, rogue));
    expect(messages(r)).toEqual([]);
    expect(r.warnings.map((w) => w.message)).toEqual([
      expect.stringMatching(/policy\.bundle_file: .*rogue\.jws is refused \(UNKNOWN_KEY: .*\): serve starts from the last-known-good bundle, or in safe mode/),
      expect.stringMatching(/upstreams: upstream assets not checked against a bundle: none verifies$/),
    ]);
  });

  it('reports every problem of one file at once', async () => {
    const junk = await put('junk2.crt', 'nope');
    const r = await check((y) => y.replace(files.pki.gateway.cert, junk).replace(files.policyJwks, path.join(dir, 'gone.jwks.json')).replace('  - asset: plc1\n', '  - asset: plc9\n'));
    expect(messages(r).map((m) => m.split(': ')[1])).toEqual(['tls.cert', 'policy.trusted_keys[0]']);
    // (With no pinned key, no bundle verifies: the asset is not checked, and serve would not start anyway.)
    expect(await readFile(r.file, 'utf8')).toContain('plc9');
  });
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
