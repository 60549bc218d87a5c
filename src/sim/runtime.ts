// A running plant without any protocol: each PLC's data tables and process model, advanced by the
// injected clock. A ManualClock moves only when the test says so; any other clock is followed
// by an unref'd timer. Never opens sockets (modbus-server.ts serves these tables).
import type { Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import { createModel, MODEL_STEP_MS, type ProcessModel } from './model.js';
import { findPoint, type Plant, type PointDef } from './plant.js';
import { PlcTables } from './tables.js';

/** A point name the plant does not define: like a Modbus address no point occupies (0x02). */
export class UnknownPointError extends PlantgateError {
  constructor(plant: string, name: string) {
    super('NO_MATCHING_RULE', `plant ${plant} has no point ${name}`);
  }
}

interface Advanceable {
  advance(ms: number): void;
}

function isAdvanceable(clock: Clock): clock is Clock & Advanceable {
  return typeof (clock as Partial<Advanceable>).advance === 'function';
}

export class PlantRuntime {
  readonly plant: Plant;
  readonly clock: Clock;
  /** Tables by unit id (0..255), for the server's per-request lookup. */
  readonly byUnit: (PlcTables | undefined)[] = new Array<PlcTables | undefined>(256).fill(undefined);
  readonly tables: PlcTables[];
  private readonly models: ProcessModel[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(plant: Plant, clock: Clock, tickMs = MODEL_STEP_MS) {
    this.plant = plant;
    this.clock = clock;
    const now = clock.now();
    this.tables = plant.plcs.map((plc) => {
      const t = new PlcTables(plc);
      this.byUnit[plc.unitId] = t;
      const model = createModel(plant, plc, t, now);
      if (model !== undefined) this.models.push(model);
      return t;
    });
    // Modbus/TCP devices addressed directly (not through a gateway) are asked with unit id 0xFF
    // (Modbus Messaging on TCP/IP §4.4.2); a single-PLC plant answers it as itself.
    if (this.tables.length === 1 && this.byUnit[0xff] === undefined) this.byUnit[0xff] = this.tables[0];
    if (!isAdvanceable(clock) && this.models.length > 0) {
      this.timer = setInterval(() => this.advance(), tickMs);
      this.timer.unref();
    }
  }

  /** Runs the models up to the clock's now. */
  advance(): void {
    const now = this.clock.now();
    for (const m of this.models) m.advanceTo(now);
  }

  /** Moves a manual clock forward by ms (if it can be moved) and runs the models up to it. */
  step(ms: number): void {
    if (isAdvanceable(this.clock)) this.clock.advance(ms);
    this.advance();
  }

  private resolve(name: string): { t: PlcTables; p: PointDef } {
    const found = findPoint(this.plant, name);
    if (found === undefined) throw new UnknownPointError(this.plant.name, name);
    return { t: this.tables[this.plant.plcs.indexOf(found.plc)], p: found.point };
  }

  /** Engineering value of a point ("name" or "plcId/name"). */
  read(name: string): number {
    const { t, p } = this.resolve(name);
    return t.read(p);
  }

  /** Sets a point in engineering units, in any table (a harness may force inputs). */
  write(name: string, value: number): void {
    const { t, p } = this.resolve(name);
    t.write(p, value);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
