// `plantgate policy replay --bundle CANDIDATE --from AUDIT…`: what a candidate bundle would have
// decided on recorded traffic, as a table (or JSON for CI); exit 1 when a --fail-on condition
// holds or an input is damaged, 2 on bad usage or a candidate that does not load.
import type { Command } from 'commander';
import { InterlockError } from '../../interlocks/engine.js';
import { BundleError } from '../../policy/bundle.js';
import { CandidateError, FAIL_ON, loadCandidate, renderJson, renderTable, replayAudit, type FailOn } from '../../policy/replay/run.js';
import { DEFAULT_REPLAY_OPTIONS } from '../../policy/replay/replay.js';
import { FROM_HELP, UsageError, inputs, number, progressSink, timeRange } from './policy-audit-args.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

interface Opts {
  bundle: string;
  from: string[];
  trust?: string;
  since?: string;
  until?: string;
  failOn?: string[];
  json?: boolean;
  maxListed: string;
  quiet?: boolean;
}

export function registerReplay(policy: Command): void {
  policy
    .command('replay')
    .description('re-decide recorded commands against a candidate bundle and show what would change (newly denied, newly allowed, reason changes)')
    .requiredOption('--bundle <file>', 'candidate: policy sources (entry .yaml, e.g. learned/bundle.yaml) or a signed bundle (.jws)')
    .requiredOption('--from <paths...>', FROM_HELP)
    .option('--trust <jwks>', 'verify a signed candidate against these pinned policy keys (unverified otherwise, and said so)')
    .option('--since <time>', 'replay commands recorded at or after this instant (ISO 8601)')
    .option('--until <time>', 'replay commands recorded before this instant (ISO 8601)')
    .option('--fail-on <kinds...>', `exit 1 when any command is ${FAIL_ON.join(' / ')}`)
    .option('--json', 'print the report as JSON (for CI) instead of the table')
    .option('--max-listed <n>', 'changed commands listed one by one, per kind', String(DEFAULT_REPLAY_OPTIONS.maxListed))
    .option('-q, --quiet', 'no progress line on stderr')
    .addHelpText('after', '\nExit codes: 0 replayed (no --fail-on condition holds), 1 a --fail-on condition holds or an input record was damaged or lost, 2 bad usage or a candidate that does not load.\nSee docs/policy.md, "From monitor mode to enforce".')
    .action(async (opts: Opts) => {
      try {
        const failOn = (opts.failOn ?? []).map((f) => {
          if (!(FAIL_ON as readonly string[]).includes(f)) throw new UsageError(`--fail-on must be ${FAIL_ON.join(' or ')}, got '${f}'`);
          return f as FailOn;
        });
        const range = timeRange(opts.since, opts.until);
        const maxListed = number('--max-listed', opts.maxListed, 0, 1_000_000, true);
        const audit = await inputs(opts.from);
        const candidate = await loadCandidate(opts.bundle, opts.trust, Date.now());
        const report = await replayAudit({
          candidate,
          inputs: audit,
          range,
          options: { ...DEFAULT_REPLAY_OPTIONS, maxListed },
          resolvers: RESOLVERS,
          failOn,
          progress: progressSink(opts.quiet),
        });
        process.stdout.write(opts.json ? renderJson(report) : renderTable(report));
        if (report.scan.problemCount > 0) process.stderr.write(`plantgate policy replay: ${report.scan.problemCount} damaged or lost input record(s); the replay covers what could be read\n`);
        process.exitCode = report.failed || report.scan.problemCount > 0 ? 1 : 0;
      } catch (err) {
        if (err instanceof UsageError || err instanceof CandidateError || err instanceof BundleError || err instanceof InterlockError) {
          process.stderr.write(`plantgate policy replay: ${err.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });
}
