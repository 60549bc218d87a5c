import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ManualClock } from '../../../src/core/clock.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { PlantRuntime } from '../../../src/sim/runtime.js';

const FILE = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');
const PLANT = parsePlant(readFileSync(FILE, 'utf8'), FILE);

// One explicit step of the test's clock is plant time the test asked for: none of it may be
// skipped, however long (the catch-up bound is for a suspended wall clock, not for step()).
describe('long clock steps', () => {
  it('simulates every minute of a 30-minute step: the valve drains 1 %/s until the tank is empty', () => {
    const clock = new ManualClock();
    const rt = new PlantRuntime(PLANT, clock);
    rt.write('tank1.level', 100);
    rt.write('valve1.open', 1);
    rt.step(30 * 60_000);
    expect(rt.read('tank1.level')).toBe(0);
    expect(rt.lastTick).toBe(clock.now());
  });

  it('runs a 30-minute step tick for tick like thirty 1-minute steps', () => {
    const a = new PlantRuntime(PLANT, new ManualClock());
    const b = new PlantRuntime(PLANT, new ManualClock());
    for (const rt of [a, b]) {
      rt.write('tank1.level', 10);
      rt.write('pump1.run', 1);
      rt.write('pump1.speed', 30); // 2 % per s × 30/1500: 0.04 %/s, 72 % in 30 min
    }
    let ticksA = 0;
    let ticksB = 0;
    a.onTick(() => ticksA++);
    b.onTick(() => ticksB++);
    a.step(30 * 60_000);
    for (let i = 0; i < 30; i++) b.step(60_000);
    expect(ticksA).toBe(18_000);
    expect(ticksB).toBe(18_000);
    expect(a.read('tank1.level')).toBe(b.read('tank1.level'));
    expect(a.read('tank1.level')).toBeCloseTo(82, 0);
  });

  it('runs listeners due at 1 min and 5 min at 1 and 5 min of one 30-minute step', () => {
    const clock = new ManualClock();
    const rt = new PlantRuntime(PLANT, clock);
    const start = clock.now();
    const seen: number[] = [];
    rt.onTick((now) => {
      if (seen.length === 0 && now - start >= 60_000) seen.push(now - start);
      if (seen.length === 1 && now - start >= 300_000) seen.push(now - start);
    });
    rt.step(30 * 60_000);
    expect(seen).toEqual([60_000, 300_000]);
  });
});
