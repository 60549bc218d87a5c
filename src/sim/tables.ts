// The four Modbus data tables of one simulated PLC and its memory map. Like a real PLC with a fixed
// map, only addresses a point or a register range occupies exist, unless the PLC has an open map
// (every address exists): a range touching any other address is refused (the server answers
// exception 0x02), and so is a write touching a read-only holding register or coil. Owns raw
// storage only; never decodes frames and never runs the process model.
import type { ModbusTable } from '../core/command.js';
import type { PlcDef, PointDef } from '../assets/plant.js';
import { engineeringToRaw, rawToEngineering, rawToWords, textToWords, wordsToRaw, wordsToText } from '../assets/points.js';

const SIZE = 65536;
const WRITABLE_TABLES: readonly ModbusTable[] = ['coil', 'holding'];

/** prefix[a] = number of marked addresses below a: any range check is two lookups. */
function prefixOf(mask: Uint8Array): Int32Array {
  const out = new Int32Array(SIZE + 1);
  for (let a = 0; a < SIZE; a++) out[a + 1] = out[a] + mask[a];
  return out;
}

export class PlcTables {
  readonly plc: PlcDef;
  readonly coils = new Uint8Array(SIZE);
  readonly discretes = new Uint8Array(SIZE);
  readonly holding = new Uint16Array(SIZE);
  readonly input = new Uint16Array(SIZE);
  /** Mapped addresses per table; null = every address (open map). */
  private readonly mapped: Record<ModbusTable, Int32Array> | null;
  /** Read-only addresses of the coil and holding tables; null = none. */
  private readonly readOnly: Partial<Record<ModbusTable, Int32Array>> | null;
  private readonly byName = new Map<string, PointDef>();

  constructor(plc: PlcDef) {
    this.plc = plc;
    const mask = (): Record<ModbusTable, Uint8Array> => ({ coil: new Uint8Array(SIZE), discrete: new Uint8Array(SIZE), holding: new Uint8Array(SIZE), input: new Uint8Array(SIZE) });
    const exists = mask();
    const ro = mask();
    let anyReadOnly = false;
    for (const p of plc.points) {
      exists[p.table].fill(1, p.address, p.address + p.words);
      if (p.readOnly === true) {
        ro[p.table].fill(1, p.address, p.address + p.words);
        anyReadOnly = true;
      }
      this.byName.set(p.name, p);
    }
    for (const r of plc.registers) {
      exists[r.table].fill(1, r.from, r.to + 1);
      if (r.readOnly) {
        ro[r.table].fill(1, r.from, r.to + 1);
        anyReadOnly = true;
      }
    }
    this.mapped = plc.openMap ? null : { coil: prefixOf(exists.coil), discrete: prefixOf(exists.discrete), holding: prefixOf(exists.holding), input: prefixOf(exists.input) };
    this.readOnly = anyReadOnly ? Object.fromEntries(WRITABLE_TABLES.map((t) => [t, prefixOf(ro[t])])) : null;
  }

  /** True when every address in [address, address + quantity) exists in the table. */
  covers(table: ModbusTable, address: number, quantity: number): boolean {
    const end = address + quantity;
    if (quantity <= 0 || address < 0 || end > SIZE) return false;
    if (this.mapped === null) return true;
    const p = this.mapped[table];
    return p[end] - p[address] === quantity;
  }

  /** True when a client may write every address of the range (it exists and none is read-only). */
  writable(table: ModbusTable, address: number, quantity: number): boolean {
    if (!this.covers(table, address, quantity)) return false;
    const p = this.readOnly?.[table];
    return p === undefined || p[address + quantity] === p[address];
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

  /** Engineering value of a point (NaN for a string point: see readText). */
  read(p: PointDef): number {
    return rawToEngineering(p, this.readRaw(p));
  }

  /** Stores an engineering value; throws VALUE_OUT_OF_BOUNDS if the point's type cannot hold it. */
  write(p: PointDef, value: number): void {
    this.writeRaw(p, engineeringToRaw(p, value));
  }

  /** The text of a string point. */
  readText(p: PointDef): string {
    return wordsToText(p, this.registers(p.table as 'holding' | 'input'), p.address);
  }

  /** Stores the text of a string point; throws VALUE_OUT_OF_BOUNDS if it does not fit. */
  writeText(p: PointDef, text: string): void {
    textToWords(p, text, this.registers(p.table as 'holding' | 'input'), p.address);
  }
}
