import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { ManualClock } from '../../../src/core/clock.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { parsePlant, type Plant } from '../../../src/assets/plant.js';
import { PlantRuntime } from '../../../src/sim/runtime.js';

const HEAT_LOOP_FILE = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');
const HEAT_LOOP = parsePlant(readFileSync(HEAT_LOOP_FILE, 'utf8'), HEAT_LOOP_FILE);

function runtime(plant: Plant = HEAT_LOOP, seed = 1): { rt: PlantRuntime; clock: ManualClock } {
  const clock = new ManualClock();
  return { rt: new PlantRuntime(plant, clock, { seed }), clock };
}

/** A one-PLC plant with the given points and process lines (for focused block tests). */
function plantWith(points: string[], process: string[]): Plant {
  const text = ['plant: t', 'plcs:', '  - id: p', '    unit_id: 1', '    points:', ...points.map((p) => `      ${p}`), '    process:', ...process.map((p) => `      - ${p}`)].join('\n');
  return parsePlant(text, 't.yaml');
}

function errorsOf(text: string): string[] {
  try {
    parsePlant(text, 't.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(SourceErrors);
    return (e as SourceErrors).errors.map((x) => x.message);
  }
  throw new Error('expected the plant to be rejected');
}

describe('process blocks', () => {
  it('moves a valve toward its command at its stroke speed and reports the limit switches', () => {
    const { rt } = runtime();
    expect(rt.read('valve.closed')).toBe(0); // switches settle on the first tick
    rt.step(100);
    expect(rt.read('valve.closed')).toBe(1);
    rt.write('valve.command', 100);
    rt.step(3000); // 10 s stroke: 10 %/s
    expect(rt.read('valve.position')).toBeCloseTo(30, 5);
    expect(rt.read('valve.closed')).toBe(0);
    expect(rt.read('valve.open')).toBe(0);
    rt.step(7000);
    expect(rt.read('valve.position')).toBeCloseTo(100, 5);
    expect(rt.read('valve.open')).toBe(1);
    rt.write('valve.command', 40);
    rt.step(2000);
    expect(rt.read('valve.position')).toBeCloseTo(80, 5);
  });

  it('holds the temperature at its setpoint with the PID loop in auto', () => {
    const { rt } = runtime();
    rt.write('loop.auto', 1);
    rt.step(300_000);
    expect(rt.readTrue('temp.pv')).toBeCloseTo(60, 0);
    // Steady state: the valve sits where the lag gives 60 °C: (60 - 20) / 0.6.
    expect(rt.read('valve.position')).toBeCloseTo(66.7, 0);
    rt.write('temp.setpoint', 50);
    rt.step(300_000);
    expect(rt.readTrue('temp.pv')).toBeCloseTo(50, 0);
  });

  it('leaves the PID output to the operator in manual and takes over from there without a bump', () => {
    const { rt } = runtime();
    rt.write('valve.command', 25);
    rt.step(60_000);
    expect(rt.read('valve.command')).toBeCloseTo(25, 5);
    rt.write('loop.auto', 1);
    rt.step(100);
    // One tick after switching to auto the output has moved by only a few tenths, not jumped.
    expect(Math.abs(rt.read('valve.command') - 25)).toBeLessThan(1);
  });

  it('does not wind up: after a long saturation the output leaves the limit as soon as the error turns', () => {
    const { rt } = runtime();
    rt.write('loop.auto', 1);
    rt.write('temp.setpoint', 200); // unreachable: the output saturates at 100 %
    rt.step(600_000);
    expect(rt.read('valve.command')).toBeGreaterThan(99);
    rt.write('temp.setpoint', 30);
    rt.step(1_000);
    // A wound-up integrator would hold the valve open for minutes; this one closes it at once.
    expect(rt.read('valve.command')).toBe(0);
  });

  it('counts pump starts on rising edges only and resets from the reset coil', () => {
    const { rt } = runtime();
    for (let i = 0; i < 3; i++) {
      rt.write('pump.run', 1);
      rt.step(500);
      rt.write('pump.run', 0);
      rt.step(500);
    }
    expect(rt.read('pump.starts')).toBe(3);
    rt.write('pump.run', 1);
    rt.step(5000); // staying on is one start
    expect(rt.read('pump.starts')).toBe(4);
    rt.write('pump.starts_reset', 1);
    rt.step(100);
    expect(rt.read('pump.starts')).toBe(0);
    expect(rt.read('pump.starts_reset')).toBe(0);
  });

  it('raises the high alarm at 70 °C and clears it only below 68 °C', () => {
    const plant = plantWith(
      ['t: { table: input, address: 0, type: int16, scale: 0.1 }', 'hi: { table: discrete, address: 0, type: bool }'],
      ['alarm: { input: t, alarm: hi, above: 70, hysteresis: 2 }'],
    );
    const { rt } = runtime(plant);
    const at = (v: number): number => {
      rt.write('t', v);
      rt.step(100);
      return rt.read('hi');
    };
    expect([at(69.9), at(70), at(69), at(68.1), at(67.9), at(69.9)]).toEqual([0, 1, 1, 1, 0, 0]);
  });

  it('adds seeded gaussian noise to a measurement while the process integrates the true value', () => {
    const a = runtime(HEAT_LOOP, 42).rt;
    const b = runtime(HEAT_LOOP, 42).rt;
    const c = runtime(HEAT_LOOP, 43).rt;
    const seq = (rt: PlantRuntime): number[] =>
      Array.from({ length: 200 }, () => {
        rt.step(100);
        return rt.read('temp.pv');
      });
    const sa = seq(a);
    expect(seq(b)).toEqual(sa);
    expect(seq(c)).not.toEqual(sa);
    // Truth stays at 20 °C (valve closed); the readings scatter around it with σ ≈ 0.2.
    expect(a.readTrue('temp.pv')).toBeCloseTo(20, 5);
    const mean = sa.reduce((s, v) => s + v, 0) / sa.length;
    const sd = Math.sqrt(sa.reduce((s, v) => s + (v - mean) ** 2, 0) / sa.length);
    expect(mean).toBeCloseTo(20, 0);
    expect(sd).toBeGreaterThan(0.12);
    expect(sd).toBeLessThan(0.3);
  });

  it('gives the same values for one 60 s step as for 600 steps of 100 ms (step mode is exact)', () => {
    const one = runtime(HEAT_LOOP, 5).rt;
    const many = runtime(HEAT_LOOP, 5).rt;
    for (const rt of [one, many]) {
      rt.write('loop.auto', 1);
      rt.write('pump.run', 1);
    }
    one.step(60_000);
    for (let i = 0; i < 600; i++) many.step(100);
    for (const name of ['temp.pv', 'valve.command', 'valve.position', 'pump.starts', 'temp.high_alarm']) {
      expect(many.read(name), name).toBe(one.read(name));
    }
  });

  it('starts points at their initial values', () => {
    const { rt } = runtime();
    expect(rt.read('temp.setpoint')).toBe(60);
    expect(rt.read('flow.total')).toBeCloseTo(1234.5, 3);
  });
});

describe('process block definitions', () => {
  const POINTS = [
    '      a: { table: holding, address: 0, type: uint16 }', // line 6
    '      b: { table: input, address: 0, type: uint16 }', // line 7
    '      c: { table: coil, address: 0, type: bool }', // line 8
  ];
  const plant = (...process: string[]): string =>
    ['plant: t', 'plcs:', '  - id: p', '    unit_id: 1', '    points:', ...POINTS, '    process:', ...process].join('\n');

  it('names file:line:column and field for an unknown block kind', () => {
    expect(errorsOf(plant('      - tank: { x: 1 }'))).toEqual([
      't.yaml:10:9: plcs[0].process[0]: unknown process block "tank" (one of: valve, pid, lag, counter, alarm, noise)',
    ]);
  });

  it('names a missing parameter, a point the PLC lacks, and a non-positive time constant', () => {
    expect(errorsOf(plant('      - lag: { input: a, output: nope, tau_s: 0 }', '      - valve: { command: a, position: b }'))).toEqual([
      't.yaml:10:34: plcs[0].process[0].lag.output: "nope" is not a point of this PLC',
      't.yaml:10:47: plcs[0].process[0].lag.tau_s: must be greater than 0, not 0',
      't.yaml:11:16: plcs[0].process[1].valve.travel_s: is required',
    ]);
  });

  it('refuses a block that would write a coil the client commands, and a non-bool counter input', () => {
    expect(errorsOf(plant('      - lag: { input: a, output: c, tau_s: 1 }', '      - counter: { input: a, count: b }'))).toEqual([
      't.yaml:10:34: plcs[0].process[0].lag.output: point c is a coil; the process writes this value, so use a discrete, input or holding point',
      't.yaml:11:27: plcs[0].process[1].counter.input: point a must be bool (a coil or discrete input), not uint16',
    ]);
  });

  it('needs exactly one of above or below on an alarm, and rejects unknown parameters', () => {
    expect(errorsOf(plant('      - alarm: { input: a, alarm: c, hysteresis: 1, colour: red }'))).toEqual([
      't.yaml:10:53: plcs[0].process[0].alarm.colour: unknown field \'colour\' (expected input, alarm, above, below, hysteresis)',
      't.yaml:10:35: plcs[0].process[0].alarm.alarm: point c is a coil; the process writes this value, so use a discrete, input or holding point',
      't.yaml:10:16: plcs[0].process[0].alarm: needs exactly one of above or below',
    ]);
  });

  it('rejects an initial value the point type cannot hold', () => {
    const text = ['plant: t', 'plcs:', '  - id: p', '    unit_id: 1', '    points:', '      a: { table: holding, address: 0, type: uint16, initial: -1 }'].join('\n');
    expect(errorsOf(text)[0]).toMatch(/^t\.yaml:6:63: plcs\[0\]\.points\.a\.initial: a: -1 is raw -1, outside uint16 0\.\.65535/);
  });
});
