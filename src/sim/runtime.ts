// A running plant without any protocol: each PLC's data tables, process model and process blocks,
// and the sensor layer, advanced tick by tick (MODEL_STEP_MS of clock time) by the injected clock.
// A ManualClock moves only when the test says so (step mode); any other clock (system, ScaledClock
// for --speed) is followed by an unref'd timer. Deterministic: the same plant, seed, writes and
// clock moves give the same values. Never opens sockets (modbus-server.ts serves these tables).
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import { createModel, MAX_CATCH_UP_MS, MODEL_STEP_MS, type ProcessModel } from './model.js';
import { findPoint, type Plant, type PlcDef, type PointDef } from '../assets/plant.js';
import { LogicBlock } from './logic.js';
import { createBlock, ValveBlock, type Actuator, type ProcessBlock } from './process.js';
import { engineeringToRaw } from '../assets/points.js';
import { Rng } from './random.js';
import { SensorOverlay, type SensorEffects } from './sensors.js';
import { PlcTables } from './tables.js';

/** A point name the plant does not define: like a Modbus address no point occupies (0x02). */
export class UnknownPointError extends PlantgateError {
  readonly point: string;
  constructor(plant: string, name: string) {
    super('NO_MATCHING_RULE', `plant ${plant} has no point ${name}`);
    this.point = name;
  }
}

interface Advanceable {
  advance(ms: number): void;
}

function isAdvanceable(clock: Clock): clock is Clock & Advanceable {
  return typeof (clock as Partial<Advanceable>).advance === 'function';
}

export interface RuntimeOptions {
  /** Timer period when the clock is not manual. */
  tickMs?: number;
  /** Seed of the measurement noise; same seed, same noise. Default 1. */
  seed?: number;
}

/**
 * The process's state at one moment (docs/simulator.md, "Snapshots"): every PLC's memory and the
 * inner state of models, blocks, logic and measurement noise. Not the clock, not the faults.
 */
export interface PlantSnapshot {
  readonly memory: { coils: Uint8Array; discretes: Uint8Array; holding: Uint16Array; input: Uint16Array }[];
  readonly parts: unknown[];
  readonly sensors: unknown;
}

export interface ResolvedPoint {
  plc: PlcDef;
  point: PointDef;
  tables: PlcTables;
}

export class PlantRuntime {
  readonly plant: Plant;
  readonly clock: Clock;
  readonly seed: number;
  /** Tables by unit id (0..255), for the server's per-request lookup. */
  readonly byUnit: (PlcTables | undefined)[] = new Array<PlcTables | undefined>(256).fill(undefined);
  readonly tables: PlcTables[];
  readonly sensors: SensorOverlay;
  private readonly models: ProcessModel[] = [];
  private readonly blocks: ProcessBlock[] = [];
  /** PLC logic, run after every model and block. */
  private readonly logic: LogicBlock[] = [];
  /** The state at start: reset() goes back to it. */
  private readonly initial: PlantSnapshot;
  private readonly tickListeners = new Set<(nowMs: number) => void>();
  private lastTickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private inTick: number | undefined;

  constructor(plant: Plant, clock: Clock, tickMsOrOptions: number | RuntimeOptions = {}) {
    const opts = typeof tickMsOrOptions === 'number' ? { tickMs: tickMsOrOptions } : tickMsOrOptions;
    this.plant = plant;
    this.clock = clock;
    this.seed = opts.seed ?? 1;
    this.sensors = new SensorOverlay(new Rng(this.seed));
    const now = clock.now();
    this.lastTickMs = now;
    this.tables = plant.plcs.map((plc) => {
      const t = new PlcTables(plc);
      this.byUnit[plc.unitId] = t;
      for (const p of plc.points) {
        if (typeof p.initial === 'string') t.writeText(p, p.initial);
        else if (p.initial !== undefined) t.write(p, p.initial);
      }
      const model = createModel(plant, plc, t, now);
      if (model !== undefined) this.models.push(model);
      for (const def of plc.process ?? []) {
        const block = createBlock(def, t);
        if (block !== undefined) this.blocks.push(block);
        else if (def.kind === 'noise') this.sensors.set(t, def.points.point, { noise: def.numbers.stddev }, now);
      }
      if (plc.logic !== undefined) this.logic.push(new LogicBlock(plc.logic, t));
      return t;
    });
    this.initial = this.snapshot();
    // Modbus/TCP devices addressed directly (not through a gateway) are asked with unit id 0xFF
    // (Modbus Messaging on TCP/IP §4.4.2); a single-PLC plant answers it as itself.
    if (this.tables.length === 1 && this.byUnit[0xff] === undefined) this.byUnit[0xff] = this.tables[0];
    // Followed even when nothing in the plant moves by itself: scenarios, fault durations and
    // plant logic run on the ticks too.
    if (!isAdvanceable(clock)) {
      this.timer = setInterval(() => this.follow(), opts.tickMs ?? MODEL_STEP_MS);
      this.timer.unref();
    }
  }

  /** Clock time of the last process tick. */
  get lastTick(): number {
    return this.lastTickMs;
  }

  /** True when time moves only by step() (a ManualClock). */
  get manual(): boolean {
    return isAdvanceable(this.clock);
  }

  /** Called after every tick with the tick's clock time (scenarios run here). */
  onTick(listener: (nowMs: number) => void): () => void {
    this.tickListeners.add(listener);
    return () => this.tickListeners.delete(listener);
  }

