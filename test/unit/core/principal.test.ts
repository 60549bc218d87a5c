import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalPrincipal, samePrincipal } from '../../../src/core/principal.js';

describe('canonical principals', () => {
  it('treats case, user: prefixes and full-width spellings of one person as the same person', () => {
    expect(samePrincipal('ALICE@Plant.Example', 'alice@plant.example')).toBe(true);
    expect(samePrincipal('user:alice@plant.example', 'alice@plant.example')).toBe(true);
    expect(samePrincipal('ＡＬＩＣＥ@plant.example', 'alice@plant.example')).toBe(true);
    expect(samePrincipal(' alice@plant.example ', 'alice@plant.example')).toBe(true);
  });

  it('folds case fully: STRASSE is straße, a final ς is σ, and blanks after user: do not count', () => {
    expect(samePrincipal('STRASSE@plant.example', 'straße@plant.example')).toBe(true);
    expect(samePrincipal('ΟΔΟΣ@plant.example', 'οδοσ@plant.example')).toBe(true);
    expect(samePrincipal('user: alice@plant.example', 'alice@plant.example')).toBe(true);
    expect(samePrincipal('USER:  user:alice@plant.example', 'alice@plant.example')).toBe(true);
  });

  it('keeps different people apart', () => {
    expect(samePrincipal('alice@plant.example', 'bob@plant.example')).toBe(false);
    expect(samePrincipal('alice@plant.example', 'alice@other.example')).toBe(false);
  });

  it('folds a SPIFFE ID\'s trust domain but keeps its case-sensitive path', () => {
    expect(canonicalPrincipal('SPIFFE://Plant.Example/agent/Optimizer')).toBe('spiffe://plant.example/agent/Optimizer');
    expect(samePrincipal('spiffe://plant.example/agent/a', 'spiffe://plant.example/agent/A')).toBe(false);
  });

  it('is idempotent for any string', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.constantFrom('user:user:Bob', 'USER:spiffe://X/y', 'ǅ', 'ﬃ')), (s) => canonicalPrincipal(canonicalPrincipal(s)) === canonicalPrincipal(s)));
  });
});
