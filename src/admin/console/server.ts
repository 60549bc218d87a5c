// The web console (docs/operator.md, "Web console"), served by the operator API under /console on
// the same HTTPS listener: sign-in (operator token or operator client certificate) → session
// cookie; pages rendered on the server; live decisions over server-sent events; forms that call
// the same stores and audit callbacks as the JSON API (approve/reject, freeze/unfreeze, revoke).
// Owns routing, session and CSRF checks, security headers and the static files. Never renders an
// unescaped value, never serves inline script, never keeps a bearer token.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { ApprovalError, excludedReason, type ApprovalRequest } from '../../approvals/store.js';
import { CHECKPOINT_DIR, checkpointFileName, type AuditLog } from '../../audit/log.js';
import { PlantgateError } from '../../core/errors.js';
import { samePrincipal } from '../../core/principal.js';
import { parseFreezeBody, parseReason } from '../../freeze/request.js';
import { FreezeError } from '../../freeze/store.js';
import { identityFromTlsSocket } from '../../identity/cert.js';
import { verifyOperatorToken, type Operator } from '../../identity/operator.js';
import { parseRevocationBody, RevocationError } from '../../identity/revocation.js';
import { freezeRefusal } from '../freeze-api.js';
import { readBody } from '../http.js';
import type { OperatorApiDeps } from '../operator-api.js';
import { DecisionFeed, filterFrom, type DecisionRow } from './feed.js';
import type { Html } from './html.js';
import {
  agentsPage,
  approvalsPage,
  auditPage,
  bundlePage,
  decisionsPage,
  freezesPage,
  loginPage,
  plcsPage,
  type Chrome,
  type InputRow,
  type PageName,
  type Rows,
  type UpstreamRow,
} from './pages.js';
import { cookies, LOGIN_COOKIE, randomToken, sameOrigin, sameSecret, SESSION_COOKIE, SessionStore, setCookie, type ConsoleOperator, type ConsoleSession } from './sessions.js';
import { cosignatureTimes } from './witness.js';

export interface CertificateOperator {
  /** The SPIFFE ID in the operator's client certificate (issued by the gateway's tls.ca). */
  spiffe_id: string;
  /** The operator's name, as an operator token's `sub` would carry it. */
  name: string;
  roles: string[];
}

export interface ConsoleDeps {
  audit: AuditLog;
  sessionTtlSec: number;
  certificateOperators: CertificateOperator[];
  /** What the active bundle changed against the one before it (since this gateway started). */
  bundleChanges(): { from: number; to: number; lines: string[] } | undefined;
  upstreams(): UpstreamRow[];
  interlockInputs(): InputRow[] | 'broken' | undefined;
  /** Asset ids of the active bundle (filters, freeze form). */
  assetIds(): string[];
}

const STATIC_FILES = { 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8' } as const;
type StaticName = keyof typeof STATIC_FILES;

/** The static/ directory: next to this file in the source tree, or the package's src/ when built into dist/. */
function staticDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let d = here; d !== path.dirname(d); d = path.dirname(d)) {
    const candidate = path.join(d, 'src', 'admin', 'console', 'static');
    if (existsSync(path.join(d, 'package.json')) && existsSync(candidate)) return candidate;
  }
  return path.join(here, 'static');
}

// Strict: scripts, styles and connections only from this origin; no inline anything, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SECURITY_HEADERS = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  // Not no-referrer: with it, browsers send "Origin: null" on our own form posts, and the origin
  // check could no longer tell them from a forged cross-site post.
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000',
};
const MAX_FORM = 16 * 1024;
const MAX_WATCHERS = 32;
/** An SSE client that lets this much pile up unread is dropped (bounded memory per client). */
const MAX_UNSENT = 256 * 1024;

export interface Console {
  handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void>;
  close(): void;
}

