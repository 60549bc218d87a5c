// Generators for people and workloads and the many ways one of them can be spelt (docs/identity.md,
// Principals): case (including letters whose upper case is longer, ß → SS), Unicode compatibility
// forms (full-width letters), composed or decomposed accents, `user:` prefixes in any case and
// number, and blanks around the name or after the prefix. Used by the property tests that no
// spelling of a principal escapes a revocation or an approval's "not the owner" rule.
import fc from 'fast-check';

/** Lower-case letters a name may hold: some with accents, ß (upper case SS) and σ (final form ς). */
const LETTERS = [...'abcdefghijklmnopqrstuvwxyz', 'é', 'ö', 'ß', 'ø', 'σ', 'å'];

/** A person's name as an identity provider might issue it: `name@domain`, lower case, composed. */
export const humanName = (domain = 'plant.example'): fc.Arbitrary<string> =>
  fc
    .tuple(fc.array(fc.constantFrom(...LETTERS), { minLength: 2, maxLength: 8 }), fc.constantFrom('', '.', '-', '_'), fc.array(fc.constantFrom(...LETTERS, '0', '7'), { maxLength: 4 }))
    .map(([a, sep, b]) => `${a.join('')}${b.length > 0 ? sep : ''}${b.join('')}@${domain}`.normalize('NFC'));

/** A workload's SPIFFE ID in the plant's trust domain. */
export const workloadId = (domain = 'plant.example'): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'), { minLength: 3, maxLength: 10 }).map((p) => `spiffe://${domain}/agent/${p.join('')}`);

const BLANKS = ['', ' ', '  ', '\t', '\u00a0', '\u3000'];

/** Full-width forms of printable ASCII characters (NFKC folds them back). */
const fullWidth = (s: string): string => [...s].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');

/** One character spelt another way: upper case, full width, decomposed. */
const charSpelling = (c: string): fc.Arbitrary<string> => fc.constantFrom(c, c.toUpperCase(), fullWidth(c), fullWidth(c.toUpperCase()), c.normalize('NFD'), c.toUpperCase().normalize('NFD'));

/** The same name spelt character by character in other forms, without any prefix or blank. */
const bareSpelling = (name: string): fc.Arbitrary<string> => fc.tuple(...[...name].map(charSpelling)).map((cs) => cs.join(''));

/** A `user:` prefix as someone might type it: none, any case, repeated. */
const userPrefix = fc.constantFrom('', 'user:', 'USER:', 'User:', 'user:user:');

/** Another spelling of a human's name: same person, different bytes. */
export const humanSpelling = (name: string): fc.Arbitrary<string> =>
  fc.tuple(fc.constantFrom(...BLANKS), userPrefix, fc.constantFrom(...BLANKS), bareSpelling(name), fc.constantFrom(...BLANKS)).map(([a, p, b, n, c]) => `${a}${p}${p === '' ? '' : b}${n}${c}`);

/** Another spelling of a SPIFFE ID: scheme and trust domain in any case (the path is case-sensitive). */
export const workloadSpelling = (id: string): fc.Arbitrary<string> => {
  const m = /^spiffe:\/\/([^/]*)(\/.*)$/.exec(id)!;
  return fc.tuple(bareSpelling('spiffe'), fc.tuple(...[...m[1]!].map((c) => fc.constantFrom(c, c.toUpperCase()))), fc.constantFrom(...BLANKS)).map(([scheme, td, b]) => `${b}${scheme}://${td.join('')}${m[2]}${b}`);
};
