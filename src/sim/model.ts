// The simulated process behind a PLC's points. Deterministic: it advances in fixed 100 ms steps of
// the injected clock's time, so the same sequence of writes and clock moves always yields the same
// values. Reads its inputs from and writes its outputs to the PLC's data tables (raw words per
// the point map); never touches sockets or frames.
import { SourceError, SourceErrors } from '../core/errors.js';
import type { Plant, PlcDef, PointDef } from '../assets/plant.js';
import { engineeringToRaw } from '../assets/points.js';
import type { Actuator, Stateful } from './process.js';
import type { PlcTables } from './tables.js';

export const MODEL_STEP_MS = 100;
/**
 * Longest stretch of a wall clock's time one timer-driven advance simulates; beyond it the plant
 * skips ahead (a suspended laptop should not make the simulator spin for minutes). Never applied to
 * an explicit step(): that is plant time a test asked for, and all of it runs.
 */
export const MAX_CATCH_UP_MS = 10 * 60_000;

export interface ProcessModel extends Stateful {
  /** Runs every whole model step up to nowMs (clock time), however far away. */
  advanceTo(nowMs: number): void;
  /** Forgets the time between its last step and nowMs (the runtime skipped it). */
  skipTo(nowMs: number): void;
  /** The actuator behind a point (its command), for actuator faults; undefined if none. */
  actuator(p: PointDef): Actuator | undefined;
}

// Water tank: a pump fills it, a valve drains it, an auto controller holds a setpoint band.
export const WATER_TANK = {
  startDelayMs: 1000,
  nominalSpeedRpm: 1500,
  maxSpeedRpm: 3000,
  /** % of tank per second at nominal pump speed. */
  inflowPctPerS: 2,
  /** % of tank per second through the open valve. */
  outflowPctPerS: 1,
  highAlarmPct: 90,
  lowAlarmPct: 10,
  alarmHysteresisPct: 2,
  /** Auto mode: pump on below setpoint - band, off above setpoint + band. */
  autoBandPct: 5,
  initial: { level: 50, setpoint: 50, speed: 1500 },
} as const;

const WATER_TANK_POINTS = [
  'tank1.level',
  'tank1.setpoint',
  'pump1.speed',
  'pump1.run',
  'valve1.open',
  'control.auto',
  'pump1.running',
  'tank1.high_alarm',
  'tank1.low_alarm',
] as const;

type WaterTankPoint = (typeof WATER_TANK_POINTS)[number];

function bind<N extends string>(plant: Plant, plc: PlcDef, tables: PlcTables, names: readonly N[]): Record<N, PointDef> {
  const out = {} as Record<N, PointDef>;
  const errors: SourceError[] = [];
  const at = plc.modelSource ?? plc.source;
  for (const name of names) {
    const p = tables.point(name);
    if (p === undefined) {
      errors.push(
        new SourceError(plant.file, at.line, at.column, `plcs[${plc.id}].model`, `model ${plc.model} needs point ${name}`),
      );
    } else {
      out[name] = p;
    }
  }
  if (errors.length > 0) throw new SourceErrors(errors);
  return out;
}

/** Refuses at start a point whose type and scaling cannot hold the values the model will write:
 * found later, it would surface as an exception inside the model's timer. */
function requireRange(plant: Plant, plc: PlcDef, p: PointDef, values: readonly number[]): void {
  for (const v of values) {
    try {
      engineeringToRaw(p, v);
    } catch (err) {
      throw new SourceErrors([
        new SourceError(plant.file, p.source.line, p.source.column, `plcs[${plc.id}].points.${p.name}`, `model ${plc.model} writes ${v} here: ${(err as Error).message}`),
      ]);
    }
  }
}

export class WaterTankModel implements ProcessModel {
  private readonly t: PlcTables;
  private readonly p: Record<WaterTankPoint, PointDef>;
  private lastStepMs: number;
  // Level is kept in full precision here; the register holds it at the point's resolution.
  private level: number;
  private lastLevelRaw: number;
  private runForMs = 0;
  /** The drain valve: it follows valve1.open unless a valve-stuck fault holds it where it is. */
  private readonly valve = { stuck: false, open: false };

