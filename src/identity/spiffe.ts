// SPIFFE ID syntax (SPIFFE spec "SPIFFE-ID.md" §2): the one string a workload identity is.
// Owns parsing and validation only; never decides whether an identity is trusted.

export interface SpiffeId {
  /** The whole ID, exactly as presented (already canonical: the spec allows no variation). */
  id: string;
  trustDomain: string;
  /** '' for the trust domain itself, else '/seg/seg'. */
  path: string;
}

// §2.1: trust domain chars are lowercase letters, digits, '.', '-', '_'. §2.2: path segments are
// letters, digits, '.', '-', '_'; no empty, '.' or '..' segments; no trailing '/'.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
// §2.3: an ID (as URI) is at most 2048 bytes; all allowed chars are ASCII, so length == bytes.
const MAX_LENGTH = 2048;
const PREFIX = 'spiffe://';

/** Parses a SPIFFE ID; returns a description of the first problem instead of throwing. */
export function parseSpiffeId(value: string): SpiffeId | string {
  if (value.length > MAX_LENGTH) return `longer than ${MAX_LENGTH} bytes`;
  // The scheme must be exactly lowercase "spiffe" (§2): a differently cased scheme is a different ID
  // string and would break exact-match comparisons later.
  if (!value.startsWith(PREFIX)) return 'must start with "spiffe://"';
  const rest = value.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (trustDomain === '') return 'trust domain is empty';
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return `trust domain "${trustDomain}" may contain only lowercase letters, digits, ".", "-" and "_" (no port, user info or upper case)`;
  }
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const segment of segments) {
      if (segment === '') return 'path has an empty segment or a trailing "/"';
      if (segment === '.' || segment === '..') return 'path may not contain "." or ".." segments';
      if (!SEGMENT.test(segment)) {
        return `path segment "${segment}" may contain only letters, digits, ".", "-" and "_" (no query, fragment or percent-encoding)`;
      }
    }
  }
  return { id: value, trustDomain, path };
}

export function isSpiffeId(value: string): boolean {
  return typeof parseSpiffeId(value) !== 'string';
}
