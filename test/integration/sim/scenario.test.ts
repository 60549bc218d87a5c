import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { ManualClock } from '../../../src/core/clock.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { parseScenario, runScenario } from '../../../src/sim/scenario.js';
import { ScaledClock } from '../../../src/sim/sim-clock.js';

const ModbusRTU = ModbusSerial.default;
const HEAT_LOOP = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');
const SCENARIO = resolve(import.meta.dirname, '../../../fixtures/plants/scenarios/heat-loop-valve-sticks.yaml');

describe('scenario runs', () => {
  let sim: SimHandle;

  beforeEach(async () => {
    sim = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock(), seed: 4 });
  });
  afterEach(async () => {
    await sim.close();
  });

  it('runs each step at its plant time: the valve sticks, the sensor drifts, the PLC gets busy, then all clears', async () => {
    const scenario = parseScenario(readFileSync(SCENARIO, 'utf8'), SCENARIO, sim.plant);
    const run = runScenario(sim, scenario);
    // Step 0 ran at once: loop in auto, pump on.
    expect(run.records.map((r) => r.actions)).toEqual([['set loop.auto = 1', 'set pump.run = 1']]);
    sim.step(19_900);
    expect(run.records).toHaveLength(1);
    sim.step(100);
    expect(run.records).toHaveLength(2);
    const stuckAt = sim.read('valve.position');
    sim.step(30_000);
    expect(sim.read('valve.position')).toBe(stuckAt); // PID asks for more; the valve does not move
    expect(sim.read('valve.command')).toBeGreaterThan(stuckAt);
    sim.step(30_000); // t = 80 s: drifting for 20 s at 0.05 °C/s (noise σ 0.2 on top)
    expect(sim.read('temp.pv') - sim.readTrue('temp.pv')).toBeGreaterThan(0.3);
    sim.step(10_000); // t = 90 s: the setpoint register answers busy
    const c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port: sim.port });
    c.setID(2);
    await expect(c.readHoldingRegisters(0, 1)).rejects.toMatchObject({ modbusCode: 6 });
    await new Promise<void>((r) => c.close(() => r()));
    sim.step(30_000); // t = 120 s: maintenance
    const records = await run.done;
    expect(records.map((r) => [r.atMs, r.ranAtMs - records[0].ranAtMs, r.note])).toEqual([
      [0, 0, 'loop to auto, pump on'],
      [20_000, 20_000, 'the steam valve sticks where it is'],
      [60_000, 60_000, 'the temperature transmitter starts drifting up'],
      [90_000, 90_000, 'the PLC gets busy on the setpoint register'],
      [120_000, 120_000, 'maintenance frees the valve and recalibrates the transmitter'],
    ]);
    expect(records[4].actions).toEqual(['cleared 3 faults']);
    expect(sim.faults()).toEqual([]);
    sim.step(10_000);
    expect(sim.read('valve.position')).not.toBe(stuckAt);
  });

  it('ends in exactly the same plant state whether stepped in one go or tick by tick', async () => {
    const scenario = parseScenario(readFileSync(SCENARIO, 'utf8'), SCENARIO, sim.plant);
    const other = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock(), seed: 4 });
    try {
      runScenario(sim, scenario);
      runScenario(other, scenario);
      sim.step(150_000);
      for (let i = 0; i < 1500; i++) other.step(100);
      expect(other.points()).toEqual(sim.points());
    } finally {
      await other.close();
    }
  });

  it('records a step whose action fails and goes on with the next', () => {
    const scenario = parseScenario(
      ['scenario: s', 'steps:', '  - at: 0s', '    set: { valve.command: 7000 }', '  - at: 1s', '    set: { pump.run: 1 }'].join('\n'),
      's.yaml',
      sim.plant,
    );
    const run = runScenario(sim, scenario);
    sim.step(1000);
    expect(run.records[0].error).toMatch(/valve\.command: 7000/);
    expect(run.records[1].actions).toEqual(['set pump.run = 1']);
  });
});

describe('scenario runs on a plant without a process', () => {
  // A third-party PLC described by its point map only: nothing moves by itself, yet a scenario's
  // steps must still fire as plant time passes (real clock or --speed).
  const STATIC = ['plant: static', 'plcs:', '  - id: plc', '    unit_id: 1', '    points:', '      setpoint: { table: holding, address: 0, type: uint16 }'].join('\n');

  it('runs every step under a sped-up clock and finishes', async () => {
    const plant = parsePlant(STATIC, 'static.yaml');
    const sim = await startSimulator({ plant, clock: new ScaledClock(50), tickMs: 5 });
    try {
      const scenario = parseScenario(['scenario: s', 'steps:', '  - at: 0s', '    set: { setpoint: 1 }', '  - at: 1s', '    set: { setpoint: 2 }', '  - at: 2s', '    set: { setpoint: 3 }'].join('\n'), 's.yaml', plant);
      const records = await runScenario(sim, scenario).done;
      expect(records.map((r) => r.atMs)).toEqual([0, 1000, 2000]);
      expect(sim.read('setpoint')).toBe(3);
    } finally {
      await sim.close();
    }
  });
});
