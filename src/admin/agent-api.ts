// The agent API: HTTPS with the agent's own mTLS identity. Modbus has no place for a token, so an
// agent PUTs its current JWT here; the token intake verifies, records and binds it to the
// certificate's SPIFFE ID, and it is used for every command on that identity's connections until
// it expires or is replaced.
// Never logs or audits the token itself: only its jti and claims.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { httpStatusFor } from '../core/reasons.js';
import { identityFromTlsSocket } from '../identity/cert.js';
import { detailOf, type Presenter, type TokenIntake } from '../identity/intake.js';
import type { TokenRegistry } from '../identity/registry.js';
import { RevocationError, type Revocation, type RevocationStore } from '../identity/revocation.js';
import { listen, pathOf, readBody as readBounded, sendJson, type HandshakeBounds, type RunningServer } from './http.js';
import type { RecentDecisions } from './recent-decisions.js';

/** What the agent API needs from the gateway: the token intake and registry, revocations, recent decisions. */
export interface AgentApiDeps {
  /** Verifies, checks, records and registers a PUT token (src/identity/intake.ts). */
  intake: Pick<TokenIntake, 'register' | 'refused'>;
  tokens: TokenRegistry;
  logger: Logger;
  /** Revocations (task-complete). Without it, task-complete answers 503: never a silent no-op. */
  revocations?: RevocationStore;
  /** A task-complete call revoked the task's tokens (audit: revocation record). */
  onTaskCompleted?(workloadId: string, revocation: Revocation): void;
  /** The identities' own recent decisions (GET /v1/decisions). Without it that call answers 503. */
  recentDecisions?: RecentDecisions;
}

const MAX_BODY = 16 * 1024;

export interface AgentApiOptions {
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  handshakes?: HandshakeBounds;
}

