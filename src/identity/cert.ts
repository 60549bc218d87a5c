// Workload identity from an X.509 client certificate (DESIGN §4): the SPIFFE ID in the URI SAN
// and the RFC 8705 thumbprint that binds tokens to this certificate.
// Owns extraction only. It never trusts a certificate by itself: chain validation is the TLS
// layer's job (rejectUnauthorized + the gateway's CA), and this module refuses unauthorized peers.
import { createHash, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { PlantgateError } from '../core/errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface CertificateIdentity {
  /** SPIFFE ID from the certificate's only URI SAN. */
  workloadId: string;
  /** RFC 8705 x5t#S256: base64url SHA-256 of the certificate DER. */
  thumbprint: string;
}

/** base64url SHA-256 of the DER encoding, as carried in a token's `cnf.x5t#S256`. */
export function certificateThumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}

interface SanEntry {
  kind: string;
  value: string;
}

/**
 * Splits Node's `subjectAltName` string. Splitting at ", " is unsafe (CVE-2021-44532): a SAN value
 * may contain that sequence, so Node writes such values as JSON string literals. A value that
 * cannot be parsed makes the whole list unusable (undefined): fail closed, never guess.
 */
export function parseSubjectAltNames(text: string): SanEntry[] | undefined {
  const entries: SanEntry[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) return undefined;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // JSON string literal: find the closing quote that is not escaped.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) return undefined;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        return undefined;
      }
      end = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma === -1 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    entries.push({ kind, value });
    if (end === text.length) break;
    if (text.slice(end, end + 2) !== ', ') return undefined;
    i = end + 2;
  }
  return entries;
}

/**
 * The workload identity a certificate proves. X509-SVID (SPIFFE spec §2) says an SVID carries
 * exactly one URI SAN and it is the SPIFFE ID; anything else is NO_IDENTITY, because accepting the
 * "first" of several would let whoever issued the certificate choose which identity we see.
 */
export function identityFromCertificate(cert: X509Certificate): CertificateIdentity {
  const sanText = cert.subjectAltName;
  if (sanText === undefined || sanText === '') {
    throw new PlantgateError('NO_IDENTITY', 'client certificate has no subject alternative name (expected one spiffe:// URI SAN)');
  }
  const entries = parseSubjectAltNames(sanText);
  if (entries === undefined) {
    throw new PlantgateError('NO_IDENTITY', 'client certificate subject alternative names could not be parsed');
  }
  const uris = entries.filter((e) => e.kind === 'URI');
  if (uris.length === 0) {
    throw new PlantgateError('NO_IDENTITY', 'client certificate has no URI SAN (expected one spiffe:// SPIFFE ID)');
  }
  if (uris.length > 1) {
    throw new PlantgateError('NO_IDENTITY', `client certificate has ${uris.length} URI SANs; an X509-SVID carries exactly one`);
  }
  const parsed = parseSpiffeId(uris[0].value);
  if (typeof parsed === 'string') {
    throw new PlantgateError('NO_IDENTITY', `client certificate URI SAN is not a valid SPIFFE ID: ${parsed}`);
  }
  return { workloadId: parsed.id, thumbprint: certificateThumbprint(cert) };
}

/**
 * Identity of the peer on a server-side TLS socket, after the handshake. Only an authorized peer
 * (its chain verified against our CA) has an identity; an anonymous or unverified one has none.
 */
export function identityFromTlsSocket(socket: TLSSocket): CertificateIdentity {
  if (!socket.authorized) {
    const why = socket.authorizationError ? `: ${String(socket.authorizationError)}` : '';
    throw new PlantgateError('NO_IDENTITY', `peer certificate not authorized${why}`);
  }
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) {
    throw new PlantgateError('NO_IDENTITY', 'peer presented no client certificate');
  }
  return identityFromCertificate(cert);
}
