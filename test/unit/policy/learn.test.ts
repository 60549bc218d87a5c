// `policy learn` turning recorded traffic into draft rules: envelopes rounded to the point's
// resolution and never narrower than what was seen, writes seen too rarely left out and listed,
// delegation learned for the human too, raw addresses as ranges, rates from the busiest minutes,
// and a time-of-day window only when the traffic clearly keeps to one. The drafts are written and
// compiled by the real rule compiler.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { writeLearned } from '../../../src/policy/learn/emit.js';
import { Observations } from '../../../src/policy/learn/observe.js';
import { DEFAULT_LEARN_OPTIONS, envelope, learnRules, type LearnOptions } from '../../../src/policy/learn/rules.js';
import { observedCommand } from '../../../src/policy/observed/command.js';
import type { BundlePayload, PointDef } from '../../../src/policy/payload.js';
import { compileSources } from '../../../src/policy/sources.js';
import { agent, allowed, denied, modbus, Recorder, shadowed, T0 } from './recorded.js';
import { bundleResolver } from '../../../src/assets/resolver.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';
import { resolveModbus } from '../../resolve.js';

let demo: BundlePayload;
let dir: string;
beforeAll(async () => {
  demo = await compileSources('rules/demo/bundle.yaml', { now: T0, revision: 1 });
  dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-learn-unit-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function learnFrom(rec: Recorder, options: Partial<LearnOptions> = {}) {
  const o = { ...DEFAULT_LEARN_OPTIONS, ...options };
  const obs = new Observations(bundleResolver(RESOLVERS, demo.assets), demo.assets, o.timeZone);
  for (const r of rec.records) {
    const oc = observedCommand(r);
    if (oc) obs.add(oc);
  }
  obs.finish();
  return { obs, learned: learnRules(obs, o), options: o };
}

const optimizer = agent('optimizer');

describe('write envelopes', () => {
  it('widens by the margin of the span and rounds outward to the point resolution', () => {
    const setpoint: PointDef = { table: 'holding', address: 0, type: 'uint16', scale: 0.1 };
    expect(envelope(40, 90, setpoint, 10)).toEqual({ min: 35, max: 95, step: 0.1 });
    expect(envelope(40.5, 78.80000000000001, setpoint, 10)).toEqual({ min: 36.6, max: 82.7, step: 0.1 });
    // Never past what the register can hold.
    expect(envelope(1, 6553.5, setpoint, 10)).toEqual({ min: 0, max: 6553.5, step: 0.1 });
    // All writes equal: the margin is a share of the value.
    expect(envelope(1500, 1500, { table: 'holding', address: 1, type: 'uint16' }, 10)).toEqual({ min: 1350, max: 1650, step: 1 });
    // A switch keeps exactly the states seen.
    expect(envelope(1, 1, { table: 'coil', address: 1, type: 'bool' }, 10)).toEqual({ min: 1, max: 1, step: 1 });
  });

  it('always contains every value seen, on the point grid, inside the type (property)', () => {
    const def = fc.record({
      type: fc.constantFrom('int16', 'uint16', 'int32', 'uint32' as const),
      scale: fc.constantFrom(1, 0.1, 0.01, 0.5, 0.7, 2, 10),
      offset: fc.constantFrom(0, -40, 273.15),
    });
    fc.assert(
      fc.property(def, fc.integer({ min: -32768, max: 65535 }), fc.integer({ min: 0, max: 30000 }), fc.integer({ min: 0, max: 100 }), (d, rawLo, span, margin) => {
        const p: PointDef = { table: 'holding', address: 0, type: d.type, scale: d.scale, offset: d.offset };
        const [tlo, thi] = { int16: [-32768, 32767], uint16: [0, 65535], int32: [-2147483648, 2147483647], uint32: [0, 4294967295] }[d.type]!;
        const lo = Math.min(Math.max(rawLo, tlo), thi);
        const hi = Math.min(lo + span, thi);
        // Values as the gateway decodes them (raw * scale + offset), floating error included.
        const vmin = lo * d.scale + d.offset;
        const vmax = hi * d.scale + d.offset;
        const e = envelope(vmin, vmax, p, margin);
        expect(e.min).toBeLessThanOrEqual(vmin);
        expect(e.max).toBeGreaterThanOrEqual(vmax);
        expect(e.min).toBeGreaterThanOrEqual(tlo * d.scale + d.offset - 1e-9);
        expect(e.max).toBeLessThanOrEqual(thi * d.scale + d.offset + 1e-9);
        const onGrid = (x: number) => Math.abs((x - d.offset) / d.scale - Math.round((x - d.offset) / d.scale)) < 1e-6;
        expect(onGrid(e.min) && onGrid(e.max)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('learning rules from recorded traffic', () => {
  it('learns points, function codes and bounds per workload and operation, leaving out rare writes', () => {
    const rec = new Recorder();
    let t = T0;
    for (const raw of [400, 450, 500, 600]) rec.decision((t += 1000), modbus('write', 6, 'holding', 0, [raw]), optimizer, allowed());
    for (let i = 0; i < 3; i++) rec.decision((t += 1000), modbus('read', 3, 'holding', 0, undefined, 2), optimizer, allowed());
    rec.decision((t += 1000), modbus('write', 6, 'holding', 1, [1200]), optimizer, allowed()); // once: left out
    rec.decision((t += 1000), modbus('write', 6, 'holding', 0, [990]), optimizer, denied('VALUE_OUT_OF_BOUNDS')); // refused: not evidence
    const { learned } = learnFrom(rec);
    expect(learned.rules.map((r) => r.source)).toEqual([
      expect.objectContaining({ id: 'learned-agent-optimizer-plc1-read', subject: { workload: optimizer.workloadId, assurance: 'mtls+token' }, asset: 'plc1', operations: ['read'], points: ['pump1.speed', 'tank1.setpoint'], function_codes: [3] }),
      expect.objectContaining({ id: 'learned-agent-optimizer-plc1-write', operations: ['write'], points: ['tank1.setpoint'], function_codes: [6], bounds: { 'tank1.setpoint': { min: 38, max: 62 } } }),
    ]);
    expect(learned.leftOut).toEqual([expect.objectContaining({ principal: optimizer.workloadId, target: 'pump1.speed', seen: expect.objectContaining({ count: 1 }) })]);
  });

  it('learns a delegated command for the human it acts for too (user:<sub>)', () => {
    const rec = new Recorder();
    const assistant = agent('assistant', { actSub: ['alice@plant.example'] });
    for (let i = 0; i < 3; i++) rec.decision(T0 + i * 1000, modbus('write', 6, 'holding', 1, [1000 + i * 50]), assistant, shadowed('STEP_TOO_LARGE'));
    const { learned } = learnFrom(rec);
    expect(learned.rules.map((r) => [r.source.subject.workload, r.source.bounds])).toEqual([
      [assistant.workloadId, { 'pump1.speed': { min: 990, max: 1110 } }],
      ['user:alice@plant.example', { 'pump1.speed': { min: 990, max: 1110 } }],
    ]);
  });

  it('covers raw addresses outside the point map with ranges', () => {
    const rec = new Recorder();
    for (let i = 0; i < 3; i++) rec.decision(T0 + i, modbus('read', 3, 'holding', 0, undefined, 10), optimizer, allowed());
    const { learned } = learnFrom(rec);
    expect(learned.rules[0]!.source).toMatchObject({ points: ['pump1.speed', 'tank1.setpoint'], ranges: [{ table: 'holding', from: 2, to: 9 }] });
  });

  it('sets the rate limit from the p99 of commands per active minute plus the margin', () => {
    const rec = new Recorder();
    // 100 minutes: 99 with 10 reads, one with 40.
    for (let m = 0; m < 100; m++) {
      const n = m === 50 ? 40 : 10;
      for (let i = 0; i < n; i++) rec.decision(T0 + m * 60_000 + i * 1000, modbus('read', 4, 'input', 0), optimizer, allowed());
    }
    const { learned } = learnFrom(rec);
    expect(learned.rules[0]!.source.rate_limit).toEqual([{ rate: '15/m', per: ['workload'] }]);
    expect(learned.rules[0]!.evidence.join('\n')).toContain('p99 10/min over 100 active minutes (busiest 40)');
  });

  it('learns a night window from three nights of traffic, and none from traffic around the clock', async () => {
    const rec = new Recorder();
    const maint = { ...agent('x'), workloadId: 'spiffe://plant.example/maintenance/laptop-7', roles: ['maintainer'] };
    // Three nights, 22:00 to 05:59 in Berlin (21:00 to 04:59 UTC in January), one write every 20 minutes.
    for (let night = 0; night < 3; night++) {
      for (let m = 0; m < 8 * 60; m += 20) rec.decision(Date.UTC(2026, 0, 12 + night, 21, 0) + m * 60_000, modbus('write', 5, 'coil', 2, [m % 40 === 0 ? 0xff00 : 0]), maint, allowed());
    }
    for (let h = 0; h < 72; h++) rec.decision(Date.UTC(2026, 0, 12, 0) + h * 3_600_000, modbus('read', 4, 'input', 0), optimizer, allowed());
    const { learned, options } = learnFrom(rec, { timeZone: 'Europe/Berlin' });
    expect(learned.windows).toEqual([{ id: 'learned-2200-0600', time_zone: 'Europe/Berlin', from: '22:00', to: '06:00' }]);
    const byId = new Map(learned.rules.map((r) => [r.source.id, r.source]));
    expect(byId.get('learned-maintenance-laptop-7-plc1-write')?.windows).toEqual(['learned-2200-0600']);
    expect(byId.get('learned-agent-optimizer-plc1-read')?.windows).toBeUndefined();

    // Written next to the demo's assets, the draft compiles, and the window opens at night only.
    const out = path.join(dir, 'night');
    const files = await writeLearned(out, 'rules/demo/bundle.yaml', learned, options, ' test', false);
    const payload = await compileSources(files.entry, { now: T0, revision: 2 });
    const engine = PolicyEngine.fromPayload(payload);
    const write = () => {
      const c = modbus('write', 5, 'coil', 2, [0]);
      resolveModbus(engine, c, 1);
      return c;
    };
    expect(engine.decide(write(), { ...maint, expiresAtMs: Infinity }, Date.UTC(2026, 0, 20, 23, 0)).effect).toBe('allow');
    expect(engine.decide(write(), { ...maint, expiresAtMs: Infinity }, Date.UTC(2026, 0, 20, 12, 0)).reason).toBe('OUTSIDE_WINDOW');
    await expect(writeLearned(out, 'rules/demo/bundle.yaml', learned, options, ' test', false)).rejects.toThrow(/exists; choose another --out or pass --force/);
  });

  it('learns nothing from a token without the operation\'s scope, and says why', () => {
    const rec = new Recorder();
    const reporter = agent('reporter', { scopes: ['read'] });
    for (let i = 0; i < 3; i++) rec.decision(T0 + i, modbus('write', 6, 'holding', 0, [500]), reporter, shadowed('NO_MATCHING_RULE'));
    const { learned, obs } = learnFrom(rec);
    expect(learned.rules).toEqual([]);
    expect(obs.notLearned.get("the token lacked the 'write' scope")?.count).toBe(3);
  });
});
