import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { ManualClock } from '../../../src/core/clock.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { renderView } from '../../../src/sim/view.js';

const HEAT_LOOP = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');

describe('live terminal view', () => {
  let sim: SimHandle;
  beforeEach(async () => {
    sim = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock(Date.UTC(2026, 0, 15, 12, 0, 0)), seed: 2 });
  });
  afterEach(async () => {
    await sim.close();
  });

  it('shows every point with value and unit, marks a faulty sensor with the process value, and lists faults', () => {
    sim.write('pump.run', 1);
    sim.inject({ kind: 'stuck', point: 'valve.position', value: 42 });
    sim.inject({ kind: 'latency', ms: 20, fc: [3, 4] });
    const text = renderView(sim, 100);
    const lines = text.split('\n');
    expect(lines[0]).toBe('plant heat-loop  2026-01-15 12:00:00.000 (step mode)  seed 2  requests 0');
    expect(lines[1]).toBe(`hx1 unit 2  modbus+tcp://127.0.0.1:${sim.port}/2`);
    expect(text).toContain('  temp.setpoint            60 °C   holding:0');
    expect(text).toContain('  pump.run                 ON      coil:1');
    expect(text).toMatch(/ {2}valve\.position +42 % +input:1 +\(process 0\)/);
    expect(lines.slice(-3)).toEqual(['faults (2):', '  f1 stuck point=valve.position value=42  hits 0', '  f2 latency fc=3,4 distribution=fixed ms=20  hits 0']);
    expect(lines.length).toBe(2 + 12 + 3);
    for (const l of renderView(sim, 30).split('\n')) expect(l.length).toBeLessThanOrEqual(30);
  });
});
