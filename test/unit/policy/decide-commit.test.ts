// Decide, then commit (docs/policy.md): the engine's decision is a pure function of bundle, subject,
// command and PolicyMemory; rate budgets and max_step bases change only when the gateway reports
// that a command was forwarded, refused after all, or answered by the PLC. Real engine, ManualClock.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Subject } from '../../../src/core/command.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { demoPayload, NOW_MS, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const OPT = 'spiffe://plant.example/agent/optimizer';
const rule = (over: Partial<BundleRule> & { id: string }): BundleRule => ({
  description: '', subject: { workload: OPT, roles: [] }, assets: ['plc1'], operations: ['write'], points: ['tank1.setpoint'], ranges: [], bounds: {}, ...over,
});
const engineWith = (rules: BundleRule[], over: Partial<BundlePayload> = {}) => PolicyEngine.fromPayload(demoPayload({ rules, ...over }));
function setpoint(e: PolicyEngine, percent: number): Command {
  const c: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation: 'write', functionCode: 6, targets: [{ table: 'holding', address: 0, count: 1 }], points: [], rawValues: [Math.round(percent * 10)] };
  resolveModbus(e, c, 1);
  return c;
}
const base = (m: PolicyMemory) => m.point('plc1', 'tank1.setpoint')?.value;

describe('deciding changes nothing', () => {
  it('a write policy allows but a later gate refuses (interlock, approval, audit) consumes no rate budget', () => {
    const e = engineWith([rule({ id: 'sp', rate_limit: { per_subject: { count: 1, per_sec: 60 } } })]);
    const m = new PolicyMemory();
    const s = subject();
    // Decided ten times, forwarded never (an interlock refused each one): the budget is whole.
    for (let i = 0; i < 10; i++) expect(e.decide(setpoint(e, 40), s, NOW_MS, m).effect).toBe('allow');
    const d = e.decide(setpoint(e, 40), s, NOW_MS, m);
    expect(d.forward?.charges).toHaveLength(1);
    // Forwarded, then refused by the audit after all: the token comes back.
    m.forwarded(d.forward!, NOW_MS);
    expect(e.decide(setpoint(e, 40), s, NOW_MS, m).reason).toBe('RATE_LIMITED');
    m.returned(d.forward!);
    expect(e.decide(setpoint(e, 40), s, NOW_MS, m).effect).toBe('allow');
    // Really forwarded: spent.
    const sent = e.decide(setpoint(e, 40), s, NOW_MS, m);
    m.forwarded(sent.forward!, NOW_MS);
    expect(e.decide(setpoint(e, 40), s, NOW_MS, m)).toMatchObject({ effect: 'deny', reason: 'RATE_LIMITED', ruleId: 'sp' });
  });

  it('a refused step leaves the base unchanged', () => {
    const e = engineWith([rule({ id: 'sp', max_step: { 'tank1.setpoint': 5 } })]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    expect(e.decide(setpoint(e, 60), subject(), NOW_MS, m).reason).toBe('STEP_TOO_LARGE');
    // Allowed by policy, then refused by an interlock: never forwarded, the PLC still holds 40.
    expect(e.decide(setpoint(e, 45), subject(), NOW_MS, m).effect).toBe('allow');
    expect(base(m)).toBe(40);
    expect(e.decide(setpoint(e, 36), subject(), NOW_MS, m).effect).toBe('allow');
  });

  it('an approval-required command carries what its forwarding would change, and changes nothing itself', () => {
    const e = engineWith([rule({ id: 'sp', approval: 'required', rate_limit: { per_subject: { count: 1, per_sec: 60 } } })]);
    const m = new PolicyMemory();
    const d = e.decide(setpoint(e, 40), subject(), NOW_MS, m);
    expect(d).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', approval: { approvers: 1, distinct_from: ['owner', 'requester'] } });
    expect(d.forward?.charges).toHaveLength(1);
    expect(d.forward?.writes).toEqual([{ asset: 'plc1', point: 'tank1.setpoint', value: 40 }]);
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS, m).forward?.charges).toHaveLength(1);
  });
});

