// The MCP front as an OAuth 2.1 resource server (MCP authorization spec; docs/mcp.md, Tokens): the
// bearer token is the plant's own short-lived JWT, taken in by the gateway's one token intake
// (src/identity/intake.ts) with this resource's URI as the only audience (RFC 8707), bound to the
// client certificate when one is presented (RFC 8705), and checked for expiry and revocation on
// every request. Owns turning one HTTP request into a caller or a refusal with its reason.
// Never logs, stores or passes on the token: the caller carries the verified Subject only.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { decodeJwt } from 'jose';
import type { Assurance, Subject } from '../../src/core/command.js';
import { PlantgateError } from '../../src/core/errors.js';
import type { Reason } from '../../src/core/reasons.js';
import { identityFromTlsSocket, type CertificateIdentity } from '../../src/identity/cert.js';
import { detailOf, type Presenter, type TokenIntake } from '../../src/identity/intake.js';

/** Who is calling, as proven for this request. */
export interface McpCaller {
  subject: Subject;
  /** base64url SHA-256 of the client certificate, '' when the caller presented none. */
  certThumbprint: string;
  assurance: Assurance;
  remoteAddress: string;
}

export interface McpAuthDeps {
  /** Verifies, checks and records the bearer token (src/identity/intake.ts), and records refusals. */
  intake: Pick<TokenIntake, 'accept' | 'refused'>;
  requireClientCertificate: boolean;
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
  const jwt = m?.[1] ?? '';
  // Without a certificate nothing but the token names the workload: its own (signed) `sub` is
  // the identity, so the verifier's session-identity check compares it with itself.
  const who: Presenter = {
    workloadId: cert?.workloadId ?? subjectClaimOf(jwt),
    assurance: cert !== undefined ? 'mtls+token' : 'none',
    audience: resource,
    everyRequest: true,
    via: 'MCP',
  };
  if (cert !== undefined) {
    who.certThumbprint = cert.thumbprint;
    if (cert.role !== undefined) who.certRole = cert.role;
  }
  if (m === null) {
    deps.intake.refused(who, 'TOKEN_INVALID', 'MALFORMED');
    throw new McpAuthError('TOKEN_INVALID', 'MALFORMED', 'the Authorization header must be "Bearer <token>"');
  }
  try {
    const subject = await deps.intake.accept(jwt, who);
    return { subject, certThumbprint: cert?.thumbprint ?? '', assurance: who.assurance, remoteAddress };
  } catch (err) {
    if (!(err instanceof PlantgateError)) throw err;
    // Ours to fix (no bundle, no audit): 503; the caller's (the token): 401.
    const status = err.reason === 'BUNDLE_UNAVAILABLE' || err.reason === 'AUDIT_UNAVAILABLE' ? 503 : 401;
    throw new McpAuthError(err.reason, detailOf(err), err.message, status);
  }
}

function subjectClaimOf(jwt: string): string {
  try {
    const sub = decodeJwt(jwt).sub;
    return typeof sub === 'string' ? sub : '';
  } catch {
    return '';
  }
}
