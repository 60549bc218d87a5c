// The agent-facing MCP front (docs/mcp.md): Streamable HTTP over TLS on its own listener, built on
// the official MCP TypeScript SDK. Owns the listener, the HTTP checks in front of MCP (Host, Origin,
// body size, bearer token, per-token rate), the RFC 9728 metadata, MCP sessions (2025 revisions)
// and stateless requests (2026-07-28), the tools and resources each caller sees, and telling
// clients when their tool list changed. It decides nothing about commands: each tool call becomes
// Commands asked of the pipeline (commands.ts), the same seam every front uses.
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  OAuthError,
  OAuthErrorCode,
  ProtocolError,
  ProtocolErrorCode,
  ResourceNotFoundError,
  Server,
  WebStandardStreamableHTTPServerTransport,
  bearerAuthChallengeResponse,
  createMcpHandler,
  getOAuthProtectedResourceMetadataUrl,
  isLegacyRequest,
  validateHostHeader,
  validateOriginHeader,
  type AuthInfo,
  type McpHttpHandler,
  type OAuthProtectedResourceMetadata,
  type ServerContext,
} from '@modelcontextprotocol/server';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../../src/core/clock.js';
import type { Command, Subject } from '../../src/core/command.js';
import type { CurrentToken } from '../../src/identity/registry.js';
import { silentLogger, type Logger } from '../../src/core/log.js';
import type { CommandPipeline, McpCallInfo, Session } from '../../src/core/pipeline.js';
import type { BundleAsset } from '../../src/assets/bundle-asset.js';
import type { BundlePayload } from '../../src/policy/payload.js';
import { TokenBucket } from '../../src/core/rate.js';
import { authenticate, McpAuthError, type McpAuthDeps, type McpCaller } from './auth.js';
import { ASSETS_URI, buildCatalog, LIST_TOOL, pointUri, type Catalog } from './catalog.js';
import { ToolCalls, type CallContext, type McpUpstreams, type ToolResult } from './commands.js';
import type { McpListenerConfig } from './config.js';
import { DEFAULT_CONNECTION_LIMITS, guardHandshakes, type ConnectionLimits } from '../../src/identity/handshakes.js';

export interface McpFrontOptions {
  config: McpListenerConfig;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  pipeline: CommandPipeline;
  upstreams: McpUpstreams;
  /** The active bundle (tools are generated from it); undefined in safe mode. */
  bundle(): BundlePayload | undefined;
  auth: Omit<McpAuthDeps, 'requireClientCertificate'>;
  /** A token's state now (TokenRegistry.check): which sessions a revocation ends. */
  current(subject: Subject): CurrentToken;
  /** The interlock's account of a command it refused (gateway: the pipeline's tripOf). */
  interlockDetail?(cmd: Command): string | undefined;
  grantTtlMin?: number;
  /** Every HTTP answer's status (metrics: 401 token refused, 403 Host/Origin, 413 body, 429 rate). */
  onAnswered?(status: number): void;
  /** Shown to clients (serverInfo) and in the metadata document. */
  gatewayId: string;
  version: string;
  clock: Clock;
  logger?: Logger;
  /** Handshake deadline and caps (docs/configuration.md, Hostile connections); refusals are audited. */
  limits?: ConnectionLimits;
}

/** What a request's AuthInfo carries past the SDK to our handlers (never the token). */
interface CallerInfo {
  caller: McpCaller;
}

/** An MCP session of the 2025 protocol revisions: one SDK server and transport, bound to one workload. */
interface LegacySession {
  session: Session;
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  certThumbprint: string;
  /** The subject of its latest request: a revocation of it closes the session. */
  subject: Subject;
}

/** A live HTTP exchange (SSE streams included) and whose token it runs on. */
interface Live {
  res: ServerResponse;
  subject: Subject;
}

const MAX_ARGUMENT_TEXT = 2048;
// Node defines the fetch globals as lazy getters; looked up once here, not per request.
const WebRequest = globalThis.Request;
const CORS_HEADERS = 'authorization, content-type, mcp-session-id, mcp-protocol-version, last-event-id';

