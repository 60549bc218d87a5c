// The operator API (issue 8): HTTPS with a bearer JWT (verifyOperatorToken). Revokes tokens by jti,
// sub (a workload's SPIFFE ID or a human as user:<name>), owner, or task (ending it for every agent)
// and lists revocations. An operator (role `operator`) may revoke anything; an owner (role `owner`)
// only their own agents' tokens and tasks, or themselves: revocations they make are scoped to
// tokens whose `owner` claim is their `sub` (canonical form), so self-service never needs an
// administrator and never reaches another owner's agents. Every call, accepted or refused, is
// handed to the audit callbacks.
// Never logs or audits the bearer token: only its sub and jti.
//
// Approvals (issue 5): GET /v1/approvals lists requests (pending by default, ?status=all|...),
// POST /v1/approvals/{id}/approve and /reject with {"reason": "..."} decide one. Only the operator
// role decides; the store enforces the two-person rule (the approver is not the agent's owner).
//
// Emergency freeze (issue 23): GET|POST /v1/freezes, POST /v1/freezes/{id}/unfreeze (freeze-api.ts).
//
// Bundle (issue 6): GET /v1/bundle (active bundle and last load result) and POST /v1/bundle/reload
// (force a reload, recorded in the audit with who asked); operator role only.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Subject } from '../core/command.js';
import { httpStatusFor, type Reason } from '../core/reasons.js';
import type { TrustedIssuers } from '../identity/issuers.js';
import { verifyOperatorToken, type Operator } from '../identity/operator.js';
import type { TokenRegistry } from '../identity/registry.js';
import { samePrincipal } from '../core/principal.js';
import { isHumanPrincipal, parseRevocationBody, RevocationError, type Revocation, type RevocationRequest, type RevocationStore } from '../identity/revocation.js';
import { ApprovalError, type ApprovalRequest, type ApprovalStatus, type ApprovalStore } from '../approvals/store.js';
import { listen, pathOf, readBody, readJsonBody, sendJson, type HandshakeBounds, type RunningServer } from './http.js';
import { handleFreeze, matchFreezeRoute, type FreezeApiDeps } from './freeze-api.js';
import { createConsole, type ConsoleDeps } from './console/server.js';

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
  /** With the plaintext listener: registers a static-IP device's token (operator role only). */
  registerStaticToken?(workloadId: string, jwt: string): Promise<Subject>;
  onRefused(call: { method: string; path: string; remoteAddress: string; operatorSub: string; reason: Reason; detail: string }): void;
  /** Pending approvals and grants; absent = the approval endpoints answer 404. */
  approvals?: ApprovalStore;
  /** An operator approved or rejected a request, and it is on disk (audit: approval granted/rejected). */
  onApprovalDecided?(request: ApprovalRequest, operator: Operator): void;
  /** Emergency freezes; absent = the freeze endpoints answer 404. */
  freezes?: FreezeApiDeps;
  /** The web console under /console (docs/operator.md); absent = not served. */
  console?: ConsoleDeps;
  /** Bundle status and forced reload; absent = the bundle endpoints answer 404. */
  bundle?: {
    /** JSON of GET /v1/bundle (BundleStatus.view). */
    status(): Record<string, unknown>;
    /** Reloads the configured bundle now, audited with who asked; ok=false keeps the active bundle. */
    reload(by: string): Promise<{ ok: boolean; code?: string; message?: string }>;
  };
}

export interface OperatorApiOptions {
  host: string;
  port: number;
  /**
   * The gateway's server certificate. Operators authenticate with a bearer token; with `ca`, the
   * server also asks for (but does not require) a client certificate, for the console's
   * certificate sign-in.
   */
  tls: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
  handshakes?: HandshakeBounds;
}

const MAX_BODY = 4 * 1024;

