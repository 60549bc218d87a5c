import { beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ManualClock } from '../../../src/core/clock.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { createModel, type ProcessModel } from '../../../src/sim/model.js';
import { loadPlant, parsePlant, type Plant } from '../../../src/assets/plant.js';
import { PlcTables } from '../../../src/sim/tables.js';

const FIXTURE = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');
const FIXTURE_TEXT = readFileSync(FIXTURE, 'utf8');

describe('water-tank process model', () => {
  let plant: Plant;
  let clock: ManualClock;
  let tables: PlcTables;
  let model: ProcessModel;

  const get = (name: string): number => tables.read(tables.point(name)!);
  const set = (name: string, v: number): void => tables.write(tables.point(name)!, v);
  const advance = (ms: number): void => {
    clock.advance(ms);
    model.advanceTo(clock.now());
  };

  beforeEach(async () => {
    plant ??= await loadPlant(FIXTURE);
    clock = new ManualClock();
    tables = new PlcTables(plant.plcs[0]);
    model = createModel(plant, plant.plcs[0], tables, clock.now())!;
  });

  it('starts at 50 % level, 50 % setpoint, 1500 rpm, everything off, no alarms', () => {
    expect(get('tank1.level')).toBeCloseTo(50);
    expect(tables.input[0]).toBe(500);
    expect(get('tank1.setpoint')).toBeCloseTo(50);
    expect(get('pump1.speed')).toBe(1500);
    for (const n of ['pump1.run', 'valve1.open', 'control.auto', 'pump1.running', 'tank1.high_alarm', 'tank1.low_alarm']) {
      expect(get(n), n).toBe(0);
    }
  });

  it('reports the pump running only after the 1 s start delay, then the level rises', () => {
    set('pump1.run', 1);
    advance(900);
    expect(get('pump1.running')).toBe(0);
    expect(get('tank1.level')).toBeCloseTo(50);
    advance(100);
    expect(get('pump1.running')).toBe(1);
    advance(5000);
    // 2 %/s at 1500 rpm: 5 s of running (plus the step it started in) adds about 10 %.
    expect(get('tank1.level')).toBeCloseTo(60.2, 1);
  });

  it('stops the pump feedback at once when the run command is cleared', () => {
    set('pump1.run', 1);
    advance(2000);
    set('pump1.run', 0);
    advance(100);
    expect(get('pump1.running')).toBe(0);
    const level = get('tank1.level');
    advance(3000);
    expect(get('tank1.level')).toBeCloseTo(level);
  });

  it('fills faster at higher pump speed', () => {
    set('pump1.speed', 3000);
    set('pump1.run', 1);
    advance(1000);
    const start = get('tank1.level');
    advance(5000);
    expect(get('tank1.level') - start).toBeCloseTo(20, 0);
  });

  it('drains the tank while the valve is open and never goes below 0 %', () => {
    set('valve1.open', 1);
    advance(10_000);
    expect(get('tank1.level')).toBeCloseTo(40);
    advance(60_000);
    expect(get('tank1.level')).toBe(0);
  });

  it('never fills past 100 %', () => {
    set('pump1.run', 1);
    advance(60_000);
    expect(get('tank1.level')).toBe(100);
  });

  it('raises the high alarm at 90 % and clears it only below 88 %', () => {
    set('tank1.level', 89.9);
    advance(100);
    expect(get('tank1.high_alarm')).toBe(0);
    set('tank1.level', 90);
    advance(100);
    expect(get('tank1.high_alarm')).toBe(1);
    set('tank1.level', 88.5);
    advance(100);
    expect(get('tank1.high_alarm')).toBe(1);
    set('tank1.level', 87.9);
    advance(100);
    expect(get('tank1.high_alarm')).toBe(0);
  });

  it('raises the low alarm at 10 % and clears it only above 12 %', () => {
    set('tank1.level', 10);
    advance(100);
    expect(get('tank1.low_alarm')).toBe(1);
    set('tank1.level', 11.5);
    advance(100);
    expect(get('tank1.low_alarm')).toBe(1);
    set('tank1.level', 12.1);
    advance(100);
    expect(get('tank1.low_alarm')).toBe(0);
  });

  it('raises the low alarm when the valve drains the tank', () => {
    set('valve1.open', 1);
    advance(39_900);
    expect(get('tank1.low_alarm')).toBe(0);
    advance(200);
    expect(get('tank1.low_alarm')).toBe(1);
  });

  it('in auto mode keeps the level inside the setpoint band while the valve drains', () => {
    set('tank1.setpoint', 30);
    set('valve1.open', 1);
    set('control.auto', 1);
    let min = 100;
    let max = 0;
    let pumpStarts = 0;
    let wasRunning = 0;
    // Let the level settle into the band first (from 50 % down to 35 %).
    advance(30_000);
    for (let i = 0; i < 3000; i++) {
      advance(100);
      const level = get('tank1.level');
      min = Math.min(min, level);
      max = Math.max(max, level);
      const running = get('pump1.running');
      if (running && !wasRunning) pumpStarts++;
      wasRunning = running;
    }
    expect(pumpStarts).toBeGreaterThan(3);
    // Band is 25..35; the start delay lets it dip about 1 % below before inflow begins.
    expect(min).toBeGreaterThan(23.5);
    expect(max).toBeLessThan(35.5);
    expect(min).toBeLessThan(25.5);
    expect(max).toBeGreaterThan(34.5);
  });

  it('does not touch the pump in manual mode', () => {
    set('valve1.open', 1);
    advance(45_000);
    expect(get('tank1.level')).toBeCloseTo(5);
    expect(get('pump1.run')).toBe(0);
  });

  it('gives the same values for the same clock moves however they are chunked', () => {
    const other = new PlcTables(plant.plcs[0]);
    const otherModel = createModel(plant, plant.plcs[0], other, clock.now())!;
    for (const t of [tables, other]) {
      t.write(t.point('pump1.run')!, 1);
      t.write(t.point('valve1.open')!, 1);
    }
    advance(12_345);
    let now = clock.now() - 12_345;
    for (let i = 0; i < 12_345; i += 7) otherModel.advanceTo((now += Math.min(7, 12_345 - i)));
    expect(Array.from(other.input.subarray(0, 4))).toEqual(Array.from(tables.input.subarray(0, 4)));
  });

  it('refuses a plant whose PLC lacks a point the model needs, naming the model line', () => {
    const p = parsePlant(
      'plant: x\nplcs:\n  - id: a\n    unit_id: 1\n    points:\n      tank1.level: { table: input, address: 0, type: uint16 }\n    model: water-tank\n',
      'x.yaml',
    );
    let err: unknown;
    try {
      createModel(p, p.plcs[0], new PlcTables(p.plcs[0]), 0);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SourceErrors);
    expect((err as SourceErrors).errors[0].message).toBe('x.yaml:7:12: plcs[a].model: model water-tank needs point tank1.setpoint');
  });

  it('refuses at start a level point too small to hold 0..100 %', () => {
    const text = FIXTURE_TEXT.replace('tank1.level:      { table: input,    address: 0, type: uint16, scale: 0.1', 'tank1.level:      { table: input,    address: 0, type: int16, scale: 0.001');
    const p = parsePlant(text, 'w.yaml');
    expect(() => createModel(p, p.plcs[0], new PlcTables(p.plcs[0]), 0)).toThrow(/w\.yaml:9:25: plcs\[plc1\]\.points\.tank1\.level: model water-tank writes 100 here/);
  });
});