async function send(res: ServerResponse, r: Response, extra: Record<string, string> = {}): Promise<void> {
  if (res.headersSent) return;
  const headers: Record<string, string> = { ...extra };
  for (const [k, v] of r.headers) headers[k] = v;
  const body = Buffer.from(await r.arrayBuffer());
  headers['content-length'] = String(body.length);
  res.writeHead(r.status, headers);
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): Promise<void> {
  return send(res, Response.json(body, { status, headers }));
}

export class McpFront {
  private readonly opts: McpFrontOptions;
  private readonly logger: Logger;
  private readonly calls: ToolCalls;
  private readonly server: https.Server;
  private readonly modern: McpHttpHandler;
  private readonly auth: McpAuthDeps;
  /** Legacy sessions by their wire id (Mcp-Session-Id), least recently used dropped first. */
  private readonly sessions: LRUCache<string, LegacySession>;
  /** Stateless (2026-07-28) callers: one audited session per token. */
  private readonly tokenSessions: LRUCache<string, Session>;
  private readonly buckets: LRUCache<string, TokenBucket>;
  private readonly catalogs = new WeakMap<BundlePayload, LRUCache<string, Catalog>>();
  private readonly live = new Set<Live>();
  private sessionSeq = 0;
  private resource = '';
  private resourceUrl: URL | undefined;
  private metadataUrl = '';
  private allowedHosts: string[] = [];

