// Revocations written in the policy sources: compiled into the signed payload, refused with
// file:line:col when malformed, and in force (RevocationStore) as soon as the bundle is active.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SourceErrors } from '../../../src/core/errors.js';
import { payloadProblems } from '../../../src/policy/payload.js';
import { compileSources } from '../../../src/policy/sources.js';
import { demoPayload } from '../../unit/policy/fixtures.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const PLANT = path.resolve('fixtures/plants/water-treatment.yaml');
const JWKS = path.resolve('fixtures/keys/dev-issuer.jwks.json');

async function sources(revocations: string[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-revocations-'));
  const file = path.join(dir, 'bundle.yaml');
  await writeFile(
    file,
    [
      'bundle: { name: t, audience: plantgate:test, valid_for: 1d }',
      'limits: { max_token_ttl: 15m }',
      'issuers:',
      `  - { iss: https://issuer.test, jwks_file: ${JWKS} }`,
      'assets:',
      `  - { id: plc1, zone: treatment, criticality: high, protocol: modbus, unit_id: 1, points_from: ${PLANT} }`,
      'rules: []',
      'revocations:',
      ...revocations,
      '',
    ].join('\n'),
  );
  return file;
}

async function problems(revocations: string[]): Promise<string[]> {
  const file = await sources(revocations);
  try {
    await compileSources(file, { now: NOW, revision: 1 });
  } catch (err) {
    expect(err).toBeInstanceOf(SourceErrors);
    return (err as SourceErrors).errors.map((e) => e.message.slice(e.message.indexOf('bundle.yaml')));
  }
  throw new Error('expected the sources to be refused');
}

describe('revocations in policy sources', () => {
  it('compiles jti, sub and owner revocations with their reasons into the payload', async () => {
    const file = await sources([
      '  - { jti: tok-leaked-1, reason: pasted into a ticket }',
      '  - sub: spiffe://plant.example/agent/old-optimizer',
      '    reason: decommissioned',
      '    revoked_at: 2026-01-10T00:00:00Z',
      '  - { owner: contractor@plant.example, reason: contract ended, revoked_at: 1767225600 }',
    ]);
    const p = await compileSources(file, { now: NOW, revision: 3 });
    expect(payloadProblems(p)).toBeNull();
    expect(p.revocations).toEqual([
      { jti: 'tok-leaked-1', reason: 'pasted into a ticket' },
      { sub: 'spiffe://plant.example/agent/old-optimizer', reason: 'decommissioned', revoked_at: Date.UTC(2026, 0, 10) / 1000 },
      { owner: 'contractor@plant.example', reason: 'contract ended', revoked_at: 1767225600 },
    ]);
  });

  it('reports each malformed revocation with file:line:col and field', async () => {
    const msgs = await problems([
      '  - { reason: no target }',
      '  - { jti: a, owner: b, reason: two targets }',
      '  - { sub: not-a-spiffe-id, reason: x }',
      '  - { jti: tok-2 }',
      '  - { jti: tok-3, reason: x, revoked_at: yesterday }',
      '  - { jti: tok-3, reason: again }',
      '  - { jti: tok-4, reason: x, by: me }',
    ]);
    expect(msgs).toEqual([
      'bundle.yaml:9:5: revocations[0]: name one of jti, sub, owner',
      'bundle.yaml:10:5: revocations[1]: names jti and owner; name exactly one of jti, sub, owner',
      "bundle.yaml:11:12: revocations[2].sub: 'not-a-spiffe-id' is not a SPIFFE ID (spiffe://trust-domain/path) or a human as user:<name>",
      'bundle.yaml:12:5: revocations[3].reason: is required',
      'bundle.yaml:13:42: revocations[4].revoked_at: must be an RFC 3339 time with an offset (2026-01-15T08:00:00Z) or seconds since the epoch',
      "bundle.yaml:14:12: revocations[5].jti: 'tok-3' is revoked twice",
      "bundle.yaml:15:30: revocations[6].by: unknown field 'by' (expected jti, sub, owner, reason, revoked_at)",
    ]);
  });

  it('refuses a signed payload whose revocation names two targets', () => {
    expect(payloadProblems(demoPayload({ revocations: [{ jti: 'a', reason: 'r' }] }))).toBeNull();
    expect(payloadProblems(demoPayload({ revocations: [{ jti: 'a', sub: 'spiffe://x/y', reason: 'r' }] }))).toBe('revocations.0: name exactly one of jti, sub, owner');
    expect(payloadProblems(demoPayload({ revocations: [{ sub: 'agent', reason: 'r' }] }))).toMatch(/^revocations\.0\.sub: /);
  });
});
