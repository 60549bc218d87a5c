// `plantgate keys gen`: a development signing key (token issuer or policy bundles) as JWK files.
import type { Command } from 'commander';
import { generateSigningKey, writeSigningKey, type SigningAlg } from '../../identity/dev/keys.js';

export function register(program: Command): void {
  const keys = program.command('keys').description('development signing keys');
  keys
    .command('gen')
    .description('generate a signing key: <name>.private.jwk.json (0600) and <name>.jwks.json (public JWKS)')
    .requiredOption('--out <dir>', 'directory to write the key files')
    .requiredOption('--name <name>', 'key name (file names and the kid prefix)')
    .option('--alg <alg>', 'EdDSA or ES256', 'EdDSA')
    .option('--kid <kid>', 'key id (default: <name>-<thumbprint prefix>)')
    .action(async (opts: { out: string; name: string; alg: string; kid?: string }) => {
      if (opts.alg !== 'EdDSA' && opts.alg !== 'ES256') {
        process.stderr.write(`plantgate keys gen: --alg must be EdDSA or ES256, got ${opts.alg}\n`);
        process.exitCode = 2;
        return;
      }
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(opts.name)) {
        process.stderr.write(`plantgate keys gen: --name may contain only letters, digits, ".", "-" and "_"\n`);
        process.exitCode = 2;
        return;
      }
      try {
        const key = await generateSigningKey({ alg: opts.alg as SigningAlg, name: opts.name, ...(opts.kid ? { kid: opts.kid } : {}) });
        const files = await writeSigningKey(opts.out, opts.name, key);
        process.stdout.write(`kid      ${key.kid}\nprivate  ${files.privateJwkPath}\njwks     ${files.jwksPath}\n`);
      } catch (err) {
        process.stderr.write(`plantgate keys gen: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