  constructor(opts: McpFrontOptions) {
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
    this.auth = { ...opts.auth, requireClientCertificate: opts.config.require_client_certificate };
    this.calls = new ToolCalls({
      pipeline: opts.pipeline,
      upstreams: opts.upstreams,
      ...(opts.interlockDetail !== undefined ? { interlockDetail: opts.interlockDetail } : {}),
      ...(opts.grantTtlMin !== undefined ? { grantTtlMin: opts.grantTtlMin } : {}),
    });
    const maxBody = opts.config.max_body_bytes;
    this.modern = createMcpHandler(() => this.buildServer(undefined), {
      // 2025-era traffic goes to our sessionful wiring (legacy()), never to a stateless fallback.
      legacy: 'reject',
      maxRequestBodySize: maxBody,
      onerror: (err) => this.logger.debug({ err: err.message }, 'MCP request refused by the SDK'),
    });
    this.sessions = new LRUCache<string, LegacySession>({
      max: opts.config.max_sessions,
      ttl: opts.config.session_idle_ms,
      ttlAutopurge: true,
      updateAgeOnGet: true,
      dispose: (s, _id, why) => {
        void s.transport.close().catch(() => undefined);
        opts.pipeline.sessionClosed(s.session, why === 'delete' ? 'closed' : why === 'expire' ? 'idle' : why);
      },
    });
    this.tokenSessions = new LRUCache<string, Session>({
      max: 10_000,
      dispose: (s, _jti, why) => opts.pipeline.sessionClosed(s, why === 'expire' ? 'token expired' : why),
      ttlAutopurge: true,
    });
    this.buckets = new LRUCache<string, TokenBucket>({ max: 10_000 });
    this.server = https.createServer(
      // A client certificate is asked for, not required: bearer-only MCP clients are the common case
      // (docs/mcp.md); one that is presented must verify (auth.ts).
      { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          this.logger.error({ err: (err as Error).message }, 'MCP handler failed');
          if (!res.headersSent) void json(res, 500, { error: 'server_error', error_description: 'internal error' });
          else res.destroy();
        });
      },
    );
    guardHandshakes(this.server, opts.limits ?? DEFAULT_CONNECTION_LIMITS, (r) =>
      opts.pipeline.violation({ remoteAddress: r.remoteAddress, protocol: 'mcp' }, r.reason, r.code, `MCP: ${r.message}`),
    );
    // Slow clients must not hold sockets forever before they have sent a request.
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  async listen(): Promise<{ host: string; port: number; resource: string }> {
    const { host, port } = this.opts.config;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const bound = (this.server.address() as { port: number }).port;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    this.resource = (this.opts.config.resource ?? `https://${urlHost}:${bound}/mcp`).replace(/\/$/, '');
    this.resourceUrl = new URL(this.resource);
    this.metadataUrl = getOAuthProtectedResourceMetadataUrl(this.resourceUrl);
    this.allowedHosts = this.opts.config.allowed_hosts ?? [this.resourceUrl.hostname];
    return { host, port: bound, resource: this.resource };
  }

  /** The resource URI tokens must name as their audience. */
  get resourceUri(): string {
    return this.resource;
  }

  // ------------------------------------------------------------ HTTP in front of MCP

  /** MCP sessions (2025 revisions) open now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const onAnswered = this.opts.onAnswered;
    if (onAnswered !== undefined) res.once('finish', () => onAnswered(res.statusCode));
    const remoteAddress = `${req.socket.remoteAddress ?? ''}:${req.socket.remotePort ?? ''}`;
    // DNS rebinding: a browser tricked into calling us under another name sends that name as Host.
    const host = validateHostHeader(req.headers.host, this.allowedHosts);
    if (!host.ok) {
      this.opts.pipeline.violation({ protocol: 'mcp', remoteAddress }, 'PROTOCOL_VIOLATION', 'HOST', `Host ${JSON.stringify(req.headers.host ?? '')} not allowed: ${host.message}`);
      return json(res, 403, { error: 'forbidden', error_description: `PROTOCOL_VIOLATION: Host header not allowed (${host.errorCode})` });
    }
    const path = new URL(req.url ?? '/', 'https://x').pathname.replace(/\/$/, '') || '/';
    if (path === new URL(this.metadataUrl).pathname || path === '/.well-known/oauth-protected-resource') return this.metadata(req, res);
    if (path !== (this.resourceUrl!.pathname.replace(/\/$/, '') || '/')) {
      return json(res, 404, { error: 'not_found', error_description: `no ${req.method ?? ''} ${path} here: MCP is at ${this.resource}` });
    }
    // Cross-site requests from a browser carry Origin; only configured origins may call MCP.
    const origin = validateOriginHeader(req.headers.origin, this.opts.config.allowed_origins);
    if (!origin.ok) {
      this.opts.pipeline.violation({ protocol: 'mcp', remoteAddress }, 'PROTOCOL_VIOLATION', 'ORIGIN', `Origin ${JSON.stringify(req.headers.origin ?? '')} not allowed: ${origin.message}`);
      return json(res, 403, { error: 'forbidden', error_description: `PROTOCOL_VIOLATION: Origin ${req.headers.origin ?? ''} is not allowed to call this MCP server` });
    }
    if (req.headers.origin !== undefined && req.headers.origin !== '') {
      res.setHeader('access-control-allow-origin', req.headers.origin);
      res.setHeader('access-control-expose-headers', 'mcp-session-id, www-authenticate');
      res.setHeader('vary', 'Origin');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-methods': 'GET, POST, DELETE', 'access-control-allow-headers': CORS_HEADERS, 'access-control-max-age': '600' });
        res.end();
        return;
      }
    }

    let caller: McpCaller;
    try {
      caller = await authenticate(req, this.resource, this.auth);
    } catch (err) {
      if (!(err instanceof McpAuthError)) throw err;
      if (err.status === 503) return json(res, 503, { error: 'temporarily_unavailable', error_description: `${err.reason}: ${err.message}` });
      // RFC 6750 §3 and RFC 9728 §5.1: the challenge names our metadata so a client can find the
      // authorization server; the description starts with our reason code.
      return send(res, bearerAuthChallengeResponse(new OAuthError(OAuthErrorCode.InvalidToken, `${err.reason}: ${err.message}`), { resourceMetadataUrl: this.metadataUrl }));
    }

    const subject = caller.subject;
    const spec = this.opts.config.rate_limit;
    let bucket = this.buckets.get(subject.jti);
    const now = this.opts.clock.now();
    if (bucket === undefined) this.buckets.set(subject.jti, (bucket = new TokenBucket(spec, now)));
    if (bucket.tokensAt(now) < 1) {
      this.logger.debug({ workload: subject.workloadId, jti: subject.jti }, 'MCP request over the per-token rate');
      return json(
        res,
        429,
        { error: 'rate_limited', error_description: `RATE_LIMITED: more than ${spec.count} requests per ${spec.per_sec} s with this token; slow down` },
        { 'retry-after': String(Math.max(1, Math.ceil(spec.per_sec / spec.count))) },
      );
    }
    bucket.take(now);

    const live: Live = { res, subject };
    this.live.add(live);
    res.on('close', () => this.live.delete(live));
    const info: CallerInfo = { caller };
    const authInfo: AuthInfo = {
      // The SDK's AuthInfo has a slot for the raw token; it stays empty: nothing past this point needs it.
      token: '',
      clientId: subject.workloadId,
      scopes: subject.scopes,
      expiresAt: Math.floor(subject.expiresAtMs / 1000),
      resource: this.resourceUrl!,
      resourceMetadataUrl: this.metadataUrl,
      extra: info as unknown as Record<string, unknown>,
    };
    // The body is read once, bounded, and parsed once: the SDK's routing, transport and server are
    // handed the parsed message instead of each reading and parsing it again.
    const body = await this.readBody(req, res);
    if (body === null) return;
    let parsedBody: unknown;
    if (body !== undefined) {
      try {
        parsedBody = JSON.parse(body);
      } catch {
        // Left to the SDK, which answers a JSON-RPC parse error.
      }
    }
    const response = await this.route(this.webRequest(req, res, body, parsedBody), { authInfo, ...(parsedBody !== undefined ? { parsedBody } : {}) });
    await this.reply(res, response, req.method === 'GET');
  }

  /**
   * The web Request the SDK takes, with only what it reads: the MCP headers (`mcp-*`), accept,
   * content-type and last-event-id; the body only when it did not parse (the SDK then answers the
   * parse error); an abort signal only for what may stream (a GET, a listen), so a client that goes
   * away ends its stream. Building a full Request per call was a third of the front's CPU.
   */
  private webRequest(req: IncomingMessage, res: ServerResponse, body: string | undefined, parsedBody: unknown): Request {
    const headers: [string, string][] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (name.startsWith('mcp-') || name === 'accept' || name === 'content-type' || name === 'last-event-id') headers.push([name, raw[i + 1]!]);
    }
    let signal: AbortSignal | undefined;
    if (req.method === 'GET' || (parsedBody as { method?: unknown } | undefined)?.method === 'subscriptions/listen') {
      const abort = new AbortController();
      res.on('close', () => abort.abort());
      signal = abort.signal;
    }
    return new WebRequest(`https://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, {
      method: req.method ?? 'GET',
      headers,
      ...(signal !== undefined ? { signal } : {}),
      ...(body !== undefined && parsedBody === undefined ? { body } : {}),
    });
  }

  /**
   * The request body as text, at most max_body_bytes (undefined for GET, DELETE and empty bodies);
   * null after answering 413 (nothing of a larger body is kept).
   */
  private readBody(req: IncomingMessage, res: ServerResponse): Promise<string | undefined | null> {
    const max = this.opts.config.max_body_bytes;
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE') return Promise.resolve(undefined);
    const tooLarge = (): null => {
      void json(res, 413, { jsonrpc: '2.0', error: { code: -32000, message: `PROTOCOL_VIOLATION: request body larger than ${max} bytes` }, id: null }, { connection: 'close' });
      return null;
    };
    if (Number(req.headers['content-length'] ?? 0) > max) return Promise.resolve(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) {
          req.removeAllListeners('data');
          req.pause();
          resolve(tooLarge());
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(size === 0 ? undefined : Buffer.concat(chunks, size).toString('utf8')));
      req.on('error', reject);
    });
  }

  /**
   * Writes the SDK's answer. A whole body (JSON, an error) goes out in one write with its length;
   * an event stream is piped as it comes, its headers sent at once for a GET (the client's
   * notification stream: Node would hold them until the first event, 15 s later).
   */
  private async reply(res: ServerResponse, r: Response, stream: boolean): Promise<void> {
    const headers: Record<string, string> = {};
    for (const [k, v] of r.headers) headers[k] = v;
    const events = (headers['content-type'] ?? '').startsWith('text/event-stream');
    if (r.body === null || !events) {
      const body = r.body === null ? Buffer.alloc(0) : Buffer.from(await r.arrayBuffer());
      headers['content-length'] = String(body.length);
      if (!res.headersSent && !res.destroyed) res.writeHead(r.status, headers).end(body);
      return;
    }
    res.writeHead(r.status, headers);
    if (stream) res.flushHeaders();
    const reader = r.body.getReader();
    const cancel = () => void reader.cancel().catch(() => undefined);
    res.once('close', cancel);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || res.destroyed) break;
        if (!res.write(value)) await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
      }
    } catch {
      // The stream ended under us (client gone, session closed): nothing more to send.
    } finally {
      res.off('close', cancel);
      if (!res.destroyed) res.end();
    }
  }

  /** RFC 9728 protected-resource metadata: where tokens for this resource come from. */
  private metadata(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, HEAD' });
    const doc: OAuthProtectedResourceMetadata & { tls_client_certificate_bound_access_tokens: boolean } = {
      resource: this.resource,
      // The token issuers the active bundle trusts are the plant's authorization servers.
      authorization_servers: (this.opts.bundle()?.issuers ?? []).map((i) => i.iss),
      scopes_supported: ['read', 'write', 'call'],
      bearer_methods_supported: ['header'],
      resource_name: `plantgate ${this.opts.gatewayId}`,
      // RFC 8705 §3.4 / RFC 9728 §2: certificate-bound tokens are honoured.
      tls_client_certificate_bound_access_tokens: true,
    };
    return json(res, 200, doc, { 'access-control-allow-origin': '*', 'cache-control': 'max-age=60' });
  }

  /** 2026-07-28 requests go to the SDK's per-request handler; 2025-era ones to their session. */
  private async route(request: Request, o: { authInfo: AuthInfo; parsedBody?: unknown }): Promise<Response> {
    // A session id is 2025-era traffic (the 2026-07-28 revision has no sessions): no need to ask.
    const sid = request.headers.get('mcp-session-id');
    if (sid === null && !(await isLegacyRequest(request, o.parsedBody, { maxRequestBodySize: this.opts.config.max_body_bytes }))) return this.modern.fetch(request, o);
    const caller = (o.authInfo.extra as CallerInfo | undefined)?.caller;
    if (caller === undefined) return Response.json({ error: 'unauthorized' }, { status: 401 });
    if (sid !== null) {
      const s = this.sessions.get(sid);
      // A session belongs to the workload (and certificate) that opened it: anyone else, and any
      // unknown id, is told it does not exist (MCP: 404 means start a new session).
      if (s === undefined || s.session.workloadId !== caller.subject.workloadId || s.certThumbprint !== caller.certThumbprint) {
        return Response.json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }, { status: 404 });
      }
      s.subject = caller.subject;
      return s.transport.handleRequest(request, o);
    }
    // No session id: only an initialize may start one (the transport answers anything else 400).
    const entry = {} as LegacySession;
    const session = this.newSession(caller);
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      // A call's answer as one JSON body, not a one-event stream: nothing here sends messages
      // before a result (notifications go on the session's GET stream).
      enableJsonResponse: true,
      maxRequestBodySize: this.opts.config.max_body_bytes,
      onsessioninitialized: (id) => {
        this.sessions.set(id, entry);
        this.opts.pipeline.sessionOpened(session);
      },
      onsessionclosed: (id) => {
        this.sessions.delete(id);
      },
    });
    const server = this.buildServer(entry);
    Object.assign(entry, { session, transport, server, certThumbprint: caller.certThumbprint, subject: caller.subject });
    await server.connect(transport);
    return transport.handleRequest(request, o);
  }

  private newSession(caller: McpCaller): Session {
    return {
      id: `mcp-${++this.sessionSeq}`,
      protocol: 'mcp',
      workloadId: caller.subject.workloadId,
      certThumbprint: caller.certThumbprint,
      remoteAddress: caller.remoteAddress,
      assurance: caller.assurance,
      subject: caller.subject,
    };
  }

  /** The audited session a stateless request runs in: one per token, closed when it expires. */
  private tokenSession(caller: McpCaller): Session {
    let s = this.tokenSessions.get(caller.subject.jti);
    if (s === undefined) {
      s = this.newSession(caller);
      this.tokenSessions.set(caller.subject.jti, s, { ttl: Math.max(1, caller.subject.expiresAtMs - this.opts.clock.now()) });
      this.opts.pipeline.sessionOpened(s);
    }
    return s;
  }

  // ------------------------------------------------------------ MCP

  /** The tools and resources a caller sees under the active bundle (cached per token). */
  private catalog(subject: Subject): Catalog | undefined {
    const payload = this.opts.bundle();
    if (payload === undefined) return undefined;
    let byToken = this.catalogs.get(payload);
    if (byToken === undefined) this.catalogs.set(payload, (byToken = new LRUCache<string, Catalog>({ max: 1000 })));
    let c = byToken.get(subject.jti);
    if (c === undefined) {
      c = buildCatalog(payload, subject, (a) => this.reachable(a));
      byToken.set(subject.jti, c);
    }
    return c;
  }

  private reachable(asset: BundleAsset): boolean {
    return asset.protocol === 'modbus' ? this.opts.upstreams.modbus(asset.id) !== undefined : this.opts.upstreams.opcua(asset.id) !== undefined;
  }

  private static callerOf(ctx: ServerContext): McpCaller {
    const caller = (ctx.http?.authInfo?.extra as CallerInfo | undefined)?.caller;
    // Every request passed authenticate() before the SDK saw it; without a caller nothing runs.
    if (caller === undefined) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, 'unauthenticated request');
    return caller;
  }

  private callContext(server: Server, legacy: LegacySession | undefined, caller: McpCaller, tool: string, args: unknown): CallContext {
    const base = legacy?.session ?? this.tokenSession(caller);
    const client = server.getClientVersion();
    let argText = JSON.stringify(args ?? {});
    if (argText.length > MAX_ARGUMENT_TEXT) argText = `${argText.slice(0, MAX_ARGUMENT_TEXT)}…`;
    const mcp: McpCallInfo = {
      clientName: client?.name ?? '',
      clientVersion: client?.version ?? '',
      protocolVersion: server.getNegotiatedProtocolVersion() ?? '',
      mcpSessionId: legacy?.session.id ?? '',
      tool,
      arguments: argText,
    };
    // The caller's own token for this request, whatever the session's previous requests carried.
    return { session: { ...base, subject: caller.subject, certThumbprint: caller.certThumbprint, assurance: caller.assurance }, mcp };
  }

  private listResult(c: Catalog): ToolResult {
    return { content: [{ type: 'text', text: JSON.stringify({ assets: c.summary }, null, 1) }], structuredContent: { assets: c.summary } };
  }

  private buildServer(legacy: LegacySession | undefined): Server {
    const server = new Server(
      { name: 'plantgate', title: `plantgate ${this.opts.gatewayId}`, version: this.opts.version },
      {
        capabilities: { tools: { listChanged: true }, resources: { listChanged: true } },
        instructions:
          'Tools of an industrial plant, through the plantgate enforcement gateway. Every call is checked against the plant\'s policy, safety interlocks and approvals, and recorded in a tamper-evident audit log. A refused call returns isError with a reason code and what to do next; never try to work around a refusal.',
      },
    );
    const catalogOf = (ctx: ServerContext): Catalog => {
      const c = this.catalog(McpFront.callerOf(ctx).subject);
      if (c === undefined) throw new ProtocolError(ProtocolErrorCode.InternalError, 'BUNDLE_UNAVAILABLE: the gateway has no valid policy bundle; no tools now');
      return c;
    };
    server.setRequestHandler('tools/list', (_req, ctx) => ({ tools: catalogOf(ctx).tools }));
    server.setRequestHandler('tools/call', async (req, ctx) => {
      const caller = McpFront.callerOf(ctx);
      const c = catalogOf(ctx);
      const name = req.params.name;
      const target = c.byName.get(name);
      if (target === undefined) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Tool ${name} not found (call tools/list or ${LIST_TOOL} for yours)`);
      const args = req.params.arguments ?? {};
      const result = await this.calls.call(this.callContext(server, legacy, caller, name, args), target, args, () => this.listResult(c));
      return server.projectCallToolResult(result, undefined);
    });
    server.setRequestHandler('resources/list', (_req, ctx) => {
      const c = catalogOf(ctx);
      return {
        resources: [
          { uri: ASSETS_URI, name: 'assets', title: 'Assets and points', description: 'The plant assets you may use, their points and what you may do with them.', mimeType: 'application/json' },
          ...c.points.map((p) => ({ uri: p.uri, name: p.name, title: p.title, description: p.description, mimeType: p.mimeType })),
        ],
      };
    });
    server.setRequestHandler('resources/templates/list', () => ({
      resourceTemplates: [{ uriTemplate: `${ASSETS_URI}/{asset}/points/{point}`, name: 'point', title: 'Live point value', description: 'The live value of a point, read through the gateway (a read command, checked and audited).', mimeType: 'application/json' }],
    }));
    server.setRequestHandler('resources/read', async (req, ctx) => {
      const caller = McpFront.callerOf(ctx);
      const c = catalogOf(ctx);
      const uri = req.params.uri;
      if (uri === ASSETS_URI) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ assets: c.summary }) }] };
      const m = /^plantgate:\/\/assets\/([^/]+)\/points\/([^/]+)$/.exec(uri);
      const asset = m === null ? undefined : this.opts.bundle()?.assets.find((a) => a.id === decodeURIComponent(m[1]!));
      const point = m === null ? undefined : decodeURIComponent(m[2]!);
      // Any point of the asset is read through the pipeline, listed for this caller or not: policy decides.
      if (asset === undefined || point === undefined || asset.points[point] === undefined || !this.reachable(asset)) throw new ResourceNotFoundError(uri);
      const r = await this.calls.readPoint(this.callContext(server, legacy, caller, 'resources/read', { uri }), asset, point);
      const def = asset.points[point]!;
      const body = r.ok ? { asset: asset.id, point, value: def.type === 'bool' ? r.value !== 0 : r.value, ...(def.unit ? { unit: def.unit } : {}) } : { asset: asset.id, point, error: r.text };
      return { contents: [{ uri: pointUri(asset.id, point), mimeType: 'application/json', text: JSON.stringify(body) }] };
    });
    return server;
  }

  // ------------------------------------------------------------ changes

  /** Tells every client its tool list may have changed (a new bundle, a revocation). */
  toolsChanged(): Promise<unknown> {
    this.modern.notify.toolsChanged();
    this.modern.notify.resourcesChanged();
    const sent: Promise<unknown>[] = [];
    for (const s of this.sessions.values()) sent.push(s.server.sendToolListChanged(), s.server.sendResourceListChanged());
    return Promise.allSettled(sent);
  }

  /**
   * A revocation took effect: clients are told their lists changed, then the sessions and streams
   * running on a now-revoked token are closed (their next request is refused 401).
   */
  revoked(): void {
    const dead = (s: Subject) => typeof this.opts.current(s) === 'string';
    const closing = [...this.sessions.entries()].filter(([, s]) => dead(s.subject)).map(([id]) => id);
    // Sessions close once their notification is written.
    void this.toolsChanged().then(() => {
      for (const id of closing) this.sessions.delete(id);
    });
    const streams = [...this.live].filter((l) => dead(l.subject));
    // A moment for the notification to leave before the stream closes.
    if (streams.length > 0) setTimeout(() => streams.forEach((l) => l.res.destroy()), 100).unref();
  }

  async close(): Promise<void> {
    this.sessions.clear();
    this.tokenSessions.clear();
    await this.modern.close();
    await new Promise<void>((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
