// The emergency freeze store: which commands a freeze holds, that it survives a reopen (real files
// with fsync), that an unreadable state file refuses the start, expiry on a ManualClock, and the
// two-person rule for lifting one.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock, systemClock } from '../../../src/core/clock.js';
import type { Command, Operation, Subject } from '../../../src/core/command.js';
import { parseFreezeBody } from '../../../src/freeze/request.js';
import { FreezeError, FreezeStore, type FreezeChange, type FreezeRequest } from '../../../src/freeze/store.js';

const AGENT: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'alice@plant.example', taskId: 't', taskPurpose: 'p',
  jti: 'j1', roles: [], scopes: ['read', 'write'], assurance: 'mtls+token', issuer: 'https://issuer', expiresAtMs: 0, issuedAtMs: 0,
};

function cmd(operation: Operation, assetId = 'plc1'): Command {
  return { sessionId: 's1', protocol: 'modbus', assetId, operation, functionCode: 6, targets: [{ table: 'holding', address: 0, count: 1 }], points: ['tank1.setpoint'] };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FreezeError) return err.code;
    throw err;
  }
  return 'resolved';
}

describe('FreezeStore', () => {
  let dir: string;
  let clock: ManualClock;
  let store: FreezeStore;
  let changes: FreezeChange[];
  const open = async (quorum = 1) => {
    const s = await FreezeStore.open({ stateDir: dir, clock, unfreezeQuorum: quorum });
    s.on('changed', (c) => changes.push(c));
    return s;
  };
  const freeze = (over: Partial<FreezeRequest> = {}) => store.freeze({ scope: 'asset', value: 'plc1', mode: 'writes', reason: 'leak on tank 1', by: 'bob@plant.example', ...over });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-freeze-'));
    clock = new ManualClock();
    changes = [];
    store = await open();
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('holds nothing while nothing is frozen', () => {
    for (const op of ['read', 'write', 'call', 'diagnostic'] as const) expect(store.check(cmd(op), AGENT, clock.now())).toBeUndefined();
  });

  it('an asset freeze holds writes, method calls and diagnostics on that asset, not reads, not other assets', async () => {
    const f = await freeze();
    expect(f.id).toMatch(/^frz-/);
    for (const op of ['write', 'call', 'diagnostic', 'admin'] as const) expect(store.check(cmd(op), AGENT, clock.now())?.id).toBe(f.id);
    for (const op of ['read', 'browse', 'subscribe'] as const) expect(store.check(cmd(op), AGENT, clock.now())).toBeUndefined();
    expect(store.check(cmd('write', 'plc2'), AGENT, clock.now())).toBeUndefined();
  });

  it('mode all holds reads too', async () => {
    await freeze({ mode: 'all' });
    expect(store.check(cmd('read'), AGENT, clock.now())).toBeDefined();
  });

  it('a site freeze holds every asset', async () => {
    await freeze({ scope: 'site', value: '' });
    expect(store.check(cmd('write', 'anything'), AGENT, clock.now())).toBeDefined();
  });

  it('a workload pattern holds the workloads it matches ("*" one segment, "**" any)', async () => {
    await freeze({ scope: 'workload', value: 'spiffe://plant.example/agent/*' });
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeDefined();
    expect(store.check(cmd('write'), { ...AGENT, workloadId: 'spiffe://plant.example/agent/x/y' }, clock.now())).toBeUndefined();
    expect(store.check(cmd('write'), { ...AGENT, workloadId: 'spiffe://plant.example/robot/x' }, clock.now())).toBeUndefined();
    await freeze({ scope: 'workload', value: 'spiffe://PLANT.example/**' });
    expect(store.check(cmd('write'), { ...AGENT, workloadId: 'spiffe://plant.example/agent/x/y' }, clock.now())).toBeDefined();
  });

  it('an owner freeze holds the owner under any spelling, and agents acting for that human', async () => {
    await freeze({ scope: 'owner', value: 'user:ALICE@Plant.Example' });
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeDefined();
    expect(store.check(cmd('write'), { ...AGENT, owner: 'ａｌｉｃｅ@plant.example' }, clock.now())).toBeDefined();
    expect(store.check(cmd('write'), { ...AGENT, owner: 'carol@plant.example', actSub: ['alice@plant.example'] }, clock.now())).toBeDefined();
    expect(store.check(cmd('write'), { ...AGENT, owner: 'carol@plant.example' }, clock.now())).toBeUndefined();
  });

  it('survives a reopen: the freeze file is written before freeze() resolves', async () => {
    const f = await freeze({ expiresAtMs: clock.now() + 60_000 });
    // No close(): what a kill -9 right after the answer leaves on disk.
    const again = await FreezeStore.open({ stateDir: dir, clock });
    expect(again.check(cmd('write'), AGENT, clock.now())?.id).toBe(f.id);
    expect(again.active(clock.now())).toEqual([f]);
  });

  it('refuses to open an unreadable state file, naming the file (forgetting a freeze would fail open)', async () => {
    await freeze();
    await writeFile(path.join(dir, 'freezes.json'), '{"format":1,"active":[{"id":');
    const err = await FreezeStore.open({ stateDir: dir, clock }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FreezeError);
    expect((err as FreezeError).code).toBe('STORE_CORRUPT');
    expect((err as FreezeError).message).toContain('freezes.json');
    await writeFile(path.join(dir, 'freezes.json'), JSON.stringify({ format: 1, active: [{ id: 'frz-a', scope: 'planet' }], lifted: [] }));
    expect((await FreezeStore.open({ stateDir: dir, clock }).catch((e: unknown) => e) as FreezeError).message).toContain('active.0.scope');
  });

  it('stops holding at its expiry and records that it expired', async () => {
    const f = await freeze({ expiresAtMs: clock.now() + 1000 });
    clock.advance(999);
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeDefined();
    clock.advance(1);
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeUndefined();
    await new Promise<void>((resolve) => store.once('changed', () => resolve()));
    expect(changes.map((c) => c.kind)).toEqual(['frozen', 'expired']);
    expect(store.active(clock.now())).toEqual([]);
    expect(store.recentlyLifted(clock.now())[0]).toMatchObject({ id: f.id, liftedHow: 'expired', liftedAtMs: f.expiresAtMs });
    const state = JSON.parse(await readFile(path.join(dir, 'freezes.json'), 'utf8')) as { active: unknown[] };
    expect(state.active).toEqual([]);
  });

  it('records the expiry when it comes, even when no command or operator asks', async () => {
    await store.close();
    store = await FreezeStore.open({ stateDir: dir, clock: systemClock });
    const expired = new Promise<FreezeChange>((resolve) => store.on('changed', (c) => c.kind === 'expired' && resolve(c)));
    const f = await store.freeze({ scope: 'site', value: '', mode: 'writes', reason: 'short stop', by: 'bob@plant.example', expiresAtMs: Date.now() + 50 });
    expect((await expired).freeze.id).toBe(f.id);
    expect(store.active(Date.now())).toEqual([]);
  });

  it('is lifted by one operator without the two-person rule', async () => {
    const f = await freeze();
    const r = await store.unfreeze(f.id, 'carol@plant.example', 'leak fixed');
    expect(r.status).toBe('lifted');
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeUndefined();
    expect(changes.map((c) => [c.kind, c.by, c.reason])).toEqual([
      ['frozen', 'bob@plant.example', 'leak on tank 1'],
      ['unfrozen', 'carol@plant.example', 'leak fixed'],
    ]);
    expect(await code(store.unfreeze(f.id, 'carol@plant.example', 'again'))).toBe('NOT_FOUND');
  });

  it('under the two-person rule holds until a second, distinct operator agrees; one person in two spellings is one', async () => {
    await store.close();
    store = await open(2);
    const f = await freeze();
    expect((await store.unfreeze(f.id, 'bob@plant.example', 'fixed')).status).toBe('pending');
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeDefined();
    expect(await code(store.unfreeze(f.id, 'user:BOB@plant.example', 'fixed, really'))).toBe('ALREADY_VOTED');
    // The vote is durable too.
    const again = await FreezeStore.open({ stateDir: dir, clock, unfreezeQuorum: 2 });
    expect(again.active(clock.now())[0]!.unfreezeVotes.map((v) => v.by)).toEqual(['bob@plant.example']);
    expect((await store.unfreeze(f.id, 'carol@plant.example', 'confirmed on site')).status).toBe('lifted');
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeUndefined();
    expect(changes.map((c) => c.kind)).toEqual(['frozen', 'unfreeze_requested', 'unfrozen']);
  });

  it("lets a lone operator's unfreeze vote lapse: a later second vote alone does not lift it", async () => {
    await store.close();
    store = await FreezeStore.open({ stateDir: dir, clock, unfreezeQuorum: 2, voteTtlMs: 60_000 });
    const f = await freeze();
    await store.unfreeze(f.id, 'bob@plant.example', 'fixed');
    clock.advance(60_000);
    expect((await store.unfreeze(f.id, 'carol@plant.example', 'fixed')).status).toBe('pending');
    expect(store.check(cmd('write'), AGENT, clock.now())).toBeDefined();
  });
});