export async function startOperatorApi(opts: OperatorApiOptions, deps: OperatorApiDeps): Promise<RunningServer> {
  const web = deps.console === undefined ? undefined : await createConsole(deps, deps.console);
  const clientCerts = opts.tls.ca === undefined ? {} : { ca: opts.tls.ca, requestCert: true, rejectUnauthorized: false };
  const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2', ...clientCerts }, (req, res) => {
    const p = pathOf(req.url);
    const work = web !== undefined && (p === '/' || p === '/favicon.ico' || p === '/console' || p.startsWith('/console/')) ? web.handle(req, res, p) : handle(req, res, deps);
    work.catch((err: unknown) => {
      deps.logger.error({ err: (err as Error).message }, 'operator API handler failed');
      sendJson(res, 500, { error: 'internal error' });
    });
  });
  const running = await listen(server, opts.host, opts.port, opts.handshakes);
  return {
    port: running.port,
    close: async () => {
      web?.close();
      await running.close();
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: OperatorApiDeps): Promise<void> {
  const path = pathOf(req.url);
  const method = req.method ?? '';
  const refuse = (status: number, reason: Reason, detail: string, message: string, operatorSub = ''): void => {
    deps.onRefused({ method, path, remoteAddress: req.socket.remoteAddress ?? '', operatorSub, reason, detail });
    sendJson(res, status, { reason, detail, message });
  };
  const approvalRoute = deps.approvals === undefined ? undefined : matchApprovalRoute(method, path);
  const freezeRoute = deps.freezes === undefined ? undefined : matchFreezeRoute(method, path);
  const bundleRoute =
    deps.bundle === undefined ? undefined : path === '/v1/bundle' && method === 'GET' ? 'status' : path === '/v1/bundle/reload' && method === 'POST' ? 'reload' : undefined;
  const staticWorkload =
    deps.registerStaticToken !== undefined && method === 'PUT' && path.startsWith('/v1/static-tokens/')
      ? decodeURIComponent(path.slice('/v1/static-tokens/'.length))
      : undefined;
  if (
    approvalRoute === undefined &&
    freezeRoute === undefined &&
    bundleRoute === undefined &&
    staticWorkload === undefined &&
    (path !== '/v1/revocations' || (method !== 'POST' && method !== 'GET'))
  ) {
    sendJson(res, 404, {
      error: 'not found',
      message: `no ${method} ${path} here: GET|POST /v1/revocations, GET /v1/approvals, POST /v1/approvals/{id}/approve|reject, GET|POST /v1/freezes, POST /v1/freezes/{id}/unfreeze, GET /v1/bundle, POST /v1/bundle/reload, PUT /v1/static-tokens/{workload} (with the plaintext listener)`,
    });
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

  if (approvalRoute !== undefined) {
    await handleApproval(req, res, deps, deps.approvals!, approvalRoute, operator, refuse);
    return;
  }
  if (freezeRoute !== undefined) {
    await handleFreeze(req, res, deps.freezes!, freezeRoute, operator, refuse);
    return;
  }
  if (bundleRoute !== undefined) {
    await handleBundle(res, deps.bundle!, bundleRoute, operator, refuse);
    return;
  }
  if (staticWorkload !== undefined) {
    if (!operator.isOperator) {
      refuse(403, 'SCOPE_MISSING', 'NOT_OPERATOR', 'registering a static device token needs the operator role', operator.sub);
      return;
    }
    const jwt = (await readBody(req, MAX_BODY))?.trim() ?? '';
    if (jwt === '') {
      refuse(400, 'NO_TOKEN', 'EMPTY_BODY', 'send the device JWT as the request body', operator.sub);
      return;
    }
    try {
      const subject = await deps.registerStaticToken!(staticWorkload, jwt);
      sendJson(res, 200, { status: 'accepted', sub: subject.workloadId, jti: subject.jti, expires_at: new Date(subject.expiresAtMs).toISOString() });
    } catch (err) {
      if (!(err instanceof PlantgateError)) throw err;
      const detail = (err as PlantgateError & { detail?: string }).detail ?? '';
      refuse(httpStatusFor(err.reason), err.reason, detail, err.message, operator.sub);
    }
    return;
  }

  if (method === 'GET') {
    const visible = deps.revocations.list().filter((r) => operator.isOperator || ownedBy(r, operator.sub));
    sendJson(res, 200, { revocations: visible.map(view) });
    return;
  }

  const body = await readJsonBody(req, MAX_BODY);
  if (!('value' in body)) {
    refuse(body.status, 'PROTOCOL_VIOLATION', body.detail, body.message, operator.sub);
    return;
  }
  const parsed = parseRevocationBody(body.value);
  if (typeof parsed === 'string') {
    refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', parsed, operator.sub);
    return;
  }
  const req2: RevocationRequest = { ...parsed, source: operator.isOperator ? 'operator' : 'owner', by: operator.sub };
  if (!operator.isOperator) {
    // Self-service: an owner's revocation only ever reaches tokens carrying their owner claim (or
    // naming them: an owner may revoke themselves, as owner or as user:<name>, chain and all).
    const human = parsed.kind === 'owner' || (parsed.kind === 'sub' && isHumanPrincipal(parsed.value));
    if (human && !samePrincipal(parsed.value, operator.sub)) {
      refuse(403, 'SCOPE_MISSING', 'NOT_OWNER', `an owner may revoke only themselves ("${operator.sub}"); other people need the operator role`, operator.sub);
      return;
    }
    // An owner ends a workload's tokens, or a task, only where they carry the owner's claim.
    if ((parsed.kind === 'sub' && !human) || parsed.kind === 'task') req2.owner = operator.sub;
    if (parsed.kind === 'jti' && !deps.tokens.subjects().some((s) => s.jti === parsed.value && samePrincipal(s.owner, operator.sub))) {
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
  return ((r.kind === 'owner' || r.kind === 'sub') && samePrincipal(r.value, sub)) || (r.owner !== undefined && samePrincipal(r.owner, sub)) || samePrincipal(r.by, sub);
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

// ---- bundle ----

async function handleBundle(
  res: ServerResponse,
  bundle: NonNullable<OperatorApiDeps['bundle']>,
  route: 'status' | 'reload',
  operator: Operator,
  refuse: Refuse,
): Promise<void> {
  // What policy is in force is the operator role's business; the owner role is revocation self-service only.
  if (!operator.isOperator) {
    refuse(403, 'SCOPE_MISSING', 'NOT_OPERATOR', `the bundle endpoints need the "operator" role; token roles are [${operator.roles.join(', ')}]`, operator.sub);
    return;
  }
  if (route === 'status') {
    sendJson(res, 200, { bundle: bundle.status() });
    return;
  }
  const result = await bundle.reload(operator.sub);
  if (result.ok) {
    sendJson(res, 200, { status: 'loaded', bundle: bundle.status() });
    return;
  }
  // The previous bundle (if any) stays active: a bad file never replaces a good policy.
  sendJson(res, 422, {
    status: 'refused',
    reason: 'BUNDLE_UNAVAILABLE',
    detail: result.code ?? '',
    message: `the configured bundle was refused (${result.code ?? ''}: ${result.message ?? ''}); the active bundle is unchanged`,
    bundle: bundle.status(),
  });
}

// ---- approvals ----

type ApprovalRoute = { kind: 'list' } | { kind: 'approve' | 'reject'; id: string };
const APPROVAL_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const LIST_STATUSES = new Set(['pending', 'approved', 'rejected', 'consumed', 'expired', 'all']);

function matchApprovalRoute(method: string, path: string): ApprovalRoute | undefined {
  if (path === '/v1/approvals' && method === 'GET') return { kind: 'list' };
  const m = /^\/v1\/approvals\/([^/]+)\/(approve|reject)$/.exec(path);
  if (m && method === 'POST' && APPROVAL_ID_RE.test(m[1]!)) return { kind: m[2] as 'approve' | 'reject', id: m[1]! };
  return undefined;
}

type Refuse = (status: number, reason: Reason, detail: string, message: string, operatorSub?: string) => void;

const APPROVAL_ERROR_STATUS: Record<ApprovalError['code'], [number, Reason]> = {
  NOT_FOUND: [404, 'APPROVAL_INVALID'],
  NOT_PENDING: [409, 'APPROVAL_INVALID'],
  EXPIRED: [409, 'APPROVAL_INVALID'],
  SAME_PERSON: [403, 'APPROVAL_INVALID'],
  ALREADY_APPROVED: [409, 'APPROVAL_INVALID'],
  BAD_REASON: [400, 'PROTOCOL_VIOLATION'],
  STORE_UNAVAILABLE: [503, 'AUDIT_UNAVAILABLE'],
};

async function handleApproval(
  req: IncomingMessage,
  res: ServerResponse,
  deps: OperatorApiDeps,
  approvals: ApprovalStore,
  route: ApprovalRoute,
  operator: Operator,
  refuse: Refuse,
): Promise<void> {
  // Deciding what reaches a PLC is the operator role's alone: an owner role is self-service for revocation only.
  if (!operator.isOperator) {
    refuse(403, 'SCOPE_MISSING', 'NOT_OPERATOR', `approvals need the "operator" role; token roles are [${operator.roles.join(', ')}]`, operator.sub);
    return;
  }
  const now = deps.clock.now();
  if (route.kind === 'list') {
    const q = new URL(req.url ?? '/', 'https://x').searchParams.get('status') ?? 'pending';
    if (!LIST_STATUSES.has(q)) {
      refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', `status must be one of ${[...LIST_STATUSES].join(', ')}`, operator.sub);
      return;
    }
    sendJson(res, 200, { approvals: approvals.list(now, { status: q as ApprovalStatus | 'all' }).map(approvalView) });
    return;
  }
  const body = await readJsonBody(req, MAX_BODY);
  if (!('value' in body)) {
    refuse(body.status, 'PROTOCOL_VIOLATION', body.detail, body.message, operator.sub);
    return;
  }
  const reason = (body.value as { reason?: unknown } | null)?.reason;
  if (typeof reason !== 'string') {
    refuse(400, 'PROTOCOL_VIOLATION', 'BAD_REQUEST', 'body must be {"reason": "..."}', operator.sub);
    return;
  }
  let decided: ApprovalRequest;
  try {
    decided = route.kind === 'approve' ? await approvals.approve(route.id, operator.sub, reason, now) : await approvals.reject(route.id, operator.sub, reason, now);
  } catch (err) {
    if (!(err instanceof ApprovalError)) throw err;
    const [status, r] = APPROVAL_ERROR_STATUS[err.code];
    refuse(status, r, err.code, err.message, operator.sub);
    return;
  }
  deps.onApprovalDecided?.(decided, operator);
  sendJson(res, 200, { status: decided.status, approval: approvalView(decided) });
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/** What an operator sees of a request: the command, who asks and why, and its state. Never a token. */
export function approvalView(r: ApprovalRequest): Record<string, unknown> {
  return {
    id: r.id,
    status: r.status,
    digest: r.digest,
    rule: r.ruleId,
    asset: r.assetId,
    operation: r.operation,
    targets: r.targets,
    points: r.points,
    ...(r.values !== undefined ? { values: r.values } : {}),
    ...(r.rawValues !== undefined ? { raw_values: r.rawValues } : {}),
    workload: r.workloadId,
    owner: r.owner,
    task: { id: r.taskId, purpose: r.taskPurpose },
    ...(r.actSub !== undefined ? { act: r.actSub } : {}),
    approvers_required: r.approvers ?? 1,
    distinct_from: r.distinctFrom ?? ['owner', 'requester'],
    approvals: (r.approvals ?? []).map((a) => ({ by: a.by, at: iso(a.atMs), reason: a.reason })),
    requested_at: iso(r.requestedAtMs),
    expires_at: iso(r.expiresAtMs),
    ...(r.decidedBy !== undefined ? { decided_by: r.decidedBy, decided_at: iso(r.decidedAtMs), reason: r.reason } : {}),
    ...(r.grantExpiresAtMs !== undefined ? { grant_expires_at: iso(r.grantExpiresAtMs) } : {}),
    ...(r.consumedAtMs !== undefined ? { consumed_at: iso(r.consumedAtMs) } : {}),
  };
}
