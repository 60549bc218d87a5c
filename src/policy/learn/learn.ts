// `policy learn` from end to end (docs/policy.md, "From monitor mode to enforce"): read the audit
// once for statistics, draft rules, write them next to the base sources' assets, then check the
// draft the way a reviewer would: compile it, replay the same traffic against it with the real
// engine, and run the generated policy test. Owns the order of those steps and the report; the
// steps themselves live in observe.ts, rules.ts, emit.ts and the replay.
import path from 'node:path';
import { SourceErrors } from '../../core/errors.js';
import { principalFor } from '../engine.js';
import type { BundlePayload } from '../payload.js';
import { compileSources } from '../sources.js';
import { runPolicyTests } from '../testing.js';
import { describeCommand, observedCommand, type ObservedCommand } from '../observed/command.js';
import type { AuditInputs } from '../observed/input.js';
import { Progress, type ProgressSink } from '../observed/progress.js';
import { scanRecords, type ScanTotals, type TimeRange } from '../observed/scan.js';
import { Replay, type ChangeKind, type Verdict } from '../replay/replay.js';
import { writeLearned, type WrittenFiles } from './emit.js';
import { Observations, type NotLearned } from './observe.js';
import { learnRules, type LearnedPolicy, type LearnOptions } from './rules.js';
import { bundleResolver, type ResolverFactories } from '../../assets/resolver.js';

export interface LearnRun {
  inputs: AuditInputs;
  inputPaths: readonly string[];
  /** Entry file of the sources whose assets, issuers and limits the draft keeps. */
  base: string;
  outDir: string;
  range: TimeRange;
  options: LearnOptions;
  force: boolean;
  /** Replay the traffic against the draft and run its policy test (default on). */
  check: boolean;
  progress?: ProgressSink;
  /** Build time of the bundles compiled here (ms). */
  now: number;
  /** How each protocol's recorded addresses resolve to points (protocols/resolvers.ts). */
  resolvers: ResolverFactories;
}

/** An observed command the draft refuses although it was learned from: a bug or a rate limit. */
export interface Refusal {
  count: number;
  reason: string;
  ruleId: string;
  example: { gatewayId: string; seq: number; time: string; workload: string; command: string };
}

export interface LearnCheck {
  /** Observed commands (allowed at the time) the draft refuses because they were left out or not learnable. */
  expectedRefusals: number;
  /** Learned commands the draft refuses anyway, by reason and rule. */
  refusals: Refusal[];
  refused: number;
  /** Commands denied at the time that the draft would allow. */
  newlyAllowed: number;
  /** Commands whose verdict needs a process value the audit does not hold (interlock inputs, step bases). */
  unknown: number;
  tests: { passed: number; failed: number; failures: string[] };
  scan: ScanTotals;
}

export interface LearnReport {
  scan: ScanTotals;
  commandsLearned: number;
  notLearned: Map<string, NotLearned>;
  groupsDropped: number;
  learned: LearnedPolicy;
  files: WrittenFiles;
  check?: LearnCheck;
}

export class LearnError extends Error {
  override readonly name = 'LearnError';
}

async function compile(entry: string, now: number, what: string): Promise<BundlePayload> {
  try {
    return await compileSources(entry, { now, revision: 1 });
  } catch (err) {
    if (err instanceof SourceErrors) throw new LearnError(`${what} do not compile:\n${err.errors.map((e) => `  ${e.message}`).join('\n')}`);
    throw err;
  }
}

export async function learn(run: LearnRun): Promise<LearnReport> {
  const basePayload = await compile(run.base, run.now, `the base sources (${run.base})`);
  const obs = new Observations(bundleResolver(run.resolvers, basePayload.assets), basePayload.assets, run.options.timeZone);
  const scan = await scanRecords(run.inputs, run.range, new Progress('learn', run.inputs.totalBytes, run.progress), (r) => {
    const oc = observedCommand(r);
    if (oc !== undefined) obs.add(oc);
  });
  obs.finish();
  const learned = learnRules(obs, run.options);
  const range = `${run.range.sinceMs !== undefined ? new Date(run.range.sinceMs).toISOString() : 'the start'} .. ${run.range.untilMs !== undefined ? new Date(run.range.untilMs).toISOString() : 'the end'}`;
  const header = [
    ` Drafted by plantgate policy learn from ${run.inputPaths.join(', ')} (${range}): review before use.`,
    ` ${obs.learned.toLocaleString('en-US')} observed commands; writes seen fewer than ${run.options.minWrites} times left out; bounds widened by ${run.options.marginPct} % of the span;`,
    ` rate limits p99 per minute + ${run.options.rateMarginPct} %; windows in ${run.options.timeZone}.`,
  ].join('\n');
  const files = await writeLearned(run.outDir, run.base, learned, run.options, header, run.force);
  const report: LearnReport = { scan, commandsLearned: obs.learned, notLearned: obs.notLearned, groupsDropped: obs.groupsDropped, learned, files };
  if (run.check) report.check = await check(run, learned, files, obs);
  return report;
}