  constructor(plant: Plant, plc: PlcDef, tables: PlcTables, startMs: number) {
    this.t = tables;
    this.p = bind(plant, plc, tables, WATER_TANK_POINTS);
    requireRange(plant, plc, this.p['tank1.level'], [0, 100]);
    requireRange(plant, plc, this.p['tank1.setpoint'], [WATER_TANK.initial.setpoint]);
    requireRange(plant, plc, this.p['pump1.speed'], [WATER_TANK.initial.speed]);
    this.lastStepMs = startMs;
    const init = WATER_TANK.initial;
    this.level = init.level;
    tables.write(this.p['tank1.level'], init.level);
    tables.write(this.p['tank1.setpoint'], init.setpoint);
    tables.write(this.p['pump1.speed'], init.speed);
    for (const n of ['pump1.run', 'valve1.open', 'control.auto', 'pump1.running'] as const) tables.write(this.p[n], 0);
    this.lastLevelRaw = tables.readRaw(this.p['tank1.level']);
    this.updateAlarms();
  }

  advanceTo(nowMs: number): void {
    while (this.lastStepMs + MODEL_STEP_MS <= nowMs) {
      this.step(MODEL_STEP_MS);
      this.lastStepMs += MODEL_STEP_MS;
    }
  }

  skipTo(nowMs: number): void {
    if (nowMs > this.lastStepMs) this.lastStepMs = nowMs;
  }

  actuator(p: PointDef): Actuator | undefined {
    return p === this.p['valve1.open'] ? this.valve : undefined;
  }

  save(): unknown {
    return { level: this.level, lastLevelRaw: this.lastLevelRaw, runForMs: this.runForMs, valveOpen: this.valve.open };
  }

  load(s: unknown): void {
    const st = s as { level: number; lastLevelRaw: number; runForMs: number; valveOpen: boolean };
    this.level = st.level;
    this.lastLevelRaw = st.lastLevelRaw;
    this.runForMs = st.runForMs;
    this.valve.open = st.valveOpen;
  }

  private step(dtMs: number): void {
    const t = this.t;
    const p = this.p;
    const W = WATER_TANK;
    // Someone (a test harness) set the level directly: adopt it as the new truth.
    const levelRaw = t.readRaw(p['tank1.level']);
    if (levelRaw !== this.lastLevelRaw) this.level = t.read(p['tank1.level']);

    const run = t.readRaw(p['pump1.run']) !== 0;
    this.runForMs = run ? this.runForMs + dtMs : 0;
    const running = run && this.runForMs >= W.startDelayMs;
    t.writeRaw(p['pump1.running'], running ? 1 : 0);

    const dtS = dtMs / 1000;
    if (running) {
      const speed = Math.min(Math.max(t.read(p['pump1.speed']), 0), W.maxSpeedRpm);
      this.level += W.inflowPctPerS * (speed / W.nominalSpeedRpm) * dtS;
    }
    if (!this.valve.stuck) this.valve.open = t.readRaw(p['valve1.open']) !== 0;
    if (this.valve.open) this.level -= W.outflowPctPerS * dtS;
    this.level = Math.min(Math.max(this.level, 0), 100);
    t.write(p['tank1.level'], this.level);
    this.lastLevelRaw = t.readRaw(p['tank1.level']);
    this.updateAlarms();

    if (t.readRaw(p['control.auto']) !== 0) {
      const sp = t.read(p['tank1.setpoint']);
      if (this.level < sp - W.autoBandPct) t.writeRaw(p['pump1.run'], 1);
      else if (this.level > sp + W.autoBandPct) t.writeRaw(p['pump1.run'], 0);
    }
  }

  private updateAlarms(): void {
    const t = this.t;
    const p = this.p;
    const W = WATER_TANK;
    const high = t.readRaw(p['tank1.high_alarm']) !== 0;
    if (!high && this.level >= W.highAlarmPct) t.writeRaw(p['tank1.high_alarm'], 1);
    else if (high && this.level < W.highAlarmPct - W.alarmHysteresisPct) t.writeRaw(p['tank1.high_alarm'], 0);
    const low = t.readRaw(p['tank1.low_alarm']) !== 0;
    if (!low && this.level <= W.lowAlarmPct) t.writeRaw(p['tank1.low_alarm'], 1);
    else if (low && this.level > W.lowAlarmPct + W.alarmHysteresisPct) t.writeRaw(p['tank1.low_alarm'], 0);
  }
}

/** The model a PLC names, bound to its tables; undefined when the PLC has no model (static points). */
export function createModel(plant: Plant, plc: PlcDef, tables: PlcTables, startMs: number): ProcessModel | undefined {
  switch (plc.model) {
    case undefined:
      return undefined;
    case 'water-tank':
      return new WaterTankModel(plant, plc, tables, startMs);
    default:
      // plant.ts rejects unknown models at load; a hand-built Plant could still carry one.
      throw new SourceErrors([
        new SourceError(plant.file, plc.source.line, plc.source.column, `plcs[${plc.id}].model`, `unknown model ${plc.model}`),
      ]);
  }
}
