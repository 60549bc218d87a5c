// Properties of the policy semantics over generated rule sets (docs/policy.md, Precedence and
// Change freezes): whatever rules a writer combines, adding a monitor rule never changes what is
// enforced, and a change freeze on an asset refuses every write to it. The real engine decides;
// rate budgets and step bases come from a generated history of commands forwarded and acknowledged
// the way the gateway commits them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Command, ModbusTable, Subject } from '../../../src/core/command.js';
import { PolicyEngine, type PolicyDecision } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import type { BundleFreeze, BundleRule, RuleOperation } from '../../../src/policy/payload.js';
import type { WindowSpec } from '../../../src/policy/windows.js';
import { demoPayload, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const AGENT = 'spiffe://plant.example/agent/';
const YEAR = Date.UTC(2026, 0, 1);
const POINTS = ['tank1.setpoint', 'pump1.speed', 'flow.target', 'pump1.run', 'valve1.open', 'control.auto'];
const WINDOWS: WindowSpec[] = [
  { id: 'day', time_zone: 'Europe/Berlin', from: '06:00', to: '22:00' },
  { id: 'night', time_zone: 'America/New_York', days: ['sat', 'sun'], from: '20:00', to: '04:00' },
  { id: 'turnaround', time_zone: 'UTC', start: '2026-08-01T00:00', end: '2026-08-15T00:00' },
  { id: 'spring', time_zone: 'Europe/Berlin', start: '2026-03-01T00:00', end: '2026-05-01T00:00' },
];
const TURNAROUND = { from: Date.UTC(2026, 7, 1), to: Date.UTC(2026, 7, 15) };

/** One time in four the generated value, otherwise undefined: a rule has a few conditions, not all. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: arb, weight: 1 });

/** Any rule a writer might combine: every condition the engine checks appears in some. */
const ruleArb = (mode: 'enforce' | 'monitor') =>
  fc.record({
    workload: fc.constantFrom(`${AGENT}optimizer`, `${AGENT}optimizer`, `${AGENT}optimizer`, `${AGENT}*`, `${AGENT}*`, '**', `${AGENT}reporter`, 'user:alice', 'user:*'),
    owner: sometimes(fc.constantFrom('ops', 'OPS', 'alice')),
    roles: sometimes(fc.constant(['tuner'])),
    act: sometimes(fc.constantFrom('alice*', 'bob')),
    assurance: sometimes(fc.constantFrom('mtls+token' as const, 'static-ip+token' as const)),
    operations: fc.subarray<RuleOperation>(['read', 'write', 'write'], { minLength: 1 }),
    points: fc.oneof({ arbitrary: fc.constant(['*']), weight: 3 }, fc.subarray(POINTS, { minLength: 2 }), fc.constant(['tank1.*', 'pump1.*'])),
    ranges: sometimes(fc.constant([{ table: 'holding' as ModbusTable, from: 3, to: 9 }])),
    functionCodes: sometimes(fc.constantFrom([5, 15], [6, 16], [3, 4])),
    requireScope: sometimes(fc.constantFrom('maintain', 'read')),
    bounds: fc.option(
      fc.record({ point: fc.constantFrom('tank1.setpoint', 'pump1.speed', 'flow.target'), min: fc.integer({ min: 0, max: 40 }), max: fc.integer({ min: 40, max: 2000 }) }),
      { nil: undefined },
    ),
    maxStep: sometimes(fc.record({ point: fc.constantFrom('tank1.setpoint', 'pump1.speed'), step: fc.integer({ min: 0, max: 200 }) })),
    windows: sometimes(fc.subarray(['day', 'night', 'spring'], { minLength: 1 })),
    freezes: sometimes(fc.constantFrom(['spring'], ['turnaround'])),
    rate: sometimes(fc.record({ count: fc.integer({ min: 1, max: 3 }), per: fc.subarray(['workload', 'owner', 'task', 'asset'] as const) })),
    crossZone: sometimes(fc.constantFrom(['dmz'], ['*'])),
    approval: sometimes(fc.constantFrom('required' as const, { approvers: 2, distinct_from: ['owner' as const, 'requester' as const] })),
  }).map(
    (g): Omit<BundleRule, 'id'> => ({
      description: '',
      subject: {
        workload: g.workload, roles: [...(g.roles ?? [])],
        ...(g.owner !== undefined ? { owner: g.owner } : {}),
        ...(g.act !== undefined ? { act: g.act } : {}),
        ...(g.assurance !== undefined ? { assurance: g.assurance } : {}),
      },
      assets: ['plc1'],
      operations: [...new Set(g.operations)],
      points: [...g.points],
      ranges: [...(g.ranges ?? [])],
      bounds: g.bounds === undefined ? {} : { [g.bounds.point]: { min: g.bounds.min, max: g.bounds.max } },
      ...(mode === 'monitor' ? { mode: 'monitor' as const } : {}),
      ...(g.functionCodes !== undefined ? { function_codes: [...g.functionCodes] } : {}),
      ...(g.requireScope !== undefined ? { require_scope: g.requireScope } : {}),
      ...(g.maxStep !== undefined ? { max_step: { [g.maxStep.point]: g.maxStep.step } } : {}),
      ...(g.windows !== undefined ? { windows: [...g.windows] } : {}),
      ...(g.freezes !== undefined ? { freezes: [...g.freezes] } : {}),
      ...(g.rate !== undefined ? { rate_limits: [{ count: g.rate.count, per_sec: 60, per: [...g.rate.per] }] } : {}),
      ...(g.crossZone !== undefined ? { cross_zone: [...g.crossZone] } : {}),
      ...(g.approval !== undefined ? { approval: g.approval } : {}),
    }),
  );

/** A command (read or write, any point or raw range of plc1) and who sends it. */
const commandArb = fc.record({
  who: fc.constantFrom('optimizer', 'optimizer', 'optimizer', 'reporter', 'tuner-bot'),
  owner: fc.constantFrom('ops', 'ops', 'ops', 'alice', 'Alice'),
  task: fc.constantFrom('t-1', 't-2'),
  roles: fc.subarray(['tuner']),
  scopes: fc.constantFrom(['read', 'write'], ['read', 'write'], ['write'], ['read'], ['write', 'maintain'], ['*']),
  act: sometimes(fc.constantFrom(['alice'], ['alice-2'], ['bob'], ['alice', 'bob'])),
  zone: sometimes(fc.constantFrom('treatment', 'dmz', 'office')),
  assurance: fc.constantFrom('mtls+token' as const, 'mtls+token' as const, 'static-ip+token' as const),
  read: fc.boolean(),
  table: fc.constantFrom<ModbusTable>('holding', 'holding', 'coil'),
  address: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 2 }), weight: 4 }, fc.integer({ min: 3, max: 5 })),
  count: fc.integer({ min: 1, max: 2 }),
  raw: fc.array(fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1 })), { minLength: 2, maxLength: 2 }),
});
type CommandGen = typeof commandArb extends fc.Arbitrary<infer T> ? T : never;

