// The compiled engine against a straightforward reference evaluator written here: it scans every
// rule in bundle order with no indexes, and computes wall-clock time with Intl on every call. For
// random subjects, commands, times and last values both must give the same effect, reason, rule,
// shadow verdict and principal.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Command, ModbusTable, Subject } from '../../../src/core/command.js';
import type { Reason } from '../../../src/core/reasons.js';
import { PolicyEngine, type PolicyDecision } from '../../../src/policy/engine.js';
import type { BundlePayload, BundleRule } from '../../../src/policy/payload.js';
import { WEEKDAYS, utcOffsetMs, type WindowSpec } from '../../../src/policy/windows.js';
import { demoPayload, subject } from './fixtures.js';

const AGENT = 'spiffe://plant.example/agent/';
const base = (over: Partial<BundleRule> & { id: string }): BundleRule => ({
  description: '', subject: { workload: `${AGENT}*`, roles: [] }, assets: ['plc1'], operations: ['write'], points: [], ranges: [], bounds: {}, ...over,
});
const WINDOWS: WindowSpec[] = [
  { id: 'night', time_zone: 'Europe/Berlin', days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '22:00', to: '06:00' },
  { id: 'ny-day', time_zone: 'America/New_York', from: '09:00', to: '17:00' },
  { id: 'freeze', time_zone: 'Europe/Berlin', start: '2026-03-28T00:00', end: '2026-04-02T00:00' },
];
const RULES: BundleRule[] = [
  base({ id: 'read-all', operations: ['read'], points: ['*'] }),
  base({ id: 'sp-monitor', subject: { workload: `${AGENT}optimizer`, roles: [] }, points: ['tank1.setpoint'], mode: 'monitor', max_step: { 'tank1.setpoint': 5 } }),
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
  const evalOne = (subj: Subject): { rule: BundleRule | null; reason: Reason; shadow?: Reason } => {
    let deny: { reason: Reason; rule: BundleRule } | null = null;
    let waived: { reason: Reason; rule: BundleRule } | null = null;
    for (const r of p.rules) {
      if (!r.operations.includes(cmd.operation as 'read')) continue;
      if (!globRe(r.subject.workload, true).test(subj.workloadId)) continue;
      if (r.subject.owner !== undefined && r.subject.owner !== subj.owner) continue;
      if (!r.subject.roles.every((x) => subj.roles.includes(x))) continue;
      if (!(r.subject.scopes ?? []).every((x) => subj.scopes.includes(x))) continue;
      if (r.subject.assurance && LEVEL[subj.assurance] < LEVEL[r.subject.assurance]) continue;
      if (r.subject.act && !(subj.actSub ?? []).some((a) => globRe(r.subject.act!, false).test(a))) continue;
      const covered = cmd.targets.every((tg) => {
        for (let a = tg.address!; a < tg.address! + tg.count!; a++) {
          const n = pointAt(tg.table!, a);
          const byPoint = n !== undefined && r.points.some((g) => globRe(g, false).test(n));
          const byRange = r.ranges.some((rg) => rg.table === tg.table && a >= rg.from && a <= rg.to);
          if (!byPoint && !byRange) return false;
        }
        return true;
      });
      if (!covered) continue;
      if (!(subj.scopes.includes(r.require_scope ?? cmd.operation) || subj.scopes.includes('*'))) {
        deny ??= { reason: 'SCOPE_MISSING', rule: r };
        continue;
      }
      let reason: Reason | null = null;
      if (subj.zone && subj.zone !== asset.zone && !(r.cross_zone ?? []).some((z) => z === '*' || z === subj.zone)) reason = 'CROSS_ZONE';
      else if (r.windows && !r.windows.some((id) => inWindow(p.windows!.find((w) => w.id === id)!, now))) reason = 'OUTSIDE_WINDOW';
      else if (r.freezes && r.freezes.some((id) => inWindow(p.windows!.find((w) => w.id === id)!, now))) reason = 'OUTSIDE_WINDOW';
      else if (cmd.operation === 'write' && [...written].some((n) => r.bounds[n] && !((cmd.values?.[n] ?? NaN) >= (r.bounds[n]!.min ?? -Infinity) && (cmd.values?.[n] ?? NaN) <= (r.bounds[n]!.max ?? Infinity)))) reason = 'VALUE_OUT_OF_BOUNDS';
      else if (cmd.operation === 'write' && [...written].some((n) => r.max_step?.[n] !== undefined && !(Math.abs((cmd.values?.[n] ?? NaN) - (last[n] ?? NaN)) <= r.max_step[n]!))) reason = 'STEP_TOO_LARGE';
      else if (r.approval) reason = 'APPROVAL_REQUIRED';
      if (reason === null) return { rule: r, reason: 'ALLOWED' };
      if (r.mode === 'monitor') waived ??= { reason, rule: r };
      else deny ??= { reason, rule: r };
    }
    if (waived) return { rule: waived.rule, reason: 'ALLOWED', shadow: waived.reason };
    return { rule: null, reason: deny?.reason ?? 'NO_MATCHING_RULE', ...(deny ? { shadow: undefined } : {}), ...{ denyRule: deny?.rule.id ?? '' } } as never;
  };
  const durable = cmd.operation === 'write';
  const finish = (reason: Reason, ruleId: string, principal?: string): PolicyDecision => {
    if (p.mode === 'monitor') return { effect: 'allow', reason: 'ALLOWED', ruleId, bundleRevision: p.revision, durable, shadow: { reason, ruleId } };
    return { effect: 'deny', reason, ruleId, bundleRevision: p.revision, durable: false, ...(principal ? { principal } : {}) };
  };
  const agent = evalOne(s) as { rule: BundleRule | null; reason: Reason; shadow?: Reason; denyRule?: string };
  if (agent.rule === null) return finish(agent.reason, agent.denyRule!);
  let shadow = agent.shadow ? { reason: agent.shadow, ruleId: agent.rule.id } : undefined;
  for (const a of s.actSub ?? []) {
    const principal = /^[a-z][a-z0-9+.-]*:/.test(a) ? a : `user:${a}`;
    const h = evalOne({ ...s, workloadId: principal, roles: [], actSub: undefined }) as typeof agent;
    if (h.rule === null) return finish(h.reason, h.denyRule!, principal);
    if (!shadow && h.shadow) shadow = { reason: h.shadow, ruleId: h.rule.id };
  }
  return { effect: 'allow', reason: 'ALLOWED', ruleId: agent.rule.id, bundleRevision: p.revision, durable, ...(shadow ? { shadow } : {}) };
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
          act: fc.option(fc.constantFrom(['alice'], ['alice'], ['alice-2'], ['bob'], ['alice', 'bob']), { nil: undefined, freq: 2 }),
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
          const payload = demoPayload({ rules: RULES, windows: WINDOWS, expires_at: (year + 400 * 86400_000) / 1000, ...(g.monitorBundle ? { mode: 'monitor' as const } : {}) });
          const engine = PolicyEngine.fromPayload(payload);
          const last: Record<string, number> = {};
          if (g.lastSetpoint !== undefined) engine.observeValue('plc1', 'tank1.setpoint', (last['tank1.setpoint'] = g.lastSetpoint));
          if (g.lastSpeed !== undefined) engine.observeValue('plc1', 'pump1.speed', (last['pump1.speed'] = g.lastSpeed));
          const cmd: Command = {
            sessionId: 's', protocol: 'modbus', assetId: '', operation: g.read ? 'read' : 'write',
            functionCode: g.read ? 3 : 16, targets: [{ table: g.table, address: g.address, count: g.count }], points: [],
          };
          if (!g.read) cmd.rawValues = g.raw.slice(0, g.count);
          engine.resolveModbus(cmd, 1);
          const s: Subject = { ...subject({ workloadId: `${AGENT}${g.who}`, roles: g.roles, scopes: [...g.scopes], assurance: g.assurance as Subject['assurance'] }) };
          if (g.act) s.actSub = [...g.act];
          if (g.zone) s.zone = g.zone;
          const expected = reference(payload, cmd, s, g.at, last);
          expect(engine.decide(cmd, s, g.at)).toEqual(expected);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