  /**
   * Follows a clock that moves by itself (system, --speed): runs the ticks up to its now, except
   * that a gap longer than MAX_CATCH_UP_MS (a suspended machine) is skipped, not simulated.
   */
  private follow(): void {
    const now = this.clock.now();
    if (now - this.lastTickMs > MAX_CATCH_UP_MS) {
      this.lastTickMs = now - MAX_CATCH_UP_MS;
      for (const m of this.models) m.skipTo(this.lastTickMs);
    }
    this.advance();
  }

  /** Runs every whole tick up to the clock's now, however far away. */
  advance(): void {
    const now = this.clock.now();
    while (this.lastTickMs + MODEL_STEP_MS <= now) {
      this.lastTickMs += MODEL_STEP_MS;
      this.tick(this.lastTickMs);
    }
  }

  private tick(nowMs: number): void {
    this.inTick = nowMs;
    try {
      this.sensors.restore();
      for (const m of this.models) m.advanceTo(nowMs);
      for (const b of this.blocks) b.step(MODEL_STEP_MS);
      // Logic reads what the process produced this tick, as a PLC's scan reads its inputs.
      for (const l of this.logic) l.step();
      this.sensors.apply(nowMs);
      for (const l of this.tickListeners) l(nowMs);
    } finally {
      this.inTick = undefined;
    }
  }

  /**
   * Plant time: the tick being run while inside one (a scenario step at 60 s of a 30 s step()
   * call happens at 60 s, not at the clock's end of the step), else the clock's now.
   */
  now(): number {
    return this.inTick ?? this.clock.now();
  }

  /** Moves a manual clock forward by ms (if it can be moved) and runs the process up to it. */
  step(ms: number): void {
    if (isAdvanceable(this.clock)) this.clock.advance(ms);
    this.advance();
  }

  resolve(name: string): ResolvedPoint {
    const found = findPoint(this.plant, name);
    if (found === undefined) throw new UnknownPointError(this.plant.name, name);
    return { plc: found.plc, point: found.point, tables: this.tables[this.plant.plcs.indexOf(found.plc)] };
  }

  /** Engineering value of a point as a client reads it ("name" or "plcId/name"); NaN for a string point (readText). */
  read(name: string): number {
    const { tables, point } = this.resolve(name);
    return tables.read(point);
  }

  /** The text of a string point. */
  readText(name: string): string {
    const { tables, point } = this.resolve(name);
    if (point.type !== 'string') throw new PlantgateError('TYPE_MISMATCH', `${name} is a ${point.type} point, not a string`);
    return tables.readText(point);
  }

  /** The process's own value of a point, behind any sensor fault or noise. */
  readTrue(name: string): number {
    const { tables, point } = this.resolve(name);
    return this.sensors.truth(point) ?? tables.read(point);
  }

  /** Sets a point in engineering units (text for a string point), in any table (a harness may force inputs). */
  write(name: string, value: number | string): void {
    const { tables, point } = this.resolve(name);
    if (point.type === 'string' || typeof value === 'string') {
      if (point.type !== 'string' || typeof value !== 'string') throw new PlantgateError('TYPE_MISMATCH', `${name}: a ${point.type} point takes ${point.type === 'string' ? 'text' : 'a number'}`);
      tables.writeText(point, value);
      return;
    }
    if (!this.sensors.setTruth(point, engineeringToRaw(point, value), this.now())) tables.write(point, value);
  }

  /** The process's state now (memory, models, blocks, noise); see PlantSnapshot. */
  snapshot(): PlantSnapshot {
    return {
      memory: this.tables.map((t) => ({ coils: t.coils.slice(), discretes: t.discretes.slice(), holding: t.holding.slice(), input: t.input.slice() })),
      parts: [...this.models, ...this.blocks].map((x) => x.save()),
      sensors: this.sensors.save(),
    };
  }

  /** Puts the process back to a snapshot of this runtime; time goes on from now (no catch-up). */
  restore(s: PlantSnapshot): void {
    if (s.memory.length !== this.tables.length) throw new PlantgateError('PROTOCOL_VIOLATION', 'snapshot of another plant');
    this.tables.forEach((t, i) => {
      const m = s.memory[i]!;
      t.coils.set(m.coils);
      t.discretes.set(m.discretes);
      t.holding.set(m.holding);
      t.input.set(m.input);
    });
    [...this.models, ...this.blocks].forEach((x, i) => x.load(s.parts[i]));
    this.sensors.load(s.sensors);
  }

  /** Back to the state at start (the clock, faults and logs are the caller's). */
  reset(): void {
    this.restore(this.initial);
  }

  /** Sensor faults and noise on one point (stuck, drift); shown at once. */
  setSensor(name: string, effects: SensorEffects): void {
    const { tables, point } = this.resolve(name);
    this.sensors.set(tables, point, effects, this.now());
  }

  clearSensor(name: string, effect: keyof SensorEffects): void {
    this.sensors.clear(this.resolve(name).point, effect, this.now());
  }

  /**
   * The valve whose command or position this point is, for actuator faults: a valve block, or a
   * model's valve (the water tank's valve1.open); undefined if none.
   */
  valve(name: string): Actuator | undefined {
    const { point } = this.resolve(name);
    for (const b of this.blocks) {
      if (b instanceof ValveBlock && (b.def.points.position === point || b.def.points.command === point)) return b;
    }
    for (const m of this.models) {
      const a = m.actuator(point);
      if (a !== undefined) return a;
    }
    return undefined;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