/** Which observed commands the draft is expected to refuse: not learned from, or left out. */
function expectation(learned: LearnedPolicy, obs: Observations): (oc: ObservedCommand) => boolean {
  const leftOut = new Set(learned.leftOut.map((l) => `${l.principal}\u0000${l.asset}\u0000${l.operation}\u0000${l.target}`));
  const ruled = new Set(learned.rules.map((r) => r.group));
  return (oc) => {
    if (obs.whyNotLearned(oc) !== undefined) return true;
    const s = oc.subject!;
    const principals = [s.workloadId, ...(s.actSub ?? []).map(principalFor)];
    for (const p of principals) {
      const g = obs.groups.get(`${p}\u0000${oc.cmd.assetId}\u0000${oc.cmd.operation}`);
      if (g === undefined || !ruled.has(g)) return true;
      const key = `${p}\u0000${oc.cmd.assetId}\u0000${oc.cmd.operation}\u0000`;
      if (oc.cmd.points.some((n) => leftOut.has(key + n))) return true;
      for (const t of oc.cmd.targets) {
        if (t.table === undefined || t.address === undefined) continue;
        for (let a = t.address; a < t.address + (t.count ?? 1); a++) if (leftOut.has(`${key}${t.table} ${a}`)) return true;
      }
    }
    return false;
  };
}

async function check(run: LearnRun, learned: LearnedPolicy, files: WrittenFiles, obs: Observations): Promise<LearnCheck> {
  const draft = await compile(files.entry, run.now, `the learned sources (${files.entry})`);
  const expected = expectation(learned, obs);
  const refusals = new Map<string, Refusal>();
  let expectedRefusals = 0;
  let refused = 0;
  const replay = new Replay(draft, run.resolvers, { maxListed: 0, maxGroups: 0 }, (kind: ChangeKind, oc: ObservedCommand, _rec: Verdict, cand: Verdict) => {
    if (kind !== 'newly-denied') return;
    if (expected(oc)) {
      expectedRefusals++;
      return;
    }
    refused++;
    const key = `${cand.reason}\u0000${cand.ruleId}`;
    const r = refusals.get(key);
    if (r !== undefined) r.count++;
    else if (refusals.size < 100) {
      refusals.set(key, {
        count: 1,
        reason: cand.reason,
        ruleId: cand.ruleId,
        example: { gatewayId: oc.gatewayId, seq: oc.seq, time: new Date(oc.timeMs).toISOString(), workload: oc.subject?.workloadId ?? '', command: describeCommand(oc.cmd) },
      });
    }
  });
  const scan = await scanRecords(run.inputs, run.range, new Progress('check', run.inputs.totalBytes, run.progress), (r) => replay.add(r));
  const tests = { passed: 0, failed: 0, failures: [] as string[] };
  if (files.tests !== undefined) {
    const t = await runPolicyTests([files.tests], run.resolvers);
    for (const r of t.results) {
      if (r.passed) tests.passed++;
      else {
        tests.failed++;
        if (tests.failures.length < 20) tests.failures.push(`${path.basename(r.file)}: ${r.name}: expected ${r.expected}, got ${r.actual}`);
      }
    }
    for (const e of t.errors) tests.failures.push(e.message);
  }
  return {
    expectedRefusals,
    refusals: [...refusals.values()].sort((a, b) => b.count - a.count),
    refused,
    newlyAllowed: replay.summary.newlyAllowed,
    unknown: replay.summary.interlockUnknown + replay.summary.stepBaseUnknown,
    tests,
    scan,
  };
}
