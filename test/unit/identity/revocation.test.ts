import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Subject } from '../../../src/core/command.js';
import { TokenRegistry } from '../../../src/identity/registry.js';
import { parseRevocationBody, RevocationError, RevocationStore, type RevocationRequest } from '../../../src/identity/revocation.js';
import { TokenError } from '../../../src/identity/token-error.js';
import { humanName, humanSpelling, workloadId, workloadSpelling } from '../core/spellings.js';

const A = 'spiffe://plant.example/agent/optimizer';
const B = 'spiffe://plant.example/agent/reporter';

let dir: string;
let clock: ManualClock;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-rev-'));
  clock = new ManualClock();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function subject(over: Partial<Subject> = {}): Subject {
  return {
    workloadId: A, owner: 'alice', taskId: 'T1', taskPurpose: 'p', jti: 'j1', roles: [], scopes: ['read'],
    assurance: 'mtls+token', issuer: 'iss', issuedAtMs: clock.now(), expiresAtMs: clock.now() + 300_000, ...over,
  };
}

const req = (over: Partial<RevocationRequest>): RevocationRequest => ({ kind: 'jti', value: 'j1', reason: 'test', source: 'operator', by: 'op', ...over });

describe('RevocationStore', () => {
  it('revokes one token by jti whatever its issue time, and no other', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'jti', value: 'j1' }));
    expect(store.isRevoked(subject({ jti: 'j1', issuedAtMs: clock.now() + 3_600_000 }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ jti: 'j2' }))).toBeUndefined();
    await store.close();
  });

  it('revokes by sub every token issued before the revocation; a token issued after the leeway works again', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock, leewaySec: 30 });
    const before = subject({ jti: 'old' });
    clock.advance(1000);
    await store.revoke(req({ kind: 'sub', value: A }));
    expect(store.isRevoked(before)).toBe('TOKEN_REVOKED');
    // An issuer clock up to the leeway ahead: its token minted just before still dies.
    expect(store.isRevoked(subject({ jti: 'skewed', issuedAtMs: clock.now() + 30_000 }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ jti: 'fresh', issuedAtMs: clock.now() + 31_000 }))).toBeUndefined();
    expect(store.isRevoked(subject({ workloadId: B, jti: 'other' }))).toBeUndefined();
    await store.close();
  });

  it('revokes by owner every agent of that owner, and no other owner', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'owner', value: 'alice' }));
    expect(store.isRevoked(subject({ workloadId: A }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ workloadId: B }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ owner: 'bob' }))).toBeUndefined();
    await store.close();
  });

  it('revoking a human as owner refuses every token that names them in act, in any spelling', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const delegated = subject({ owner: 'carol@plant.example', actSub: ['alice@plant.example'] });
    const deeper = subject({ workloadId: B, owner: 'carol@plant.example', actSub: ['spiffe://plant.example/runner', 'ALICE@Plant.Example'] });
    expect(store.isRevoked(delegated)).toBeUndefined();
    await store.revoke(req({ kind: 'owner', value: 'Alice@plant.example' }));
    expect(store.isRevoked(delegated)).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(deeper)).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ owner: 'carol@plant.example', actSub: ['bob@plant.example'] }))).toBeUndefined();
    await store.close();
  });

  it('revokes a human named as sub user:<name> wherever a token names them: owner or act', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'sub', value: 'user:alice@plant.example' }));
    expect(store.isRevoked(subject({ owner: 'alice@plant.example' }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ owner: 'carol', actSub: ['user:Alice@plant.example'] }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ owner: 'carol', actSub: ['bob'] }))).toBeUndefined();
    await store.close();
  });

  it('revoking a workload refuses tokens of other agents that act through it', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'sub', value: A }));
    expect(store.isRevoked(subject({ workloadId: B, actSub: [A, 'alice'] }))).toBe('TOKEN_REVOKED');
    await store.close();
  });

  it('ends a task for every agent working on it (operator), or for one owner’s agents only', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'task', value: 'T1', owner: 'ALICE', source: 'owner', by: 'alice' }));
    expect(store.isRevoked(subject({ taskId: 'T1' }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ workloadId: B, taskId: 'T1' }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ workloadId: B, taskId: 'T1', owner: 'bob' }))).toBeUndefined();
    expect(store.isRevoked(subject({ taskId: 'T2' }))).toBeUndefined();
    await store.revoke(req({ kind: 'task', value: 'T1' }));
    expect(store.isRevoked(subject({ workloadId: B, taskId: 'T1', owner: 'bob' }))).toBe('TOKEN_REVOKED');
    await store.close();
  });

  it('revokes a task only for the workload that completed it (older records)', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'task', value: 'T1', workloadId: A, source: 'agent', by: A }));
    expect(store.isRevoked(subject({ taskId: 'T1' }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ taskId: 'T2' }))).toBeUndefined();
    expect(store.isRevoked(subject({ workloadId: B, taskId: 'T1' }))).toBeUndefined();
    await store.close();
  });

  it('scopes an owner’s revocation of an agent to tokens carrying that owner', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'sub', value: A, owner: 'alice', source: 'owner', by: 'alice' }));
    expect(store.isRevoked(subject({ owner: 'alice' }))).toBe('TOKEN_REVOKED');
    expect(store.isRevoked(subject({ owner: 'bob' }))).toBeUndefined();
    await store.close();
  });

  it('keeps revocations across a restart (fsynced append-only file)', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'jti', value: 'j1' }));
    await store.revoke(req({ kind: 'owner', value: 'alice' }));
    await store.close();
    const again = await RevocationStore.open({ stateDir: dir, clock });
    expect(again.list().map((r) => `${r.kind}:${r.value}`)).toEqual(['jti:j1', 'owner:alice']);
    expect(again.isRevoked(subject({ owner: 'bob', jti: 'j1' }))).toBe('TOKEN_REVOKED');
    await again.close();
  });

  it('ignores a torn last line from a crash mid-append, and keeps appending cleanly after it', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'jti', value: 'j1' }));
    await store.close();
    await appendFile(path.join(dir, 'revocations.ndjson'), '{"kind":"jti","val');
    const again = await RevocationStore.open({ stateDir: dir, clock });
    expect(again.list()).toHaveLength(1);
    await again.revoke(req({ kind: 'jti', value: 'j2' }));
    await again.close();
    const third = await RevocationStore.open({ stateDir: dir, clock });
    expect(third.list().map((r) => r.value)).toEqual(['j1', 'j2']);
    await third.close();
  });

  it('refuses to start on a corrupt line in the middle, naming file and line (forgetting would fail open)', async () => {
    await writeFile(path.join(dir, 'revocations.ndjson'), 'garbage\n{"kind":"jti","value":"j","revokedAtMs":1,"source":"operator"}\n');
    await expect(RevocationStore.open({ stateDir: dir, clock })).rejects.toThrow(/revocations\.ndjson:1: not valid JSON/);
  });

  it('refuses new revocations past its bound instead of dropping old ones', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock, maxEntries: 1 });
    await store.revoke(req({ value: 'a' }));
    await expect(store.revoke(req({ value: 'b' }))).rejects.toBeInstanceOf(RevocationError);
    expect(store.isRevoked(subject({ jti: 'a' }))).toBe('TOKEN_REVOKED');
    await store.close();
  });

  it('applies the bundle’s revocations and replaces them on the next bundle', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const issuedSec = Math.floor(clock.now() / 1000);
    store.setBundleRevocations([{ sub: A, reason: 'decommissioned' }], issuedSec);
    expect(store.isRevoked(subject())).toBe('TOKEN_REVOKED');
    store.setBundleRevocations([], issuedSec);
    expect(store.isRevoked(subject())).toBeUndefined();
    expect(() => store.setBundleRevocations([{ sub: A, owner: 'x' }], issuedSec)).toThrow(/exactly one/);
    await store.close();
  });

  it('writes nothing but the revocation (no token) to disk', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    await store.revoke(req({ kind: 'jti', value: 'j1', reason: 'leaked' }));
    const text = await readFile(path.join(dir, 'revocations.ndjson'), 'utf8');
    expect(JSON.parse(text.trim())).toMatchObject({ kind: 'jti', value: 'j1', reason: 'leaked', source: 'operator', by: 'op' });
    await store.close();
  });
});

