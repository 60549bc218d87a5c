// Fresh and plausible interlock inputs (docs/safety.md): `confirm` (inputs read after the command
// arrived) and the plausibility checks, on the real engine over a process image fed by hand as its
// polls would feed it (ProcessImage.record), with a ManualClock.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { InterlockEngine, processInputs } from '../../../src/interlocks/engine.js';
import type { InterlockDef } from '../../../src/interlocks/payload.js';
import { ProcessImage } from '../../../src/interlocks/process-image.js';
import type { BundleAsset } from '../../../src/policy/payload.js';
import { PLC1, writeCmd } from './fixtures.js';

const PLC: BundleAsset = { ...PLC1, points: { ...PLC1.points, 'tank1.level_b': { table: 'input', address: 5, type: 'uint16', scale: 0.1, unit: '%' } } };
const input = (point: string, poll = 200, age = 2000) => ({ asset: 'plc1', point, poll_ms: poll, max_age_ms: age });
const OVERFILL: InterlockDef = {
  id: 'overfill', description: '', asset: 'plc1', operations: ['write'], guards: [{ point: 'pump1.run', value: 1 }],
  deny_when: 'tank1.level > 85', inputs: [input('tank1.level')],
};
const start = () => writeCmd('pump1.run', 1);

function fed(def: InterlockDef) {
  const clock = new ManualClock(1_000_000);
  const image = new ProcessImage({ inputs: processInputs([def], [PLC]), clock });
  const engine = new InterlockEngine([def], [PLC], image);
  /** One poll answer: every value given was read now. */
  const poll = (values: Record<string, number>) => {
    for (const [point, v] of Object.entries(values)) image.record(image.slot('plc1', point), v, clock.now());
    image.updated(clock.now());
  };
  return { clock, image, engine, poll };
}

describe('confirming read (confirm)', () => {
  it('refuses a guarded command whose inputs were last read before it arrived, and allows it on a read after', async () => {
    const { clock, engine, poll } = fed({ ...OVERFILL, confirm_ms: 300 });
    poll({ 'tank1.level': 50 });
    // Read in the same millisecond as the command arrives, but by an earlier request: not a confirmation.
    const confirming = engine.confirm(start())!;
    // No PLC to read from here: the wait ends at once, nothing newer came.
    await confirming.done;
    expect(engine.check(start(), clock.now(), confirming.after)).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', interlockId: 'overfill' });
    expect(engine.check(start(), clock.now(), confirming.after)?.detail).toContain('not read again within 300ms');
    // Checked without asking for a confirming read at all: unconfirmed, denied.
    expect(engine.check(start(), clock.now())?.reason).toBe('INTERLOCK_INPUT_STALE');
    poll({ 'tank1.level': 90 });
    expect(engine.check(start(), clock.now(), confirming.after)?.reason).toBe('INTERLOCK');
    poll({ 'tank1.level': 50 });
    expect(engine.check(start(), clock.now(), confirming.after)).toBeUndefined();
  });

  it('asks for no confirming read for a command it does not guard', () => {
    const { engine } = fed({ ...OVERFILL, confirm_ms: 300 });
    expect(engine.confirm(writeCmd('pump1.run', 0))).toBeUndefined();
    expect(fed(OVERFILL).engine.confirm(start())).toBeUndefined();
  });

  it('never lets a slow poll answer roll a value back past a newer read', () => {
    const { clock, image } = fed(OVERFILL);
    const s = image.slot('plc1', 'tank1.level');
    image.record(s, 90, clock.now(), 7);
    image.record(s, 50, clock.now() - 150, 8); // sent earlier
    image.record(s, 50, clock.now(), 6); // an earlier request answered late
    expect([image.values[s], image.readAtMs[s], image.readSeq[s]]).toEqual([90, clock.now(), 7]);
  });
});

