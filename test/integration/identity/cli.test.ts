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
});