describe('parseRevocationBody', () => {
  it('accepts exactly one of jti, sub (a SPIFFE ID or user:<human>), owner, task with a reason', () => {
    expect(parseRevocationBody({ jti: 'x', reason: 'r' })).toEqual({ kind: 'jti', value: 'x', reason: 'r' });
    expect(parseRevocationBody({ sub: A, reason: 'r' })).toMatchObject({ kind: 'sub' });
    expect(parseRevocationBody({ sub: 'user:alice@plant.example', reason: 'r' })).toEqual({ kind: 'sub', value: 'user:alice@plant.example', reason: 'r' });
    expect(parseRevocationBody({ task: 'T1', reason: 'r' })).toEqual({ kind: 'task', value: 'T1', reason: 'r' });
  });
  it.each([
    [{ reason: 'r' }, /exactly one/],
    [{ jti: 'x', sub: A, reason: 'r' }, /exactly one/],
    [{ jti: 'x' }, /"reason"/],
    [{ sub: 'not-spiffe', reason: 'r' }, /SPIFFE ID .* or a human as user:<name>/],
    [{ jti: 'x', reason: 'r', extra: 1 }, /unknown field "extra"/],
    [[], /JSON object/],
  ])('rejects %j with a precise message', (body, msg) => {
    expect(parseRevocationBody(body)).toMatch(msg);
  });
});

