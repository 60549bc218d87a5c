// `plantgate token mint`: a development access token in exactly the shape the gateway verifies.
// `plantgate token operator`: a development operator bearer token for the operator API / console.
// The JWT is the only thing written to stdout, so `$(plantgate token mint ...)` just works; every
// diagnostic goes to stderr.
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import type { JWK } from 'jose';
import { mintOperatorToken, mintToken } from '../../identity/dev/mint.js';
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
    .requiredOption('--scope <scopes>', 'space-separated scopes: the operations the token may perform (read, write, call, browse, subscribe, diagnostic), or a scope a rule names in require_scope; e.g. "read write"')
    .option('--ttl <seconds>', 'lifetime in seconds', '300')
    .option('--cert <file>', "the agent's certificate (PEM): binds the token to it (cnf.x5t#S256)")
    .option('--act <sub>', 'delegation: who the agent acts for (repeatable, outermost first)', collect, [])
    .option('--role <role>', 'role (repeatable)', collect, [])
    .option('--jti <id>', 'token id (default: a random UUID)')
    .addHelpText(
      'after',
      `
A rule allows an operation only if the token's scope names it (docs/policy.md, "Modbus function
codes": FC 1-4 are read, 5/6/15/16/22/23 write, 7/8/11/12/17/43 diagnostic).

Example: the demo's optimizer agent (plantgate demo --keep-running --state-dir demo), bound to its
certificate, reading and writing for 15 minutes:
  plantgate token mint --key fixtures/keys/dev-issuer.private.jwk.json \\
    --iss https://issuer.dev.plantgate.local --aud plantgate:demo \\
    --sub spiffe://plant.example/agent/optimizer --cert demo/pki/agents/optimizer.crt \\
    --owner alice@plant.example --task-id T-1 --purpose "tune tank1 level" \\
    --scope "read write" --ttl 900 > optimizer.jwt
then put it on the agent API (PUT /v1/token with the agent's client certificate; docs/identity.md).
An operator's token for the operator API is minted with "plantgate token operator".`,
    )
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

  token
    .command('operator')
    .description('mint an operator bearer token (JWT) for the operator API and the console, and print it on stdout')
    .requiredOption('--key <file>', 'private signing JWK of an issuer the policy bundle trusts')
    .requiredOption('--iss <iss>', 'issuer (as listed in the bundle)')
    .requiredOption('--sub <principal>', 'who acts: a person (bob@plant.example) or, for the owner role, the owner the agents\' tokens name')
    .requiredOption('--aud <aud>', "the gateway's audience (the bundle's audience)")
    .option('--role <role>', 'operator or owner (repeatable)', collect, [])
    .option('--ttl <seconds>', 'lifetime in seconds (at most the bundle\'s max_token_ttl)', '600')
    .option('--jti <id>', 'token id (default: a random UUID)')
    .addHelpText(
      'after',
      `
Example: the demo's operator approving a pending request (docs/operator.md):
  plantgate token operator --key fixtures/keys/dev-issuer.private.jwk.json \\
    --iss https://issuer.dev.plantgate.local --aud plantgate:demo --sub bob@plant.example > op.jwt
  plantgate approvals list --api https://127.0.0.1:<operator API port> --token op.jwt --ca demo/pki/ca.crt
The operator must not be the owner of the agent whose request they approve.`,
    )
    .action(async (opts: { key: string; iss: string; sub: string; aud: string; role: string[]; ttl: string; jti?: string }) => {
      try {
        const ttlSec = Number(opts.ttl);
        if (!Number.isInteger(ttlSec) || ttlSec <= 0) throw new InputError(`--ttl must be a positive whole number of seconds, got ${opts.ttl}`);
        const roles = opts.role.length > 0 ? opts.role : ['operator'];
        const bad = roles.find((r) => r !== 'operator' && r !== 'owner');
        if (bad !== undefined) throw new InputError(`--role "${bad}": the operator API knows the roles operator and owner`);
        const jwt = await mintOperatorToken({
          privateJwk: await readKey(opts.key),
          iss: opts.iss,
          sub: opts.sub,
          aud: opts.aud,
          roles,
          ttlSec,
          ...(opts.jti !== undefined ? { jti: opts.jti } : {}),
        });
        process.stdout.write(`${jwt}\n`);
      } catch (err) {
        process.stderr.write(`plantgate token operator: ${(err as Error).message}\n`);
        process.exitCode = err instanceof InputError ? 2 : 1;
      }
    });
}
