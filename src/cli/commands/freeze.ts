// `plantgate freeze` and `plantgate unfreeze`: the operator's emergency write freeze, through the
// gateway's operator API (docs/operator.md, "Emergency freeze"). Effective for the next command on
// every open connection once `freeze` returns. Owns argument handling and printing; the gateway
// decides and records. Never prints the operator token.
// Exit codes: 0 done (for unfreeze under the two-person rule: the vote is recorded), 1 the gateway
// refused or could not be reached, 2 bad usage.
import { parseDurationMs, POLICY_DURATION } from '../../core/duration.js';
import type { Command } from 'commander';
import { callOperatorApi, refusal, runOperatorCommand, target, UsageError, withConnection } from './approvals.js';

interface FreezeOptions {
  api: string;
  token: string;
  ca?: string;
  site?: boolean;
  asset?: string;
  workload?: string;
  owner?: string;
  reason?: string;
  all?: boolean;
  expiresIn?: string;
  until?: string;
  list?: boolean;
  json?: boolean;
}

/** "90s", "30m", "2h", "1d" → seconds; undefined when malformed (src/core/duration.ts). */
export function parseDuration(text: string): number | undefined {
  const ms = parseDurationMs(text, { ...POLICY_DURATION, spaces: true });
  return ms === null ? undefined : ms / 1000;
}

