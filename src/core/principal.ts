// The one canonical form in which principals (humans and workloads) are compared, wherever
// identities meet: approval "approver is not the owner", revocation by owner or human, freezes by
// owner, rate-limit keys. Two spellings of one person must never count as two people
// (an owner approving their own agent's command as `ALICE@Plant.Example` is the attack this stops).
// Pure string work; never I/O.

const SPIFFE = /^spiffe:\/\/([^/]*)(\/.*)?$/i;
/** `user:` prefixes, repeated or followed by blanks (`user: alice` is alice, not ' alice'). */
const USER_PREFIX = /^(?:user:\s*)+/i;

/**
 * Canonical principal: Unicode NFKC (compatibility forms such as full-width letters fold to ASCII),
 * surrounding whitespace dropped, `user:` prefixes (and blanks after them) removed, and case
 * folded. SPIFFE IDs keep their path's case (the SPIFFE spec makes paths case-sensitive) but fold
 * the scheme and trust domain, which the spec requires to be lower case anyway.
 */
export function canonicalPrincipal(raw: string): string {
  const s = raw.normalize('NFKC').trim().replace(USER_PREFIX, '');
  const spiffe = SPIFFE.exec(s);
  if (spiffe !== null) return `spiffe://${spiffe[1]!.toLowerCase()}${spiffe[2] ?? ''}`;
  // Upper, then lower case: full case folding as far as JavaScript has it (ß and SS are one
  // spelling, σ and ς too), where lower case alone keeps STRASSE and straße apart. Case mapping can
  // itself produce a non-NFKC sequence in rare scripts: normalise once more.
  return s.toUpperCase().toLowerCase().normalize('NFKC');
}

/** True when both strings name the same principal. */
export function samePrincipal(a: string, b: string): boolean {
  return canonicalPrincipal(a) === canonicalPrincipal(b);
}