describe('TokenRegistry with revocations', () => {
  it('denies the bound token with TOKEN_REVOKED the moment it is revoked, not NO_TOKEN', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const reg = new TokenRegistry({ clock, revocations: store });
    const s = subject();
    reg.put(A, s);
    expect(reg.current(A)).toBe(s);
    const pending = store.revoke(req({ kind: 'owner', value: 'alice' }));
    // Effective before the fsync completes.
    expect(reg.current(A)).toBe('TOKEN_REVOKED');
    await pending;
    await store.close();
  });

  it('kills a bound delegated token the moment the human it acts for is revoked', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const reg = new TokenRegistry({ clock, revocations: store });
    const s = subject({ owner: 'carol', actSub: ['alice@plant.example'] });
    reg.put(A, s);
    await store.revoke(req({ kind: 'sub', value: 'user:ALICE@plant.example' }));
    expect(reg.current(A)).toBe('TOKEN_REVOKED');
    await store.close();
  });

  it('refuses to bind a revoked token, and binds a token issued after a sub revocation', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const reg = new TokenRegistry({ clock, revocations: store });
    const old = subject({ jti: 'old' });
    await store.revoke(req({ kind: 'sub', value: A }));
    expect(() => reg.put(A, old)).toThrow(TokenError);
    clock.advance(60_000);
    const fresh = subject({ jti: 'fresh' });
    reg.put(A, fresh);
    expect(reg.current(A)).toBe(fresh);
    await store.close();
  });

  it('bounds distinct unexpired tokens per identity with RATE_LIMITED; expired ones free their slot', () => {
    const reg = new TokenRegistry({ clock, maxTokensPerIdentity: 2 });
    reg.put(A, subject({ jti: 'a' }));
    reg.put(A, subject({ jti: 'b' }));
    reg.put(A, subject({ jti: 'b' })); // re-PUT of the same token is not a new one
    let err: unknown;
    try {
      reg.put(A, subject({ jti: 'c' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TokenError);
    expect((err as TokenError).reason).toBe('RATE_LIMITED');
    expect((err as TokenError).detail).toBe('TOO_MANY_TOKENS');
    reg.put(B, subject({ workloadId: B, jti: 'c' }));
    clock.advance(300_000);
    reg.put(A, subject({ jti: 'c' }));
    expect(reg.current(A)).toMatchObject({ jti: 'c' });
  });

  it('kills a binding whose issuer key a new bundle removed, with TOKEN_INVALID', () => {
    const reg = new TokenRegistry({ clock });
    reg.put(A, subject({ issuer: 'iss', jti: 'k1' }), { keyId: 'k1' });
    reg.put(B, subject({ workloadId: B, issuer: 'iss', jti: 'k2' }), { keyId: 'k2' });
    const issuers = { get: (iss: string) => (iss === 'iss' ? (() => Promise.reject(new Error('unused'))) as never : undefined), hasKey: (_: string, kid: string) => kid === 'k2' };
    expect(reg.retainTrusted(issuers)).toBe(1);
    expect(reg.current(A)).toBe('TOKEN_INVALID');
    expect(reg.current(B)).toMatchObject({ jti: 'k2' });
  });
});

describe('revocation of a token\'s chain (property)', () => {
  // A token names a chain of principals: its agent (sub), its owner, and every entry of act (humans
  // or other workloads). Revoking any of them, spelt any way the operator API and CLI accept, must
  // refuse the token's next command; a token whose chain shares nobody with the revoked one goes on.
  const chainArb = fc.record({
    sub: workloadId(),
    owner: humanName(),
    act: fc.array(fc.oneof(humanName(), humanName(), workloadId()), { maxLength: 3 }),
  });
  const isWorkload = (p: string) => p.startsWith('spiffe://');

  it('revoking any principal of a token\'s chain, in any spelling, refuses its next command', async () => {
    const store = await RevocationStore.open({ stateDir: dir, clock });
    const reg = new TokenRegistry({ clock, revocations: store });
    await fc.assert(
      fc.asyncProperty(
        chainArb.chain((c) => {
          const chain = [c.sub, c.owner, ...c.act];
          return fc.record({
            c: fc.constant(c),
            victim: fc.constantFrom(...chain).chain((p) =>
              isWorkload(p)
                ? workloadSpelling(p).map((v) => ({ sub: v }))
                : fc.oneof(humanSpelling(p).map((v) => ({ owner: v })), humanSpelling(p).map((v) => ({ sub: `user:${v}` }))),
            ),
          });
        }),
        async ({ c, victim }) => {
          // Each run's tokens are issued after the leeway of every earlier run's revocation.
          clock.advance(60_000);
          // A bystander lives in another trust domain and mail domain: no generated revocation names it.
          const bystander = subject({ workloadId: 'spiffe://other.example/agent/b', owner: 'dave@other.example', actSub: ['erin@other.example'], jti: 'bystander' });
          const token = subject({ workloadId: c.sub, owner: c.owner, ...(c.act.length > 0 ? { actSub: c.act } : {}), jti: `j-${c.sub}` });
          reg.put(c.sub, token);
          reg.put(bystander.workloadId, bystander);
          expect(reg.current(c.sub)).toBe(token);
          // A spelling the operator API refuses is refused out loud (400 naming the field); every
          // spelling it accepts must revoke.
          const body = parseRevocationBody({ ...victim, reason: 'compromised' });
          fc.pre(typeof body !== 'string');
          const { kind, value } = body as Exclude<typeof body, string>;
          await store.revoke(req({ kind, value }));
          expect(reg.current(c.sub)).toBe('TOKEN_REVOKED');
          expect(reg.current(bystander.workloadId)).toBe(bystander);
        },
      ),
      { numRuns: 150 },
    );
    await store.close();
  }, 120_000);
});
