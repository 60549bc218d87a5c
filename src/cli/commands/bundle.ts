// `plantgate bundle build | verify | inspect | diff`: compile and sign policy sources, check a bundle
// the way the gateway would, look inside one, and show what a new one changes. Never prints key
// material; `inspect` and `diff` say loudly when what they show is unverified.
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
import { diffBundles } from '../../policy/diff.js';
import { payloadProblems, type BundlePayload } from '../../policy/payload.js';
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
  const bundle = program.command('bundle').description('policy bundles: build (compile + sign), verify, inspect, diff');

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
    .description('show a bundle: header, revision, validity, assets, windows, rules; with --trust also whether its signature verifies')
    .argument('<file>', 'signed bundle (JWS)')
    .option('--trust <jwks>', 'public JWKS of the pinned policy-signing key(s): check the signature too')
    .option('--json', 'print the decoded header and payload as JSON instead of the summary')
    .action(async (file: string, opts: { trust?: string; json?: boolean }) => {
      let trusted: TrustedKey[] | undefined;
      if (opts.trust !== undefined) {
        try {
          trusted = await readTrustedKeys(opts.trust);
        } catch (e) {
          return usage(`--trust ${opts.trust}: ${(e as Error).message}`);
        }
      }
      let jws: string;
      let header: Record<string, unknown>;
      let payload: unknown;
      try {
        jws = await readBundleFile(file);
        ({ header, payload } = decodeBundleUnverified(jws));
      } catch (e) {
        err(`${file}: ${(e as Error).message}`);
        process.exitCode = 2;
        return;
      }
      const status = trusted === undefined ? undefined : await signatureStatus(jws, trusted);
      if (status === undefined || !status.verified) {
        out('# UNVERIFIED: the signature has not been checked or did not verify; do not trust this content.');
      } else {
        out(`# VERIFIED: signed by pinned key '${String(header.kid)}'`);
      }
      if (opts.json) {
        out(JSON.stringify({ header, payload }, null, 2));
      } else {
        out(`header     alg ${String(header.alg)}, kid ${String(header.kid)}, typ ${String(header.typ)}`);
        const problem = payloadProblems(payload);
        if (problem !== null) out(`payload    MALFORMED: ${problem}`);
        else for (const line of details(payload as BundlePayload)) out(line);
      }
      out(`signature  ${status === undefined ? 'NOT CHECKED (give --trust JWKS)' : status.text}`);
      if (status !== undefined && !status.accepted) process.exitCode = 1;
    });

  bundle
    .command('diff')
    .description('what NEW changes against OLD: header, issuers, assets and points, windows, rules (field by field) and rule order')
    .argument('<old>', 'the bundle deployed now (JWS)')
    .argument('<new>', 'the candidate bundle (JWS)')
    .option('--trust <jwks>', 'check both signatures against the pinned key(s) first')
    .action(async (oldFile: string, newFile: string, opts: { trust?: string }) => {
      let trusted: TrustedKey[] | undefined;
      if (opts.trust !== undefined) {
        try {
          trusted = await readTrustedKeys(opts.trust);
        } catch (e) {
          return usage(`--trust ${opts.trust}: ${(e as Error).message}`);
        }
      }
      const payloads: BundlePayload[] = [];
      for (const file of [oldFile, newFile]) {
        try {
          const jws = await readBundleFile(file);
          const { payload } = decodeBundleUnverified(jws);
          const problem = payloadProblems(payload);
          if (problem !== null) throw new BundleError('MALFORMED', problem);
          if (trusted !== undefined) {
            const st = await signatureStatus(jws, trusted);
            if (!st.verified) {
              err(`${file}: ${st.text}`);
              process.exitCode = 1;
              return;
            }
          }
          payloads.push(payload as BundlePayload);
        } catch (e) {
          err(`${file}: ${(e as Error).message}`);
          process.exitCode = 2;
          return;
        }
      }
      const [a, b] = payloads as [BundlePayload, BundlePayload];
      if (trusted === undefined) out('# UNVERIFIED: signatures not checked (give --trust JWKS)');
      out(`--- ${oldFile} (${a.name} revision ${a.revision})`);
      out(`+++ ${newFile} (${b.name} revision ${b.revision})`);
      if (b.revision <= a.revision) out(`! revision ${b.revision} is not above ${a.revision}: a gateway running the old bundle refuses the new one as a rollback`);
      const changes = diffBundles(a, b);
      for (const c of changes) out(`${c.kind} ${c.what} ${c.id}: ${c.detail}`);
      out(changes.length === 0 ? 'no changes' : `${changes.length} change(s)`);
    });
}

