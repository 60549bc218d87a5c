// Runs a PLC's process blocks (process-def.ts) one model tick at a time, in engineering units,
// reading inputs from and writing outputs to the PLC's tables. Each block keeps its state in
// full precision and adopts a value a client or harness wrote in between (like the tank model).
// Deterministic: state changes only in step(); no clock, no randomness (noise lives in sensors.ts).
import type { PointDef } from '../assets/plant.js';
import type { ProcessBlockDef } from '../assets/process-def.js';
import { engineeringToRawClamped } from '../assets/points.js';
import type { PlcTables } from './tables.js';

/** What a snapshot keeps of a part of the process: its own state, never the clock. */
export interface Stateful {
  save(): unknown;
  load(state: unknown): void;
}

/** An actuator a fault can freeze (valve-stuck): it stops following its command. */
export interface Actuator {
  stuck: boolean;
}

export interface ProcessBlock extends Stateful {
  readonly def: ProcessBlockDef;
  step(dtMs: number): void;
}

/** A value the block owns and writes each tick, adopting writes from outside. */
class OwnedValue {
  private value: number;
  private lastRaw: number;
  constructor(
    private readonly t: PlcTables,
    readonly p: PointDef,
  ) {
    this.value = t.read(p);
    this.lastRaw = t.readRaw(p);
  }
  get(): number {
    const raw = this.t.readRaw(this.p);
    if (raw !== this.lastRaw) {
      this.value = this.t.read(this.p);
      this.lastRaw = raw;
    }
    return this.value;
  }
  set(v: number): void {
    this.value = v;
    this.t.writeRaw(this.p, engineeringToRawClamped(this.p, v));
    this.lastRaw = this.t.readRaw(this.p);
  }
  save(): [number, number] {
    return [this.value, this.lastRaw];
  }
  load(s: [number, number]): void {
    [this.value, this.lastRaw] = s;
  }
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);

/** A valve whose position follows its command at a finite stroke speed (travel_s for 0→100 %). */
export class ValveBlock implements ProcessBlock, Actuator {
  /** An actuator fault: the valve does not move whatever it is commanded. */
  stuck = false;
  private readonly position: OwnedValue;
  constructor(
    readonly def: ProcessBlockDef,
    private readonly t: PlcTables,
  ) {
    this.position = new OwnedValue(t, def.points.position);
  }
  step(dtMs: number): void {
    const cmd = this.def.points.command;
    const target = cmd.type === 'bool' ? (this.t.readRaw(cmd) !== 0 ? 100 : 0) : clamp(this.t.read(cmd), 0, 100);
    let pos = this.position.get();
    if (!this.stuck) {
      const maxMove = (100 / this.def.numbers.travel_s) * (dtMs / 1000);
      pos = pos < target ? Math.min(pos + maxMove, target) : Math.max(pos - maxMove, target);
      this.position.set(pos);
    }
    const { open_limit: open, closed_limit: closed } = this.def.points;
    if (open !== undefined) this.t.writeRaw(open, pos >= 99.5 ? 1 : 0);
    if (closed !== undefined) this.t.writeRaw(closed, pos <= 0.5 ? 1 : 0);
  }
  // `stuck` is a fault's, not the process's: a snapshot leaves it out.
  save(): unknown {
    return this.position.save();
  }
  load(s: unknown): void {
    this.position.load(s as [number, number]);
  }
}

/**
 * A PID controller in parallel form on the process value (derivative on the measurement, so a
 * setpoint change does not kick the output), output clamped with conditional integration against
 * windup. Disabled (enable point 0) it leaves the output alone and tracks it for a bumpless start.
 */
