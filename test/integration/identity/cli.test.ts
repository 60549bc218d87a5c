import { describe, it, expect, afterEach, vi } from 'vitest';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import type { JSONWebKeySet } from 'jose';
import { register as registerPki } from '../../../src/cli/commands/pki.js';
import { register as registerKeys } from '../../../src/cli/commands/keys.js';
import { register as registerToken } from '../../../src/cli/commands/token.js';
import { verifyAccessToken, trustedIssuersFromJwks } from '../../../src/identity/verify.js';
import { verifyOperatorToken } from '../../../src/identity/operator.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { ManualClock } from '../../../src/core/clock.js';

const DEV_KEY = fileURLToPath(new URL('../../../fixtures/keys/dev-issuer.private.jwk.json', import.meta.url));
const dirs: string[] = [];
afterEach(async () => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'plantgate-cli-'));
  dirs.push(d);
  return d;
}

/** Runs `plantgate <args>` in-process with the three identity commands; returns stdout, stderr and exit code. */
async function run(args: string[]): Promise<{ out: string; err: string; code: number }> {
  const program = new Command('plantgate').exitOverride();
  registerPki(program);
  registerKeys(program);
  registerToken(program);
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true));
  process.exitCode = undefined;
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    vi.restoreAllMocks();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out, err, code };
}

