// `plantgate revoke`: kill tokens now, through the gateway's operator API (docs/identity.md,
// Revocation: by jti, by sub (a workload, or a human as user:<name>), by owner, or a whole task;
// effective on the next command, on open connections too). `--list` shows the revocations in force.
// Owns argument handling and printing; the gateway decides who may revoke what (an owner only
// their own agents). Never prints the operator token.
// Exit codes: 0 done, 1 the gateway refused or could not be reached, 2 bad usage.
import type { Command } from 'commander';
import { callOperatorApi, refusal, runOperatorCommand, target, UsageError, withConnection } from './approvals.js';

interface RevokeOptions {
  api: string;
  token: string;
  ca?: string;
  jti?: string;
  sub?: string;
  owner?: string;
  task?: string;
  reason?: string;
  list?: boolean;
  json?: boolean;
}

/** One line per revocation: what is dead, since when, who said so and why. */
export function formatRevocation(r: Record<string, unknown>): string {
  const scope = r.owner !== undefined ? ` (tokens of owner ${String(r.owner)})` : r.workload !== undefined ? ` (workload ${String(r.workload)})` : '';
  return `${String(r.kind)} ${String(r.value)}${scope}  revoked ${String(r.revoked_at)} by ${String(r.by)} [${String(r.source)}]: ${String(r.reason)}`;
}

export function register(program: Command): void {
  withConnection(
    program
      .command('revoke')
      .description('revoke tokens on a gateway now, by --jti, --sub (a SPIFFE ID or user:<human>), --owner or --task, through the operator API; --list shows revocations in force')
      .option('--jti <id>', 'revoke the one token with this id')
      .option('--sub <principal>', "a workload's SPIFFE ID: every token of it or acting through it (an owner's token: only their own agents); user:<name>: every token naming that human as owner or in act")
      .option('--owner <name>', 'every token naming this person as owner or anywhere in its act chain')
      .option('--task <id>', "end a task: every agent's tokens for it (an owner's token: only their own agents')")
      .option('--reason <text>', 'why (recorded in the audit log; required to revoke)')
      .option('--list', 'list the revocations in force (an owner sees their own)')
      .option('--json', 'print the API answer as JSON'),
  ).action((opts: RevokeOptions) =>
    runOperatorCommand('revoke', async () => {
      const named = (['jti', 'sub', 'owner', 'task'] as const).filter((k) => opts[k] !== undefined);
      if (opts.list) {
        if (named.length > 0) throw new UsageError('--list takes no --jti, --sub, --owner or --task');
      } else {
        if (named.length !== 1) throw new UsageError('name exactly one of --jti, --sub, --owner or --task (or --list)');
        if (opts.reason === undefined || opts.reason.trim() === '') throw new UsageError('--reason is required: it goes into the audit log');
      }
      const t = await target(opts);
      if (opts.list) {
        const a = await callOperatorApi(t, 'GET', 'v1/revocations');
        if (a.status !== 200) {
          process.stderr.write(`${refusal(a)}\n`);
          return 1;
        }
        const list = (a.body.revocations ?? []) as Record<string, unknown>[];
        if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else process.stdout.write(list.length === 0 ? 'no revocations in force\n' : `${list.map(formatRevocation).join('\n')}\n`);
        return 0;
      }
      const kind = named[0]!;
      const a = await callOperatorApi(t, 'POST', 'v1/revocations', { [kind]: opts[kind], reason: opts.reason });
      if (a.status !== 201) {
        process.stderr.write(`${refusal(a)}\n`);
        return 1;
      }
      const r = a.body.revocation as Record<string, unknown>;
      process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : `revoked: ${formatRevocation(r)}\n`);
      return 0;
    }),
  );
}
