// `policy replay` from end to end: load the candidate (policy sources, or a signed bundle verified
// against pinned keys), replay the audit inputs against it, and render what would change as a
// table for people and as JSON for CI (docs/policy.md, "Replay"). Owns loading, the report's
// shape and the --fail-on verdict; the re-deciding is replay.ts's.
import { SourceErrors } from '../../core/errors.js';
import { BundleError, decodeBundleUnverified, readBundleFile, readTrustedKeys, verifyBundle } from '../bundle.js';
import { payloadProblems, type BundlePayload } from '../payload.js';
import { compileSources } from '../sources.js';
import type { AuditInputs } from '../observed/input.js';
import { Progress, type ProgressSink } from '../observed/progress.js';
import { scanRecords, type ScanTotals, type TimeRange } from '../observed/scan.js';
import { CHANGE_KINDS, Replay, type ChangeGroup, type ChangeKind, type ChangedCommand, type ReplayOptions, type ReplaySummary } from './replay.js';
import type { ResolverFactories } from '../../assets/resolver.js';

export class CandidateError extends Error {
  override readonly name = 'CandidateError';
}

export interface Candidate {
  payload: BundlePayload;
  /** How it was obtained: 'sources', 'signature VERIFIED (kid …)', 'signature NOT CHECKED'. */
  provenance: string;
}

/**
 * The candidate bundle: policy sources (a `.yaml`/`.yml` entry file, compiled as `bundle build`
 * would) or a signed bundle, verified when `trust` pins keys. Its validity period is not checked:
 * replay asks what it would have decided, not whether a gateway would load it today.
 */
export async function loadCandidate(file: string, trust: string | undefined, now: number): Promise<Candidate> {
  if (/\.ya?ml$/i.test(file)) {
    try {
      return { payload: await compileSources(file, { now, revision: 1 }), provenance: 'policy sources (compiled, unsigned)' };
    } catch (err) {
      if (err instanceof SourceErrors) throw new CandidateError(`${file} does not compile:\n${err.errors.map((e) => `  ${e.message}`).join('\n')}`);
      throw err;
    }
  }
  let jws: string;
  try {
    jws = await readBundleFile(file);
  } catch (err) {
    throw new CandidateError(`${file}: ${(err as Error).message}`);
  }
  let unverified: { header: Record<string, unknown>; payload: unknown };
  try {
    unverified = decodeBundleUnverified(jws);
  } catch (err) {
    throw new CandidateError(`${file}: ${(err as Error).message}`);
  }
  const problem = payloadProblems(unverified.payload);
  if (problem) throw new CandidateError(`${file}: not a valid bundle: ${problem}`);
  const payload = unverified.payload as BundlePayload;
  if (trust === undefined) return { payload, provenance: 'signed bundle, signature NOT CHECKED (give --trust)' };
  try {
    const trusted = await readTrustedKeys(trust);
    // At its own not_before, so only signature, type and shape decide.
    const verified = await verifyBundle(jws, trusted, { now: payload.not_before * 1000 });
    return { payload: verified, provenance: `signed bundle, signature VERIFIED (kid ${String(unverified.header.kid)})` };
  } catch (err) {
    if (err instanceof BundleError) throw new CandidateError(`${file}: refused: ${err.code}: ${err.message}`);
    throw new CandidateError(`--trust ${trust}: ${(err as Error).message}`);
  }
}

export type FailOn = 'newly-denied' | 'newly-allowed';
export const FAIL_ON: readonly FailOn[] = ['newly-denied', 'newly-allowed'];

export interface ReplayReport {
  bundle: { name: string; revision: number; provenance: string };
  inputs: string[];
  range: { since?: string; until?: string };
  scan: ScanTotals;
  summary: ReplaySummary;
  groups: ChangeGroup[];
  groupsDropped: number;
  changes: ChangedCommand[];
  unlisted: Record<ChangeKind, number>;
  failOn: FailOn[];
  /** A --fail-on condition holds. */
  failed: boolean;
}

