import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { InterlockEngine, InterlockError, processInputs } from '../../../src/interlocks/engine.js';
import type { InterlockDef } from '../../../src/interlocks/payload.js';
import { ProcessImage } from '../../../src/interlocks/process-image.js';
import { PLC1, PLC2, writeCmd } from './fixtures.js';

const DRY_RUN: InterlockDef = {
  id: 'pump1-dry-run',
  description: '',
  asset: 'plc1',
  operations: ['write'],
  guards: [{ point: 'pump1.run', value: 1 }],
  deny_when: 'tank1.level < 10',
  inputs: [{ asset: 'plc1', point: 'tank1.level', poll_ms: 500, max_age_ms: 2000 }],
};
const SPEED_LIMIT: InterlockDef = {
  id: 'speed-vs-pressure',
  description: '',
  asset: 'plc1',
  operations: ['write', 'call'],
  guards: [{ point: 'pump1.speed' }],
  deny_when: 'plc2/header.pressure > 6.5 or pump1.speed / plc2/header.pressure > 1000',
  inputs: [
    { asset: 'plc2', point: 'header.pressure', poll_ms: 200, max_age_ms: 1000 },
    { asset: 'plc1', point: 'pump1.speed', poll_ms: 500, max_age_ms: 2000 },
  ],
};

/** An engine over an image nobody polls: values are set by hand, as a poll would. */
function handFed(defs: InterlockDef[]) {
  const clock = new ManualClock();
  const image = new ProcessImage({ inputs: processInputs(defs, [PLC1, PLC2]), clock });
  const engine = new InterlockEngine(defs, [PLC1, PLC2], image);
  const set = (point: string, value: number, agoMs = 0) => {
    const [asset, name] = point.split('/') as [string, string];
    const s = image.slot(asset, name);
    image.values[s] = value;
    image.readAtMs[s] = clock.now() - agoMs;
  };
  return { clock, image, engine, set };
}

describe('interlock engine', () => {
  it('denies starting the pump on a low tank with INTERLOCK and the input value and age', () => {
    const { clock, engine, set } = handFed([DRY_RUN]);
    set('plc1/tank1.level', 4.2, 300);
    expect(engine.check(writeCmd('pump1.run', 1), clock.now())).toEqual({
      reason: 'INTERLOCK',
      interlockId: 'pump1-dry-run',
      point: 'pump1.run',
      inputs: [{ point: 'plc1/tank1.level', value: 4.2, ageMs: 300, maxAgeMs: 2000 }],
      detail: "interlock pump1-dry-run: 'tank1.level < 10' holds; plc1/tank1.level=4.2 (300ms old)",
    });
  });

  it('allows the start once the level has recovered', () => {
    const { clock, engine, set } = handFed([DRY_RUN]);
    set('plc1/tank1.level', 45);
    expect(engine.check(writeCmd('pump1.run', 1), clock.now())).toBeUndefined();
  });

  it('only guards the value it names: stopping the pump is never interlocked', () => {
    const { clock, engine, set } = handFed([DRY_RUN]);
    set('plc1/tank1.level', 1);
    expect(engine.check(writeCmd('pump1.run', 0), clock.now())).toBeUndefined();
    // A write whose value the gateway could not decode cannot prove it is a stop: guarded.
    expect(engine.check(writeCmd('pump1.run', undefined), clock.now())?.reason).toBe('INTERLOCK');
  });

  it('fails closed with INTERLOCK_INPUT_STALE when an input is older than its bound or was never read', () => {
    const { clock, engine, set } = handFed([DRY_RUN]);
    expect(engine.check(writeCmd('pump1.run', 1), clock.now())).toMatchObject({
      reason: 'INTERLOCK_INPUT_STALE',
      inputs: [{ point: 'plc1/tank1.level', ageMs: -1 }],
    });
    set('plc1/tank1.level', 80);
    clock.advance(2000);
    expect(engine.check(writeCmd('pump1.run', 1), clock.now())).toBeUndefined();
    clock.advance(1);
    const trip = engine.check(writeCmd('pump1.run', 1), clock.now());
    expect(trip).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', inputs: [{ value: 80, ageMs: 2001, maxAgeMs: 2000 }] });
    expect(trip?.detail).toContain('2001ms old, max 2000ms');
    // An undecodable value is as good as none, however recent.
    set('plc1/tank1.level', NaN);
    expect(engine.check(writeCmd('pump1.run', 1), clock.now())?.reason).toBe('INTERLOCK_INPUT_STALE');
  });

  it('evaluates cross-asset conditions and trips on an undefined result (division by zero)', () => {
    const { clock, engine, set } = handFed([SPEED_LIMIT]);
    set('plc2/header.pressure', 2);
    set('plc1/pump1.speed', 1500);
    expect(engine.check(writeCmd('pump1.speed', 1800), clock.now())).toBeUndefined();
    set('plc2/header.pressure', 7);
    expect(engine.check(writeCmd('pump1.speed', 1800), clock.now())?.reason).toBe('INTERLOCK');
    set('plc2/header.pressure', 0);
    expect(engine.check(writeCmd('pump1.speed', 1800), clock.now())?.reason).toBe('INTERLOCK');
  });

  it('costs nothing for commands no interlock guards: reads, other points, other assets', () => {
    const { clock, engine } = handFed([DRY_RUN, SPEED_LIMIT]);
    // Inputs never read: any guarded command would trip, so undefined proves it was not guarded.
    expect(engine.check(writeCmd('pump1.run', 1, { operation: 'read' }), clock.now())).toBeUndefined();
    expect(engine.check(writeCmd('tank1.setpoint', 50), clock.now())).toBeUndefined();
    expect(engine.check(writeCmd('pump1.run', 1, { assetId: 'plc7' }), clock.now())).toBeUndefined();
    expect(engine.check(writeCmd('pump1.run', 1, { operation: 'call' }), clock.now())).toBeUndefined();
    expect(engine.check(writeCmd('pump1.speed', 1, { operation: 'call' }), clock.now())?.interlockId).toBe('speed-vs-pressure');
  });

  it('guards a multi-point write that includes the guarded point', () => {
    const { clock, engine, set } = handFed([DRY_RUN]);
    set('plc1/tank1.level', 3);
    const cmd = writeCmd('pump1.run', 1, { functionCode: 15, points: ['pump1.run', 'valve1.open'], values: { 'pump1.run': 1, 'valve1.open': 0 } });
    expect(engine.check(cmd, clock.now())?.reason).toBe('INTERLOCK');
  });

  it('refuses a bundle whose condition does not parse or names an unpolled point', () => {
    const clock = new ManualClock();
    const image = new ProcessImage({ inputs: processInputs([DRY_RUN], [PLC1]), clock });
    expect(() => new InterlockEngine([{ ...DRY_RUN, deny_when: 'tank1.level <' }], [PLC1], image)).toThrow(InterlockError);
    expect(() => new InterlockEngine([{ ...DRY_RUN, deny_when: 'pump1.speed > 1' }], [PLC1], image)).toThrow(/not polled/);
    expect(() => processInputs([{ ...DRY_RUN, inputs: [{ asset: 'plc1', point: 'nope', poll_ms: 100, max_age_ms: 500 }] }], [PLC1])).toThrow(InterlockError);
  });
});
