// What the gateway says when the bundle file itself is the problem: a file that is not there is
// MISSING, one over the size limit is TOO_LARGE (never MISSING, never read into memory).
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/log.js';
import { PolicyState } from '../../../src/gateway/policy-state.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

describe('bundle file refusals at load', () => {
  let dir: string;
  let policy: PolicyState;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-policy-state-'));
    const { publicKey } = await generateKeyPair('EdDSA', { extractable: true });
    policy = new PolicyState({
      stateDir: path.join(dir, 'policy'),
      pinned: [{ kid: 'policy-1', publicJwk: await exportJWK(publicKey) }],
      clock: new ManualClock(),
      logger: silentLogger,
      readsWhenExpired: true,
      resolvers: RESOLVERS,
    });
    await policy.init();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('names a bundle file that does not exist MISSING', async () => {
    const r = await policy.load(path.join(dir, 'nowhere.jws'));
    expect(r).toMatchObject({ ok: false, code: 'MISSING' });
  });

  it('names a 50 MB bundle file TOO_LARGE with its size and the limit', async () => {
    const file = path.join(dir, 'huge.jws');
    await writeFile(file, '');
    await truncate(file, 50 * 1024 * 1024);
    const r = await policy.load(file);
    expect(r).toMatchObject({ ok: false, code: 'TOO_LARGE' });
    expect(r.ok === false && r.message).toContain('52428800 bytes');
  });
});
