// Rule conditions, delegation and shadow mode, each decided by the real engine with a ManualClock.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Operation, Subject, Target } from '../../../src/core/command.js';
import { PolicyEngine, type PolicyDecision } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { demoPayload, NOW_MS, subject } from './fixtures.js';
import { resolveModbus, resolveOpcua } from '../../resolve.js';

const OPT = 'spiffe://plant.example/agent/optimizer';
function rule(over: Partial<BundleRule> & { id: string }): BundleRule {
  return {
    description: '',
    subject: { workload: OPT, roles: [] },
    assets: ['plc1'],
    operations: ['write'],
    points: ['tank1.setpoint'],
    ranges: [],
    bounds: {},
    ...over,
  };
}
function engineWith(rules: BundleRule[], over: Partial<BundlePayload> = {}): PolicyEngine {
  return PolicyEngine.fromPayload(demoPayload({ rules, expires_at: NOW_MS / 1000 + 400 * 86400, ...over }));
}
function cmd(engine: PolicyEngine, operation: Operation, fc: number, targets: Target[], raw?: number[]): Command {
  const c: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation, functionCode: fc, targets, points: [] };
  if (raw) c.rawValues = raw;
  resolveModbus(engine, c, 1);
  return c;
}
/** Decides; an allowed command is forwarded and acknowledged by the PLC (its tokens spent, its values written). */
function forward(e: PolicyEngine, c: Command, s: Subject, now: number, memory: PolicyMemory): PolicyDecision {
  const d = e.decide(c, s, now, memory);
  if (d.effect === 'allow' && d.forward !== undefined) {
    memory.forwarded(d.forward, now);
    memory.settled(d.forward, 'acknowledged', now);
  }
  return d;
}
/** tank1.setpoint is holding 0, scale 0.1: 45.5 % is raw 455. */
const setpoint = (e: PolicyEngine, percent: number) => cmd(e, 'write', 6, [{ table: 'holding', address: 0, count: 1 }], [Math.round(percent * 10)]);

describe('rate limits', () => {
  it('denies the write past the burst with RATE_LIMITED and refills as the clock moves', () => {
    const e = engineWith([rule({ id: 'sp', rate_limit: { per_subject: { count: 3, per_sec: 60 } } })]);
    const m = new PolicyMemory();
    const clock = new ManualClock(NOW_MS);
    for (let i = 0; i < 3; i++) expect(forward(e, setpoint(e, 40), subject(), clock.now(), m).effect).toBe('allow');
    expect(forward(e, setpoint(e, 40), subject(), clock.now(), m)).toMatchObject({ effect: 'deny', reason: 'RATE_LIMITED', ruleId: 'sp' });
    clock.advance(19_000);
    expect(forward(e, setpoint(e, 40), subject(), clock.now(), m).reason).toBe('RATE_LIMITED');
    clock.advance(1_000); // 20 s = one token at 3 per minute
    expect(forward(e, setpoint(e, 40), subject(), clock.now(), m).effect).toBe('allow');
    expect(forward(e, setpoint(e, 40), subject(), clock.now(), m).reason).toBe('RATE_LIMITED');
  });

  it('keeps one bucket per subject, and a per-asset bucket shared by all subjects', () => {
    const e = engineWith([
      rule({ id: 'sp', subject: { workload: 'spiffe://plant.example/agent/*', roles: [] }, rate_limit: { per_subject: { count: 1, per_sec: 60 }, per_asset: { count: 2, per_sec: 60 } } }),
    ]);
    const m = new PolicyMemory();
    const a = subject();
    const b = subject({ workloadId: 'spiffe://plant.example/agent/other' });
    const c = subject({ workloadId: 'spiffe://plant.example/agent/third' });
    expect(forward(e, setpoint(e, 40), a, NOW_MS, m).effect).toBe('allow');
    expect(forward(e, setpoint(e, 40), a, NOW_MS, m).reason).toBe('RATE_LIMITED');
    expect(forward(e, setpoint(e, 40), b, NOW_MS, m).effect).toBe('allow');
    expect(forward(e, setpoint(e, 40), c, NOW_MS, m).reason).toBe('RATE_LIMITED'); // the asset's 2 are spent
  });

  it('does not spend tokens on denied commands', () => {
    const e = engineWith([rule({ id: 'sp', bounds: { 'tank1.setpoint': { max: 80 } }, rate_limit: { per_subject: { count: 1, per_sec: 60 } } })]);
    const m = new PolicyMemory();
    for (let i = 0; i < 5; i++) expect(forward(e, setpoint(e, 90), subject(), NOW_MS, m).reason).toBe('VALUE_OUT_OF_BOUNDS');
    expect(forward(e, setpoint(e, 50), subject(), NOW_MS, m).effect).toBe('allow');
  });
});