function build(engine: PolicyEngine, g: CommandGen): { cmd: Command; s: Subject } {
  const write = !g.read;
  const fc_ = g.read ? (g.table === 'coil' ? 1 : 3) : g.table === 'coil' ? (g.count === 1 ? 5 : 15) : g.count === 1 ? 6 : 16;
  const cmd: Command = {
    sessionId: 's', protocol: 'modbus', assetId: '', operation: write ? 'write' : 'read', functionCode: fc_,
    targets: [{ table: g.table, address: g.address, count: g.count }], points: [],
  };
  if (write) cmd.rawValues = g.table === 'coil' ? g.raw.slice(0, g.count).map((v) => v & 1) : g.raw.slice(0, g.count);
  resolveModbus(engine, cmd, 1);
  const s: Subject = subject({ workloadId: `${AGENT}${g.who}`, owner: g.owner, taskId: g.task, roles: g.roles, scopes: [...g.scopes], assurance: g.assurance });
  if (g.act) s.actSub = [...g.act];
  if (g.zone) s.zone = g.zone;
  return { cmd, s };
}

/** The rules in bundle order: the enforcing rules keep their order, each monitor rule goes in at its slot. */
function interleave(enforcing: BundleRule[], monitors: BundleRule[], slots: number[]): BundleRule[] {
  const out = [...enforcing];
  monitors.forEach((m, i) => out.splice(Math.min(slots[i] ?? 0, out.length), 0, m));
  return out;
}

const named = (prefix: string) => (rules: Omit<BundleRule, 'id'>[]) => rules.map((r, i): BundleRule => ({ ...r, id: `${prefix}${i}` }));

function engineOf(rules: BundleRule[], freezes: BundleFreeze[] = []): PolicyEngine {
  return PolicyEngine.fromPayload(demoPayload({ rules, windows: WINDOWS, freezes, expires_at: (YEAR + 400 * 86400_000) / 1000 }));
}

/** What is enforced: the decision without the monitor rules' findings and the commit plan. */
function enforced(d: PolicyDecision): Omit<PolicyDecision, 'shadow' | 'shadows' | 'forward'> {
  const { shadow: _s, shadows: _ss, forward: _f, ...rest } = d;
  return rest;
}

/** Commands before the one judged, forwarded and acknowledged when allowed: budgets spent, bases moved. */
function history(engine: PolicyEngine, memory: PolicyMemory, past: { g: CommandGen; dtMs: number }[], startMs: number): number {
  let at = startMs;
  for (const { g, dtMs } of past) {
    at += dtMs;
    const { cmd, s } = build(engine, g);
    const d = engine.decide(cmd, s, at, memory);
    if (d.effect !== 'allow' || d.forward === undefined) continue;
    memory.forwarded(d.forward, at);
    memory.settled(d.forward, 'acknowledged', at);
  }
  return at;
}

