// Rule conditions, delegation and shadow mode, each decided by the real engine with a ManualClock.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { Command, Operation, Subject, Target } from '../../../src/core/command.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { demoPayload, NOW_MS, subject } from './fixtures.js';

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
  engine.resolveModbus(c, 1);
  return c;
}
/** tank1.setpoint is holding 0, scale 0.1: 45.5 % is raw 455. */
const setpoint = (e: PolicyEngine, percent: number) => cmd(e, 'write', 6, [{ table: 'holding', address: 0, count: 1 }], [Math.round(percent * 10)]);

describe('rate limits', () => {
  it('denies the write past the burst with RATE_LIMITED and refills as the clock moves', () => {
    const e = engineWith([rule({ id: 'sp', rate_limit: { per_subject: { count: 3, per_sec: 60 } } })]);
    const clock = new ManualClock(NOW_MS);
    for (let i = 0; i < 3; i++) expect(e.decide(setpoint(e, 40), subject(), clock.now()).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), subject(), clock.now())).toMatchObject({ effect: 'deny', reason: 'RATE_LIMITED', ruleId: 'sp' });
    clock.advance(19_000);
    expect(e.decide(setpoint(e, 40), subject(), clock.now()).reason).toBe('RATE_LIMITED');
    clock.advance(1_000); // 20 s = one token at 3 per minute
    expect(e.decide(setpoint(e, 40), subject(), clock.now()).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), subject(), clock.now()).reason).toBe('RATE_LIMITED');
  });

  it('keeps one bucket per subject, and a per-asset bucket shared by all subjects', () => {
    const e = engineWith([
      rule({ id: 'sp', subject: { workload: 'spiffe://plant.example/agent/*', roles: [] }, rate_limit: { per_subject: { count: 1, per_sec: 60 }, per_asset: { count: 2, per_sec: 60 } } }),
    ]);
    const a = subject();
    const b = subject({ workloadId: 'spiffe://plant.example/agent/other' });
    const c = subject({ workloadId: 'spiffe://plant.example/agent/third' });
    expect(e.decide(setpoint(e, 40), a, NOW_MS).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), a, NOW_MS).reason).toBe('RATE_LIMITED');
    expect(e.decide(setpoint(e, 40), b, NOW_MS).effect).toBe('allow');
    expect(e.decide(setpoint(e, 40), c, NOW_MS).reason).toBe('RATE_LIMITED'); // the asset's 2 are spent
  });

  it('does not spend tokens on denied commands', () => {
    const e = engineWith([rule({ id: 'sp', bounds: { 'tank1.setpoint': { max: 80 } }, rate_limit: { per_subject: { count: 1, per_sec: 60 } } })]);
    for (let i = 0; i < 5; i++) expect(e.decide(setpoint(e, 90), subject(), NOW_MS).reason).toBe('VALUE_OUT_OF_BOUNDS');
    expect(e.decide(setpoint(e, 50), subject(), NOW_MS).effect).toBe('allow');
  });
});

describe('max step from the last known value', () => {
  const stepRule = rule({ id: 'sp', max_step: { 'tank1.setpoint': 5 } });

  it('denies a first write whose last value is unknown with STEP_TOO_LARGE (fail closed)', () => {
    const e = engineWith([stepRule]);
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'STEP_TOO_LARGE', ruleId: 'sp' });
  });

  it('measures each write from the observed value, then from the last allowed write', () => {
    const e = engineWith([stepRule]);
    e.observeValue('plc1', 'tank1.setpoint', 40);
    expect(e.decide(setpoint(e, 45), subject(), NOW_MS).effect).toBe('allow');
    expect(e.lastValue('plc1', 'tank1.setpoint')).toBe(45);
    expect(e.decide(setpoint(e, 51), subject(), NOW_MS).reason).toBe('STEP_TOO_LARGE');
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS).effect).toBe('allow');
    expect(e.lastValue('plc1', 'tank1.setpoint')).toBe(40);
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
  it('denies a write inside a change freeze with OUTSIDE_WINDOW', () => {
    const e = engineWith([rule({ id: 'sp', freezes: ['xmas'] })], { windows });
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-24T12:00Z')).reason).toBe('OUTSIDE_WINDOW');
    expect(e.decide(setpoint(e, 40), subject(), Date.parse('2026-12-18T12:00Z')).effect).toBe('allow');
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

describe('shadow mode', () => {
  it('a monitor rule reports the deny it would give and lets the command through', () => {
    const e = engineWith([rule({ id: 'tight', mode: 'monitor', bounds: { 'tank1.setpoint': { max: 50 } } })]);
    expect(e.decide(setpoint(e, 60), subject(), NOW_MS)).toEqual({
      effect: 'allow', reason: 'ALLOWED', ruleId: 'tight', bundleRevision: 5, durable: true,
      shadow: { reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'tight' },
    });
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS).shadow).toBeUndefined();
  });

  it('a monitor bundle lets a write no rule covers through and remembers its value for the next step check', () => {
    // Only a read rule: no rule speaks about writes at all. The bundle in monitor mode reports the
    // deny and lets the write through, so the PLC now holds 45: that is the last known value.
    const e = engineWith([rule({ id: 'reads', operations: ['read'] })], { mode: 'monitor' });
    expect(e.decide(setpoint(e, 45), subject(), NOW_MS)).toMatchObject({ effect: 'allow', shadow: { reason: 'NO_MATCHING_RULE' } });
    expect(e.lastValue('plc1', 'tank1.setpoint')).toBe(45);
  });

  it('a monitor rule never waives a missing scope', () => {
    const e = engineWith([rule({ id: 'tight', mode: 'monitor', approval: 'required' })]);
    expect(e.decide(setpoint(e, 40), subject({ scopes: ['read'] }), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'SCOPE_MISSING' });
    expect(e.decide(setpoint(e, 40), subject(), NOW_MS)).toMatchObject({ effect: 'allow', shadow: { reason: 'APPROVAL_REQUIRED' } });
  });

  it('an enforcing rule that allows cleanly wins over a monitor rule’s would-deny', () => {
    const e = engineWith([
      rule({ id: 'tight', mode: 'monitor', bounds: { 'tank1.setpoint': { max: 50 } } }),
      rule({ id: 'loose', bounds: { 'tank1.setpoint': { max: 80 } } }),
    ]);
    expect(e.decide(setpoint(e, 60), subject(), NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'loose' });
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
    e.resolveOpcua(c);
    expect(c.assetId).toBe('ua1');
    expect(c.points).toEqual(['tank2.setpoint']);
    expect(e.decide(c, subject(), NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'ua' });
    const high = ua(['nsu=urn:plant:ua1;s=Tank2.Setpoint'], { 'tank2.setpoint': 95 });
    e.resolveOpcua(high);
    expect(e.decide(high, subject(), NOW_MS).reason).toBe('VALUE_OUT_OF_BOUNDS');
  });

  it('denies a NodeId outside the point map or outside the rule with NO_MATCHING_RULE', () => {
    const e = PolicyEngine.fromPayload(payload());
    for (const ids of [['nsu=urn:plant:ua1;s=Tank2.Level'], ['nsu=urn:plant:ua1;s=Tank2.Setpoint', 'nsu=urn:plant:ua1;s=Secret']]) {
      const c = ua(ids, { 'tank2.setpoint': 10 });
      e.resolveOpcua(c);
      expect(e.decide(c, subject(), NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    }
    const unknown = ua(['ns=9;s=Nothing']);
    e.resolveOpcua(unknown);
    expect(unknown.assetId).toBe('');
  });
});
