import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Command, Subject } from '../../../src/core/command.js';
import { ManualClock } from '../../../src/core/clock.js';
import { canonicalCommand, commandDigest } from '../../../src/approvals/digest.js';
import { ApprovalError, ApprovalStore } from '../../../src/approvals/store.js';
import { humanName, humanSpelling, workloadId, workloadSpelling } from '../core/spellings.js';

const AGENT: Subject = {
  workloadId: 'spiffe://plant.example/agent/optimizer', owner: 'alice@plant.example', taskId: 'tune-1', taskPurpose: 'raise setpoint for the night',
  jti: 'j1', roles: [], scopes: ['write'], assurance: 'mtls+token', issuer: 'https://issuer', expiresAtMs: 0, issuedAtMs: 0,
};
const OPERATOR = 'bob@plant.example';

function setpoint(value: number, over: Partial<Command> = {}): Command {
  return {
    sessionId: 's1', protocol: 'modbus', unitId: 1, assetId: 'plc1', operation: 'write', functionCode: 6,
    targets: [{ table: 'holding', address: 0, count: 1 }], points: ['tank1.setpoint'], rawValues: [value * 10], values: { 'tank1.setpoint': value }, ...over,
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApprovalError) return err.code;
    throw err;
  }
  return 'resolved';
}

describe('command digest', () => {
  it('is the same for the same effect, whatever session, transaction or function code carried it', () => {
    expect(commandDigest(setpoint(60))).toBe(commandDigest(setpoint(60, { sessionId: 'other', functionCode: 16 })));
    expect(commandDigest(setpoint(60))).toMatch(/^[0-9a-f]{64}$/);
  });
  it('differs for another value, target, asset or operation', () => {
    const base = commandDigest(setpoint(60));
    for (const c of [
      setpoint(61),
      setpoint(60, { targets: [{ table: 'holding', address: 1, count: 1 }] }),
      setpoint(60, { assetId: 'plc2' }),
      setpoint(60, { operation: 'call' }),
      setpoint(60, { targets: [{ nodeId: 'ns=2;s=Tank1.Setpoint' }] }),
    ]) expect(commandDigest(c)).not.toBe(base);
  });
  it('does not depend on the order values were listed in (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.double({ noNaN: true })), (values) => {
        const reversed = Object.fromEntries(Object.entries(values).reverse());
        expect(canonicalCommand(setpoint(1, { values }))).toBe(canonicalCommand(setpoint(1, { values: reversed })));
      }),
    );
  });
});