const historyArb = fc.array(fc.record({ g: commandArb, dtMs: fc.integer({ min: 0, max: 30_000 }) }), { maxLength: 6 });
const baseArb = fc.record({ setpoint: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }), speed: fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined }) });

describe('rule sets (property): monitor rules never weaken enforcement', () => {
  it('adding monitor rules anywhere in a rule set never changes the effect, reason or rule of any command', () => {
    let denied = 0;
    let allowed = 0;
    fc.assert(
      fc.property(
        fc.array(ruleArb('enforce'), { minLength: 1, maxLength: 5 }).map(named('r')),
        fc.array(ruleArb('monitor'), { minLength: 1, maxLength: 4 }).map(named('m')),
        fc.array(fc.nat(9), { minLength: 4, maxLength: 4 }),
        historyArb,
        baseArb,
        commandArb,
        fc.integer({ min: 0, max: 364 * 86400 - 60 }).map((s) => YEAR + s * 1000),
        (rules, monitors, slots, past, base, g, startMs) => {
          const without = engineOf(rules);
          const withMonitors = engineOf(interleave(rules, monitors, slots));
          const memory = new PolicyMemory();
          if (base.setpoint !== undefined) memory.observe('plc1', 'tank1.setpoint', base.setpoint / 10, startMs);
          if (base.speed !== undefined) memory.observe('plc1', 'pump1.speed', base.speed, startMs);
          // The gateway runs the bundle with the monitor rules: its history is theirs.
          const at = history(withMonitors, memory, past, startMs);
          const judged = build(withMonitors, g);
          const expected = without.decide(build(without, g).cmd, judged.s, at, memory);
          const got = withMonitors.decide(judged.cmd, judged.s, at, memory);
          expect(enforced(got)).toEqual(enforced(expected));
          if (expected.effect === 'deny') denied++;
          else allowed++;
        },
      ),
      { numRuns: 600 },
    );
    // The generators reach both outcomes: the property was not checked on denials alone.
    expect(denied).toBeGreaterThan(100);
    expect(allowed).toBeGreaterThan(25);
  }, 120_000);
});

describe('rule sets (property): a change freeze on an asset binds every rule', () => {
  const freezeArb = fc.oneof(
    // The bundle's own freeze, for plc1 or the whole plant.
    fc.record({ assets: fc.constantFrom(['plc1'], ['*']), extra: fc.subarray<RuleOperation>(['read', 'call']) }).map((f) => ({ bundle: { window: 'turnaround', assets: [...f.assets], operations: ['write' as RuleOperation, ...f.extra] } })),
    // One enforcing rule that may write lists the freeze: it binds every other rule of the asset.
    fc.nat().map((pick) => ({ rulePick: pick })),
  );

  it('refuses every write to a frozen asset with CHANGE_FREEZE, whatever rule would allow it', () => {
    let wouldAllow = 0;
    fc.assert(
      fc.property(
        fc.array(ruleArb('enforce'), { minLength: 1, maxLength: 5 }).map(named('r')),
        fc.array(ruleArb('monitor'), { maxLength: 2 }).map(named('m')),
        fc.array(fc.nat(9), { minLength: 2, maxLength: 2 }),
        freezeArb,
        historyArb,
        baseArb,
        commandArb.filter((g) => !g.read),
        fc.integer({ min: TURNAROUND.from, max: TURNAROUND.to - 200_000 }),
        (rules, monitors, slots, freeze, past, base, g, startMs) => {
          const all = interleave(rules, monitors, slots);
          let frozenRules = all;
          const freezes: BundleFreeze[] = [];
          if ('bundle' in freeze) freezes.push(freeze.bundle);
          else {
            const i = freeze.rulePick % rules.length;
            const listing: BundleRule = { ...rules[i]!, operations: [...new Set<RuleOperation>([...rules[i]!.operations, 'write'])], freezes: ['turnaround'] };
            frozenRules = all.map((r) => (r.id === listing.id ? listing : r));
          }
          const frozen = engineOf(frozenRules, freezes);
          // The same rules without the freeze: does any of them allow the write at all?
          const open = engineOf(frozenRules.map(({ freezes: _f, ...r }) => r));
          const memory = new PolicyMemory();
          if (base.setpoint !== undefined) memory.observe('plc1', 'tank1.setpoint', base.setpoint / 10, startMs);
          if (base.speed !== undefined) memory.observe('plc1', 'pump1.speed', base.speed, startMs);
          const at = history(open, memory, past, startMs);
          const { cmd, s } = build(frozen, g);
          const d = frozen.decide(cmd, s, at, memory);
          expect(d).toMatchObject({ effect: 'deny', reason: 'CHANGE_FREEZE', ruleId: 'freeze:turnaround' });
          expect(d.forward).toBeUndefined();
          if (open.decide(build(open, g).cmd, s, at, memory).effect === 'allow') wouldAllow++;
        },
      ),
      { numRuns: 600 },
    );
    // Many of the refused writes were ones the rules would have allowed without the freeze.
    expect(wouldAllow).toBeGreaterThan(25);
  }, 120_000);
});
