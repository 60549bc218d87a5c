// Owns the plant file format (fixtures/plants/*.yaml): PLCs, their unit ids, and the point map
// that both the simulator and the policy compiler read. Parses and validates once, with errors
// naming file:line:column and field. Must never open sockets or know about the process model's
// behaviour; it only checks that a named model exists.
import { readFile } from 'node:fs/promises';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import type { ModbusTable } from '../core/command.js';
import { SourceError, SourceErrors } from '../core/errors.js';
import { engineeringToRaw } from './points.js';
import { parseProcess, type ProcessBlockDef } from './process-def.js';

export type PointType = 'bool' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32';
export type WordOrder = 'big' | 'little';

export const TABLES: readonly ModbusTable[] = ['coil', 'discrete', 'holding', 'input'];
export const POINT_TYPES: readonly PointType[] = ['bool', 'int16', 'uint16', 'int32', 'uint32', 'float32'];
/** Process models the simulator can run; a plant naming any other is rejected at load. */
export const KNOWN_MODELS: readonly string[] = ['water-tank'];

export interface SourcePos {
  line: number;
  column: number;
}

export interface PointDef {
  name: string;
  table: ModbusTable;
  address: number;
  type: PointType;
  /** Registers (or bits) the point occupies: 2 for 32-bit types, else 1. */
  words: 1 | 2;
  /** Which register of a 32-bit value comes first; 'big' = high word at the lower address. */
  wordOrder: WordOrder;
  /** engineering = raw * scale + offset */
  scale: number;
  offset: number;
  unit?: string;
  description?: string;
  /** Engineering value the simulator starts with (a process model may set its own). */
  initial?: number;
  /** Where the point is defined, so later stages (policy compiler, simulator) can point at it. */
  source: SourcePos;
}

export interface PlcDef {
  /** Also the asset id in policy bundles. */
  id: string;
  unitId: number;
  /** In file order. */
  points: PointDef[];
  model?: string;
  /** Process blocks (valve, pid, lag, counter, alarm, noise), run in list order after the model. */
  process?: ProcessBlockDef[];
  source: SourcePos;
  modelSource?: SourcePos;
}

/**
 * What the simulator does with a request for a unit id no PLC of the plant has: `exception`
 * answers 0x0B like a Modbus gateway whose target does not respond; `ignore` leaves it
 * unanswered like a device that is not there.
 */
export type UnknownUnitPolicy = 'exception' | 'ignore';

export interface Plant {
  name: string;
  file: string;
  plcs: PlcDef[];
  /** Absent = 'exception'. */
  unknownUnits?: UnknownUnitPolicy;
}

const ID_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const POINT_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$/;
const TOP_KEYS = ['plant', 'plcs', 'unknown_units'];
const PLC_KEYS = ['id', 'unit_id', 'points', 'model', 'process'];
const POINT_KEYS = ['table', 'address', 'type', 'scale', 'offset', 'unit', 'description', 'word_order', 'initial'];

export async function loadPlant(file: string): Promise<Plant> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new SourceErrors([new SourceError(file, 1, 1, 'file', `cannot read plant file (${code})`)]);
  }
  return parsePlant(text, file);
}

/** Parses and validates a plant file; throws SourceErrors listing every problem found. */
export function parsePlant(text: string, file: string): Plant {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const errors: SourceError[] = [];
  for (const e of doc.errors) {
    const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
    errors.push(new SourceError(file, p.line, p.col, 'yaml', e.message.split('\n')[0]));
  }
  if (errors.length > 0) throw new SourceErrors(errors);
  const v = new Validator(file, lc, errors);
  const plant = v.plant(doc.contents as Node | null);
  if (errors.length > 0 || plant === undefined) throw new SourceErrors(errors);
  return plant;
}

/** Shared by the plant file's sub-parsers (process-def.ts): records problems with positions. */
export class Validator {
  constructor(
    private readonly file: string,
    private readonly lc: LineCounter,
    private readonly errors: SourceError[],
  ) {}

  errorCount(): number {
    return this.errors.length;
  }