describe('max step from the PLC value', () => {
  const stepRule = rule({ id: 'sp', max_step: { 'tank1.setpoint': 5 } });

  it('denies a write while the PLC value of the point is unknown with STEP_BASE_STALE (fail closed)', () => {
    const e = engineWith([stepRule]);
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS, new PolicyMemory())).toMatchObject({ effect: 'deny', reason: 'STEP_BASE_STALE', ruleId: 'sp' });
  });

  it('measures each write from the observed value, then from the last acknowledged write', () => {
    const e = engineWith([stepRule]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    expect(forward(e, setpoint(e, 45), subject(), NOW_MS, m).effect).toBe('allow');
    expect(m.point('plc1', 'tank1.setpoint')?.value).toBe(45);
    expect(forward(e, setpoint(e, 51), subject(), NOW_MS, m).reason).toBe('STEP_TOO_LARGE');
    expect(forward(e, setpoint(e, 40), subject(), NOW_MS, m).effect).toBe('allow');
    expect(m.point('plc1', 'tank1.setpoint')?.value).toBe(40);
  });
});

describe('cross-zone commands', () => {
  const zoned = (zone: string): Subject => ({ ...subject(), zone });

  it('denies a subject whose zone claim differs from the asset zone with CROSS_ZONE', () => {
    const e = engineWith([rule({ id: 'sp' })]);
    expect(e.decide(setpoint(e, 40), zoned('dmz'), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'CROSS_ZONE', ruleId: 'sp' });
    expect(e.decide(setpoint(e, 40), zoned('treatment'), NOW_MS).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS).effect).toBe('allow'); // no claim: not cross-zone
  });

  it('allows it only through a rule that names the subject zone (or *)', () => {
    const e = engineWith([rule({ id: 'sp', cross_zone: ['dmz'] })]);
    expect(e.decide(setpoint(e, 40), zoned('dmz'), NOW_MS).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), zoned('office'), NOW_MS).reason).toBe('CROSS_ZONE');
    const any = engineWith([rule({ id: 'sp', cross_zone: ['*'] })]);
    expect(any.decide(setpoint(any, 40), zoned('office'), NOW_MS).effect).toBe('allow');
  });
});

describe('windows and freezes in rules', () => {
  const windows = [
    { id: 'night', time_zone: 'Europe/Berlin', from: '22:00', to: '06:00' },
    { id: 'xmas', time_zone: 'Europe/Berlin', start: '2026-12-20T00:00', end: '2027-01-06T00:00' },
  ];
  it('denies a write outside its maintenance window with OUTSIDE_WINDOW', () => {
    const e = engineWith([rule({ id: 'sp', windows: ['night'] })], { windows });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-01-15T12:00Z'))).toMatchObject({ reason: 'OUTSIDE_WINDOW', ruleId: 'sp' });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-01-15T21:30Z')).effect).toBe('allow');
  });
  it('denies a write inside a change freeze the rule lists with CHANGE_FREEZE, not OUTSIDE_WINDOW', () => {
    const e = engineWith([rule({ id: 'sp', freezes: ['xmas'] })], { windows });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-24T12:00Z'))).toMatchObject({ reason: 'CHANGE_FREEZE', ruleId: 'freeze:xmas' });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-18T12:00Z')).effect).toBe('allow');
  });

  it('a freeze one rule lists binds every other rule of the asset too', () => {
    const e = engineWith([rule({ id: 'frozen', freezes: ['xmas'] }), rule({ id: 'unfrozen' })], { windows });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-24T12:00Z'))).toMatchObject({ effect: 'deny', reason: 'CHANGE_FREEZE' });
  });

  it('a change freeze of the bundle refuses every write to its assets whatever rule would allow it; reads go on', () => {
    const e = engineWith([rule({ id: 'sp' }), rule({ id: 'reads', operations: ['read'], points: ['*'] })], { windows, freezes: [{ window: 'xmas', assets: ['*'], operations: ['write', 'call'] }] });
    const at = Date.parse('2026-12-24T12:00Z');
    expect(e.decide(setpoint(e, 40), subject(), at)).toEqual({ effect: 'deny', reason: 'CHANGE_FREEZE', ruleId: 'freeze:xmas', bundleRevision: 5, durable: false });
    expect(e.decide(cmd(e, 'read', 3, [{ table: 'holding', address: 0, count: 1 }]), subject(), at)).toMatchObject({ effect: 'allow', ruleId: 'reads' });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2027-01-06T12:00Z')).effect).toBe('allow');
  });

  it('a monitor rule’s freeze only reports CHANGE_FREEZE, it binds nothing', () => {
    const e = engineWith([rule({ id: 'trial', mode: 'monitor', freezes: ['xmas'] }), rule({ id: 'sp' })], { windows });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-24T12:00Z'))).toMatchObject({ effect: 'allow', ruleId: 'sp', shadows: [{ reason: 'CHANGE_FREEZE', ruleId: 'trial' }] });
  });

  it('refuses a bundle whose rule names an unknown window', () => {
    expect(() => engineWith([rule({ id: 'sp', windows: ['nope'] })], { windows })).toThrow(/unknown window 'nope'/);
  });
});