export async function startAgentApi(opts: AgentApiOptions, deps: AgentApiDeps): Promise<RunningServer> {
  const server = https.createServer(
    { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => {
      handle(req, res, deps).catch((err: unknown) => {
        deps.logger.error({ err: (err as Error).message }, 'agent API handler failed');
        send(res, 500, { error: 'internal error' });
      });
    },
  );
  return listen(server, opts.host, opts.port, opts.handshakes);
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): Promise<void> {
  const url = pathOf(req.url);
  if (url === '/v1/token' && req.method === 'PUT') return putToken(req, res, deps);
  if (url === '/v1/task-complete' && req.method === 'POST') return taskComplete(req, res, deps);
  if (url === '/v1/decisions' && req.method === 'GET') return decisions(req, res, deps);
  send(res, 404, { error: 'not found', message: `no ${req.method ?? ''} ${url} here: PUT /v1/token, POST /v1/task-complete, GET /v1/decisions` });
}

/**
 * The calling identity's own recent decisions, newest first, with their reason codes: how an agent
 * learns why it was refused. Only ever the caller's own (keyed by its certificate's SPIFFE ID).
 */
function decisions(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): void {
  const identity = callerIdentity(req, res);
  if (identity === undefined) return;
  const recent = deps.recentDecisions;
  if (recent === undefined) {
    send(res, 503, { error: 'unavailable', message: 'this gateway does not keep recent decisions' });
    return;
  }
  const raw = new URL(req.url ?? '/', 'https://x').searchParams.get('limit');
  const limit = raw === null ? 20 : /^[0-9]{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (!(limit >= 1 && limit <= recent.perWorkload)) {
    send(res, 400, { reason: 'PROTOCOL_VIOLATION', detail: 'BAD_LIMIT', message: `limit must be an integer from 1 to ${recent.perWorkload}, got "${raw ?? ''}"` });
    return;
  }
  send(res, 200, { workload: identity.workloadId, decisions: recent.list(identity.workloadId, limit) });
}

/**
 * The task is over: every token issued for it dies now, not when its TTL runs out (just-in-time
 * access), the other agents' working on it for the same owner too. The task is the body's
 * `{"task": "<id>"}` or, without a body, the task of the identity's current token; the owner is
 * the current token's (without a token, only the calling identity's tokens are touched).
 */
async function taskComplete(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): Promise<void> {
  const identity = callerIdentity(req, res);
  if (identity === undefined) return;
  const body = await readBody(req);
  if (body === undefined) {
    send(res, 413, { reason: 'PROTOCOL_VIOLATION', message: `body larger than ${MAX_BODY} bytes` });
    return;
  }
  const current = deps.tokens.peek(identity.workloadId);
  let taskId = current?.taskId;
  if (body.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
    const t = (parsed as { task?: unknown } | undefined)?.task;
    if (typeof t !== 'string' || t === '' || t.length > 256) {
      send(res, 400, { reason: 'PROTOCOL_VIOLATION', message: 'body must be {"task": "<task id>"} or empty (the current token\'s task)' });
      return;
    }
    taskId = t;
  }
  if (taskId === undefined) {
    send(res, 400, { reason: 'NO_TOKEN', message: 'no token registered for this identity: name the task as {"task": "<task id>"}' });
    return;
  }
  if (deps.revocations === undefined) {
    send(res, 503, { reason: 'BUNDLE_UNAVAILABLE', message: 'revocation is not available on this gateway' });
    return;
  }
  try {
    const revocation = await deps.revocations.revoke({
      kind: 'task',
      value: taskId,
      ...(current !== undefined && current.owner !== '' ? { owner: current.owner } : { workloadId: identity.workloadId }),
      reason: 'task complete',
      source: 'agent',
      by: identity.workloadId,
    });
    deps.onTaskCompleted?.(identity.workloadId, revocation);
    send(res, 200, { status: 'revoked', task: taskId, revoked_at: new Date(revocation.revokedAtMs).toISOString() });
  } catch (err) {
    if (!(err instanceof RevocationError)) throw err;
    send(res, 503, { reason: 'AUDIT_UNAVAILABLE', detail: err.code, message: err.message });
  }
}

async function putToken(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): Promise<void> {
  const identity = callerIdentity(req, res);
  if (identity === undefined) return;
  const who: Presenter = { workloadId: identity.workloadId, certThumbprint: identity.thumbprint, assurance: 'mtls+token' };
  if (identity.role !== undefined) who.certRole = identity.role;
  const body = await readBody(req);
  if (body === undefined) {
    send(res, 413, { reason: 'TOKEN_INVALID', message: `token body larger than ${MAX_BODY} bytes` });
    return;
  }
  const token = extractToken(body, req.headers['content-type']);
  if (token === '') {
    deps.intake.refused(who, 'NO_TOKEN', 'EMPTY_BODY');
    send(res, 400, { reason: 'NO_TOKEN', message: 'send the JWT as the request body (application/jwt) or as {"token": "..."}' });
    return;
  }
  try {
    const subject = await deps.intake.register(token, who, deps.tokens);
    send(res, 200, {
      status: 'accepted',
      sub: subject.workloadId,
      jti: subject.jti,
      task: subject.taskId,
      expires_at: new Date(subject.expiresAtMs).toISOString(),
    });
  } catch (err) {
    if (!(err instanceof PlantgateError)) throw err;
    send(res, httpStatusFor(err.reason), { reason: err.reason, detail: detailOf(err), message: err.message });
  }
}

function extractToken(body: string, contentType: string | undefined): string {
  if (contentType?.startsWith('application/json')) {
    try {
      const parsed = JSON.parse(body) as { token?: unknown };
      return typeof parsed.token === 'string' ? parsed.token.trim() : '';
    } catch {
      return '';
    }
  }
  return body.trim();
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return readBounded(req, MAX_BODY);
}

/** The caller's certificate identity, or undefined after answering 401 NO_IDENTITY. */
function callerIdentity(req: IncomingMessage, res: ServerResponse): ReturnType<typeof identityFromTlsSocket> | undefined {
  try {
    return identityFromTlsSocket(req.socket as TLSSocket);
  } catch (err) {
    send(res, 401, { reason: 'NO_IDENTITY', message: (err as Error).message });
    return undefined;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body);
}