describe('the base of max_step is the PLC value', () => {
  const stepped = rule({ id: 'sp', max_step: { 'tank1.setpoint': 5 } });

  it('moves only when the PLC acknowledges the write', () => {
    const e = engineWith([stepped]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    const refusedByPlc = e.decide(setpoint(e, 45), subject(), NOW_MS, m).forward!;
    m.forwarded(refusedByPlc, NOW_MS);
    m.settled(refusedByPlc, 'refused', NOW_MS);
    expect(base(m)).toBe(40);
    const acked = e.decide(setpoint(e, 45), subject(), NOW_MS, m).forward!;
    m.forwarded(acked, NOW_MS);
    expect(base(m)).toBe(40);
    m.settled(acked, 'acknowledged', NOW_MS + 5);
    expect(m.point('plc1', 'tank1.setpoint')).toMatchObject({ value: 45, atMs: NOW_MS + 5, inFlight: [] });
  });

  it('measures a step from every write still in flight too, so pipelined writes cannot add up', () => {
    const e = engineWith([stepped]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    const first = e.decide(setpoint(e, 45), subject(), NOW_MS, m).forward!;
    m.forwarded(first, NOW_MS);
    // 35 is 5 from the PLC's 40 but 10 from the 45 on its way: refused.
    expect(e.decide(setpoint(e, 35), subject(), NOW_MS, m).reason).toBe('STEP_TOO_LARGE');
    expect(e.decide(setpoint(e, 42), subject(), NOW_MS, m).effect).toBe('allow');
    m.settled(first, 'acknowledged', NOW_MS);
    expect(e.decide(setpoint(e, 50), subject(), NOW_MS, m).effect).toBe('allow');
  });

  it('denies STEP_BASE_STALE when the PLC value is older than the bundle allows, or unknown after a lost answer', () => {
    const e = engineWith([stepped], { limits: { max_token_ttl_sec: 900, step_base_max_age_ms: 3000, step_base_poll_ms: 1000 } });
    const m = new PolicyMemory();
    const clock = new ManualClock(NOW_MS);
    m.observe('plc1', 'tank1.setpoint', 40, clock.now());
    clock.advance(3000);
    expect(e.decide(setpoint(e, 41), subject(), clock.now(), m).effect).toBe('allow');
    clock.advance(1);
    expect(e.decide(setpoint(e, 41), subject(), clock.now(), m)).toMatchObject({ effect: 'deny', reason: 'STEP_BASE_STALE', ruleId: 'sp' });
    m.observe('plc1', 'tank1.setpoint', 40, clock.now());
    const lost = e.decide(setpoint(e, 44), subject(), clock.now(), m).forward!;
    m.forwarded(lost, clock.now());
    m.settled(lost, 'unknown', clock.now());
    // The PLC may or may not hold 44: nothing to measure from until a read sent after now answers.
    expect(e.decide(setpoint(e, 44), subject(), clock.now(), m).reason).toBe('STEP_BASE_STALE');
    m.observe('plc1', 'tank1.setpoint', 40, clock.now() - 1);
    expect(e.decide(setpoint(e, 44), subject(), clock.now(), m).reason).toBe('STEP_BASE_STALE');
    m.observe('plc1', 'tank1.setpoint', 44, clock.now());
    expect(e.decide(setpoint(e, 48), subject(), clock.now(), m).effect).toBe('allow');
  });

  it('never lets a late answer roll the base back', () => {
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 50, NOW_MS + 100);
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    expect(m.point('plc1', 'tank1.setpoint')).toMatchObject({ value: 50, atMs: NOW_MS + 100 });
  });

  it("an allowed read's answer is a fresh base for the stepped points it covered whole", () => {
    const e = engineWith([rule({ id: 'sp', max_step: { 'tank1.setpoint': 5 } })]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    const later = NOW_MS + 6_000;
    expect(e.decide(setpoint(e, 62), subject(), later, m).reason).toBe('STEP_BASE_STALE');
    const read = (address: number, count: number): Command => {
      const c: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation: 'read', functionCode: 3, targets: [{ table: 'holding', address, count }], points: [] };
      resolveModbus(e, c, 1);
      return c;
    };
    // A read of pump1.speed alone (holding 1) leaves the setpoint's base as it was.
    e.observeRead(read(1, 1), () => 600, later - 1, m);
    expect(e.decide(setpoint(e, 62), subject(), later, m).reason).toBe('STEP_BASE_STALE');
    // Holding 0..1 answered 600 (60.0 %) and 1500 rpm, sent 1 ms ago: the setpoint's base is 60 %.
    e.observeRead(read(0, 2), (i) => [600, 1500][i] ?? NaN, later - 1, m);
    expect(base(m)).toBeCloseTo(60, 5);
    expect(e.decide(setpoint(e, 62), subject(), later, m).effect).toBe('allow');
    // An answer to a read sent before the newest known value (one read at `later`) is ignored.
    m.observe('plc1', 'tank1.setpoint', 61, later);
    e.observeRead(read(0, 1), () => 300, later - 1, m);
    expect(base(m)).toBeCloseTo(61, 5);
  });
});

describe('rate limits keyed by workload, owner, task and asset', () => {
  const everyone = (per: ('workload' | 'owner' | 'task' | 'asset')[]) =>
    engineWith([rule({ id: 'sp', subject: { workload: 'spiffe://plant.example/agent/*', roles: [] }, rate_limits: [{ count: 1, per_sec: 60, per }] })]);
  const forwarded = (e: PolicyEngine, s: Subject, m: PolicyMemory) => {
    const d = e.decide(setpoint(e, 40), s, NOW_MS, m);
    if (d.effect === 'allow') m.forwarded(d.forward!, NOW_MS);
    return d.effect;
  };
  const a = subject({ owner: 'alice@plant.example', taskId: 't-1' });
  const b = subject({ workloadId: 'spiffe://plant.example/agent/b', owner: 'ALICE@Plant.Example', taskId: 't-2' });
  const c = subject({ workloadId: 'spiffe://plant.example/agent/c', owner: 'bob@plant.example', taskId: 't-1' });

  it('per owner: one budget for all agents of one owner, whatever the spelling of the name', () => {
    const e = everyone(['owner']);
    const m = new PolicyMemory();
    expect([forwarded(e, a, m), forwarded(e, b, m), forwarded(e, c, m)]).toEqual(['allow', 'deny', 'allow']);
  });

  it('per task: one budget for every agent working on the task', () => {
    const e = everyone(['task']);
    const m = new PolicyMemory();
    expect([forwarded(e, a, m), forwarded(e, b, m), forwarded(e, c, m)]).toEqual(['allow', 'allow', 'deny']);
  });

  it('per workload and asset: each agent has a budget per asset, not one shared across the rule’s assets', () => {
    const p = demoPayload({ rules: [] });
    p.assets.push({ ...p.assets[0]!, id: 'plc2', unit_id: 2 });
    p.rules = [rule({ id: 'sp', assets: ['plc1', 'plc2'], rate_limits: [{ count: 1, per_sec: 60, per: ['workload', 'asset'] }] })];
    const e = PolicyEngine.fromPayload(p);
    const m = new PolicyMemory();
    const on = (unit: number) => {
      const cmd: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation: 'write', functionCode: 6, targets: [{ table: 'holding', address: 0, count: 1 }], points: [], rawValues: [400] };
      resolveModbus(e, cmd, unit);
      const d = e.decide(cmd, a, NOW_MS, m);
      if (d.effect === 'allow') m.forwarded(d.forward!, NOW_MS);
      return d.reason;
    };
    expect([on(1), on(2), on(1), on(2)]).toEqual(['ALLOWED', 'ALLOWED', 'RATE_LIMITED', 'RATE_LIMITED']);
  });

  it('per nothing: one budget for the whole rule', () => {
    const e = everyone([]);
    const m = new PolicyMemory();
    expect([forwarded(e, a, m), forwarded(e, c, m)]).toEqual(['allow', 'deny']);
  });
});