/** Signature status for inspect/diff: verified = the signature is good; accepted = a gateway would load it now. */
async function signatureStatus(jws: string, trusted: TrustedKey[]): Promise<{ verified: boolean; accepted: boolean; text: string }> {
  try {
    await verifyBundle(jws, trusted, { now: systemClock.now() });
    return { verified: true, accepted: true, text: `VERIFIED by pinned key '${String(decodeBundleUnverified(jws).header.kid)}'` };
  } catch (e) {
    if (!(e instanceof BundleError)) throw e;
    // These checks run only after the signature verified.
    const signed = e.code === 'EXPIRED' || e.code === 'NOT_YET_VALID' || e.code === 'ROLLBACK';
    return { verified: signed, accepted: false, text: signed ? `VERIFIED, but a gateway refuses it now: ${e.message}` : `REFUSED ${e.message}` };
  }
}

function details(p: BundlePayload): string[] {
  const lines = [
    `bundle     ${p.name} revision ${p.revision}, mode ${p.mode ?? 'enforce'}${p.mode === 'monitor' ? ' (SHADOW: denies are reported, not enforced)' : ''}`,
    `audience   ${p.audience}`,
    `issued     ${iso(p.issued_at)}`,
    `valid      ${iso(p.not_before)} .. ${iso(p.expires_at)}`,
    `limits     max token ttl ${p.limits.max_token_ttl_sec}s${p.limits.step_base_max_age_ms !== undefined ? `, step base max age ${p.limits.step_base_max_age_ms}ms` : ''}`,
    `issuers    ${p.issuers.map((i) => `${i.iss} (${i.jwks.keys.length} key(s))`).join(', ')}`,
    `assets     ${p.assets.length}`,
  ];
  for (const a of p.assets) {
    const where = a.protocol === 'modbus' ? `unit ${a.unit_id}` : `namespace ${a.namespace ?? '?'}`;
    lines.push(`  ${a.id}  zone ${a.zone}, ${a.criticality}, ${a.protocol} ${where}, ${Object.keys(a.points).length} points`);
  }
  const windows = p.windows ?? [];
  lines.push(`windows    ${windows.length}`);
  for (const w of windows) {
    const when = w.from !== undefined ? `${(w.days ?? ['every day']).join(',')} ${w.from}-${w.to}` : `${w.start} .. ${w.end}`;
    lines.push(`  ${w.id}  ${when} ${w.time_zone}`);
  }
  const freezes = p.freezes ?? [];
  if (freezes.length > 0) lines.push(`freezes    ${freezes.length}`);
  for (const f of freezes) lines.push(`  ${f.window}  ${f.operations.join(',')} on ${f.assets.join(',')} (CHANGE_FREEZE)`);
  const monitor = p.rules.filter((r) => r.mode === 'monitor').length;
  lines.push(`rules      ${p.rules.length}${monitor > 0 ? ` (${monitor} in monitor mode)` : ''}`);
  for (const r of p.rules) {
    const extra = [
      r.windows ? `windows ${r.windows.join(',')}` : '',
      r.freezes ? `freezes ${r.freezes.join(',')}` : '',
      r.rate_limit || r.rate_limits ? 'rate-limited' : '',
      r.max_step ? 'max-step' : '',
      r.approval ? (typeof r.approval === 'object' && r.approval.approvers > 1 ? `approval by ${r.approval.approvers}` : 'approval') : '',
      r.mode === 'monitor' ? 'MONITOR' : '',
    ].filter((x) => x !== '');
    lines.push(`  ${r.id}  ${r.operations.join(',')} on ${r.assets.join(',')} for ${r.subject.workload}${extra.length > 0 ? ` [${extra.join('; ')}]` : ''}`);
  }
  return lines;
}