  pos(node: Node | null | undefined): SourcePos {
    const offset = node?.range?.[0] ?? 0;
    const p = this.lc.linePos(offset);
    return { line: p.line, column: p.col };
  }

  fail(node: Node | null | undefined, field: string, problem: string): undefined {
    const p = this.pos(node);
    this.errors.push(new SourceError(this.file, p.line, p.column, field, problem));
    return undefined;
  }

  /** Map entries keyed by string; reports non-string and unknown keys. */
  entries(map: YAMLMap, field: string, allowed: readonly string[] | null): Map<string, Pair<Node, Node | null>> {
    const out = new Map<string, Pair<Node, Node | null>>();
    for (const item of map.items as Pair<Node, Node | null>[]) {
      const key = item.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, field, 'keys must be strings');
        continue;
      }
      if (allowed !== null && !allowed.includes(key.value)) {
        this.fail(key, field === '' ? key.value : `${field}.${key.value}`, `unknown field (expected one of: ${allowed.join(', ')})`);
        continue;
      }
      out.set(key.value, item);
    }
    return out;
  }

  requireMap(node: Node | null | undefined, field: string, what: string): YAMLMap | undefined {
    if (!isMap(node)) return this.fail(node, field, `must be a mapping (${what})`);
    return node;
  }

  str(
    parent: Node,
    e: Map<string, Pair<Node, Node | null>>,
    key: string,
    field: string,
    required: boolean,
  ): string | undefined {
    const pair = e.get(key);
    if (pair === undefined) return required ? this.fail(parent, field, 'is required') : undefined;
    const n = pair.value;
    if (!isScalar(n) || typeof n.value !== 'string' || n.value === '') {
      return this.fail(n ?? pair.key, field, 'must be a non-empty string');
    }
    return n.value;
  }

  int(
    parent: Node,
    e: Map<string, Pair<Node, Node | null>>,
    key: string,
    field: string,
    min: number,
    max: number,
  ): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return this.fail(parent, field, 'is required');
    const n = pair.value;
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isInteger(n.value)) {
      return this.fail(n ?? pair.key, field, `must be an integer in ${min}..${max}`);
    }
    if (n.value < min || n.value > max) return this.fail(n, field, `${n.value} is outside ${min}..${max}`);
    return n.value;
  }

  num(
    e: Map<string, Pair<Node, Node | null>>,
    key: string,
    field: string,
    dflt: number,
    nonZero: boolean,
  ): number | undefined {
    const pair = e.get(key);
    if (pair === undefined) return dflt;
    const n = pair.value;
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value)) {
      return this.fail(n ?? pair.key, field, 'must be a finite number');
    }
    if (nonZero && n.value === 0) return this.fail(n, field, 'must not be 0');
    return n.value;
  }

  oneOf<T extends string>(
    parent: Node,
    e: Map<string, Pair<Node, Node | null>>,
    key: string,
    field: string,
    options: readonly T[],
    dflt?: T,
  ): T | undefined {
    const pair = e.get(key);
    if (pair === undefined) return dflt ?? this.fail(parent, field, `is required (one of: ${options.join(', ')})`);
    const n = pair.value;
    const value = isScalar(n) ? n.value : undefined;
    if (typeof value !== 'string' || !(options as readonly string[]).includes(value)) {
      const shown = isScalar(n) ? JSON.stringify(n.value) : 'a collection';
      return this.fail(n ?? pair.key, field, `${shown} is not one of: ${options.join(', ')}`);
    }
    return value as T;
  }

  plant(root: Node | null): Plant | undefined {
    const map = this.requireMap(root, 'plant file', 'with keys plant and plcs');
    if (map === undefined) return undefined;
    const e = this.entries(map, '', TOP_KEYS);
    const name = this.str(map, e, 'plant', 'plant', true);
    const plcsPair = e.get('plcs');
    if (plcsPair === undefined) {
      this.fail(map, 'plcs', 'is required');
      return undefined;
    }
    const seq = plcsPair.value;
    if (!isSeq(seq) || seq.items.length === 0) {
      this.fail(seq ?? plcsPair.key, 'plcs', 'must be a non-empty list of PLCs');
      return undefined;
    }
    const plcs: PlcDef[] = [];
    const ids = new Map<string, string>();
    const units = new Map<number, string>();
    (seq.items as (Node | null)[]).forEach((item, i) => {
      const plc = this.plc(item, `plcs[${i}]`);
      if (plc === undefined) return;
      const idNode = (item as YAMLMap).get('id', true) as Node;
      const unitNode = (item as YAMLMap).get('unit_id', true) as Node;
      const dupId = ids.get(plc.id);
      if (dupId !== undefined) this.fail(idNode, `plcs[${i}].id`, `duplicate PLC id (also ${dupId})`);
      const dupUnit = units.get(plc.unitId);
      if (dupUnit !== undefined) {
        this.fail(unitNode, `plcs[${i}].unit_id`, `unit id ${plc.unitId} is already used by PLC ${dupUnit}`);
      }
      ids.set(plc.id, `plcs[${i}]`);
      units.set(plc.unitId, plc.id);
      plcs.push(plc);
    });
    const unknownUnits = this.oneOf<UnknownUnitPolicy>(map, e, 'unknown_units', 'unknown_units', ['exception', 'ignore'], 'exception');
    if (name === undefined) return undefined;
    const plant: Plant = { name, file: this.file, plcs };
    if (e.has('unknown_units') && unknownUnits !== undefined) plant.unknownUnits = unknownUnits;
    return plant;
  }

  plc(node: Node | null, field: string): PlcDef | undefined {
    const map = this.requireMap(node, field, 'a PLC with id, unit_id, points');
    if (map === undefined) return undefined;
    const e = this.entries(map, field, PLC_KEYS);
    let id = this.str(map, e, 'id', `${field}.id`, true);
    if (id !== undefined && !ID_RE.test(id)) {
      id = this.fail(e.get('id')?.value, `${field}.id`, `"${id}" must match ${ID_RE.source}`);
    }
    const unitId = this.int(map, e, 'unit_id', `${field}.unit_id`, 0, 255);
    let model = this.str(map, e, 'model', `${field}.model`, false);
    const modelNode = e.get('model')?.value;
    if (model !== undefined && !KNOWN_MODELS.includes(model)) {
      model = this.fail(modelNode, `${field}.model`, `unknown model "${model}" (known: ${KNOWN_MODELS.join(', ')})`);
    }
    const points = this.points(map, e, `${field}.points`);
    const processPair = e.get('process');
    const blocks = processPair !== undefined && points !== undefined ? parseProcess(this, processPair.value, `${field}.process`, points) : undefined;
    if (id === undefined || unitId === undefined || points === undefined) return undefined;
    if (processPair !== undefined && blocks === undefined) return undefined;
    const plc: PlcDef = { id, unitId, points, source: this.pos(map) };
    if (blocks !== undefined) plc.process = blocks;
    if (model !== undefined) {
      plc.model = model;
      plc.modelSource = this.pos(modelNode);
    }
    return plc;
  }

  points(parent: Node, e: Map<string, Pair<Node, Node | null>>, field: string): PointDef[] | undefined {
    const pair = e.get('points');
    if (pair === undefined) return this.fail(parent, field, 'is required');
    const map = pair.value;
    if (!isMap(map) || map.items.length === 0) {
      return this.fail(map ?? pair.key, field, 'must be a non-empty mapping of point name to definition');
    }
    const before = this.errors.length;
    const points: PointDef[] = [];
    // Occupied addresses per table, to reject two points sharing a register or bit.
    const used = new Map<string, PointDef>();
    for (const [name, p] of this.entries(map, field, null)) {
      const pf = `${field}.${name}`;
      if (!POINT_NAME_RE.test(name)) {
        this.fail(p.key, pf, `point name must match ${POINT_NAME_RE.source}`);
        continue;
      }
      const point = this.point(name, p.value, pf);
      if (point === undefined) continue;
      const addrNode = (p.value as YAMLMap).get('address', true) as Node;
      for (let a = point.address; a < point.address + point.words; a++) {
        const other = used.get(`${point.table}:${a}`);
        if (other !== undefined) {
          this.fail(addrNode, `${pf}.address`, `${point.table} address ${a} overlaps point ${other.name}`);
          break;
        }
      }
      for (let a = point.address; a < point.address + point.words; a++) used.set(`${point.table}:${a}`, point);
      points.push(point);
    }
    return this.errors.length === before ? points : undefined;
  }

  point(name: string, node: Node | null, field: string): PointDef | undefined {
    const map = this.requireMap(node, field, 'with table, address, type');
    if (map === undefined) return undefined;
    const before = this.errors.length;
    const e = this.entries(map, field, POINT_KEYS);
    const table = this.oneOf(map, e, 'table', `${field}.table`, TABLES);
    const type = this.oneOf(map, e, 'type', `${field}.type`, POINT_TYPES);
    const address = this.int(map, e, 'address', `${field}.address`, 0, 65535);
    const scale = this.num(e, 'scale', `${field}.scale`, 1, true);
    const offset = this.num(e, 'offset', `${field}.offset`, 0, false);
    const wordOrder = this.oneOf<WordOrder>(map, e, 'word_order', `${field}.word_order`, ['big', 'little'], 'big');
    const unit = this.str(map, e, 'unit', `${field}.unit`, false);
    const description = this.str(map, e, 'description', `${field}.description`, false);
    if (table === undefined || type === undefined || address === undefined) return undefined;
    const bitTable = table === 'coil' || table === 'discrete';
    const typeNode = e.get('type')?.value;
    if (bitTable && type !== 'bool') {
      this.fail(typeNode, `${field}.type`, `${type} cannot live in the ${table} table (bits hold only bool)`);
    } else if (!bitTable && type === 'bool') {
      this.fail(typeNode, `${field}.type`, `bool cannot live in the ${table} table (use coil or discrete)`);
    }
    const words: 1 | 2 = type === 'int32' || type === 'uint32' || type === 'float32' ? 2 : 1;
    if (e.has('word_order') && words !== 2) {
      this.fail(e.get('word_order')?.value, `${field}.word_order`, `applies only to 32-bit types, not ${type}`);
    }
    if (type === 'bool' && (e.has('scale') || e.has('offset'))) {
      this.fail((e.get('scale') ?? e.get('offset'))?.key, field, 'scale and offset do not apply to bool points');
    }
    if (address + words - 1 > 65535) {
      this.fail(e.get('address')?.value, `${field}.address`, `a ${type} at ${address} runs past address 65535`);
    }
    if (this.errors.length !== before || scale === undefined || offset === undefined || wordOrder === undefined) {
      return undefined;
    }
    const point: PointDef = { name, table, address, type, words, wordOrder, scale, offset, source: this.pos(map) };
    if (unit !== undefined) point.unit = unit;
    if (description !== undefined) point.description = description;
    if (e.has('initial')) {
      const initial = this.num(e, 'initial', `${field}.initial`, 0, false);
      if (initial === undefined) return undefined;
      try {
        engineeringToRaw(point, initial);
      } catch (err) {
        return this.fail(e.get('initial')?.value, `${field}.initial`, (err as Error).message);
      }
      point.initial = initial;
    }
    return point;
  }
}

/** The PLC that owns a point, and the point; accepts "point" (first PLC that has it) or "plcId/point". */
export function findPoint(plant: Plant, qualifiedName: string): { plc: PlcDef; point: PointDef } | undefined {
  const slash = qualifiedName.indexOf('/');
  const plcId = slash >= 0 ? qualifiedName.slice(0, slash) : undefined;
  const name = slash >= 0 ? qualifiedName.slice(slash + 1) : qualifiedName;
  for (const plc of plant.plcs) {
    if (plcId !== undefined && plc.id !== plcId) continue;
    const point = plc.points.find((p) => p.name === name);
    if (point !== undefined) return { plc, point };
  }
  return undefined;
}
