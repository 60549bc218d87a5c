// The compiled engine against a straightforward reference evaluator written here: it scans every
// rule in bundle order with no indexes, and computes wall-clock time with Intl on every call. For
// random subjects, commands, times and last values both must give the same effect, reason, rule,
// shadow verdict and principal.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Command, ModbusTable, Subject } from '../../../src/core/command.js';
import { canonicalPrincipal } from '../../../src/core/principal.js';
import type { Reason } from '../../../src/core/reasons.js';
import { PolicyEngine, type PolicyDecision } from '../../../src/policy/engine.js';
import { PolicyMemory } from '../../../src/policy/memory.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { WEEKDAYS, utcOffsetMs, type WindowSpec } from '../../../src/policy/windows.js';
import { demoPayload, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const AGENT = 'spiffe://plant.example/agent/';
const base = (over: Partial<BundleRule> & { id: string }): BundleRule => ({
  description: '', subject: { workload: `${AGENT}*`, roles: [] }, assets: ['plc1'], operations: ['write'], points: [], ranges: [], bounds: {}, ...over,
});
const WINDOWS: WindowSpec[] = [
  { id: 'night', time_zone: 'Europe/Berlin', days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '22:00', to: '06:00' },
  { id: 'ny-day', time_zone: 'America/New_York', from: '09:00', to: '17:00' },
  { id: 'freeze', time_zone: 'Europe/Berlin', start: '2026-03-28T00:00', end: '2026-04-02T00:00' },
  { id: 'turnaround', time_zone: 'UTC', start: '2026-08-01T00:00', end: '2026-08-15T00:00' },
];
const FREEZES = [{ window: 'turnaround', assets: ['plc1'], operations: ['write' as const] }];
const RULES: BundleRule[] = [
  base({ id: 'read-all', operations: ['read'], points: ['*'] }),
  base({ id: 'sp-monitor', subject: { workload: `${AGENT}optimizer`, roles: [] }, points: ['tank1.setpoint'], mode: 'monitor', max_step: { 'tank1.setpoint': 5 } }),
  base({ id: 'human-trial', subject: { workload: 'user:alice', roles: [] }, points: ['*'], mode: 'monitor', bounds: { 'pump1.speed': { max: 1200 } }, approval: 'required', cross_zone: ['office'] }),
  base({ id: 'sp', subject: { workload: `${AGENT}optimizer`, roles: [] }, points: ['tank1.setpoint', 'pump1.speed'], bounds: { 'tank1.setpoint': { min: 20, max: 80 } }, windows: ['ny-day'] }),
  base({ id: 'speed-step', subject: { workload: `${AGENT}*`, roles: ['tuner'] }, points: ['pump1.speed'], max_step: { 'pump1.speed': 100 }, cross_zone: ['dmz'] }),
  base({ id: 'coils', subject: { workload: `${AGENT}optimizer`, roles: [], act: 'alice*' }, points: ['pump1.run', 'valve1.open'], freezes: ['freeze'] }),
  base({ id: 'alice', subject: { workload: 'user:alice', roles: [] }, points: ['pump1.*', 'valve1.open', 'tank1.setpoint'], windows: ['night'] }),
  base({ id: 'flow', subject: { workload: '**', roles: [], assurance: 'mtls+token' }, points: ['flow.target'], bounds: { 'flow.target': { min: 0, max: 12.5 } }, approval: 'required' }),
  base({ id: 'scratch', subject: { workload: `${AGENT}maint`, roles: [], scopes: ['maintain'] }, ranges: [{ table: 'holding', from: 3, to: 9 }], require_scope: 'maintain', cross_zone: ['*'] }),
];

// ---- the reference: every rule, every time, no caches ----
const globRe = (g: string, seg: boolean) => new RegExp(`^${g.split(/(\*\*|\*)/).map((p) => (p === '**' ? '.*' : p === '*' ? (seg ? '[^/]*' : '.*') : p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))).join('')}$`);
const LEVEL = { none: 0, 'static-ip+token': 1, 'mtls+token': 2 } as const;

function inWindow(w: WindowSpec, ms: number): boolean {
  const local = ms + utcOffsetMs(w.time_zone, ms);
  const d = new Date(local);
  if (w.start !== undefined) {
    const s = Date.parse(`${w.start}Z`) - utcOffsetMs(w.time_zone, Date.parse(`${w.start}Z`));
    const e = Date.parse(`${w.end}Z`) - utcOffsetMs(w.time_zone, Date.parse(`${w.end}Z`));
    return ms >= s && ms < e;
  }
  const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
  const [fh, fm] = w.from!.split(':').map(Number);
  const [th, tm] = w.to!.split(':').map(Number);
  const from = fh! * 60 + fm!;
  const to = th! * 60 + tm!;
  const day = (wd: number) => (w.days ?? WEEKDAYS).includes(WEEKDAYS[(wd + 7) % 7]!);
  if (from < to) return day(d.getUTCDay()) && minute >= from && minute < to;
  return (minute >= from && day(d.getUTCDay())) || (minute < to && day(d.getUTCDay() - 1));
}

type Finding = { reason: Reason; ruleId: string; principal?: string };
type Verdict = { allow: BundleRule | null; approval: BundleRule | null; reason: Reason; denyRule: string; findings: Finding[] };

function reference(p: BundlePayload, cmd: Command, s: Subject, now: number, last: Record<string, number>): PolicyDecision {
  const asset = p.assets.find((a) => a.id === cmd.assetId)!;
  const pointAt = (table: ModbusTable, addr: number) =>
    Object.entries(asset.points).find(([, d]) => d.table === table && addr >= d.address && addr < d.address + (['int32', 'uint32', 'float32'].includes(d.type) ? 2 : 1))?.[0];
  const t = cmd.targets[cmd.targets.length - 1]!;
  const written = new Set<string>();
  for (let a = t.address!; a < t.address! + t.count!; a++) {
    const n = pointAt(t.table!, a);
    if (n) written.add(n);
  }
  const window = (id: string) => inWindow(p.windows!.find((w) => w.id === id)!, now);
  // Every failing check of a rule, in the engine's order.
  const failures = (r: BundleRule, subj: Subject): Reason[] => {
    const out: Reason[] = [];
    if (!(subj.scopes.includes(r.require_scope ?? cmd.operation) || subj.scopes.includes('*'))) out.push('SCOPE_MISSING');
    if (subj.zone && subj.zone !== asset.zone && !(r.cross_zone ?? []).some((z) => z === '*' || z === subj.zone)) out.push('CROSS_ZONE');
    if (r.windows && !r.windows.some(window)) out.push('OUTSIDE_WINDOW');
    if (r.mode === 'monitor' && r.freezes && r.freezes.some(window)) out.push('CHANGE_FREEZE');
    if (cmd.operation === 'write') {
      const v = (n: string) => cmd.values?.[n] ?? NaN;
      if ([...written].some((n) => r.bounds[n] && !(v(n) >= (r.bounds[n]!.min ?? -Infinity) && v(n) <= (r.bounds[n]!.max ?? Infinity)))) out.push('VALUE_OUT_OF_BOUNDS');
      const stepped = [...written].filter((n) => r.max_step?.[n] !== undefined);
      if (stepped.some((n) => last[n] === undefined)) out.push('STEP_BASE_STALE');
      else if (stepped.some((n) => !(Math.abs(v(n) - last[n]!) <= r.max_step![n]!))) out.push('STEP_TOO_LARGE');
    }
    if (r.approval) out.push('APPROVAL_REQUIRED');
    return out;
  };
  const evalOne = (subj: Subject, principal: string | undefined): Verdict => {
    const applies = (r: BundleRule) => {
      if (!r.operations.includes(cmd.operation as 'read')) return false;
      // People (a human's rules, owner, act) are compared in canonical form (src/core/principal.ts).
      const workload = /^user:/i.test(r.subject.workload) ? `user:${canonicalPrincipal(r.subject.workload)}` : r.subject.workload;
      if (!globRe(workload, true).test(subj.workloadId)) return false;
      if (r.subject.owner !== undefined && canonicalPrincipal(r.subject.owner) !== canonicalPrincipal(subj.owner)) return false;
      if (!r.subject.roles.every((x) => subj.roles.includes(x))) return false;
      if (!(r.subject.scopes ?? []).every((x) => subj.scopes.includes(x))) return false;
      if (r.subject.assurance && LEVEL[subj.assurance] < LEVEL[r.subject.assurance]) return false;
      if (r.subject.act && !(subj.actSub ?? []).some((a) => globRe(canonicalPrincipal(r.subject.act!), false).test(canonicalPrincipal(a)))) return false;
      return cmd.targets.every((tg) => {
        for (let a = tg.address!; a < tg.address! + tg.count!; a++) {
          const n = pointAt(tg.table!, a);
          const byPoint = n !== undefined && r.points.some((g) => globRe(g, false).test(n));
          const byRange = r.ranges.some((rg) => rg.table === tg.table && a >= rg.from && a <= rg.to);
          if (!byPoint && !byRange) return false;
        }
        return true;
      });
    };
    const v: Verdict = { allow: null, approval: null, reason: 'NO_MATCHING_RULE', denyRule: '', findings: [] };
    let first: { reason: Reason; rule: BundleRule } | null = null;
    for (const r of p.rules) {
      if (r.mode === 'monitor' || !applies(r)) continue;
      const f = failures(r, subj);
      if (f.length === 0) {
        v.allow = r;
        break;
      }
      first ??= { reason: f[0]!, rule: r };
    }
    if (v.allow) v.reason = 'ALLOWED';
    else if (first) {
      v.reason = first.reason;
      v.denyRule = first.rule.id;
      if (first.reason === 'APPROVAL_REQUIRED') v.approval = first.rule;
    }
    for (const r of p.rules) {
      if (r.mode !== 'monitor' || !applies(r)) continue;
      const f = failures(r, subj);
      const add = (reason: Reason) => v.findings.push({ reason, ruleId: r.id, ...(principal ? { principal } : {}) });
      if (f.length === 0) {
        if (v.reason !== 'ALLOWED') add('ALLOWED');
      } else f.forEach(add);
    }
    return v;
  };
  const durable = cmd.operation === 'write';
  const findings: Finding[] = [];
  const withFindings = (d: PolicyDecision): PolicyDecision => {
    if (findings.length === 0) return d;
    const firstDeny = findings.find((f) => f.reason !== 'ALLOWED');
    return { ...d, shadows: findings, ...(firstDeny ? { shadow: { reason: firstDeny.reason, ruleId: firstDeny.ruleId } } : {}) };
  };
  const finish = (reason: Reason, ruleId: string, principal?: string, extra: Partial<PolicyDecision> = {}): PolicyDecision => {
    if (p.mode === 'monitor') {
      findings.unshift({ reason, ruleId, ...(principal ? { principal } : {}) });
      return withFindings({ effect: 'allow', reason: 'ALLOWED', ruleId, bundleRevision: p.revision, durable });
    }
    return withFindings({ effect: 'deny', reason, ruleId, bundleRevision: p.revision, durable: false, ...(principal ? { principal } : {}), ...extra });
  };
  // Change freezes: the bundle's, then each enforcing rule's own (they bind the whole asset).
  const freezes = [
    ...(p.freezes ?? []).filter((f) => f.assets.includes('*') || f.assets.includes(asset.id)),
    ...p.rules.filter((r) => r.mode !== 'monitor' && r.assets.includes(asset.id)).flatMap((r) => (r.freezes ?? []).map((w) => ({ window: w, operations: r.operations }))),
  ];
  const frozen = freezes.find((f) => f.operations.includes(cmd.operation as 'write') && window(f.window));
  if (frozen) return finish('CHANGE_FREEZE', `freeze:${frozen.window}`);
  const agent = evalOne(s, undefined);
  findings.push(...agent.findings);
  if (agent.allow === null && agent.approval === null) return finish(agent.reason, agent.denyRule);
  let approval = agent.approval;
  for (const a of s.actSub ?? []) {
    const name = canonicalPrincipal(a);
    const principal = /^[a-z][a-z0-9+.-]*:/.test(name) ? name : `user:${name}`;
    const h = evalOne({ ...s, workloadId: principal, roles: [], actSub: undefined }, principal);
    findings.push(...h.findings);
    if (h.allow === null && h.approval === null) return finish(h.reason, h.denyRule, principal);
    approval ??= h.approval;
  }
  if (approval) return finish('APPROVAL_REQUIRED', approval.id, undefined, { approval: { approvers: 1, distinct_from: ['owner', 'requester'] } });
  return withFindings({ effect: 'allow', reason: 'ALLOWED', ruleId: agent.allow!.id, bundleRevision: p.revision, durable });
}

describe('compiled engine vs. reference evaluator', () => {
  it('agree on effect, reason, rule, shadow and principal for random commands (property)', () => {
    const year = Date.UTC(2026, 0, 1);
    fc.assert(
      fc.property(
        fc.record({
          monitorBundle: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
          who: fc.constantFrom('optimizer', 'optimizer', 'optimizer', 'reporter', 'maint', 'tuner-bot'),
          roles: fc.subarray(['tuner', 'maintainer']),
          scopes: fc.constantFrom(['read', 'write'], ['read', 'write'], ['write'], ['read'], ['write', 'maintain'], ['maintain'], ['*'], []),
          act: fc.option(fc.constantFrom(['alice'], ['alice'], ['ALICE'], ['alice-2'], ['bob'], ['alice', 'bob'], ['user:Alice']), { nil: undefined, freq: 2 }),
          zone: fc.option(fc.constantFrom('treatment', 'dmz', 'office'), { nil: undefined }),
          assurance: fc.constantFrom('mtls+token', 'static-ip+token', 'none'),
          read: fc.boolean(),
          table: fc.constantFrom<ModbusTable>('holding', 'holding', 'coil', 'input'),
          address: fc.integer({ min: 0, max: 6 }),
          count: fc.integer({ min: 1, max: 2 }),
          raw: fc.array(fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 0xffff })), { minLength: 4, maxLength: 4 }),
          at: fc.integer({ min: 0, max: 364 * 86400 - 1 }).map((s) => year + s * 1000),
          lastSetpoint: fc.option(fc.integer({ min: 0, max: 1000 }).map((x) => x / 10), { nil: undefined }),
          lastSpeed: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
        }),
        (g) => {
          const payload = demoPayload({ rules: RULES, windows: WINDOWS, freezes: FREEZES, expires_at: (year + 400 * 86400_000) / 1000, ...(g.monitorBundle ? { mode: 'monitor' as const } : {}) });
          const engine = PolicyEngine.fromPayload(payload);
          const memory = new PolicyMemory();
          const last: Record<string, number> = {};
          if (g.lastSetpoint !== undefined) memory.observe('plc1', 'tank1.setpoint', (last['tank1.setpoint'] = g.lastSetpoint), g.at);
          if (g.lastSpeed !== undefined) memory.observe('plc1', 'pump1.speed', (last['pump1.speed'] = g.lastSpeed), g.at);
          const cmd: Command = {
            sessionId: 's', protocol: 'modbus', assetId: '', operation: g.read ? 'read' : 'write',
            functionCode: g.read ? 3 : 16, targets: [{ table: g.table, address: g.address, count: g.count }], points: [],
          };
          if (!g.read) cmd.rawValues = g.raw.slice(0, g.count);
          resolveModbus(engine, cmd, 1);
          const s: Subject = { ...subject({ workloadId: `${AGENT}${g.who}`, roles: g.roles, scopes: [...g.scopes], assurance: g.assurance as Subject['assurance'] }) };
          if (g.act) s.actSub = [...g.act];
          if (g.zone) s.zone = g.zone;
          const expected = reference(payload, cmd, s, g.at, last);
          const { forward, ...got } = engine.decide(cmd, s, g.at, memory);
          expect(got).toEqual(expected);
          // What forwarding would write: every decoded written value, and only with an allow or an approval.
          if (forward !== undefined) expect(got.effect === 'allow' || got.reason === 'APPROVAL_REQUIRED').toBe(true);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