export async function replayAudit(args: {
  candidate: Candidate;
  inputs: AuditInputs;
  range: TimeRange;
  options: ReplayOptions;
  resolvers: ResolverFactories;
  failOn: FailOn[];
  progress?: ProgressSink;
}): Promise<ReplayReport> {
  const replay = new Replay(args.candidate.payload, args.resolvers, args.options);
  const scan = await scanRecords(args.inputs, args.range, new Progress('replay', args.inputs.totalBytes, args.progress), (r) => replay.add(r));
  const s = replay.summary;
  const failed = args.failOn.some((f) => (f === 'newly-denied' ? s.newlyDenied > 0 : s.newlyAllowed > 0));
  return {
    bundle: { name: args.candidate.payload.name, revision: args.candidate.payload.revision, provenance: args.candidate.provenance },
    inputs: args.inputs.describe,
    range: {
      ...(args.range.sinceMs !== undefined ? { since: new Date(args.range.sinceMs).toISOString() } : {}),
      ...(args.range.untilMs !== undefined ? { until: new Date(args.range.untilMs).toISOString() } : {}),
    },
    scan,
    summary: s,
    groups: replay.changeGroups(),
    groupsDropped: replay.groupsDropped,
    changes: replay.changes,
    unlisted: replay.unlisted,
    failOn: args.failOn,
    failed,
  };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** The report for people. */
export function renderTable(r: ReplayReport): string {
  const s = r.summary;
  const out: string[] = [];
  out.push(`candidate  ${r.bundle.name} revision ${r.bundle.revision}: ${r.bundle.provenance}`);
  for (const i of r.inputs) out.push(`input      ${i}`);
  if (r.range.since || r.range.until) out.push(`range      ${r.range.since ?? 'start'} .. ${r.range.until ?? 'end'}`);
  out.push(
    `read       ${fmt(r.scan.records)} records (${fmt(r.scan.inRange)} in range${r.scan.duplicates > 0 ? `, ${fmt(r.scan.duplicates)} duplicates skipped` : ''}) in ${r.scan.progress.seconds.toFixed(1)} s (${r.scan.progress.cpuSeconds.toFixed(1)} s CPU), ${fmt(r.scan.progress.recordsPerSec)} records/s, peak rss ${(r.scan.progress.peakRssBytes / (1 << 20)).toFixed(0)} MiB`,
  );
  out.push('');
  const notRedecided = Object.entries(s.notRedecided).sort((a, b) => b[1] - a[1]);
  out.push(
    ...table([
      ['commands', fmt(s.commands), ''],
      ['unchanged', fmt(s.unchanged), s.ruleChanged > 0 ? `${fmt(s.ruleChanged)} still allowed by another rule` : ''],
      ['newly denied', fmt(s.newlyDenied), 'allowed at the time, denied by the candidate'],
      ['newly allowed', fmt(s.newlyAllowed), 'denied at the time, allowed by the candidate'],
      ['reason changed', fmt(s.reasonChanged), 'denied either way, for another reason'],
      ['interlock unknown', fmt(s.interlockUnknown), 'policy allows; an interlock guards it and the audit holds no inputs (or input history) for it'],
      ['step base unknown', fmt(s.stepBaseUnknown), "a max_step needs the PLC's value, which the gateway read and the audit does not hold"],
      ['not re-decided', fmt(notRedecided.reduce((n, [, c]) => n + c, 0)), notRedecided.length > 0 ? `kept as recorded (decided before policy, or on the token's zone): ${notRedecided.map(([k, c]) => `${k} ${fmt(c)}`).join(', ')}` : ''],
    ]),
  );
  if (r.groups.length > 0) {
    out.push('');
    out.push(
      ...table([
        ['CHANGE', 'COUNT', 'WORKLOAD', 'ASSET', 'OP', 'POINTS', 'RECORDED', 'CANDIDATE'],
        ...r.groups.map((g) => [g.kind, fmt(g.count), g.workload, g.asset, g.operation, g.points || '-', g.recorded, g.candidate]),
      ]),
    );
    if (r.groupsDropped > 0) out.push(`(${fmt(r.groupsDropped)} more changed commands in groups not shown)`);
  }
  if (r.changes.length > 0) {
    out.push('');
    out.push('changed commands:');
    for (const c of r.changes) {
      out.push(`  ${c.kind.padEnd(14)} ${c.gatewayId} seq ${c.seq} ${c.time} ${c.workload} ${c.command}: ${c.recorded.effect} ${c.recorded.reason}${c.recorded.shadow ? ` (shadow ${c.recorded.shadow})` : ''} -> ${c.candidate.effect} ${c.candidate.reason}${c.candidate.ruleId ? ` (${c.candidate.ruleId})` : ''}`);
    }
    const more = CHANGE_KINDS.filter((k) => r.unlisted[k] > 0).map((k) => `${fmt(r.unlisted[k])} ${k}`);
    if (more.length > 0) out.push(`  … and ${more.join(', ')} not listed (--max-listed)`);
  }
  const damage = r.scan.problemCount;
  if (damage > 0 || r.scan.tornTails > 0) {
    out.push('');
    for (const p of r.scan.problems) out.push(`input ${p.tornTail ? 'note' : 'DAMAGE'}: ${p.where}: ${p.message}`);
    if (r.scan.problems.length < damage + r.scan.tornTails) out.push(`(${fmt(damage + r.scan.tornTails - r.scan.problems.length)} more input problems)`);
  }
  if (r.failOn.length > 0) out.push('', r.failed ? `FAIL: ${r.failOn.join(', ')} (--fail-on)` : `ok: no ${r.failOn.join(', ')} (--fail-on)`);
  return out.join('\n') + '\n';
}

/** The report for CI: stable keys, snake_case like the rest of our JSON outputs. */
export function renderJson(r: ReplayReport): string {
  const s = r.summary;
  return (
    JSON.stringify(
      {
        bundle: r.bundle,
        inputs: r.inputs,
        range: r.range,
        records: r.scan.records,
        records_in_range: r.scan.inRange,
        duplicates_skipped: r.scan.duplicates,
        seconds: Number(r.scan.progress.seconds.toFixed(3)),
        records_per_sec: Math.round(r.scan.progress.recordsPerSec),
        cpu_seconds: Number(r.scan.progress.cpuSeconds.toFixed(3)),
        records_per_cpu_sec: Math.round(r.scan.progress.recordsPerCpuSec),
        peak_rss_bytes: r.scan.progress.peakRssBytes,
        summary: {
          commands: s.commands,
          unchanged: s.unchanged,
          newly_denied: s.newlyDenied,
          newly_allowed: s.newlyAllowed,
          reason_changed: s.reasonChanged,
          rule_changed: s.ruleChanged,
          interlock_unknown: s.interlockUnknown,
          step_base_unknown: s.stepBaseUnknown,
          not_redecided: s.notRedecided,
        },
        groups: r.groups,
        groups_dropped: r.groupsDropped,
        changes: r.changes,
        unlisted: r.unlisted,
        input_problems: { count: r.scan.problemCount, torn_tails: r.scan.tornTails, first: r.scan.problems },
        fail_on: r.failOn,
        failed: r.failed,
      },
      null,
      2,
    ) + '\n'
  );
}
