// Workload identity from an X.509 client certificate (docs/identity.md): the SPIFFE ID in the URI SAN,
// the Modbus/TCP Security role extension when present, and the RFC 8705 thumbprint that binds
// tokens to this certificate.
// Owns extraction only. It never trusts a certificate by itself: chain validation is the TLS
// layer's job (rejectUnauthorized + the gateway's CA), and this module refuses unauthorized peers.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { PlantgateError } from '../core/errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface CertificateIdentity {
  /** SPIFFE ID from the certificate's only URI SAN. */
  workloadId: string;
  /** RFC 8705 x5t#S256: base64url SHA-256 of the certificate DER. */
  thumbprint: string;
  /** Modbus/TCP Security role (MB/TCP Security §6.2, OID 1.3.6.1.4.1.50316.802.1), when present. */
  role?: string;
}

/** The Modbus/TCP Security role extension: its value is one DER UTF8String, the role name. */
export const MODBUS_ROLE_OID = '1.3.6.1.4.1.50316.802.1';
/** The OID's DER encoding (tag, length, arcs): a certificate without these bytes has no role. */
const ROLE_OID_DER = Buffer.from([0x06, 0x0b, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0x89, 0x0c, 0x86, 0x22, 0x01]);
/** Longer role names are a mistake or an attack: policy role names are short identifiers. */
export const MAX_ROLE_LENGTH = 128;

/**
 * Decodes one DER UTF8String filling `der` exactly (definite length, minimal length octets), or
 * returns why not. Strict on purpose: a role we cannot read unambiguously is no role at all.
 */
function decodeUtf8String(der: Uint8Array): string | { error: string } {
  if (der.length < 2 || der[0] !== 0x0c) return { error: 'is not a UTF8String' };
  let len = der[1];
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || der.length < 2 + n) return { error: 'has an invalid length' };
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | der[2 + i];
    if (len < 0x80 || (n === 2 && len < 0x100)) return { error: 'has a non-minimal length (not DER)' };
    off = 2 + n;
  }
  if (off + len !== der.length) return { error: 'length does not match its content' };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(der.subarray(off));
  } catch {
    return { error: 'is not valid UTF-8' };
  }
  return text;
}

/**
 * The Modbus/TCP Security role of a certificate: undefined when it carries no role extension, a
 * NO_IDENTITY error when it carries one we cannot read as exactly one sane role name (fail closed:
 * a certificate meant to restrict its holder to a role must not be read as having none).
 */
export function roleFromCertificate(cert: X509Certificate): string | undefined {
  // Cheap pre-check: the whole ASN.1 parse runs only for certificates that mention the OID.
  if (!cert.raw.includes(ROLE_OID_DER)) return undefined;
  let exts: x509.Extension[];
  try {
    exts = new x509.X509Certificate(cert.raw).extensions.filter((e) => e.type === MODBUS_ROLE_OID);
  } catch (err) {
    throw new PlantgateError('NO_IDENTITY', `client certificate could not be parsed for its role extension: ${(err as Error).message}`);
  }
  if (exts.length === 0) return undefined;
  if (exts.length > 1) throw new PlantgateError('NO_IDENTITY', `client certificate has ${exts.length} Modbus role extensions; it may carry one`);
  const role = decodeUtf8String(new Uint8Array(exts[0].value));
  if (typeof role !== 'string') throw new PlantgateError('NO_IDENTITY', `client certificate Modbus role extension ${role.error}`);
  // eslint-disable-next-line no-control-regex
  if (role.length === 0 || role.length > MAX_ROLE_LENGTH || /[\u0000-\u001f\u007f]/.test(role) || role.trim() !== role) {
    throw new PlantgateError('NO_IDENTITY', `client certificate Modbus role must be 1–${MAX_ROLE_LENGTH} printable characters without surrounding spaces`);
  }
  return role;
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
  const role = roleFromCertificate(cert);
  const identity: CertificateIdentity = { workloadId: parsed.id, thumbprint: certificateThumbprint(cert) };
  if (role !== undefined) identity.role = role;
  return identity;
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
  const cert = peerCertificate(socket);
  if (cert === undefined) {
    throw new PlantgateError('NO_IDENTITY', 'peer presented no client certificate');
  }
  return identityFromCertificate(cert);
}

/**
 * The peer's certificate on a TLS socket, parsed from its DER. Not `getPeerX509Certificate()`: on
 * Node 20 each call leaves ~8 KB of native memory behind that no garbage collection returns (RSS
 * grew without bound under connection churn; `make soak`, docs/deployment.md Memory), while the
 * DER from `getPeerCertificate()` parsed here is freed with the object.
 */
export function peerCertificate(socket: TLSSocket): X509Certificate | undefined {
  const raw = socket.getPeerCertificate().raw as Buffer | undefined;
  return raw === undefined || raw.length === 0 ? undefined : new X509Certificate(raw);
}
