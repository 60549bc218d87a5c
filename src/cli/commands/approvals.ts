// `plantgate approvals list|approve|reject`: an operator's side of human approval, on top of the
// gateway's operator API (HTTPS, bearer operator token). Owns argument handling and printing;
// never decides anything itself and never prints the token.
// Exit codes: 0 done, 1 the gateway refused or could not be reached, 2 bad usage (unreadable token
// or CA file, bad URL).
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';

export interface ApiTarget {
  api: string;
  token: string;
  ca?: Buffer;
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

const MAX_ANSWER = 1024 * 1024;

/** One call to the operator API; resolves with the status and JSON body (rejects only on network errors). */
/** A JWT body (static device tokens) is sent as application/jwt; anything else as JSON. */
export function callOperatorApi(target: ApiTarget, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<ApiAnswer> {
  const url = new URL(path, target.api.endsWith('/') ? target.api : `${target.api}/`);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const contentType = typeof body === 'string' ? 'application/jwt' : 'application/json';
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: target.ca,
        headers: {
          authorization: `Bearer ${target.token}`,
          ...(payload !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {}),
        },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER) req.destroy(new Error('answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            parsed = { message: 'answer is not JSON' };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('operator API did not answer within 10 s')));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Bad usage (exit 2): an unreadable token or CA file, a malformed URL or option. */
export class UsageError extends Error {}

/** Reads the --api/--token/--ca options into a target; UsageError names the bad option. */
export async function target(opts: { api: string; token: string; ca?: string }): Promise<ApiTarget> {
  try {
    new URL(opts.api);
  } catch {
    throw new UsageError(`--api ${opts.api}: not a URL (e.g. https://gateway:8443)`);
  }
  let token: string;
  try {
    token = (await readFile(opts.token, 'utf8')).trim();
  } catch (err) {
    throw new UsageError(`--token ${opts.token}: ${(err as Error).message}`);
  }
  let ca: Buffer | undefined;
  if (opts.ca !== undefined) {
    try {
      ca = await readFile(opts.ca);
    } catch (err) {
      throw new UsageError(`--ca ${opts.ca}: ${(err as Error).message}`);
    }
  }
  return { api: opts.api, token, ca };
}

/** One line saying why the gateway refused (HTTP status, reason code, detail, message). */
export function refusal(a: ApiAnswer): string {
  const b = a.body;
  return `refused (HTTP ${a.status}${b.reason ? ` ${String(b.reason)}` : ''}${b.detail ? ` ${String(b.detail)}` : ''}): ${String(b.message ?? b.error ?? '')}`;
}

/** One line per request, then its command: what an operator needs to decide. */
export function formatApproval(a: Record<string, unknown>): string {
  const task = a.task as { id?: string; purpose?: string } | undefined;
  const values = a.values ? ` ${Object.entries(a.values as Record<string, number>).map(([k, v]) => `${k}:=${v}`).join(' ')}` : '';
  const lines = [
    `${String(a.id)}  ${String(a.status)}  ${String(a.asset)} ${String(a.operation)}${values}  [${(a.targets as string[] | undefined)?.join(', ') ?? ''}]`,
    `    agent ${String(a.workload)}  owner ${String(a.owner)}  task ${task?.id ?? ''}: ${task?.purpose ?? ''}`,
    `    rule ${String(a.rule)}  requested ${String(a.requested_at)}  expires ${String(a.expires_at)}`,
  ];
  if (a.decided_by !== undefined) lines.push(`    ${String(a.status)} by ${String(a.decided_by)} at ${String(a.decided_at)}: ${String(a.reason)}`);
  return lines.join('\n');
}

/** Runs an operator command: its exit code, or 2 for a UsageError and 1 for anything else (network). */
export async function runOperatorCommand(name: string, fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    process.stderr.write(`plantgate ${name}: ${(err as Error).message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

const run = (fn: () => Promise<number>): Promise<void> => runOperatorCommand('approvals', fn);

/** The options every operator API command takes. */
export function withConnection(cmd: Command): Command {
  return cmd
    .requiredOption('--api <url>', 'operator API base URL, e.g. https://127.0.0.1:8443')
    .requiredOption('--token <file>', 'file holding the operator JWT (role "operator")')
    .option('--ca <file>', 'CA certificate that signed the gateway certificate (PEM)');
}

export function register(program: Command): void {
  const approvals = program.command('approvals').description('list, approve and reject human-approval requests on a gateway');

  withConnection(approvals.command('list').description('list approval requests (pending by default)'))
    .option('--status <status>', 'pending | approved | rejected | consumed | expired | all', 'pending')
    .option('--json', 'print the API answer as JSON')
    .action((opts: { api: string; token: string; ca?: string; status: string; json?: boolean }) =>
      run(async () => {
        const t = await target(opts);
        const a = await callOperatorApi(t, 'GET', `v1/approvals?status=${encodeURIComponent(opts.status)}`);
        if (a.status !== 200) {
          process.stderr.write(`${refusal(a)}\n`);
          return 1;
        }
        const list = (a.body.approvals ?? []) as Record<string, unknown>[];
        if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else if (list.length === 0) process.stdout.write(`no ${opts.status === 'all' ? '' : `${opts.status} `}approval requests\n`);
        else process.stdout.write(`${list.map(formatApproval).join('\n')}\n`);
        return 0;
      }),
    );

  for (const verb of ['approve', 'reject'] as const) {
    withConnection(
      approvals
        .command(verb)
        .description(verb === 'approve' ? 'approve a pending request: the agent may send that exact command once, shortly' : 'reject a pending request')
        .argument('<id>', 'approval request id (apr-...)'),
    )
      .requiredOption('--reason <text>', 'why (recorded in the audit log)')
      .action((id: string, opts: { api: string; token: string; ca?: string; reason: string }) =>
        run(async () => {
          const t = await target(opts);
          const a = await callOperatorApi(t, 'POST', `v1/approvals/${encodeURIComponent(id)}/${verb}`, { reason: opts.reason });
          if (a.status !== 200) {
            process.stderr.write(`${refusal(a)}\n`);
            return 1;
          }
          const ap = a.body.approval as Record<string, unknown>;
          process.stdout.write(`${verb === 'approve' ? `approved ${id}: grant valid until ${String(ap.grant_expires_at)}` : `rejected ${id}`}\n${formatApproval(ap)}\n`);
          return 0;
        }),
      );
  }
}