describe('approval and subject matching', () => {
  it('denies a command its rule would allow with APPROVAL_REQUIRED and the rule id', () => {
    const e = engineWith([rule({ id: 'sp', approval: 'required' })]);
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', ruleId: 'sp' });
  });

  it('matches on owner, roles, scopes, assurance and act.sub', () => {
    const e = engineWith([
      rule({ id: 'strict', subject: { workload: OPT, owner: 'ops', roles: ['tuner'], scopes: ['plant:tune'], assurance: 'mtls+token', act: '*@plant.example' } }),
    ]);
    const ok = subject({ roles: ['tuner'], scopes: ['write', 'plant:tune'], actSub: ['alice@plant.example'] });
    // The human must be allowed too: without a rule for user:alice the agent alone is not enough.
    expect(e.decide(setpoint(e, 40), ok, NOW_MS)).toMatchObject({ reason: 'NO_MATCHING_RULE', principal: 'user:alice@plant.example' });
    const e2 = engineWith([
      rule({ id: 'strict', subject: { workload: OPT, owner: 'ops', roles: ['tuner'], scopes: ['plant:tune'], assurance: 'mtls+token', act: '*@plant.example' } }),
      rule({ id: 'alice', subject: { workload: 'user:alice@plant.example', roles: [] } }),
    ]);
    expect(e2.decide(setpoint(e2, 40), ok, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'strict' });
    for (const bad of [
      { owner: 'other' },
      { roles: [] },
      { scopes: ['write'] },
      { assurance: 'static-ip+token' as const },
      { actSub: ['mallory@evil.example'] },
      { actSub: undefined },
    ]) {
      expect(e2.decide(setpoint(e2, 40), { ...ok, ...bad }, NOW_MS).reason).toBe('NO_MATCHING_RULE');
    }
  });

  it('compares owner, act and a human’s own rules in canonical form: another spelling of a name is the same person', () => {
    const e = engineWith([
      rule({ id: 'ops-agent', subject: { workload: OPT, owner: 'Ops@Plant.Example', roles: [], act: 'ALICE*' } }),
      rule({ id: 'alice', subject: { workload: 'user:Alice@Plant.Example', roles: [] }, bounds: { 'tank1.setpoint': { max: 50 } } }),
    ]);
    for (const spelling of ['alice@plant.example', 'ALICE@Plant.Example', 'user:alice@plant.example', 'ａｌｉｃｅ@plant.example']) {
      const s = subject({ owner: 'ＯＰＳ@plant.example', actSub: [spelling] });
      expect(e.decide(setpoint(e, 45), s, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'ops-agent' });
      // Her own rule binds her under every spelling: its bound is the one that refuses.
      expect(e.decide(setpoint(e, 60), s, NOW_MS)).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'alice', principal: 'user:alice@plant.example' });
    }
    expect(e.decide(setpoint(e, 45), subject({ owner: 'other@plant.example', actSub: ['alice@plant.example'] }), NOW_MS).reason).toBe('NO_MATCHING_RULE');
    expect(e.decide(setpoint(e, 45), subject({ owner: 'ops@plant.example', actSub: ['bob@plant.example'] }), NOW_MS).reason).toBe('NO_MATCHING_RULE');
  });
});