export async function createConsole(api: OperatorApiDeps, deps: ConsoleDeps): Promise<Console> {
  const files = new Map<StaticName, { body: Buffer; url: string }>();
  const dir = staticDir();
  for (const name of Object.keys(STATIC_FILES) as StaticName[]) {
    const body = await readFile(path.join(dir, name));
    // Content-hashed URLs: cacheable for good, and a new version is a new URL.
    files.set(name, { body, url: `/console/static/${createHash('sha256').update(body).digest('hex').slice(0, 12)}/${name}` });
  }
  const css = files.get('console.css')!.url;
  const js = files.get('console.js')!.url;
  const sessions = new SessionStore(api.clock, deps.sessionTtlSec);
  const feed = new DecisionFeed(deps.audit, api.logger);
  const streams = new Set<ServerResponse>();
  const certOperators = new Map(deps.certificateOperators.map((o) => [o.spiffe_id, o]));

  const send = (res: ServerResponse, status: number, body: string | Buffer | Html, type = 'text/html; charset=utf-8', extra: Record<string, string | string[]> = {}): void => {
    if (res.headersSent) return;
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(String(body));
    res.writeHead(status, { ...SECURITY_HEADERS, 'cache-control': 'no-store', 'content-type': type, 'content-length': buf.length, ...extra });
    res.end(buf);
  };
  const redirect = (res: ServerResponse, to: string, extra: Record<string, string | string[]> = {}): void => {
    if (res.headersSent) return;
    res.writeHead(303, { ...SECURITY_HEADERS, 'cache-control': 'no-store', location: to, 'content-length': 0, ...extra });
    res.end();
  };
  const flash = (s: ConsoleSession, ok: boolean, text: string) => {
    s.flash = { ok, text };
  };

  /** The session's operator, still valid: a revoked operator token (or person) ends the session. */
  const live = (s: ConsoleSession): boolean => {
    const o = s.operator;
    const revoked = api.revocations.isRevoked({
      workloadId: o.sub, owner: o.sub, taskId: '', taskPurpose: '', jti: o.jti || `session:${s.id}`, roles: o.roles, scopes: [],
      assurance: 'none', issuer: o.issuer, expiresAtMs: s.expiresAtMs, issuedAtMs: s.createdAtMs,
    });
    if (revoked !== undefined) sessions.delete(s.id);
    return revoked === undefined;
  };
  const asOperator = (o: ConsoleOperator): Operator => ({ sub: o.sub, roles: o.roles, isOperator: o.isOperator, jti: o.jti, issuer: o.issuer, expiresAtMs: 0, issuedAtMs: 0 });
  const refused = (s: ConsoleSession, method: string, p: string, req: IncomingMessage, reason: Parameters<OperatorApiDeps['onRefused']>[0]['reason'], detail: string): void =>
    api.onRefused({ method, path: p, remoteAddress: req.socket.remoteAddress ?? '', operatorSub: s.operator.sub, reason, detail });

  const startSession = (res: ServerResponse, operator: ConsoleOperator): void => {
    const s = sessions.create(operator);
    api.logger.info({ operator: operator.sub, via: operator.via }, 'console sign-in');
    redirect(res, '/console/decisions', { 'set-cookie': [setCookie(SESSION_COOKIE, s.id, sessions.maxAgeSec(s)), setCookie(LOGIN_COOKIE, '', 0)] });
  };
  const showLogin = (res: ServerResponse, status = 200, error?: string): void => {
    const csrf = randomToken();
    send(res, status, loginPage({ css, js, csrf, error, certificates: certOperators.size > 0 }), undefined, { 'set-cookie': setCookie(LOGIN_COOKIE, csrf, 900) });
  };
  const form = async (req: IncomingMessage): Promise<URLSearchParams | undefined> => {
    const text = await readBody(req, MAX_FORM);
    return text === undefined ? undefined : new URLSearchParams(text);
  };

  const chrome = (s: ConsoleSession): Chrome => {
    const now = api.clock.now();
    const c: Chrome = { session: { ...s }, frozen: api.freezes?.freezes.active(now) ?? [], css, js, nowMs: now };
    // A flash is shown once.
    delete s.flash;
    return c;
  };

  // ---- pages ----

  const pages: Record<PageName, (s: ConsoleSession, req: IncomingMessage) => Promise<Html>> = {
    decisions: async (s, req) => {
      const f = filterFrom(new URL(req.url ?? '/', 'https://x').searchParams);
      return decisionsPage(chrome(s), await feed.recent(f), f, deps.assetIds());
    },
    approvals: async (s) => {
      const now = api.clock.now();
      const all = api.approvals?.list(now, { status: 'all' }) ?? [];
      const me = s.operator.sub;
      // The store's own rule (excludedReason): requester always, owner unless the rule left them out.
      const blocked = (r: ApprovalRequest): string | undefined => {
        const excluded = excludedReason(r, me);
        if (excluded !== undefined) return `you ${excluded.replace(/^is /, 'are ')}`;
        if ((r.approvals ?? []).some((a) => samePrincipal(a.by, me))) return 'you approved it already';
        return s.operator.isOperator ? undefined : 'deciding approvals needs the operator role';
      };
      return approvalsPage(chrome(s), all.filter((r) => r.status === 'pending'), all.filter((r) => r.status !== 'pending').slice(0, 20), blocked);
    },
    freezes: async (s) => {
      const now = api.clock.now();
      const fz = api.freezes;
      return freezesPage(chrome(s), fz?.freezes.active(now) ?? [], fz?.freezes.recentlyLifted(now) ?? [], fz?.freezes.unfreezeQuorum ?? 1, deps.assetIds());
    },
    agents: async (s) => {
      const now = api.clock.now();
      const tokens = api.tokens.subjects().map((t) => {
        const state = api.tokens.check(t);
        return {
          workload: t.workloadId, owner: t.owner, task: t.taskId, purpose: t.taskPurpose, jti: t.jti, scopes: t.scopes, assurance: t.assurance, expiresAtMs: t.expiresAtMs,
          state: typeof state === 'string' ? state : t.expiresAtMs <= now ? 'TOKEN_EXPIRED' : 'live',
        };
      });
      const revs = api.revocations.list().map((r) => ({ kind: r.kind, value: r.value, reason: r.reason, revoked_at: new Date(r.revokedAtMs).toISOString(), by: r.by, source: r.source }));
      return agentsPage(chrome(s), tokens, revs);
    },
    bundle: async (s) => {
      const v = (api.bundle?.status() ?? {}) as { state?: string; active?: Record<string, unknown> | null; last_load?: Record<string, unknown> | null };
      const a = v.active;
      const status: Rows = a
        ? [['state', String(v.state)], ['name', String(a.name)], ['revision', String(a.revision)], ['digest (SHA-256)', String(a.digest)], ['signer key id', String(a.key_id)], ['issued', String(a.issued_at)], ['valid', `${String(a.not_before)} – ${String(a.expires_at)}`], ['source', String(a.source)], ['loaded', String(a.loaded_at)]]
        : [['state', String(v.state ?? 'none')]];
      const l = v.last_load;
      const last: Rows = l ? Object.entries(l).map(([k, x]) => [k, String(x)]) : [['last load', 'none']];
      return bundlePage(chrome(s), status, last, deps.bundleChanges());
    },
    audit: async (s) => {
      const now = api.clock.now();
      const st = deps.audit.stats();
      const spool: Rows = [
        ['records written', String(st.nextSeq)],
        ['durable up to', `seq ${st.durableSeq - 1}`],
        ['acknowledged by the collector', st.ackedSeq < 0 ? 'nothing yet' : `seq ${st.ackedSeq}`],
        ['spool lag (not yet acknowledged)', `${Math.max(0, st.nextSeq - 1 - st.ackedSeq)} records`],
        ['spool size', `${st.bytes} bytes in ${st.segments} segments`],
        ['state', st.failed ? 'FAILED: every command is denied AUDIT_UNAVAILABLE' : 'ok'],
      ];
      const cp = deps.audit.latestCheckpoint();
      const made = cp === undefined ? undefined : await checkpointTime(deps.audit.dir, cp.size);
      const checkpoint: Rows =
        cp === undefined
          ? [['checkpoint', 'none yet (is audit.key_file configured?)']]
          : [['tree size', String(cp.size)], ['signed', made === undefined ? 'unknown' : `${new Date(made).toISOString()} (${Math.round((now - made) / 1000)} s ago)`]];
      const cosigned = cp === undefined ? [] : cosignatureTimes(cp.note);
      const witness: Rows =
        cosigned.length === 0
          ? [['cosignature', 'none on the last checkpoint']]
          : cosigned.map((c): [string, string] => [c.name, `cosigned ${new Date(c.atMs).toISOString()} (${Math.round((now - c.atMs) / 1000)} s ago)`]);
      return auditPage(chrome(s), spool, checkpoint, witness);
    },
    plcs: async (s) => plcsPage(chrome(s), deps.upstreams(), deps.interlockInputs()),
  };

  // ---- actions (POST, session + CSRF) ----

  const actions: Array<[RegExp, (s: ConsoleSession, body: URLSearchParams, m: RegExpExecArray, req: IncomingMessage) => Promise<string>]> = [
    [
      /^\/console\/approvals\/(apr-[A-Za-z0-9_-]{1,64})\/decide$/,
      async (s, body, m, req) => {
        const verdict = body.get('verdict');
        const reason = body.get('reason') ?? '';
        if (api.approvals === undefined || (verdict !== 'approve' && verdict !== 'reject')) {
          flash(s, false, 'choose Approve or Reject');
          return '/console/approvals';
        }
        if (!s.operator.isOperator) {
          refused(s, 'POST', `/console/approvals/${m[1]}/${verdict}`, req, 'SCOPE_MISSING', 'NOT_OPERATOR');
          flash(s, false, 'deciding approvals needs the operator role');
          return '/console/approvals';
        }
        try {
          const now = api.clock.now();
          const r = verdict === 'approve' ? await api.approvals.approve(m[1]!, s.operator.sub, reason, now) : await api.approvals.reject(m[1]!, s.operator.sub, reason, now);
          api.onApprovalDecided?.(r, asOperator(s.operator));
          const more = (r.approvers ?? 1) - (r.approvals ?? []).length;
          flash(
            s,
            true,
            verdict === 'reject'
              ? `Rejected ${r.id}.`
              : r.status === 'pending'
                ? `Approved ${r.id}: ${more} more approval(s) from other people needed.`
                : `Approved ${r.id}: the agent may send that exact command once, until ${new Date(r.grantExpiresAtMs ?? 0).toISOString()}.`,
          );
        } catch (err) {
          if (!(err instanceof ApprovalError)) throw err;
          refused(s, 'POST', `/console/approvals/${m[1]}/${verdict}`, req, 'APPROVAL_INVALID', err.code);
          flash(s, false, `${err.code}: ${err.message}`);
        }
        return '/console/approvals';
      },
    ],
    [
      /^\/console\/freezes$/,
      async (s, body, _m, req) => {
        const fz = api.freezes;
        if (fz === undefined) return '/console/freezes';
        const scope = body.get('scope') ?? '';
        const exp = body.get('expires_in_sec');
        const request: Record<string, unknown> = { reason: body.get('reason') ?? '', mode: body.get('mode') ?? 'writes' };
        if (scope === 'site') request.site = true;
        else if (scope === 'asset' || scope === 'workload' || scope === 'owner') request[scope] = body.get('value') ?? '';
        if (exp) request.expires_in_sec = Number(exp);
        const now = api.clock.now();
        const parsed = parseFreezeBody(request, now, fz.assetIds());
        if (typeof parsed === 'string') {
          flash(s, false, parsed);
          return '/console/freezes';
        }
        const notAllowed = freezeRefusal(asOperator(s.operator), parsed.scope, parsed.value);
        if (notAllowed !== undefined) {
          refused(s, 'POST', '/console/freezes', req, 'SCOPE_MISSING', 'NOT_OPERATOR');
          flash(s, false, notAllowed);
          return '/console/freezes';
        }
        try {
          const f = await fz.freezes.freeze({ ...parsed, by: s.operator.sub }, now);
          flash(s, true, `Frozen (${f.id}): ${f.scope === 'site' ? 'the whole site' : `${f.scope} ${f.value}`}. The next command is refused EMERGENCY_FREEZE.`);
        } catch (err) {
          if (!(err instanceof FreezeError)) throw err;
          flash(s, false, `${err.code}: ${err.message}`);
        }
        return '/console/freezes';
      },
    ],
    [
      /^\/console\/freezes\/(frz-[A-Za-z0-9_-]{1,32})\/unfreeze$/,
      async (s, body, m, req) => {
        const fz = api.freezes;
        const reason = parseReason(body.get('reason'));
        if (fz === undefined || reason === undefined) {
          flash(s, false, 'a reason is required: it goes into the audit log');
          return '/console/freezes';
        }
        if (!s.operator.isOperator) {
          refused(s, 'POST', `/console/freezes/${m[1]}/unfreeze`, req, 'SCOPE_MISSING', 'NOT_OPERATOR');
          flash(s, false, 'lifting a freeze needs the operator role');
          return '/console/freezes';
        }
        try {
          const r = await fz.freezes.unfreeze(m[1]!, s.operator.sub, reason);
          flash(s, true, r.status === 'lifted' ? `Unfrozen: ${r.freeze.id} is lifted.` : `Two-person rule: ${r.freeze.unfreezeVotes.length} of ${r.needed} operators have asked; ${r.freeze.id} holds until another operator unfreezes it.`);
        } catch (err) {
          if (!(err instanceof FreezeError)) throw err;
          flash(s, false, `${err.code}: ${err.message}`);
        }
        return '/console/freezes';
      },
    ],
    [
      /^\/console\/revocations$/,
      async (s, body, _m, req) => {
        const kind = body.get('kind');
        const parsed = parseRevocationBody(kind === 'jti' || kind === 'sub' ? { [kind]: body.get('value') ?? '', reason: body.get('reason') ?? '' } : {});
        if (typeof parsed === 'string') {
          flash(s, false, parsed);
          return '/console/agents';
        }
        if (!s.operator.isOperator) {
          refused(s, 'POST', '/console/revocations', req, 'SCOPE_MISSING', 'NOT_OPERATOR');
          flash(s, false, 'revoking from the console needs the operator role');
          return '/console/agents';
        }
        try {
          const r = await api.revocations.revoke({ ...parsed, source: 'operator', by: s.operator.sub });
          api.onRevoked(r, asOperator(s.operator));
          flash(s, true, `Revoked ${r.kind} ${r.value}: its next command is refused TOKEN_REVOKED.`);
        } catch (err) {
          if (!(err instanceof RevocationError)) throw err;
          flash(s, false, `${err.code}: ${err.message}`);
        }
        return '/console/agents';
      },
    ],
  ];

  const streamDecisions = (req: IncomingMessage, res: ServerResponse): void => {
    if (streams.size >= MAX_WATCHERS) {
      send(res, 503, 'too many live streams', 'text/plain; charset=utf-8');
      return;
    }
    const f = filterFrom(new URL(req.url ?? '/', 'https://x').searchParams);
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(': live decisions\n\n');
    streams.add(res);
    const stop = feed.watch(f, (row: DecisionRow) => {
      if (res.writableLength > MAX_UNSENT) {
        // A stalled browser: drop it rather than buffer for it (it reconnects and reloads).
        res.destroy();
        return;
      }
      res.write(`event: decision\nid: ${row.seq}\ndata: ${JSON.stringify(row)}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    heartbeat.unref();
    res.on('close', () => {
      clearInterval(heartbeat);
      streams.delete(res);
      stop();
    });
  };

  return {
    handle: async (req, res, p) => {
      const method = req.method ?? 'GET';
      if (p === '/favicon.ico') {
        send(res, 204, '', 'image/x-icon');
        return;
      }
      if (p === '/' || p === '/console' || p === '/console/') {
        redirect(res, '/console/decisions');
        return;
      }
      const st = /^\/console\/static\/[0-9a-f]{12}\/([a-z.]+)$/.exec(p);
      if (st && method === 'GET') {
        const file = files.get(st[1] as StaticName);
        if (file === undefined || file.url !== p) {
          send(res, 404, 'not found', 'text/plain; charset=utf-8');
          return;
        }
        send(res, 200, file.body, STATIC_FILES[st[1] as StaticName], { 'cache-control': 'public, max-age=31536000, immutable' });
        return;
      }
      if (p === '/console/login') {
        if (method === 'GET') {
          showLogin(res);
          return;
        }
        if (method !== 'POST') {
          send(res, 405, 'method not allowed', 'text/plain; charset=utf-8');
          return;
        }
        const body = await form(req);
        if (!sameOrigin(req) || body === undefined || !sameSecret(body.get('_csrf') ?? '', cookies(req).get(LOGIN_COOKIE) ?? '')) {
          showLogin(res, 403, 'The sign-in form expired or did not come from this console: try again.');
          return;
        }
        const trust = api.trust();
        if (trust === undefined) {
          showLogin(res, 503, 'No valid policy bundle is loaded: operator tokens cannot be verified.');
          return;
        }
        try {
          const op = await verifyOperatorToken((body.get('token') ?? '').trim(), {
            issuers: trust.issuers, audience: trust.audience, maxTtlSec: trust.maxTokenTtlSec, leewaySec: api.leewaySec, clock: api.clock, revocations: api.revocations,
          });
          if (!op.isOperator) {
            // The console shows the whole plant (every agent, token, approval): the operator role's
            // view. The owner role's self-service stays on the CLI and the JSON API.
            api.onRefused({ method, path: p, remoteAddress: req.socket.remoteAddress ?? '', operatorSub: op.sub, reason: 'SCOPE_MISSING', detail: 'NOT_OPERATOR' });
            showLogin(res, 403, `The console needs the "operator" role; this token's roles are [${op.roles.join(', ')}].`);
            return;
          }
          startSession(res, { sub: op.sub, roles: op.roles, isOperator: true, jti: op.jti, issuer: op.issuer, via: 'token' });
        } catch (err) {
          if (!(err instanceof PlantgateError)) throw err;
          api.onRefused({ method, path: p, remoteAddress: req.socket.remoteAddress ?? '', operatorSub: '', reason: err.reason, detail: (err as PlantgateError & { detail?: string }).detail ?? '' });
          showLogin(res, 401, `Sign-in refused (${err.reason}): ${err.message}`);
        }
        return;
      }
      if (p === '/console/login/certificate' && method === 'POST') {
        const body = await form(req);
        if (!sameOrigin(req) || body === undefined || !sameSecret(body.get('_csrf') ?? '', cookies(req).get(LOGIN_COOKIE) ?? '')) {
          showLogin(res, 403, 'The sign-in form expired or did not come from this console: try again.');
          return;
        }
        let spiffeId: string;
        try {
          spiffeId = identityFromTlsSocket(req.socket as TLSSocket).workloadId;
        } catch (err) {
          if (!(err instanceof PlantgateError)) throw err;
          showLogin(res, 401, `No operator certificate: ${err.message}`);
          return;
        }
        const o = certOperators.get(spiffeId);
        if (o === undefined || !o.roles.includes('operator')) {
          api.onRefused({ method, path: p, remoteAddress: req.socket.remoteAddress ?? '', operatorSub: spiffeId, reason: 'NO_IDENTITY', detail: 'NOT_AN_OPERATOR_CERTIFICATE' });
          showLogin(res, 403, `The certificate ${spiffeId} is not an operator's (console.certificate_operators).`);
          return;
        }
        startSession(res, { sub: o.name, roles: o.roles, isOperator: true, jti: '', issuer: spiffeId, via: 'certificate' });
        return;
      }

      const s = sessions.of(req);
      if (s === undefined || !live(s)) {
        if (method === 'GET' && !p.startsWith('/console/events/')) redirect(res, '/console/login');
        else send(res, 401, 'sign in first', 'text/plain; charset=utf-8');
        return;
      }
      if (method === 'GET') {
        if (p === '/console/events/decisions') {
          streamDecisions(req, res);
          return;
        }
        const page = /^\/console\/([a-z]+)$/.exec(p)?.[1] as PageName | undefined;
        const render = page === undefined ? undefined : pages[page];
        if (render === undefined) {
          send(res, 404, 'not found', 'text/plain; charset=utf-8');
          return;
        }
        send(res, 200, await render(s, req));
        return;
      }
      if (method !== 'POST') {
        send(res, 405, 'method not allowed', 'text/plain; charset=utf-8');
        return;
      }
      const body = await form(req);
      // Every state-changing request: our own origin, and the session's CSRF token.
      if (!sameOrigin(req) || body === undefined || !sameSecret(body.get('_csrf') ?? '', s.csrf)) {
        refused(s, method, p, req, 'PROTOCOL_VIOLATION', 'CSRF');
        send(res, 403, 'refused: not from this console (CSRF check failed)', 'text/plain; charset=utf-8');
        return;
      }
      if (p === '/console/logout') {
        sessions.delete(s.id);
        redirect(res, '/console/login', { 'set-cookie': setCookie(SESSION_COOKIE, '', 0) });
        return;
      }
      for (const [re, action] of actions) {
        const m = re.exec(p);
        if (m !== null) {
          redirect(res, await action(s, body, m, req));
          return;
        }
      }
      send(res, 404, 'not found', 'text/plain; charset=utf-8');
    },
    close: () => {
      feed.stop();
      for (const r of streams) r.destroy();
      streams.clear();
    },
  };
}

async function checkpointTime(dir: string, size: number): Promise<number | undefined> {
  try {
    return (await stat(path.join(dir, CHECKPOINT_DIR, checkpointFileName(size)))).mtimeMs;
  } catch {
    return undefined;
  }
}

