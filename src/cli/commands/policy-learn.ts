// `plantgate policy learn --from AUDIT… --base SOURCES --out DIR`: draft rules from recorded
// traffic (docs/policy.md, "From monitor mode to enforce"), then check the draft against the same
// traffic. Exit 0 drafted, 1 an input was damaged (the draft is written from what could be read),
// 2 bad usage, base sources that do not compile, or an output file in the way.
import type { Command } from 'commander';
import { EmitError } from '../../policy/learn/emit.js';
import { learn, LearnError, type LearnReport } from '../../policy/learn/learn.js';
import { DEFAULT_LEARN_OPTIONS, describeLeftOut, type LearnOptions } from '../../policy/learn/rules.js';
import { isValidTimeZone } from '../../policy/windows.js';
import { FROM_HELP, UsageError, inputs, number, progressSink, timeRange } from './policy-audit-args.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

interface Opts {
  from: string[];
  base: string;
  out: string;
  since?: string;
  until?: string;
  minWrites: string;
  margin: string;
  rateMargin: string;
  timeZone: string;
  check: boolean;
  force?: boolean;
  quiet?: boolean;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function render(r: LearnReport, o: LearnOptions): string {
  const out: string[] = [];
  const p = r.scan.progress;
  out.push(`read      ${fmt(r.scan.records)} records (${fmt(r.scan.inRange)} in range${r.scan.duplicates > 0 ? `, ${fmt(r.scan.duplicates)} duplicates skipped` : ''}) in ${p.seconds.toFixed(1)} s (${p.cpuSeconds.toFixed(1)} s CPU), ${fmt(p.recordsPerSec)} records/s, peak rss ${(p.peakRssBytes / (1 << 20)).toFixed(0)} MiB`);
  out.push(`learned   ${fmt(r.learned.rules.length)} rules and ${r.learned.windows.length} windows from ${fmt(r.commandsLearned)} commands`);
  out.push(`wrote     ${r.files.entry}`, `          ${r.files.rules}`);
  if (r.files.tests) out.push(`          ${r.files.tests} (${r.files.testCases} cases)`);
  for (const e of r.files.extra) out.push(`          ${e}`);
  if (r.notLearned.size > 0) {
    out.push('', 'not learned from:');
    for (const [why, n] of [...r.notLearned].sort((a, b) => b[1].count - a[1].count)) {
      out.push(`  ${fmt(n.count).padStart(10)}  ${why} (e.g. ${n.example.gatewayId} seq ${n.example.seq}: ${n.example.what})`);
    }
  }
  if (r.groupsDropped > 0) out.push(`  ${fmt(r.groupsDropped).padStart(10)}  past ${fmt(100_000)} distinct principal/asset/operation groups: not kept`);
  if (r.learned.leftOut.length > 0) {
    out.push('', `left out (state-changing, seen fewer than ${o.minWrites} times; listed in ${r.files.rules}):`);
    for (const l of r.learned.leftOut.slice(0, 50)) out.push(`  ${describeLeftOut(l, o.minWrites)}`);
    if (r.learned.leftOut.length > 50) out.push(`  … ${r.learned.leftOut.length - 50} more`);
  }
  for (const u of r.learned.unexpressible) out.push(`no rule for ${u.principal} ${u.operation} ${u.asset}: ${u.count} command(s), ${u.why}`);
  const c = r.check;
  if (c) {
    out.push('', 'check (the draft against the same traffic, and its policy test):');
    out.push(`  refuses ${fmt(c.refused)} learned command(s)${c.expectedRefusals > 0 ? `, and ${fmt(c.expectedRefusals)} left out or not learned (expected)` : ''}`);
    for (const x of c.refusals.slice(0, 20)) out.push(`    ${fmt(x.count).padStart(8)}  ${x.reason}${x.ruleId ? ` (${x.ruleId})` : ''}, e.g. ${x.example.gatewayId} seq ${x.example.seq} ${x.example.time} ${x.example.workload} ${x.example.command}`);
    if (c.newlyAllowed > 0) out.push(`  allows ${fmt(c.newlyAllowed)} command(s) that were denied at the time: replay the draft to see them`);
    if (c.unknown > 0) out.push(`  ${fmt(c.unknown)} command(s) need a process value the audit does not hold (interlock inputs, max_step bases): replay the draft to see them`);
    out.push(`  policy test: ${c.tests.passed} passed, ${c.tests.failed} failed`);
    for (const f of c.tests.failures) out.push(`    ${f}`);
  }
  if (r.scan.problemCount > 0 || r.scan.tornTails > 0) {
    out.push('');
    for (const x of r.scan.problems) out.push(`input ${x.tornTail ? 'note' : 'DAMAGE'}: ${x.where}: ${x.message}`);
  }
  out.push('', `next: review ${r.files.rules}, then plantgate policy replay --bundle ${r.files.entry} --from …`);
  return out.join('\n') + '\n';
}

export function registerLearn(policy: Command): void {
  policy
    .command('learn')
    .description('draft rules from recorded traffic (monitor mode included): points, function codes, write envelopes, rates, windows, each with its evidence')
    .requiredOption('--from <paths...>', FROM_HELP)
    .requiredOption('--base <file>', 'entry file of the current policy sources: the draft keeps its assets, issuers, limits, windows and interlocks')
    .requiredOption('--out <dir>', 'directory for the draft (bundle.yaml, learned.yaml, tests/observed.yaml)')
    .option('--since <time>', 'learn from commands recorded at or after this instant (ISO 8601)')
    .option('--until <time>', 'learn from commands recorded before this instant (ISO 8601)')
    .option('--min-writes <n>', 'leave out writes, calls and diagnostics seen fewer times than this on a point or address', String(DEFAULT_LEARN_OPTIONS.minWrites))
    .option('--margin <percent>', 'widen write bounds by this percentage of the observed span', String(DEFAULT_LEARN_OPTIONS.marginPct))
    .option('--rate-margin <percent>', 'rate limit = p99 of commands per minute plus this percentage', String(DEFAULT_LEARN_OPTIONS.rateMarginPct))
    .option('--time-zone <zone>', 'IANA time zone of learned time-of-day windows', DEFAULT_LEARN_OPTIONS.timeZone)
    .option('--no-check', 'do not replay the traffic against the draft nor run its policy test')
    .option('--force', 'replace files already in --out')
    .option('-q, --quiet', 'no progress line on stderr')
    .addHelpText('after', '\nExit codes: 0 drafted, 1 an input record was damaged or lost (the draft is learned from what could be read), 2 bad usage, base sources that do not compile, or a file in the way.\nSee docs/policy.md, "From monitor mode to enforce".')
    .action(async (opts: Opts) => {
      try {
        const range = timeRange(opts.since, opts.until);
        if (!isValidTimeZone(opts.timeZone)) throw new UsageError(`--time-zone: unknown time zone '${opts.timeZone}' (an IANA name such as Europe/Berlin)`);
        const options: LearnOptions = {
          ...DEFAULT_LEARN_OPTIONS,
          minWrites: number('--min-writes', opts.minWrites, 1, 1_000_000, true),
          marginPct: number('--margin', opts.margin, 0, 1000),
          rateMarginPct: number('--rate-margin', opts.rateMargin, 0, 10_000),
          timeZone: opts.timeZone,
        };
        const audit = await inputs(opts.from);
        const report = await learn({
          resolvers: RESOLVERS,
          inputs: audit,
          inputPaths: opts.from,
          base: opts.base,
          outDir: opts.out,
          range,
          options,
          force: opts.force === true,
          check: opts.check,
          progress: progressSink(opts.quiet),
          now: Date.now(),
        });
        process.stdout.write(render(report, options));
        if (report.scan.problemCount > 0) process.stderr.write(`plantgate policy learn: ${report.scan.problemCount} damaged or lost input record(s); the draft is learned from what could be read\n`);
        process.exitCode = report.scan.problemCount > 0 ? 1 : 0;
      } catch (err) {
        if (err instanceof UsageError || err instanceof LearnError || err instanceof EmitError) {
          process.stderr.write(`plantgate policy learn: ${err.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });
}