describe('plantgate pki / keys / token', () => {
  it('creates a PKI and key, and mints a bound token the gateway accepts', async () => {
    const dir = await tempDir();
    const pki = await run(['pki', 'init', '--dir', join(dir, 'pki')]);
    expect(pki.code).toBe(0);
    expect(pki.out).toContain('spiffe://plant.example/agent/optimizer');
    expect((await stat(join(dir, 'pki', 'agents', 'reporter.key'))).mode & 0o777).toBe(0o600);

    const keys = await run(['keys', 'gen', '--out', join(dir, 'keys'), '--name', 'issuer', '--alg', 'ES256']);
    expect(keys.code).toBe(0);
    expect((await stat(join(dir, 'keys', 'issuer.private.jwk.json'))).mode & 0o777).toBe(0o600);
    const jwks = JSON.parse(await readFile(join(dir, 'keys', 'issuer.jwks.json'), 'utf8')) as JSONWebKeySet;
    expect(jwks.keys[0].d).toBeUndefined();

    const certPath = join(dir, 'pki', 'agents', 'optimizer.crt');
    const mint = await run([
      'token', 'mint', '--key', join(dir, 'keys', 'issuer.private.jwk.json'), '--iss', 'https://issuer.test',
      '--sub', 'spiffe://plant.example/agent/optimizer', '--aud', 'plantgate:site-a', '--owner', 'alice',
      '--task-id', 'T-7', '--purpose', 'tune', '--scope', 'modbus:read modbus:write', '--ttl', '120',
      '--cert', certPath, '--act', 'bob',
    ]);
    expect(mint.code).toBe(0);
    expect(mint.err).toBe('');
    const jwt = mint.out.trim();
    expect(mint.out).toBe(`${jwt}\n`);
    expect(jwt.split('.')).toHaveLength(3);

    const thumbprint = certificateThumbprint(new X509Certificate(await readFile(certPath)));
    const subject = await verifyAccessToken(jwt, {
      issuers: trustedIssuersFromJwks([{ iss: 'https://issuer.test', jwks }]),
      audience: 'plantgate:site-a',
      expectedSub: 'spiffe://plant.example/agent/optimizer',
      certThumbprint: thumbprint,
      assurance: 'mtls+token',
      maxTtlSec: 900,
      clock: new ManualClock(Date.now()),
    });
    expect(subject).toMatchObject({ owner: 'alice', taskId: 'T-7', scopes: ['modbus:read', 'modbus:write'], actSub: ['bob'], certThumbprint: thumbprint });
    expect(subject.expiresAtMs - subject.issuedAtMs).toBe(120_000);
  });

  it('mints with the fixture dev issuer key', async () => {
    const res = await run([
      'token', 'mint', '--key', DEV_KEY, '--iss', 'https://issuer.dev.plantgate.local',
      '--sub', 'spiffe://plant.example/agent/reporter', '--aud', 'gw', '--owner', 'o', '--task-id', 't', '--purpose', 'p', '--scope', 'modbus:read',
    ]);
    expect(res.code).toBe(0);
    expect(res.out.trim().split('.')).toHaveLength(3);
  });

  it('exits 2 with a precise message for a key file that is not a private JWK', async () => {
    const dir = await tempDir();
    const bad = join(dir, 'public.json');
    await writeFile(bad, JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: 'abc' }));
    const res = await run(['token', 'mint', '--key', bad, '--iss', 'i', '--sub', 'spiffe://td/a', '--aud', 'a', '--owner', 'o', '--task-id', 't', '--purpose', 'p', '--scope', 's']);
    expect(res.code).toBe(2);
    expect(res.out).toBe('');
    expect(res.err).toMatch(/not a private JWK/);
  });

  it('exits 2 for a subject that is not a SPIFFE ID and for a malformed --agent', async () => {
    const res = await run(['token', 'mint', '--key', DEV_KEY, '--iss', 'i', '--sub', 'optimizer', '--aud', 'a', '--owner', 'o', '--task-id', 't', '--purpose', 'p', '--scope', 's']);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(/not a SPIFFE ID/);
    const dir = await tempDir();
    const pki = await run(['pki', 'init', '--dir', dir, '--agent', 'nobody']);
    expect(pki.code).toBe(2);
    expect(pki.err).toMatch(/NAME=SPIFFE_ID/);
    const badId = await run(['pki', 'init', '--dir', dir, '--agent', 'x=https://not/spiffe']);
    expect(badId.code).toBe(2);
  });

  it('adds an agent under an existing CA with pki issue, and pki init refuses to replace the CA naming --force and pki issue', async () => {
    const dir = join(await tempDir(), 'pki');
    expect((await run(['pki', 'init', '--dir', dir])).code).toBe(0);
    const caBefore = await readFile(join(dir, 'ca.crt'), 'utf8');
    const again = await run(['pki', 'init', '--dir', dir]);
    expect(again.code).toBe(2);
    expect(again.err).toContain('--force replaces it');
    expect(again.err).toContain(`plantgate pki issue --dir ${dir} --agent NAME=SPIFFE_ID`);

    const issued = await run(['pki', 'issue', '--dir', dir, '--agent', 'maint1=spiffe://plant.example/maintenance/laptop1']);
    expect(issued.err).toBe('');
    expect(issued.code).toBe(0);
    const cert = new X509Certificate(await readFile(join(dir, 'agents', 'maint1.crt')));
    const ca = new X509Certificate(caBefore);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.subjectAltName).toBe('URI:spiffe://plant.example/maintenance/laptop1');
    expect(issued.out).toContain(`x5t#S256=${certificateThumbprint(cert)}`);
    expect(await readFile(join(dir, 'ca.crt'), 'utf8')).toBe(caBefore);
    expect((await stat(join(dir, 'agents', 'maint1.key'))).mode & 0o777).toBe(0o600);

    const twice = await run(['pki', 'issue', '--dir', dir, '--agent', 'maint1=spiffe://plant.example/maintenance/laptop1']);
    expect([twice.code, twice.err]).toEqual([2, `plantgate pki issue: ${join(dir, 'agents', 'maint1.crt')} already exists (--force replaces it)\n`]);
    const noCa = await run(['pki', 'issue', '--dir', await tempDir(), '--agent', 'x=spiffe://plant.example/x']);
    expect(noCa.code).toBe(2);
    expect(noCa.err).toMatch(/holds no CA .* plantgate pki init/);
    const badId = await run(['pki', 'issue', '--dir', dir, '--agent', 'x=https://not/spiffe']);
    expect(badId.code).toBe(2);
  });

  it('mints an operator token the operator API accepts (role operator, a person as sub), and refuses unknown roles', async () => {
    const jwks = JSON.parse(await readFile(fileURLToPath(new URL('../../../fixtures/keys/dev-issuer.jwks.json', import.meta.url)), 'utf8')) as JSONWebKeySet;
    const res = await run(['token', 'operator', '--key', DEV_KEY, '--iss', 'https://issuer.dev.plantgate.local', '--aud', 'plantgate:demo', '--sub', 'bob@plant.example']);
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    const operator = await verifyOperatorToken(res.out.trim(), {
      issuers: trustedIssuersFromJwks([{ iss: 'https://issuer.dev.plantgate.local', jwks }]),
      audience: 'plantgate:demo',
      maxTtlSec: 900,
      clock: new ManualClock(Date.now()),
    });
    expect(operator).toMatchObject({ sub: 'bob@plant.example', roles: ['operator'], isOperator: true });
    const bad = await run(['token', 'operator', '--key', DEV_KEY, '--iss', 'i', '--aud', 'a', '--sub', 'bob', '--role', 'admin']);
    expect([bad.code, bad.err]).toEqual([2, 'plantgate token operator: --role "admin": the operator API knows the roles operator and owner\n']);
  });

  it('token mint --help names the scopes that work (operation names) and shows a complete example', async () => {
    const program = new Command('plantgate').exitOverride().configureOutput({ writeOut: () => undefined });
    registerToken(program);
    const mint = program.commands.find((c) => c.name() === 'token')!.commands.find((c) => c.name() === 'mint')!;
    let help = '';
    mint.configureOutput({ writeOut: (t) => (help += t) });
    mint.outputHelp();
    expect(help).not.toContain('modbus:read');
    expect(help).toContain('--scope "read write"');
    expect(help).toContain('FC 1-4 are read, 5/6/15/16/22/23 write, 7/8/11/12/17/43 diagnostic');
  });
});