/** One line per freeze: what is frozen, how, since when, by whom and why, and how it is lifted. */
export function formatFreeze(f: Record<string, unknown>): string {
  const what = f.scope === 'site' ? 'the whole site' : `${String(f.scope)} ${String(f.value)}`;
  const unfreeze = f.unfreeze as { needed?: number; by?: Array<{ by: string }> } | undefined;
  const votes = unfreeze?.by ?? [];
  const lines = [
    `${String(f.id)}  ${what}  ${f.mode === 'all' ? 'every command' : 'writes, method calls, diagnostics'}`,
    `    frozen ${String(f.frozen_at)} by ${String(f.by)}: ${String(f.reason)}`,
    `    ${f.lifted_at !== undefined ? `lifted ${String(f.lifted_at)} (${String(f.lifted_how)})` : f.expires_at ? `until ${String(f.expires_at)}, or an operator lifts it` : 'until an operator lifts it'}`,
  ];
  if ((unfreeze?.needed ?? 1) > 1 && f.lifted_at === undefined) lines.push(`    two-person rule: ${votes.length} of ${unfreeze?.needed} operators asked to lift it${votes.length > 0 ? ` (${votes.map((v) => v.by).join(', ')})` : ''}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  withConnection(
    program
      .command('freeze')
      .description('emergency freeze: refuse writes and method calls (--all: every command) for the site, an asset, workloads or an owner, from the next command on; --list shows freezes')
      .option('--site', 'freeze the whole site')
      .option('--asset <id>', 'freeze one asset (its id in the policy bundle)')
      .option('--workload <spiffe-pattern>', 'freeze workloads: a SPIFFE ID, "*" for one path segment, "**" for any (e.g. spiffe://plant.example/agent/*)')
      .option('--owner <name>', "freeze one owner's agents (also agents acting for them)")
      .option('--reason <text>', 'why (required; recorded in the audit log)')
      .option('--all', 'freeze every command, reads included (default: writes, method calls, diagnostics)')
      .option('--expires-in <duration>', 'lift by itself after this long: 90s, 30m, 2h, 1d (default: until an operator lifts it)')
      .option('--until <time>', 'lift by itself at this ISO 8601 time')
      .option('--list', 'list the freezes in force and the recently lifted ones')
      .option('--json', 'print the API answer as JSON'),
  ).action((opts: FreezeOptions) =>
    runOperatorCommand('freeze', async () => {
      const scopes = (['site', 'asset', 'workload', 'owner'] as const).filter((k) => opts[k] !== undefined);
      const body: Record<string, unknown> = {};
      if (opts.list) {
        if (scopes.length > 0 || opts.reason !== undefined) throw new UsageError('--list takes no scope or --reason');
      } else {
        if (scopes.length !== 1) throw new UsageError('name exactly one of --site, --asset, --workload or --owner (or --list)');
        if (opts.reason === undefined || opts.reason.trim() === '') throw new UsageError('--reason is required: it goes into the audit log');
        if (opts.expiresIn !== undefined && opts.until !== undefined) throw new UsageError('give --expires-in or --until, not both');
        const scope = scopes[0]!;
        body[scope] = scope === 'site' ? true : opts[scope];
        body.reason = opts.reason;
        if (opts.all) body.mode = 'all';
        if (opts.expiresIn !== undefined) {
          const sec = parseDuration(opts.expiresIn);
          if (sec === undefined) throw new UsageError(`--expires-in ${opts.expiresIn}: use a number and a unit, e.g. 90s, 30m, 2h, 1d`);
          body.expires_in_sec = sec;
        }
        if (opts.until !== undefined) {
          if (!Number.isFinite(Date.parse(opts.until))) throw new UsageError(`--until ${opts.until}: not an ISO 8601 time`);
          body.expires_at = new Date(Date.parse(opts.until)).toISOString();
        }
      }
      const t = await target(opts);
      if (opts.list) {
        const a = await callOperatorApi(t, 'GET', 'v1/freezes');
        if (a.status !== 200) {
          process.stderr.write(`${refusal(a)}\n`);
          return 1;
        }
        const active = (a.body.freezes ?? []) as Record<string, unknown>[];
        const lifted = (a.body.recently_lifted ?? []) as Record<string, unknown>[];
        if (opts.json) process.stdout.write(`${JSON.stringify(a.body, null, 2)}\n`);
        else {
          process.stdout.write(active.length === 0 ? 'no freezes in force\n' : `in force:\n${active.map(formatFreeze).join('\n')}\n`);
          if (lifted.length > 0) process.stdout.write(`recently lifted:\n${lifted.slice(0, 5).map(formatFreeze).join('\n')}\n`);
        }
        return 0;
      }
      const a = await callOperatorApi(t, 'POST', 'v1/freezes', body);
      if (a.status !== 201) {
        process.stderr.write(`${refusal(a)}\n`);
        return 1;
      }
      const f = a.body.freeze as Record<string, unknown>;
      process.stdout.write(opts.json ? `${JSON.stringify(f, null, 2)}\n` : `frozen: ${formatFreeze(f)}\n`);
      return 0;
    }),
  );

  withConnection(
    program
      .command('unfreeze')
      .description('lift an emergency freeze (under the two-person rule: record this operator\'s agreement; the N-th distinct operator lifts it)')
      .argument('<id>', 'freeze id (frz-...; see `plantgate freeze --list`)'),
  )
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .option('--json', 'print the API answer as JSON')
    .action((id: string, opts: { api: string; token: string; ca?: string; reason: string; json?: boolean }) =>
      runOperatorCommand('unfreeze', async () => {
        if (opts.reason.trim() === '') throw new UsageError('--reason must not be empty: it goes into the audit log');
        const t = await target(opts);
        const a = await callOperatorApi(t, 'POST', `v1/freezes/${encodeURIComponent(id)}/unfreeze`, { reason: opts.reason });
        if (a.status !== 200 && a.status !== 202) {
          process.stderr.write(`${refusal(a)}\n`);
          return 1;
        }
        const f = a.body.freeze as Record<string, unknown>;
        if (opts.json) process.stdout.write(`${JSON.stringify(a.body, null, 2)}\n`);
        else if (a.status === 200) process.stdout.write(`unfrozen: ${formatFreeze(f)}\n`);
        else process.stdout.write(`still frozen: ${String(a.body.message ?? '')}\n${formatFreeze(f)}\n`);
        return 0;
      }),
    );
}