describe('delegation', () => {
  const agentWide = rule({ id: 'agent', points: ['tank1.setpoint', 'pump1.speed'] });
  const aliceNarrow = rule({ id: 'alice', subject: { workload: 'user:alice', roles: [] }, points: ['tank1.setpoint'], bounds: { 'tank1.setpoint': { max: 50 } } });
  const acting = subject({ actSub: ['alice'] });
  const speed = (e: PolicyEngine) => cmd(e, 'write', 6, [{ table: 'holding', address: 1, count: 1 }], [1000]);

  it('allows only what both the agent and the human it acts for are allowed', () => {
    const e = engineWith([agentWide, aliceNarrow]);
    expect(e.decide(setpoint(e, 45), acting, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'agent' });
    // the agent may write the speed; alice may not: the agent never exceeds the human
    expect(e.decide(speed(e), acting, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE', principal: 'user:alice' });
    // alice's bound applies to what the agent does for her
    expect(e.decide(setpoint(e, 60), acting, NOW_MS)).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'alice', principal: 'user:alice' });
    // the same agent without delegation uses its own rules only
    expect(e.decide(speed(e), subject(), NOW_MS).effect).toBe('allow');
  });

  it('never lets the agent inherit the human’s wider rights', () => {
    const e = engineWith([rule({ id: 'alice-all', subject: { workload: 'user:alice', roles: [] }, points: ['*'] })]);
    expect(e.decide(setpoint(e, 45), acting, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(e.decide(setpoint(e, 45), acting, NOW_MS).principal).toBeUndefined();
  });
});

describe('shadow mode: monitor rules never weaken enforcement', () => {
  const bounded = rule({ id: 'enforced', bounds: { 'tank1.setpoint': { min: 20, max: 80 } } });
  const stepTrial = rule({ id: 'trial', mode: 'monitor', max_step: { 'tank1.setpoint': 2 } });

  it('keeps the enforcing rule’s bound deny when a monitor rule on the same point would allow (95 % from 94 %)', () => {
    const e = engineWith([stepTrial, bounded]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 94, NOW_MS);
    expect(e.decide(setpoint(e, 95), subject(), NOW_MS, m)).toMatchObject({
      effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'enforced',
      shadows: [{ reason: 'ALLOWED', ruleId: 'trial' }],
    });
  });

  it('reports the monitor rule’s step finding and still enforces the bound (95 % from 50 %)', () => {
    const e = engineWith([stepTrial, bounded]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 50, NOW_MS);
    expect(e.decide(setpoint(e, 95), subject(), NOW_MS, m)).toMatchObject({
      effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'enforced',
      shadow: { reason: 'STEP_TOO_LARGE', ruleId: 'trial' }, shadows: [{ reason: 'STEP_TOO_LARGE', ruleId: 'trial' }],
    });
    expect(e.decide(setpoint(e, 60), subject(), NOW_MS, m)).toMatchObject({ effect: 'allow', ruleId: 'enforced', shadows: [{ reason: 'STEP_TOO_LARGE', ruleId: 'trial' }] });
  });

  it('records every failing check of a monitor rule, not only the first', () => {
    const e = engineWith([
      rule({ id: 'trial', mode: 'monitor', bounds: { 'tank1.setpoint': { max: 50 } }, max_step: { 'tank1.setpoint': 2 }, approval: 'required', cross_zone: ['dmz'] }),
      bounded,
    ]);
    const m = new PolicyMemory();
    m.observe('plc1', 'tank1.setpoint', 40, NOW_MS);
    const d = e.decide(setpoint(e, 60), { ...subject(), zone: 'office' }, NOW_MS, m);
    expect(d).toMatchObject({ effect: 'deny', reason: 'CROSS_ZONE', ruleId: 'enforced' });
    expect(d.shadows).toEqual([
      { reason: 'CROSS_ZONE', ruleId: 'trial' },
      { reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'trial' },
      { reason: 'STEP_TOO_LARGE', ruleId: 'trial' },
      { reason: 'APPROVAL_REQUIRED', ruleId: 'trial' },
    ]);
  });

  it('a monitor rule alone allows nothing: the command is denied and the trial says it would have allowed', () => {
    const e = engineWith([rule({ id: 'trial', mode: 'monitor' })]);
    expect(e.decide(setpoint(e, 99), subject(), NOW_MS)).toEqual({
      effect: 'deny', reason: 'NO_MATCHING_RULE', ruleId: '', bundleRevision: 5, durable: false,
      shadows: [{ reason: 'ALLOWED', ruleId: 'trial' }],
    });
  });

  it('a monitor rule reports a missing scope like any other failing check', () => {
    const e = engineWith([rule({ id: 'trial', mode: 'monitor', approval: 'required' }), rule({ id: 'open', require_scope: 'read' })]);
    expect(e.decide(setpoint(e, 40), subject({ scopes: ['read'] }), NOW_MS)).toMatchObject({
      effect: 'allow', ruleId: 'open', shadows: [{ reason: 'SCOPE_MISSING', ruleId: 'trial' }, { reason: 'APPROVAL_REQUIRED', ruleId: 'trial' }],
    });
  });

  it('names the human whose monitor rule gave a finding', () => {
    const e = engineWith([
      rule({ id: 'agent' }),
      rule({ id: 'alice', subject: { workload: 'user:alice', roles: [] } }),
      rule({ id: 'alice-trial', mode: 'monitor', subject: { workload: 'user:alice', roles: [] }, bounds: { 'tank1.setpoint': { max: 30 } } }),
    ]);
    expect(e.decide(setpoint(e, 40), subject({ actSub: ['alice'] }), NOW_MS)).toMatchObject({
      effect: 'allow', ruleId: 'agent', shadows: [{ reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'alice-trial', principal: 'user:alice' }],
    });
  });

  it('a monitor bundle lets a write no rule covers through; its value is the base once the PLC acknowledges it', () => {
    // Only a read rule: no rule speaks about writes at all. The bundle in monitor mode reports the
    // deny and lets the write through; once the PLC acknowledges it, 45 is the PLC's value.
    const e = engineWith([rule({ id: 'reads', operations: ['read'] })], { mode: 'monitor' });
    const m = new PolicyMemory();
    expect(forward(e, setpoint(e, 45), subject(), NOW_MS, m)).toMatchObject({ effect: 'allow', shadow: { reason: 'NO_MATCHING_RULE' } });
    expect(m.point('plc1', 'tank1.setpoint')?.value).toBe(45);
  });

  it('a monitor bundle reports every policy deny as would-deny, but an expired bundle still denies', () => {
    const e = engineWith([rule({ id: 'sp', bounds: { 'tank1.setpoint': { max: 50 } } })], { mode: 'monitor' });
    expect(e.monitor).toBe(true);
    expect(e.decide(setpoint(e, 60), subject(), NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'sp', shadow: { reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'sp' } });
    const other = subject({ workloadId: 'spiffe://plant.example/agent/x' });
    expect(e.decide(setpoint(e, 40), other, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: '', shadow: { reason: 'NO_MATCHING_RULE', ruleId: '' } });
    expect(e.decide(setpoint(e, 40), subject(), e.expiresAtMs + 1)).toMatchObject({ effect: 'deny', reason: 'BUNDLE_UNAVAILABLE' });
  });
});

describe('OPC UA assets', () => {
  const payload = () => {
    const p = demoPayload({
      rules: [rule({ id: 'ua', assets: ['ua1'], points: ['tank2.setpoint'], bounds: { 'tank2.setpoint': { max: 80 } } })],
    });
    p.assets.push({
      id: 'ua1', zone: 'treatment', criticality: 'high', protocol: 'opcua', unit_id: 0, namespace: 'urn:plant:ua1',
      points: {
        'tank2.setpoint': { table: 'holding', address: 0, type: 'float32', node_id: 'nsu=urn:plant:ua1;s=Tank2.Setpoint' },
        'tank2.level': { table: 'input', address: 0, type: 'float32', node_id: 'nsu=urn:plant:ua1;s=Tank2.Level' },
      },
    });
    return p;
  };
  const ua = (nodeIds: string[], values?: Record<string, number>): Command => {
    const c: Command = { sessionId: 's', protocol: 'opcua', assetId: '', operation: 'write', functionCode: 0, service: 'Write', targets: nodeIds.map((nodeId) => ({ nodeId })), points: [] };
    if (values) c.values = values;
    return c;
  };

  it('maps NodeIds to point names and decides on them', () => {
    const e = PolicyEngine.fromPayload(payload());
    const c = ua(['nsu=urn:plant:ua1;s=Tank2.Setpoint'], { 'tank2.setpoint': 55 });
    resolveOpcua(e, c);
    expect(c.assetId).toBe('ua1');
    expect(c.points).toEqual(['tank2.setpoint']);
    expect(e.decide(c, subject(), NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'ua' });
    const high = ua(['nsu=urn:plant:ua1;s=Tank2.Setpoint'], { 'tank2.setpoint': 95 });
    resolveOpcua(e, high);
    expect(e.decide(high, subject(), NOW_MS).reason).toBe('VALUE_OUT_OF_BOUNDS');
  });

  it('denies a NodeId outside the point map or outside the rule with NO_MATCHING_RULE', () => {
    const e = PolicyEngine.fromPayload(payload());
    for (const ids of [['nsu=urn:plant:ua1;s=Tank2.Level'], ['nsu=urn:plant:ua1;s=Tank2.Setpoint', 'nsu=urn:plant:ua1;s=Secret']]) {
      const c = ua(ids, { 'tank2.setpoint': 10 });
      resolveOpcua(e, c);
      expect(e.decide(c, subject(), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    }
    const unknown = ua(['ns=9;s=Nothing']);
    resolveOpcua(e, unknown);
    expect(unknown.assetId).toBe('');
  });
});
