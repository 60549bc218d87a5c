// `plantgate bundle build | verify | inspect`: compile and sign policy sources, check a bundle
// the way the gateway would, and look inside one. Never prints key material; `inspect` says
// loudly that what it shows is unverified.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { JWK } from 'jose';
import { systemClock } from '../../core/clock.js';
import { SourceErrors } from '../../core/errors.js';
import {
  algForJwk,
  BundleError,
  decodeBundleUnverified,
  readBundleFile,
  readTrustedKeys,
  signBundle,
  verifyBundle,
  writeBundleFile,
  type TrustedKey,
} from '../../policy/bundle.js';
import type { BundlePayload } from '../../policy/payload.js';
import { compileSources } from '../../policy/sources.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);
const err = (s: string): void => void process.stderr.write(`${s}\n`);

function usage(message: string): void {
  err(`plantgate bundle: ${message}`);
  process.exitCode = 2;
}

function positiveInt(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]{1,15}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 ? n : undefined;
}

function iso(sec: number): string {
  return new Date(sec * 1000).toISOString();
}

function summary(p: BundlePayload): string[] {
  return [
    `bundle     ${p.name} revision ${p.revision}`,
    `audience   ${p.audience}`,
    `assets     ${p.assets.length} (${p.assets.map((a) => `${a.id}: ${Object.keys(a.points).length} points`).join(', ')})`,
    `rules      ${p.rules.length}`,
    `issuers    ${p.issuers.map((i) => i.iss).join(', ')}`,
    `valid      ${iso(p.not_before)} .. ${iso(p.expires_at)}`,
  ];
}

async function readPrivateJwk(file: string): Promise<JWK> {
  const jwk = JSON.parse(await readFile(file, 'utf8')) as JWK;
  if (typeof jwk !== 'object' || jwk === null || typeof jwk.kty !== 'string') throw new Error('not a JWK');
  if (jwk.d === undefined) throw new Error('not a private key (no "d"); give the *.private.jwk.json file');
  return jwk;
}

export function register(program: Command): void {
  const bundle = program.command('bundle').description('policy bundles: build (compile + sign), verify, inspect');

  bundle
    .command('build')
    .description('compile policy sources (YAML), report every problem as file:line:col, and sign the bundle')
    .requiredOption('--src <file>', 'entry file of the policy sources, e.g. rules/demo/bundle.yaml')
    .requiredOption('--key <file>', 'policy-signing private key (JWK, Ed25519 or P-256)')
    .requiredOption('--revision <n>', 'bundle revision: a positive integer above every revision already deployed')
    .requiredOption('--out <file>', 'where to write the signed bundle (JWS)')
    .option('--kid <id>', "key id to put in the header (default: the key's own kid)")
    .action(async (opts: { src: string; key: string; revision: string; out: string; kid?: string }) => {
      const revision = positiveInt(opts.revision);
      if (revision === undefined) return usage(`--revision must be a positive integer, got '${opts.revision}'`);
      let jwk: JWK;
      try {
        jwk = await readPrivateJwk(opts.key);
      } catch (e) {
        return usage(`--key ${opts.key}: ${(e as Error).message}`);
      }
      const kid = opts.kid ?? jwk.kid;
      if (typeof kid !== 'string' || kid === '') return usage(`--key ${opts.key} has no kid; pass --kid`);
      let payload: BundlePayload;
      try {
        payload = await compileSources(opts.src, { now: systemClock.now(), revision });
      } catch (e) {
        if (!(e instanceof SourceErrors)) throw e;
        for (const x of e.errors) err(x.message);
        err(`${e.errors.length} problem(s); no bundle written`);
        process.exitCode = 2;
        return;
      }
      let jws: string;
      try {
        jws = await signBundle(payload, jwk, kid);
      } catch (e) {
        if (!(e instanceof BundleError)) throw e;
        return usage(e.message);
      }
      await writeBundleFile(opts.out, jws);
      const sha = createHash('sha256').update(await readFile(opts.out)).digest('hex');
      out(`wrote ${opts.out}`);
      for (const line of summary(payload)) out(line);
      out(`signed     ${algForJwk(jwk)} kid ${kid}`);
      out(`sha256     ${sha}`);
    });

  bundle
    .command('verify')
    .description('verify a bundle as the gateway would: pinned key, signature, shape, revision, validity period')
    .argument('<file>', 'signed bundle (JWS)')
    .requiredOption('--trust <jwks>', 'public JWKS of the pinned policy-signing key(s)')
    .option('--min-revision <n>', 'refuse revisions below this (rollback)')
    .action(async (file: string, opts: { trust: string; minRevision?: string }) => {
      let trusted: TrustedKey[];
      try {
        trusted = await readTrustedKeys(opts.trust);
      } catch (e) {
        return usage(`--trust ${opts.trust}: ${(e as Error).message}`);
      }
      const minRevision = opts.minRevision === undefined ? undefined : positiveInt(opts.minRevision);
      if (opts.minRevision !== undefined && minRevision === undefined) {
        return usage(`--min-revision must be a positive integer, got '${opts.minRevision}'`);
      }
      try {
        const jws = await readBundleFile(file);
        const p = await verifyBundle(jws, trusted, { now: systemClock.now(), ...(minRevision !== undefined ? { minRevision } : {}) });
        out(`${file}: OK (signed by pinned key ${String(decodeBundleUnverified(jws).header.kid)})`);
        for (const line of summary(p)) out(line);
      } catch (e) {
        if (e instanceof BundleError) {
          err(`${file}: REFUSED ${e.message}`);
        } else {
          err(`${file}: REFUSED cannot read: ${(e as Error).message}`);
        }
        process.exitCode = 1;
      }
    });

  bundle
    .command('inspect')
    .description('print a bundle\'s header and payload WITHOUT verifying it (use verify to trust it)')
    .argument('<file>', 'signed bundle (JWS)')
    .action(async (file: string) => {
      try {
        const { header, payload } = decodeBundleUnverified(await readBundleFile(file));
        out('# UNVERIFIED: the signature has not been checked; do not trust this content.');
        out(JSON.stringify({ header, payload }, null, 2));
      } catch (e) {
        err(`${file}: ${(e as Error).message}`);
        process.exitCode = 2;
      }
    });
}