describe('freeze requests', () => {
  const now = Date.UTC(2026, 0, 15, 12);
  it('accept exactly one scope with a reason', () => {
    expect(parseFreezeBody({ asset: 'plc1', reason: 'leak' }, now, ['plc1'])).toEqual({ scope: 'asset', value: 'plc1', mode: 'writes', reason: 'leak' });
    expect(parseFreezeBody({ site: true, reason: 'storm', mode: 'all', expires_in_sec: 60 }, now)).toEqual({ scope: 'site', value: '', mode: 'all', reason: 'storm', expiresAtMs: now + 60_000 });
  });
  it.each([
    [{ reason: 'x' }, 'exactly one scope'],
    [{ asset: 'plc1', owner: 'a', reason: 'x' }, 'exactly one scope'],
    [{ asset: 'plc1' }, '"reason" is required'],
    [{ asset: 'plc1', reason: '   ' }, '"reason" is required'],
    [{ asset: 'plc9', reason: 'x' }, "no asset 'plc9'"],
    [{ workload: 'agent/*', reason: 'x' }, 'SPIFFE ID or pattern'],
    [{ site: 'yes', reason: 'x' }, '"site" must be true'],
    [{ asset: 'plc1', reason: 'x', mode: 'reads' }, '"mode"'],
    [{ asset: 'plc1', reason: 'x', expires_in_sec: 0 }, 'expires_in_sec'],
    [{ asset: 'plc1', reason: 'x', expires_at: '2020-01-01T00:00:00Z' }, 'not in the future'],
    [{ asset: 'plc1', reason: 'x', colour: 'red' }, 'unknown field "colour"'],
  ])('refuse %j with a message naming the field', (body, message) => {
    const r = parseFreezeBody(body, now, ['plc1']);
    expect(typeof r).toBe('string');
    expect(r).toContain(message);
  });
  it('never throw, whatever JSON arrives', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const r = parseFreezeBody(v, now, ['plc1']);
      expect(typeof r === 'string' || typeof r === 'object').toBe(true);
    }));
  });
});