describe('plausibility checks', () => {
  const stuck: InterlockDef = {
    ...OVERFILL, inputs: [input('tank1.level'), input('pump1.running')],
    plausible: [{ kind: 'changes', input: { asset: 'plc1', point: 'tank1.level' }, within_ms: 30_000, while: 'pump1.running' }],
  };

  it('refuses a start when the level did not move for 30 s while the pump ran, and keeps refusing after the pump stopped', () => {
    const { clock, engine, poll } = fed(stuck);
    for (let t = 0; t <= 30_000; t += 10_000) {
      poll({ 'tank1.level': 50, 'pump1.running': 1 });
      if (t < 30_000) clock.advance(10_000);
    }
    expect(engine.check(start(), clock.now())).toBeUndefined(); // exactly 30 s: still plausible
    clock.advance(1000);
    poll({ 'tank1.level': 50, 'pump1.running': 1 });
    const trip = engine.check(start(), clock.now());
    expect(trip).toMatchObject({ reason: 'INTERLOCK_INPUT_IMPLAUSIBLE', interlockId: 'overfill' });
    expect(trip?.detail).toContain("plc1/tank1.level did not change for 31s while 'pump1.running' held (plausible within 30s): a stuck sensor");
    // The pump stops: a sensor that was stuck stays suspect until it moves again.
    clock.advance(1000);
    poll({ 'tank1.level': 50, 'pump1.running': 0 });
    expect(engine.check(start(), clock.now())?.reason).toBe('INTERLOCK_INPUT_IMPLAUSIBLE');
    clock.advance(200);
    poll({ 'tank1.level': 50.1, 'pump1.running': 0 });
    expect(engine.check(start(), clock.now())).toBeUndefined();
  });

  it('does not trip while the process does not run: a still level is plausible then', () => {
    const { clock, engine, poll } = fed(stuck);
    for (let i = 0; i < 10; i++) {
      poll({ 'tank1.level': 50, 'pump1.running': 0 });
      clock.advance(10_000);
    }
    poll({ 'tank1.level': 50, 'pump1.running': 0 });
    expect(engine.check(start(), clock.now())).toBeUndefined();
  });

  it('refuses a start when the level jumped faster than the process can move it', () => {
    const { clock, engine, poll } = fed({ ...OVERFILL, plausible: [{ kind: 'rate', input: { asset: 'plc1', point: 'tank1.level' }, max_per_sec: 2 }] });
    poll({ 'tank1.level': 50 });
    clock.advance(200);
    poll({ 'tank1.level': 50.3 });
    expect(engine.check(start(), clock.now())).toBeUndefined();
    clock.advance(200);
    poll({ 'tank1.level': 20 });
    expect(engine.check(start(), clock.now())).toMatchObject({ reason: 'INTERLOCK_INPUT_IMPLAUSIBLE' });
    expect(engine.check(start(), clock.now())?.detail).toContain('changed by 30.3 in 0.2s (plausible at most 2/s)');
  });

  it('refuses a start when two level sensors disagree, and when one of them is stale', () => {
    const def: InterlockDef = {
      ...OVERFILL, inputs: [input('tank1.level'), input('tank1.level_b')],
      plausible: [{ kind: 'agree', inputs: [{ asset: 'plc1', point: 'tank1.level' }, { asset: 'plc1', point: 'tank1.level_b' }], within: 2 }],
    };
    const { clock, engine, poll } = fed(def);
    poll({ 'tank1.level': 50, 'tank1.level_b': 51.5 });
    expect(engine.check(start(), clock.now())).toBeUndefined();
    poll({ 'tank1.level': 50, 'tank1.level_b': 92 });
    expect(engine.check(start(), clock.now())).toMatchObject({ reason: 'INTERLOCK_INPUT_IMPLAUSIBLE' });
    clock.advance(2001);
    poll({ 'tank1.level': 50 });
    expect(engine.check(start(), clock.now())?.reason).toBe('INTERLOCK_INPUT_STALE');
  });
});
