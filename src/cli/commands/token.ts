// `plantgate token mint`: a development access token in exactly the shape the gateway verifies.
// The JWT is the only thing written to stdout, so `$(plantgate token mint ...)` just works; every
// diagnostic goes to stderr.
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import type { JWK } from 'jose';
import { mintToken } from '../../identity/dev/mint.js';
import { certificateThumbprint } from '../../identity/cert.js';
import { parseSpiffeId } from '../../identity/spiffe.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

class InputError extends Error {}

async function readKey(file: string): Promise<JWK> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`--key ${file}: ${(err as Error).message}`);
  }
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new InputError(`--key ${file}: not JSON (expected a private JWK, e.g. <name>.private.jwk.json)`);
  }
  if (typeof jwk !== 'object' || jwk === null || typeof (jwk as JWK).d !== 'string') {
    throw new InputError(`--key ${file}: not a private JWK (no "d")`);
  }
  const { kty, crv } = jwk as JWK;
  if (!((kty === 'OKP' && crv === 'Ed25519') || (kty === 'EC' && crv === 'P-256'))) {
    throw new InputError(`--key ${file}: must be an Ed25519 (EdDSA) or P-256 (ES256) key, got kty ${String(kty)} crv ${String(crv)}`);
  }
  return jwk as JWK;
}

async function readThumbprint(file: string): Promise<string> {
  try {
    return certificateThumbprint(new X509Certificate(await readFile(file)));
  } catch (err) {
    throw new InputError(`--cert ${file}: not a readable PEM certificate (${(err as Error).message})`);
  }
}

interface MintCliOptions {
  key: string;
  iss: string;
  sub: string;
  aud: string;
  owner: string;
  taskId: string;
  purpose: string;
  scope: string;
  ttl: string;
  cert?: string;
  act: string[];
  role: string[];
  jti?: string;
}

export function register(program: Command): void {
  const token = program.command('token').description('development access tokens');
  token
    .command('mint')
    .description('mint a signed access token (JWT) and print it on stdout')
    .requiredOption('--key <file>', 'private signing JWK (<name>.private.jwk.json)')
    .requiredOption('--iss <iss>', 'issuer')
    .requiredOption('--sub <spiffeId>', "the agent's SPIFFE ID")
    .requiredOption('--aud <aud>', "the gateway's audience")
    .requiredOption('--owner <owner>', 'the human or team accountable for the agent')
    .requiredOption('--task-id <id>', 'task id')
    .requiredOption('--purpose <text>', 'task purpose')
    .requiredOption('--scope <scopes>', 'space-separated scopes, e.g. "modbus:read modbus:write"')
    .option('--ttl <seconds>', 'lifetime in seconds', '300')
    .option('--cert <file>', "the agent's certificate (PEM): binds the token to it (cnf.x5t#S256)")
    .option('--act <sub>', 'delegation: who the agent acts for (repeatable, outermost first)', collect, [])
    .option('--role <role>', 'role (repeatable)', collect, [])
    .option('--jti <id>', 'token id (default: a random UUID)')
    .action(async (opts: MintCliOptions) => {
      try {
        const ttlSec = Number(opts.ttl);
        if (!Number.isInteger(ttlSec) || ttlSec <= 0) throw new InputError(`--ttl must be a positive whole number of seconds, got ${opts.ttl}`);
        const badSub = parseSpiffeId(opts.sub);
        if (typeof badSub === 'string') throw new InputError(`--sub "${opts.sub}" is not a SPIFFE ID: ${badSub}`);
        const scope = opts.scope.split(' ').filter((s) => s !== '');
        if (scope.length === 0) throw new InputError('--scope names no scope');
        const privateJwk = await readKey(opts.key);
        const jwt = await mintToken({
          privateJwk,
          iss: opts.iss,
          sub: opts.sub,
          aud: opts.aud,
          owner: opts.owner,
          task: { id: opts.taskId, purpose: opts.purpose },
          scope,
          ttlSec,
          ...(opts.role.length > 0 ? { roles: opts.role } : {}),
          ...(opts.act.length > 0 ? { act: opts.act } : {}),
          ...(opts.cert !== undefined ? { certThumbprint: await readThumbprint(opts.cert) } : {}),
          ...(opts.jti !== undefined ? { jti: opts.jti } : {}),
        });
        process.stdout.write(`${jwt}\n`);
      } catch (err) {
        process.stderr.write(`plantgate token mint: ${(err as Error).message}\n`);
        process.exitCode = err instanceof InputError ? 2 : 1;
      }
    });
}
