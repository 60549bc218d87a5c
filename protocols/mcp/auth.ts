// The MCP front as an OAuth 2.1 resource server (MCP authorization spec; docs/mcp.md, Tokens): the
// bearer token is the plant's own short-lived JWT, checked by the gateway's one token verifier
// (src/identity/verify.ts) with this resource's URI as the only audience (RFC 8707), bound to the
// client certificate when one is presented (RFC 8705), and checked against revocations on every
// request. Owns turning one HTTP request into a caller or a refusal with its reason.
// Never logs, stores or passes on the token: the caller carries the verified Subject only.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { decodeJwt } from 'jose';
import type { Clock } from '../../src/core/clock.js';
import type { Assurance, Subject } from '../../src/core/command.js';
import { PlantgateError } from '../../src/core/errors.js';
import type { Reason } from '../../src/core/reasons.js';
import { identityFromTlsSocket, type CertificateIdentity } from '../../src/identity/cert.js';
import type { CurrentToken } from '../../src/identity/registry.js';
import type { VerifiedTokenCache } from '../../src/identity/token-cache.js';
import { verifyAccessToken, type TrustedIssuers, type VerifyContext } from '../../src/identity/verify.js';

/** Who is calling, as proven for this request. */
export interface McpCaller {
  subject: Subject;
  /** base64url SHA-256 of the client certificate, '' when the caller presented none. */
  certThumbprint: string;
  assurance: Assurance;
  remoteAddress: string;
}

export interface McpAuthDeps {
  /** The active bundle's trusted issuers and token lifetime bound; undefined without a bundle. */
  trust(): { issuers: TrustedIssuers; maxTokenTtlSec: number } | undefined;
  cache: VerifiedTokenCache;
  /** Expiry and revocation now (TokenRegistry.check): no cached verification outlives a revocation. */
  current(subject: Subject): CurrentToken;
  clock: Clock;
  leewaySec: number;
  requireClientCertificate: boolean;
  /** Records a newly seen token; false when the audit cannot (the token is then refused). */
  onAccepted(subject: Subject): boolean;
  onRejected(workloadId: string, thumbprint: string, reason: Reason, detail: string): void;
}

export class McpAuthError extends PlantgateError {
  readonly detail: string;
  /** HTTP status of the refusal: 401 for what the caller can fix with a token, 503 for ours. */
  readonly status: 401 | 503;
  constructor(reason: Reason, detail: string, message: string, status: 401 | 503 = 401) {
    super(reason, message);
    this.detail = detail;
    this.status = status;
  }
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;

/**
 * The caller of one request, or an McpAuthError (audited when a token was presented). `resource`
 * is this server's resource URI: the only `aud` accepted, so a token minted for the gateway's
 * Modbus agents or for another MCP server is refused here (and ours is refused there).
 */
export async function authenticate(req: IncomingMessage, resource: string, deps: McpAuthDeps): Promise<McpCaller> {
  const socket = req.socket as TLSSocket;
  const remoteAddress = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
  // A presented certificate is checked, never ignored: one that does not chain to the plant CA
  // (or names no single SPIFFE ID) refuses the request rather than falling back to bearer only.
  let cert: CertificateIdentity | undefined;
  // getPeerCertificate, not getPeerX509Certificate: the latter leaks native memory per call (src/identity/cert.ts).
  if (socket.getPeerCertificate?.()?.raw !== undefined) {
    try {
      cert = identityFromTlsSocket(socket);
    } catch (err) {
      throw new McpAuthError('NO_IDENTITY', 'BAD_CLIENT_CERTIFICATE', (err as Error).message);
    }
  } else if (deps.requireClientCertificate) {
    throw new McpAuthError('NO_IDENTITY', 'NO_CLIENT_CERTIFICATE', 'this MCP endpoint requires a client certificate (mutual TLS)');
  }
  const header = req.headers.authorization;
  if (header === undefined || header === '') throw new McpAuthError('NO_TOKEN', 'NO_AUTHORIZATION', 'send the access token as "Authorization: Bearer <token>"');
  const m = BEARER.exec(header);
  if (m === null) {
    deps.onRejected(cert?.workloadId ?? '', cert?.thumbprint ?? '', 'TOKEN_INVALID', 'MALFORMED');
    throw new McpAuthError('TOKEN_INVALID', 'MALFORMED', 'the Authorization header must be "Bearer <token>"');
  }
  const jwt = m[1]!;
  const trust = deps.trust();
  if (trust === undefined) {
    deps.onRejected(cert?.workloadId ?? '', cert?.thumbprint ?? '', 'BUNDLE_UNAVAILABLE', 'NO_BUNDLE');
    throw new McpAuthError('BUNDLE_UNAVAILABLE', 'NO_BUNDLE', 'no valid policy bundle loaded: tokens cannot be verified', 503);
  }
  // Without a certificate nothing but the token names the workload: its own (signed) `sub` is
  // the identity, so the verifier's session-identity check compares it with itself.
  let expectedSub = cert?.workloadId;
  if (expectedSub === undefined) {
    try {
      const sub = decodeJwt(jwt).sub;
      expectedSub = typeof sub === 'string' ? sub : '';
    } catch {
      expectedSub = '';
    }
  }
  const ctx: VerifyContext = {
    issuers: trust.issuers,
    audience: resource,
    expectedSub,
    assurance: cert !== undefined ? 'mtls+token' : 'none',
    maxTtlSec: trust.maxTokenTtlSec,
    leewaySec: deps.leewaySec,
    clock: deps.clock,
  };
  if (cert !== undefined) {
    ctx.certThumbprint = cert.thumbprint;
    if (cert.role !== undefined) ctx.certRole = cert.role;
  }
  let subject = deps.cache.get(jwt, ctx);
  try {
    if (subject === undefined) {
      deps.cache.misses++;
      subject = await verifyAccessToken(jwt, ctx);
      if (subject.expiresAtMs <= deps.clock.now()) throw new McpAuthError('TOKEN_EXPIRED', 'EXPIRED', 'token has expired');
      // Audit first: a token whose acceptance is not on record is not used.
      if (!deps.onAccepted(subject)) throw new McpAuthError('AUDIT_UNAVAILABLE', 'AUDIT_UNAVAILABLE', 'the token could not be recorded in the audit log', 503);
      deps.cache.set(jwt, ctx, subject);
    } else {
      deps.cache.hits++;
    }
    const now = deps.current(subject);
    if (typeof now === 'string') throw new McpAuthError(now, now === 'TOKEN_REVOKED' ? 'REVOKED' : 'EXPIRED', now === 'TOKEN_REVOKED' ? 'token has been revoked' : 'token has expired');
  } catch (err) {
    if (!(err instanceof PlantgateError)) throw err;
    const detail = err instanceof McpAuthError ? err.detail : ((err as PlantgateError & { detail?: string }).detail ?? '');
    deps.onRejected(cert?.workloadId ?? expectedSub, cert?.thumbprint ?? '', err.reason, detail);
    throw err instanceof McpAuthError ? err : new McpAuthError(err.reason, detail, err.message);
  }
  return { subject, certThumbprint: cert?.thumbprint ?? '', assurance: ctx.assurance, remoteAddress };
}
