// `policy replay` re-deciding recorded commands against a candidate (the demo bundle): windows and
// rate limits at the recorded times, interlocks from the inputs a trip record carried (unknown
// otherwise), grants consumed at the time, decisions made before policy kept, and a report whose
// size does not grow with the number of changed commands.
import { beforeAll, describe, expect, it } from 'vitest';
import type { BundlePayload } from '../../../src/policy/payload.js';
import { compileSources } from '../../../src/policy/sources.js';
import { Replay } from '../../../src/policy/replay/replay.js';
import { agent, allowed, denied, modbus, Recorder, shadowed, T0 } from './recorded.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

let demo: BundlePayload;
beforeAll(async () => {
  // Built long before the audit: replay ignores the candidate's validity period.
  demo = await compileSources('rules/demo/bundle.yaml', { now: T0 - 90 * 86_400_000, revision: 4 });
});

const optimizer = agent('optimizer');
const maintainer = { ...agent('laptop-7', { roles: ['maintainer'] }), workloadId: 'spiffe://plant.example/maintenance/laptop-7' };

describe('policy replay against the demo bundle', () => {
  it('reports an allowed write outside the candidate bounds as newly denied, with both verdicts', () => {
    const rec = new Recorder();
    rec.decision(T0, modbus('write', 6, 'holding', 0, [950]), optimizer, shadowed('VALUE_OUT_OF_BOUNDS', 'optimizer-setpoint'));
    rec.decision(T0 + 1000, modbus('write', 6, 'holding', 0, [500]), optimizer, allowed('optimizer-setpoint'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary).toMatchObject({ commands: 2, unchanged: 1, newlyDenied: 1, newlyAllowed: 0, reasonChanged: 0 });
    expect(replay.changes).toEqual([
      expect.objectContaining({
        kind: 'newly-denied', gatewayId: 'gw-1', seq: 0, workload: optimizer.workloadId, asset: 'plc1', operation: 'write',
        command: 'write fc 6 holding 0 [950] (tank1.setpoint=95)',
        recorded: { effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint', shadow: 'VALUE_OUT_OF_BOUNDS' },
        candidate: { effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint' },
      }),
    ]);
  });

  it('evaluates windows at the recorded time, in the window\'s own zone', () => {
    const rec = new Recorder();
    // 23:30 in Berlin on a Thursday: inside nightly-maintenance; 13:00 in Berlin: outside.
    rec.decision(Date.UTC(2026, 0, 15, 22, 30), modbus('write', 5, 'coil', 2, [0]), maintainer, denied('NO_MATCHING_RULE'));
    rec.decision(Date.UTC(2026, 0, 15, 12, 0), modbus('write', 5, 'coil', 2, [0]), maintainer, allowed('old-rule'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.changes.map((c) => [c.kind, c.candidate.reason])).toEqual([
      ['newly-allowed', 'ALLOWED'],
      ['newly-denied', 'OUTSIDE_WINDOW'],
    ]);
  });

  it('spends rate-limit tokens at the recorded times: the 11th switch within an hour is RATE_LIMITED, one an hour later is not', () => {
    const rec = new Recorder();
    const night = Date.UTC(2026, 0, 15, 22, 0);
    for (let i = 0; i < 11; i++) rec.decision(night + i * 10_000, modbus('write', 5, 'coil', 2, [0]), maintainer, allowed('maintainer-auto-mode'));
    rec.decision(night + 71 * 60_000, modbus('write', 5, 'coil', 2, [0]), maintainer, allowed('maintainer-auto-mode'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary.newlyDenied).toBe(1);
    expect(replay.changes[0]).toMatchObject({ seq: 20, candidate: { reason: 'RATE_LIMITED' } });
  });

  it('judges an interlock on the inputs its trip record carried, and reports it unknown without them', () => {
    const rec = new Recorder();
    const run = modbus('write', 5, 'coil', 0, [0xff00]);
    // Refused at the time on a 90 % tank: the trip record holds the level and its age.
    rec.trip(T0, run, optimizer, [{ point: 'plc1/tank1.level', value: 90, ageMs: 150, maxAgeMs: 2000 }]);
    rec.decision(T0, run, optimizer, { ...denied('INTERLOCK', 'optimizer-pump'), interlockId: 'tank1-overfill' });
    // A level of 40 % recorded: the candidate's interlock holds nothing against it.
    rec.trip(T0 + 1000, run, optimizer, [{ point: 'plc1/tank1.level', value: 40, ageMs: 100, maxAgeMs: 2000 }]);
    rec.decision(T0 + 1000, run, optimizer, { ...denied('INTERLOCK', 'optimizer-pump'), interlockId: 'some-older-interlock' });
    // Allowed at the time: no trip record, so no inputs.
    rec.decision(T0 + 2000, run, optimizer, allowed('optimizer-pump'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary).toMatchObject({ commands: 3, unchanged: 1, newlyAllowed: 1, interlockUnknown: 1 });
    expect(replay.changes).toEqual([expect.objectContaining({ kind: 'newly-allowed', seq: 3 })]);
    expect(replay.changeGroups().find((g) => g.kind === 'interlock-unknown')).toMatchObject({ count: 1, points: 'pump1.run' });
  });

  it('reports a refusal on implausible interlock inputs as interlock unknown while the candidate keeps that interlock, and re-decides the rest', () => {
    const rec = new Recorder();
    const run = modbus('write', 5, 'coil', 0, [0xff00]);
    const stuck = [{ point: 'plc1/tank1.level', value: 40, ageMs: 150, maxAgeMs: 2000 }];
    // A level sensor stuck at 40 %: its history, which the audit does not hold, refused the start.
    rec.trip(T0, run, optimizer, stuck, 'INTERLOCK_INPUT_IMPLAUSIBLE');
    rec.decision(T0, run, optimizer, { ...denied('INTERLOCK_INPUT_IMPLAUSIBLE', 'optimizer-pump'), interlockId: 'tank1-overfill' });
    // Refused by an interlock the candidate no longer has: its own interlock holds nothing against 40 %.
    rec.trip(T0 + 1000, run, optimizer, stuck, 'INTERLOCK_INPUT_IMPLAUSIBLE');
    rec.decision(T0 + 1000, run, optimizer, { ...denied('INTERLOCK_INPUT_IMPLAUSIBLE', 'optimizer-pump'), interlockId: 'retired-level-check' });
    // The candidate's policy refuses before any interlock is asked.
    rec.trip(T0 + 2000, run, agent('reporter', { scopes: ['read'] }), stuck, 'INTERLOCK_INPUT_IMPLAUSIBLE');
    rec.decision(T0 + 2000, run, agent('reporter', { scopes: ['read'] }), { ...denied('INTERLOCK_INPUT_IMPLAUSIBLE', 'old-rule'), interlockId: 'tank1-overfill' });
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary).toMatchObject({ commands: 3, interlockUnknown: 1, newlyAllowed: 1, reasonChanged: 1, notRedecided: {} });
    expect(replay.changes.map((c) => [c.kind, c.seq, c.candidate.reason])).toEqual([
      ['newly-allowed', 3, 'ALLOWED'],
      ['reason-changed', 5, 'NO_MATCHING_RULE'],
    ]);
  });

  it('measures max_step from the PLC value of the last acknowledged write, and reports a base too old to use as unknown', () => {
    const rec = new Recorder();
    const assistant = agent('assistant', { actSub: ['alice@plant.example'] });
    const speed = (rpm: number) => modbus('write', 6, 'holding', 1, [rpm]);
    rec.decision(T0, speed(1000), optimizer, allowed('optimizer-setpoint')); // acknowledged at T0 + 1: the base
    rec.decision(T0 + 2000, speed(1050), assistant, allowed('assistant-speed-for-operator')); // a step of 50
    rec.decision(T0 + 3000, speed(1200), assistant, allowed('assistant-speed-for-operator')); // 150 from 1050
    rec.decision(T0 + 20_000, speed(1100), assistant, allowed('assistant-speed-for-operator')); // base 18 s old
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary).toMatchObject({ commands: 4, unchanged: 2, newlyDenied: 1, stepBaseUnknown: 1 });
    expect(replay.changes.map((c) => [c.command, c.candidate.reason])).toEqual([['write fc 6 holding 1 [1200] (pump1.speed=1200)', 'STEP_TOO_LARGE']]);
  });

  it('spends no rate budget on a command the candidate\'s interlock refuses', () => {
    const rec = new Recorder();
    const run = modbus('write', 5, 'coil', 0, [0xff00]);
    const candidate: BundlePayload = structuredClone(demo);
    candidate.rules.find((r) => r.id === 'optimizer-pump')!.rate_limit = { per_subject: { count: 1, per_sec: 3600 } };
    // Three refused starts on a full tank, then the one start the budget allows.
    for (let i = 0; i < 3; i++) {
      rec.trip(T0 + i * 1000, run, optimizer, [{ point: 'plc1/tank1.level', value: 95, ageMs: 100, maxAgeMs: 2000 }]);
      rec.decision(T0 + i * 1000, run, optimizer, { ...denied('INTERLOCK', 'optimizer-pump'), interlockId: 'tank1-overfill' });
    }
    rec.trip(T0 + 5000, run, optimizer, [{ point: 'plc1/tank1.level', value: 40, ageMs: 100, maxAgeMs: 2000 }]);
    rec.decision(T0 + 5000, run, optimizer, { ...denied('INTERLOCK', 'older-rule'), interlockId: 'older-interlock' });
    const replay = new Replay(candidate, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary).toMatchObject({ unchanged: 3, newlyAllowed: 1 });
  });

  it('keeps a grant consumed at the time: the approved drain stays allowed, an unapproved one is APPROVAL_REQUIRED', () => {
    const rec = new Recorder();
    const planner = agent('planner');
    const drain = modbus('write', 5, 'coil', 1, [0xff00]);
    rec.decision(T0, drain, planner, { ...allowed('planner-drain'), approvalId: 'ap-1' });
    rec.decision(T0 + 1000, drain, planner, allowed('planner-drain'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.changes.map((c) => [c.seq, c.candidate.reason])).toEqual([[2, 'APPROVAL_REQUIRED']]);
  });

  it('keeps decisions made before policy, and those on the token\'s zone, as recorded', () => {
    const rec = new Recorder();
    rec.decision(T0, modbus('write', 6, 'holding', 0, [950]), optimizer, denied('NO_TOKEN'));
    rec.decision(T0, modbus('write', 6, 'holding', 0, [950]), undefined, denied('NO_IDENTITY'));
    rec.decision(T0, modbus('read', 3, 'holding', 0), optimizer, denied('PROTOCOL_VIOLATION'));
    // Judged on the token's zone claim, which the audit does not keep.
    rec.decision(T0, modbus('read', 3, 'holding', 0), optimizer, denied('CROSS_ZONE', 'agents-read-plant'));
    rec.decision(T0, modbus('read', 3, 'holding', 0), optimizer, shadowed('CROSS_ZONE', 'agents-read-plant'));
    const replay = new Replay(demo, RESOLVERS);
    for (const r of rec.records) replay.add(r);
    expect(replay.summary.notRedecided).toEqual({ NO_TOKEN: 1, NO_IDENTITY: 1, PROTOCOL_VIOLATION: 1, CROSS_ZONE: 2 });
    expect(replay.summary.unchanged + replay.summary.newlyDenied + replay.summary.newlyAllowed).toBe(0);
  });

  it('keeps a bounded report however many commands change: listed up to the cap, the rest counted in groups', () => {
    const rec = new Recorder();
    const replay = new Replay(demo, RESOLVERS, { maxListed: 5, maxGroups: 3 });
    for (let i = 0; i < 20_000; i++) {
      // Four distinct change groups (recorded under four rules; the fourth past maxGroups), 5,000 commands each.
      replay.add(rec.decision(T0 + i, modbus('write', 6, 'holding', 0, [900]), optimizer, allowed(`old-rule-${i % 4}`)));
    }
    expect(replay.summary.newlyDenied).toBe(20_000);
    expect(replay.changes).toHaveLength(5);
    expect(replay.unlisted['newly-denied']).toBe(19_995);
    expect(replay.changeGroups()).toHaveLength(3);
    expect(replay.changeGroups().reduce((n, g) => n + g.count, 0) + replay.groupsDropped).toBe(20_000);
  });
});
