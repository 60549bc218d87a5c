// The four Modbus data tables of one simulated PLC and its fixed memory map. Like a real PLC with
// a fixed map, only addresses a point occupies exist: a range touching any other address is
// refused (the server answers exception 0x02). Owns raw storage only; never decodes frames and
// never runs the process model.
import type { ModbusTable } from '../core/command.js';
import type { PlcDef, PointDef } from './plant.js';
import { engineeringToRaw, rawToEngineering, rawToWords, wordsToRaw } from './points.js';

const SIZE = 65536;

export class PlcTables {
  readonly plc: PlcDef;
  readonly coils = new Uint8Array(SIZE);
  readonly discretes = new Uint8Array(SIZE);
  readonly holding = new Uint16Array(SIZE);
  readonly input = new Uint16Array(SIZE);
  // prefix[t][a] = number of mapped addresses below a: any range check is two lookups.
  private readonly prefix: Record<ModbusTable, Int32Array>;
  private readonly byName = new Map<string, PointDef>();

  constructor(plc: PlcDef) {
    this.plc = plc;
    const mask: Record<ModbusTable, Uint8Array> = {
      coil: new Uint8Array(SIZE),
      discrete: new Uint8Array(SIZE),
      holding: new Uint8Array(SIZE),
      input: new Uint8Array(SIZE),
    };
    for (const p of plc.points) {
      for (let a = p.address; a < p.address + p.words; a++) mask[p.table][a] = 1;
      this.byName.set(p.name, p);
    }
    const build = (m: Uint8Array): Int32Array => {
      const out = new Int32Array(SIZE + 1);
      for (let a = 0; a < SIZE; a++) out[a + 1] = out[a] + m[a];
      return out;
    };
    this.prefix = {
      coil: build(mask.coil),
      discrete: build(mask.discrete),
      holding: build(mask.holding),
      input: build(mask.input),
    };
  }

  /** True when every address in [address, address + quantity) belongs to a point of the table. */
  covers(table: ModbusTable, address: number, quantity: number): boolean {
    const end = address + quantity;
    if (quantity <= 0 || address < 0 || end > SIZE) return false;
    const p = this.prefix[table];
    return p[end] - p[address] === quantity;
  }

  bits(table: 'coil' | 'discrete'): Uint8Array {
    return table === 'coil' ? this.coils : this.discretes;
  }

  registers(table: 'holding' | 'input'): Uint16Array {
    return table === 'holding' ? this.holding : this.input;
  }

  point(name: string): PointDef | undefined {
    return this.byName.get(name);
  }

  readRaw(p: PointDef): number {
    switch (p.table) {
      case 'coil':
        return this.coils[p.address];
      case 'discrete':
        return this.discretes[p.address];
      default:
        return wordsToRaw(p, this.registers(p.table), p.address);
    }
  }

  writeRaw(p: PointDef, raw: number): void {
    switch (p.table) {
      case 'coil':
        this.coils[p.address] = raw !== 0 ? 1 : 0;
        return;
      case 'discrete':
        this.discretes[p.address] = raw !== 0 ? 1 : 0;
        return;
      default:
        rawToWords(p, raw, this.registers(p.table), p.address);
    }
  }

  /** Engineering value of a point. */
  read(p: PointDef): number {
    return rawToEngineering(p, this.readRaw(p));
  }

  /** Stores an engineering value; throws VALUE_OUT_OF_BOUNDS if the point's type cannot hold it. */
  write(p: PointDef, value: number): void {
    this.writeRaw(p, engineeringToRaw(p, value));
  }
}