describe('approval store', () => {
  let dir: string;
  let clock: ManualClock;
  let store: ApprovalStore;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-approvals-'));
    clock = new ManualClock();
    store = await ApprovalStore.open({ stateDir: dir, pendingTtlMs: 15 * 60_000, grantTtlMs: 120_000 });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records a pending request with digest, subject, task, purpose and expiry, deduplicated while pending', () => {
    const id = store.request(setpoint(60), AGENT, 'night-setpoint', clock.now())!;
    expect(id).toMatch(/^apr-/);
    expect(store.request(setpoint(60), AGENT, 'night-setpoint', clock.now() + 1000)).toBe(id);
    expect(store.list(clock.now())).toEqual([
      expect.objectContaining({
        id, status: 'pending', digest: commandDigest(setpoint(60)), ruleId: 'night-setpoint', assetId: 'plc1', operation: 'write',
        targets: ['holding 0 x1'], values: { 'tank1.setpoint': 60 }, workloadId: AGENT.workloadId, owner: AGENT.owner,
        taskId: 'tune-1', taskPurpose: 'raise setpoint for the night', expiresAtMs: clock.now() + 15 * 60_000,
      }),
    ]);
    expect(store.request(setpoint(61), AGENT, 'night-setpoint', clock.now())).not.toBe(id);
  });

  it('allows the identical retry once after approval, and never a second time', async () => {
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    const id = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    await store.approve(id, OPERATOR, 'night shift agreed', clock.now());
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBe(id);
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    expect(store.get(id)).toMatchObject({ status: 'consumed', decidedBy: OPERATOR, reason: 'night shift agreed', consumedAtMs: clock.now() });
  });

  it('does not let a different value, target or subject use the grant', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    await store.approve(id, OPERATOR, 'ok', clock.now());
    expect(store.consume(setpoint(65), AGENT, clock.now())).toBeUndefined();
    expect(store.consume(setpoint(60, { targets: [{ table: 'holding', address: 1, count: 1 }] }), AGENT, clock.now())).toBeUndefined();
    expect(store.consume(setpoint(60), { ...AGENT, workloadId: 'spiffe://plant.example/agent/other' }, clock.now())).toBeUndefined();
    expect(store.consume(setpoint(60), { ...AGENT, taskId: 'another-task' }, clock.now())).toBeUndefined();
    // A refreshed token (new jti) for the same workload and task still may.
    expect(store.consume(setpoint(60), { ...AGENT, jti: 'j2' }, clock.now())).toBe(id);
  });

  it('expires an unused grant and a request nobody decided', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    await store.approve(id, OPERATOR, 'ok', clock.now());
    clock.advance(120_000);
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    const late = store.request(setpoint(70), AGENT, 'r', clock.now())!;
    clock.advance(15 * 60_000);
    expect(await code(store.approve(late, OPERATOR, 'ok', clock.now()))).toBe('EXPIRED');
    expect(store.list(clock.now(), { status: 'expired' }).map((r) => r.id).sort()).toEqual([id, late].sort());
  });

  it('enforces the two-person rule: the owner, the agent and the human it acts for cannot approve', async () => {
    const id = store.request(setpoint(60), { ...AGENT, actSub: ['carol@plant.example'] }, 'r', clock.now())!;
    for (const who of [AGENT.owner, AGENT.workloadId, 'carol@plant.example']) {
      expect(await code(store.approve(id, who, 'mine', clock.now()))).toBe('SAME_PERSON');
    }
    expect(await code(store.approve(id, OPERATOR, '', clock.now()))).toBe('BAD_REASON');
    expect(await code(store.approve('apr-nope', OPERATOR, 'x', clock.now()))).toBe('NOT_FOUND');
    await store.approve(id, OPERATOR, 'ok', clock.now());
    expect(await code(store.reject(id, OPERATOR, 'changed my mind', clock.now()))).toBe('NOT_PENDING');
  });

  it('refuses the owner approving their own agent’s command under any spelling of their name', async () => {
    const id = store.request(setpoint(60), { ...AGENT, owner: 'alice@plant.example', actSub: ['Carol@plant.example'] }, 'r', clock.now())!;
    for (const who of ['ALICE@Plant.Example', 'user:alice@plant.example', ' alice@plant.example ', 'ａｌｉｃｅ@plant.example', 'user:CAROL@PLANT.EXAMPLE']) {
      expect(await code(store.approve(id, who, 'mine', clock.now()))).toBe('SAME_PERSON');
      expect(await code(store.reject(id, who, 'mine', clock.now()))).toBe('SAME_PERSON');
    }
    expect(store.get(id)?.status).toBe('pending');
  });

  it('N-person rule: stays pending until N distinct people approved; the same person twice (any spelling) does not count', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now(), { approvers: 2, distinct_from: ['owner', 'requester'] })!;
    expect(await store.approve(id, 'bob@plant.example', 'checked valve', clock.now())).toMatchObject({ status: 'pending', approvals: [{ by: 'bob@plant.example' }] });
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    expect(await code(store.approve(id, 'BOB@plant.example', 'again', clock.now()))).toBe('ALREADY_APPROVED');
    const done = await store.approve(id, 'dana@plant.example', 'second pair of eyes', clock.now());
    expect(done).toMatchObject({ status: 'approved', decidedBy: 'dana@plant.example', approvals: [{ by: 'bob@plant.example' }, { by: 'dana@plant.example' }] });
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBe(id);
  });

  it('keeps the approve-by and execute-by deadlines of the rule', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now(), { approvers: 1, distinct_from: ['owner', 'requester'], approve_within_sec: 60, execute_within_sec: 10 })!;
    expect(store.get(id)?.expiresAtMs).toBe(clock.now() + 60_000);
    clock.advance(30_000);
    const granted = await store.approve(id, OPERATOR, 'ok', clock.now());
    expect(granted.grantExpiresAtMs).toBe(clock.now() + 10_000);
    clock.advance(10_000);
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    const late = store.request(setpoint(61), AGENT, 'r', clock.now(), { approvers: 1, distinct_from: ['owner', 'requester'], approve_within_sec: 60 })!;
    clock.advance(60_000);
    expect(await code(store.approve(late, OPERATOR, 'too late', clock.now()))).toBe('EXPIRED');
  });

  it('lets the owner approve only when the rule leaves them out of distinct_from; never the requester', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now(), { approvers: 1, distinct_from: ['requester'] })!;
    expect(await code(store.approve(id, AGENT.workloadId, 'me', clock.now()))).toBe('SAME_PERSON');
    expect(await store.approve(id, AGENT.owner, 'my own plant, my call', clock.now())).toMatchObject({ status: 'approved' });
  });

  it('keeps a rejected command denied under the same request id, then lets a new request open', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    await store.reject(id, OPERATOR, 'not during the filter backwash', clock.now());
    expect(store.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    expect(store.request(setpoint(60), AGENT, 'r', clock.now() + 60_000)).toBe(id);
    clock.advance(15 * 60_000);
    const again = store.request(setpoint(60), AGENT, 'r', clock.now());
    expect(again).toBeDefined();
    expect(again).not.toBe(id);
  });

  it('bounds pending requests per workload so an agent cannot flood the operators', async () => {
    const small = await ApprovalStore.open({ maxPendingPerWorkload: 3, maxPending: 5 });
    const ids = [1, 2, 3, 4].map((v) => small.request(setpoint(v), AGENT, 'r', clock.now()));
    expect(ids.slice(0, 3).every((x) => x !== undefined)).toBe(true);
    expect(ids[3]).toBeUndefined();
    const others = [1, 2, 3].map((v) => small.request(setpoint(v), { ...AGENT, workloadId: 'spiffe://x/y' }, 'r', clock.now()));
    expect(others.filter((x) => x !== undefined)).toHaveLength(2);
  });

  it('keeps pending requests, grants and used grants across a restart', async () => {
    const granted = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    const used = store.request(setpoint(61), AGENT, 'r', clock.now())!;
    const waiting = store.request(setpoint(62), AGENT, 'r', clock.now())!;
    await store.approve(granted, OPERATOR, 'ok', clock.now());
    await store.approve(used, OPERATOR, 'ok', clock.now());
    expect(store.consume(setpoint(61), AGENT, clock.now())).toBe(used);
    await store.whenDurable();
    await store.close();

    const reopened = await ApprovalStore.open({ stateDir: dir, grantTtlMs: 120_000 });
    expect(reopened.consume(setpoint(61), AGENT, clock.now())).toBeUndefined();
    expect(reopened.get(waiting)?.status).toBe('pending');
    expect(reopened.consume(setpoint(60), AGENT, clock.now())).toBe(granted);
    await reopened.close();
  });

  it('voids every grant when the state file is corrupt, and sets the file aside', async () => {
    const id = store.request(setpoint(60), AGENT, 'r', clock.now())!;
    await store.approve(id, OPERATOR, 'ok', clock.now());
    await store.close();
    const file = path.join(dir, 'approvals.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"approved"', '"approvedd"'));
    const reopened = await ApprovalStore.open({ stateDir: dir });
    expect(reopened.consume(setpoint(60), AGENT, clock.now())).toBeUndefined();
    expect(reopened.list(clock.now(), { status: 'all' })).toEqual([]);
    expect((await readdir(dir)).some((f) => f.startsWith('approvals.json.corrupt-'))).toBe(true);
  });
});

