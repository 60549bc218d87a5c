// Which gateway a collector connection may write as, from its client certificate (the stream's
// hello only claims an id). A certificate names a gateway by its SPIFFE ID (the one URI SAN of an
// X509-SVID) or, lacking one, its subject CN. Rules, in order:
// - the gateway is configured with `identity`: the certificate's SPIFFE ID or CN must equal it;
// - configured without `identity`: the SPIFFE ID's path must be /gateway/<id>, or the CN must be <id>;
// - not configured while a `gateways` list exists: refused;
// - no `gateways` list at all (open mode, for labs): the first certificate identity seen for an id
//   is bound to it (trust on first use, kept in the state file); any other is refused afterwards.
// Pure apart from reading the peer certificate off the socket.
import type { TLSSocket } from 'node:tls';
import { parseSubjectAltNames, peerCertificate } from '../identity/cert.js';
import { parseSpiffeId } from '../identity/spiffe.js';

export interface PeerIdentity {
  spiffeId: string | undefined;
  cn: string | undefined;
}

export function peerIdentity(socket: TLSSocket): PeerIdentity {
  const cert = socket.authorized ? peerCertificate(socket) : undefined;
  if (!cert) return { spiffeId: undefined, cn: undefined };
  const uris = (parseSubjectAltNames(cert.subjectAltName ?? '') ?? []).filter((e) => e.kind === 'URI');
  const parsed = uris.length === 1 ? parseSpiffeId(uris[0].value) : undefined;
  const spiffeId = parsed !== undefined && typeof parsed !== 'string' ? parsed.id : undefined;
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  return { spiffeId, cn };
}

/** The identity string bound on first use: the SPIFFE ID, else "CN=<cn>". */
export function boundName(p: PeerIdentity): string | undefined {
  return p.spiffeId ?? (p.cn !== undefined ? `CN=${p.cn}` : undefined);
}

/** Does the certificate prove this gateway id? (configured = the gateway's `identity`, if any) */
export function certificateMatches(p: PeerIdentity, gatewayId: string, configured: string | undefined): boolean {
  if (configured !== undefined) return p.spiffeId === configured || (p.cn !== undefined && p.cn === configured) || boundName(p) === configured;
  if (p.spiffeId !== undefined) {
    const slash = p.spiffeId.indexOf('/', 'spiffe://'.length);
    if (slash >= 0 && p.spiffeId.slice(slash) === `/gateway/${gatewayId}`) return true;
  }
  return p.cn === gatewayId;
}