export class PidBlock implements ProcessBlock {
  private integral = 0;
  private lastPv: number | undefined;
  private wasEnabled = false;
  constructor(
    readonly def: ProcessBlockDef,
    private readonly t: PlcTables,
  ) {}
  step(dtMs: number): void {
    const { pv: pvP, setpoint: spP, output: outP, enable } = this.def.points;
    const { kp, ki, kd, out_min: lo, out_max: hi } = this.def.numbers;
    const t = this.t;
    const pv = t.read(pvP);
    const enabled = enable === undefined || t.readRaw(enable) !== 0;
    if (!enabled) {
      this.wasEnabled = false;
      this.lastPv = pv;
      return;
    }
    if (!this.wasEnabled) {
      // Bumpless transfer: start from the output as the operator left it.
      this.integral = clamp(t.read(outP), lo, hi) - kp * this.error(t.read(spP), pv);
      this.wasEnabled = true;
    }
    const dtS = dtMs / 1000;
    const e = this.error(t.read(spP), pv);
    const sign = this.def.strings.action === 'direct' ? -1 : 1;
    const dPv = this.lastPv === undefined ? 0 : (pv - this.lastPv) / dtS;
    this.lastPv = pv;
    const p = kp * e;
    const d = -sign * kd * dPv;
    const candidate = this.integral + ki * e * dtS;
    const unclamped = p + candidate + d;
    // Integrate only while that does not push the output further into a limit.
    if ((unclamped < hi || e < 0) && (unclamped > lo || e > 0)) this.integral = candidate;
    t.writeRaw(outP, engineeringToRawClamped(outP, clamp(p + this.integral + d, lo, hi)));
  }
  private error(sp: number, pv: number): number {
    return this.def.strings.action === 'direct' ? pv - sp : sp - pv;
  }
  save(): unknown {
    return { integral: this.integral, lastPv: this.lastPv, wasEnabled: this.wasEnabled };
  }
  load(s: unknown): void {
    ({ integral: this.integral, lastPv: this.lastPv, wasEnabled: this.wasEnabled } = s as { integral: number; lastPv: number | undefined; wasEnabled: boolean });
  }
}

/** A first-order process: output approaches gain × input + bias with time constant tau_s. */
export class LagBlock implements ProcessBlock {
  private readonly output: OwnedValue;
  constructor(
    readonly def: ProcessBlockDef,
    private readonly t: PlcTables,
  ) {
    this.output = new OwnedValue(t, def.points.output);
  }
  step(dtMs: number): void {
    const { gain, bias, tau_s: tau } = this.def.numbers;
    const target = gain * this.t.read(this.def.points.input) + bias;
    const y = this.output.get();
    // Exact discretisation of dy/dt = (target - y) / tau over dt: stable for any dt.
    this.output.set(target + (y - target) * Math.exp(-dtMs / 1000 / tau));
  }
  save(): unknown {
    return this.output.save();
  }
  load(s: unknown): void {
    this.output.load(s as [number, number]);
  }
}

/** Counts rising edges of a bool point (pump starts, batches); a reset coil zeroes it. Wraps like a PLC counter. */
export class CounterBlock implements ProcessBlock {
  private last: boolean;
  constructor(
    readonly def: ProcessBlockDef,
    private readonly t: PlcTables,
  ) {
    this.last = t.readRaw(def.points.input) !== 0;
  }
  step(): void {
    const { input, count, reset } = this.def.points;
    const t = this.t;
    if (reset !== undefined && t.readRaw(reset) !== 0) {
      t.writeRaw(count, 0);
      t.writeRaw(reset, 0);
    }
    const now = t.readRaw(input) !== 0;
    if (now && !this.last) {
      const next = t.readRaw(count) + 1;
      const max = count.type === 'uint16' ? 0xffff : count.type === 'int16' ? 0x7fff : count.type === 'int32' ? 0x7fffffff : 0xffffffff;
      t.writeRaw(count, count.type === 'float32' ? next : next > max ? 0 : next);
    }
    this.last = now;
  }
  save(): unknown {
    return this.last;
  }
  load(s: unknown): void {
    this.last = s as boolean;
  }
}

/** A bool alarm on a value crossing a limit, cleared only once it is back past the hysteresis. */
export class AlarmBlock implements ProcessBlock {
  constructor(
    readonly def: ProcessBlockDef,
    private readonly t: PlcTables,
  ) {}
  step(): void {
    const { input, alarm } = this.def.points;
    const { above, below, hysteresis } = this.def.numbers;
    const v = this.t.read(input);
    const on = this.t.readRaw(alarm) !== 0;
    let next = on;
    if (above !== undefined) next = on ? v > above - hysteresis : v >= above;
    else if (below !== undefined) next = on ? v < below + hysteresis : v <= below;
    if (next !== on) this.t.writeRaw(alarm, next ? 1 : 0);
  }
  save(): unknown {
    return null; // the alarm's state is its point
  }
  load(): void {}
}

/** The runnable block for a definition; noise blocks are not run here (sensors.ts shows them). */
export function createBlock(def: ProcessBlockDef, t: PlcTables): ProcessBlock | undefined {
  switch (def.kind) {
    case 'valve':
      return new ValveBlock(def, t);
    case 'pid':
      return new PidBlock(def, t);
    case 'lag':
      return new LagBlock(def, t);
    case 'counter':
      return new CounterBlock(def, t);
    case 'alarm':
      return new AlarmBlock(def, t);
    case 'noise':
      return undefined;
  }
}