describe('approval identities (property)', () => {
  // The owner, the requesting agent and every human it acts for may not approve, whatever bytes
  // spell their names; one approver spelt twice is one person toward the N-person rule.
  const requestArb = fc
    .record({ owner: humanName(), act: fc.array(humanName(), { maxLength: 2 }), workload: workloadId() })
    .chain((r) => {
      const excluded = [...[r.owner, ...r.act].map(humanSpelling), workloadSpelling(r.workload)];
      return fc.record({ r: fc.constant(r), who: fc.oneof(...excluded), approver: humanName('control.example').chain((a) => fc.record({ a: fc.constant(a), again: humanSpelling(a) })) });
    });

  it('no spelling of the owner, the agent or a human it acts for can approve or reject its request', async () => {
    const store = await ApprovalStore.open({});
    let value = 0;
    await fc.assert(
      fc.asyncProperty(requestArb, async ({ r, who, approver }) => {
        const clock = new ManualClock();
        const agent: Subject = { ...AGENT, workloadId: r.workload, owner: r.owner, ...(r.act.length > 0 ? { actSub: r.act } : {}) };
        const id = store.request(setpoint(++value), agent, 'r', clock.now(), { approvers: 2, distinct_from: ['owner', 'requester'] })!;
        expect(id).toBeDefined();
        expect(await code(store.approve(id, who, 'mine', clock.now()))).toBe('SAME_PERSON');
        expect(await code(store.reject(id, who, 'mine', clock.now()))).toBe('SAME_PERSON');
        // Another person approves; the same person under another spelling is not a second one.
        expect(await store.approve(id, approver.a, 'checked', clock.now())).toMatchObject({ status: 'pending' });
        expect(await code(store.approve(id, approver.again, 'checked twice', clock.now()))).toBe('ALREADY_APPROVED');
        expect(store.consume(setpoint(value), agent, clock.now())).toBeUndefined();
        await store.reject(id, 'closer@control.example', 'end of the case', clock.now());
      }),
      { numRuns: 300 },
    );
    await store.close();
  }, 120_000);
});
