// The operator API (issue 8): HTTPS with a bearer JWT (verifyOperatorToken). Revokes tokens by jti,
// sub or owner and lists revocations. An operator (role `operator`) may revoke anything; an owner
// (role `owner`) only their own agents' tokens: revocations they make are scoped to tokens whose
// `owner` claim is their `sub`, so self-service never needs an administrator and never reaches
// another owner's agents. Every call, accepted or refused, is handed to the audit callbacks.
// Never logs or audits the bearer token: only its sub and jti.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { httpStatusFor, type Reason } from '../core/reasons.js';
import type { TrustedIssuers } from '../identity/issuers.js';
import { verifyOperatorToken, type Operator } from '../identity/operator.js';
import type { TokenRegistry } from '../identity/registry.js';
import { parseRevocationBody, RevocationError, type Revocation, type RevocationRequest, type RevocationStore } from '../identity/revocation.js';
import { pathOf, readBody, sendJson } from './http.js';

export interface OperatorApiDeps {
  trust(): { issuers: TrustedIssuers; audience: string; maxTokenTtlSec: number } | undefined;
  revocations: RevocationStore;
  tokens: TokenRegistry;
  clock: Clock;
  leewaySec: number;
  logger: Logger;
  /** A revocation took effect (audit: revocation record). */
  onRevoked(revocation: Revocation, operator: Operator): void;
  /** A call was refused (audit: who tried what, and the reason code). */
  onRefused(call: { method: string; path: string; remoteAddress: string; operatorSub: string; reason: Reason; detail: string }): void;
}

export interface OperatorApiOptions {
  host: string;
  port: number;
  /** The gateway's server certificate; operators authenticate with a bearer token, not a certificate. */
  tls: { cert: string | Buffer; key: string | Buffer };
}

const MAX_BODY = 4 * 1024;

export async function startOperatorApi(opts: OperatorApiOptions, deps: OperatorApiDeps): Promise<{ port: number; close(): Promise<void> }> {
  const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res, deps).catch((err: unknown) => {
      deps.logger.error({ err: (err as Error).message }, 'operator API handler failed');
      sendJson(res, 500, { error: 'internal error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: OperatorApiDeps): Promise<void> {
  const path = pathOf(req.url);
  const method = req.method ?? '';
  const refuse = (status: number, reason: Reason, detail: string, message: string, operatorSub = ''): void => {
    deps.onRefused({ method, path, remoteAddress: req.socket.remoteAddress ?? '', operatorSub, reason, detail });
    sendJson(res, status, { reason, detail, message });
  };
  if (path !== '/v1/revocations' || (method !== 'POST' && method !== 'GET')) {
    sendJson(res, 404, { error: 'not found' });
    return;
  }
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith('Bearer ')) {
    refuse(401, 'NO_TOKEN', 'NO_BEARER', 'send "Authorization: Bearer <operator JWT>"');
    return;
  }
  const trust = deps.trust();
  if (trust === undefined) {
    refuse(503, 'BUNDLE_UNAVAILABLE', 'NO_BUNDLE', 'no valid policy bundle loaded: cannot verify operator tokens');
    return;
  }
  let operator: Operator;
  try {
    operator = await verifyOperatorToken(auth.slice('Bearer '.length).trim(), {
      issuers: trust.issuers,
      audience: trust.audience,
      maxTtlSec: trust.maxTokenTtlSec,
      leewaySec: deps.leewaySec,
      clock: deps.clock,
      revocations: deps.revocations,
    });
  } catch (err) {
    if (!(err instanceof PlantgateError)) throw err;
    const detail = (err as PlantgateError & { detail?: string }).detail ?? '';
    refuse(httpStatusFor(err.reason), err.reason, detail, err.message);
    return;
  }

  if (method === 'GET') {
    const visible = deps.revocations.list().filter((r) => operator.isOperator || ownedBy(r, operator.sub));
    sendJson(res, 200, { revocations: visible.map(view) });
    return;
  }

  const text = await readBody(req, MAX_BODY);
  if (text === undefined) {
    refuse(413, 'PROTOCOL_VIOLATION', 'BODY_TOO_LARGE', `body larger than ${MAX_BODY} bytes`, operator.sub);
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    refuse(400, 'PROTOCOL_VIOLATION', 'BAD_JSON', 'body is not valid JSON', operator.sub);
    return;
  }
  const parsed = parseRevocationBody(body);
  if (typeof parsed === 'string') {
    refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', parsed, operator.sub);
    return;
  }
  const req2: RevocationRequest = { ...parsed, source: operator.isOperator ? 'operator' : 'owner', by: operator.sub };
  if (!operator.isOperator) {
    // Self-service: an owner's revocation only ever reaches tokens carrying their owner claim.
    if (parsed.kind === 'owner' && parsed.value !== operator.sub) {
      refuse(403, 'SCOPE_MISSING', 'NOT_OWNER', `an owner may revoke only owner "${operator.sub}"; other owners need the operator role`, operator.sub);
      return;
    }
    if (parsed.kind === 'sub') req2.owner = operator.sub;
    if (parsed.kind === 'jti' && !deps.tokens.subjects().some((s) => s.jti === parsed.value && s.owner === operator.sub)) {
      refuse(403, 'SCOPE_MISSING', 'NOT_OWNER', 'an owner may revoke a jti only while a token with that jti and their owner claim is registered here', operator.sub);
      return;
    }
  }
  let revocation: Revocation;
  try {
    revocation = await deps.revocations.revoke(req2);
  } catch (err) {
    if (!(err instanceof RevocationError)) throw err;
    // STORE_UNAVAILABLE after the in-memory effect: tokens are already denied, but say it is not durable.
    refuse(503, 'AUDIT_UNAVAILABLE', err.code, err.message, operator.sub);
    return;
  }
  deps.onRevoked(revocation, operator);
  sendJson(res, 201, { status: 'revoked', revocation: view(revocation) });
}

function ownedBy(r: Revocation, sub: string): boolean {
  return (r.kind === 'owner' && r.value === sub) || r.owner === sub || r.by === sub;
}

function view(r: Revocation): Record<string, unknown> {
  return {
    kind: r.kind,
    value: r.value,
    ...(r.workloadId !== undefined ? { workload: r.workloadId } : {}),
    ...(r.owner !== undefined ? { owner: r.owner } : {}),
    reason: r.reason,
    revoked_at: new Date(r.revokedAtMs).toISOString(),
    source: r.source,
    by: r.by,
  };
}
