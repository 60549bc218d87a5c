// The agent API: HTTPS with the agent's own mTLS identity. Modbus has no place for a token, so an
// agent PUTs its current JWT here; it is verified once, bound to the certificate's SPIFFE ID and
// used for every command on that identity's connections until it expires or is replaced.
// Never logs or audits the token itself: only its jti and claims.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { httpStatusFor, type Reason } from '../core/reasons.js';
import { identityFromTlsSocket } from '../identity/cert.js';
import type { TokenRegistry } from '../identity/registry.js';
import { verifyAccessToken } from '../identity/verify.js';

/** What the agent API needs from the gateway: the active policy's trust settings and the audit. */
export interface AgentApiDeps {
  trust(): { issuers: Parameters<typeof verifyAccessToken>[1]['issuers']; audience: string; maxTokenTtlSec: number } | undefined;
  tokens: TokenRegistry;
  clock: Clock;
  leewaySec: number;
  logger: Logger;
  onTokenAccepted(workloadId: string, subject: Awaited<ReturnType<typeof verifyAccessToken>>): void;
  onTokenRejected(workloadId: string, thumbprint: string, reason: Reason, detail: string): void;
}

const MAX_BODY = 16 * 1024;

export interface AgentApiOptions {
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
}

export async function startAgentApi(opts: AgentApiOptions, deps: AgentApiDeps): Promise<{ port: number; close(): Promise<void> }> {
  const server = https.createServer(
    { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => {
      handle(req, res, deps).catch((err: unknown) => {
        deps.logger.error({ err: (err as Error).message }, 'agent API handler failed');
        send(res, 500, { error: 'internal error' });
      });
    },
  );
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

async function handle(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): Promise<void> {
  const url = req.url ?? '/';
  if (url === '/v1/token' && req.method === 'PUT') return putToken(req, res, deps);
  send(res, 404, { error: 'not found' });
}

async function putToken(req: IncomingMessage, res: ServerResponse, deps: AgentApiDeps): Promise<void> {
  let identity;
  try {
    identity = identityFromTlsSocket(req.socket as TLSSocket);
  } catch (err) {
    send(res, 401, { reason: 'NO_IDENTITY', message: (err as Error).message });
    return;
  }
  const body = await readBody(req);
  if (body === undefined) {
    send(res, 413, { reason: 'TOKEN_INVALID', message: `token body larger than ${MAX_BODY} bytes` });
    return;
  }
  const token = extractToken(body, req.headers['content-type']);
  if (token === '') {
    deps.onTokenRejected(identity.workloadId, identity.thumbprint, 'NO_TOKEN', 'EMPTY_BODY');
    send(res, 400, { reason: 'NO_TOKEN', message: 'send the JWT as the request body (application/jwt) or as {"token": "..."}' });
    return;
  }
  const trust = deps.trust();
  if (trust === undefined) {
    deps.onTokenRejected(identity.workloadId, identity.thumbprint, 'BUNDLE_UNAVAILABLE', 'NO_BUNDLE');
    send(res, 503, { reason: 'BUNDLE_UNAVAILABLE', message: 'no valid policy bundle loaded: cannot verify tokens' });
    return;
  }
  try {
    const subject = await verifyAccessToken(token, {
      issuers: trust.issuers,
      audience: trust.audience,
      expectedSub: identity.workloadId,
      certThumbprint: identity.thumbprint,
      assurance: 'mtls+token',
      maxTtlSec: trust.maxTokenTtlSec,
      leewaySec: deps.leewaySec,
      clock: deps.clock,
    });
    // jose accepts a token within the clock leeway after exp, but commands never run on an expired
    // token (no leeway per command): refuse it here rather than accept one that denies everything.
    if (subject.expiresAtMs <= deps.clock.now()) {
      deps.onTokenRejected(identity.workloadId, identity.thumbprint, 'TOKEN_EXPIRED', 'EXPIRED');
      send(res, 401, { reason: 'TOKEN_EXPIRED', detail: 'EXPIRED', message: 'token has expired' });
      return;
    }
    deps.tokens.put(identity.workloadId, subject);
    deps.onTokenAccepted(identity.workloadId, subject);
    send(res, 200, {
      status: 'accepted',
      sub: subject.workloadId,
      jti: subject.jti,
      task: subject.taskId,
      expires_at: new Date(subject.expiresAtMs).toISOString(),
    });
  } catch (err) {
    if (!(err instanceof PlantgateError)) throw err;
    const detail = (err as PlantgateError & { detail?: string }).detail ?? '';
    deps.onTokenRejected(identity.workloadId, identity.thumbprint, err.reason, detail);
    send(res, httpStatusFor(err.reason), { reason: err.reason, detail, message: err.message });
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
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
