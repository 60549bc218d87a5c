// Owns the plant file format (fixtures/plants/*.yaml, docs/simulator.md "Plant files"): PLCs, their
// unit ids and their maps (named points, raw register ranges, read-only registers, device
// identity, an open map), the one description of Modbus equipment that the simulator serves and
// the policy compiler reads. Lives in src/assets so both import it without importing each other;
// it must never import either. Parses and validates once, with errors naming
// file:line:column and field. Must never open sockets or know how the process behaves; it only
// checks that a named model exists and that process blocks and logic name points of their PLC.
import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, type Node, type Pair, type YAMLMap } from 'yaml';
import type { ModbusTable } from '../core/command.js';
import { SourceError, SourceErrors } from '../core/errors.js';
import { readYaml, YamlFields, type Entries } from '../core/yaml.js';
import { engineeringToRaw, textToWords } from './points.js';
import { parseLogic, type LogicDef } from './logic-def.js';
import { parseProcess, type ProcessBlockDef } from './process-def.js';

export type PointType = 'bool' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'string';
export type WordOrder = 'big' | 'little';

export const TABLES: readonly ModbusTable[] = ['coil', 'discrete', 'holding', 'input'];
export const POINT_TYPES: readonly PointType[] = ['bool', 'int16', 'uint16', 'int32', 'uint32', 'float32', 'string'];
/** Process models the simulator can run; a plant naming any other is rejected at load. */
export const KNOWN_MODELS: readonly string[] = ['water-tank'];
/** Longest device identification object: one must fit a Read Device ID answer (253 - 7 - 2 bytes). */
export const MAX_IDENTITY_OBJECT = 244;
/** The identification object ids by name (Modbus Application Protocol v1.1b3 §6.21). */
export const IDENTITY_OBJECTS = {
  vendor: 0x00,
  product_code: 0x01,
  revision: 0x02,
  vendor_url: 0x03,
  product_name: 0x04,
  model_name: 0x05,
  application_name: 0x06,
} as const;

export interface SourcePos {
  line: number;
  column: number;
}

export interface PointDef {
  name: string;
  table: ModbusTable;
  address: number;
  type: PointType;
  /** Registers (or bits) the point occupies: 2 for 32-bit types, ceil(length / 2) for strings, else 1. */
  words: number;
  /** Strings: characters (bytes, two per register, the first in the high byte). */
  length?: number;
  /** Holding registers and coils a client may read but not write (the PLC answers 0x02). */
  readOnly?: boolean;
  /** Which register of a 32-bit value comes first; 'big' = high word at the lower address. */
  wordOrder: WordOrder;
  /** engineering = raw * scale + offset */
  scale: number;
  offset: number;
  unit?: string;
  description?: string;
  /** Engineering value the simulator starts with (a process model may set its own); text for strings. */
  initial?: number | string;
  /** Where the point is defined, so later stages (policy compiler, simulator) can point at it. */
  source: SourcePos;
}

/** A block of raw addresses that exist without a name (`holding[0..99]`), inclusive. */
export interface RegisterRange {
  table: ModbusTable;
  from: number;
  to: number;
  readOnly: boolean;
  source: SourcePos;
}

/** Read Device Identification objects (FC 43/14) by object id, ascending. */
export interface DeviceIdentity {
  objects: { id: number; value: string }[];
}

export interface PlcDef {
  /** Also the asset id in policy bundles. */
  id: string;
  unitId: number;
  /** Named points, in file order (arrays expanded). */
  points: PointDef[];
  /** Raw address ranges; points may lie inside them (a name for some of their addresses). */
  registers: RegisterRange[];
  /** Every address of every table exists (a device without a fixed map, or a test double). */
  openMap: boolean;
  identity?: DeviceIdentity;
  model?: string;
  /** Process blocks (valve, pid, lag, counter, alarm, noise), run in list order after the model. */
  process?: ProcessBlockDef[];
  /** PLC logic: points set from expressions over points, every tick after the process. */
  logic?: LogicDef[];
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
/** An array of points: `temp[1..8]` or `pump[1..4].run`; the index replaces the brackets. */
const ARRAY_NAME_RE = /^([^[\]]*)\[([0-9]+)\.\.([0-9]+)\]([^[\]]*)$/;
const MAX_ARRAY = 10_000;
/** `holding[0..99]`, `coil[7]`, optionally followed by `read-only`. */
const FLOW_RANGE_RE = /\[\s*(coil|discrete|holding|input)\[/;

/**
 * `[holding[0..99]]` is not YAML (a flow list cannot hold a bare bracket): for a YAML error on
 * such a line (plant files and policy sources alike), how to write it; '' otherwise.
 */
export function rangeSyntaxHint(line: string | undefined): string {
  return FLOW_RANGE_RE.test(line ?? '') ? ' (ranges in a [ ] list must be quoted: ["holding[0..99]"], or written as a block list: - holding[0..99])' : '';
}
const RANGE_RE = /^(coil|discrete|holding|input)\[([0-9]+)(?:\.\.([0-9]+))?\](?:\s+(read-only))?$/;

/**
 * An address range as written in plant files and rules: `holding[0..99]`, `coil[7]`, and in plant
 * files a `read-only` suffix. The problem as text when it is not one.
 */
export function parseRange(text: string, allowReadOnly: boolean): { table: ModbusTable; from: number; to: number; readOnly: boolean } | string {
  const m = RANGE_RE.exec(text.trim());
  if (m === null || (m[4] !== undefined && !allowReadOnly)) {
    return `${JSON.stringify(text)} is not a range like holding[0..99] or coil[7]${allowReadOnly ? ' (optionally followed by read-only)' : ''}`;
  }
  const table = m[1] as ModbusTable;
  const from = Number(m[2]);
  const to = m[3] === undefined ? from : Number(m[3]);
  if (to > 65535 || from > to) return `${text.trim()} must run from a lower to a higher address within 0..65535`;
  if (m[4] !== undefined && (table === 'input' || table === 'discrete')) return `${table} is read-only for clients already; read-only applies to holding and coil`;
  return { table, from, to, readOnly: m[4] !== undefined };
}
const TOP_KEYS = ['plant', 'plcs', 'unknown_units'];
const PLC_KEYS = ['id', 'unit_id', 'points', 'registers', 'open_map', 'identity', 'model', 'process', 'logic'];
const POINT_KEYS = ['table', 'address', 'type', 'length', 'scale', 'offset', 'unit', 'description', 'word_order', 'initial', 'read_only', 'stride'];
const IDENTITY_KEYS = [...Object.keys(IDENTITY_OBJECTS), 'extended'];

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
  const read = readYaml(text, file, rangeSyntaxHint);
  if (!read.ok) throw new SourceErrors(read.errors);
  const errors: SourceError[] = [];
  const v = new Validator(file, read.lc, errors);
  const plant = v.plant(read.doc.contents as Node | null);
  if (errors.length > 0 || plant === undefined) throw new SourceErrors(errors);
  return plant;
}

/** The plant file's checks, shared with its sub-parsers (process-def.ts, logic-def.ts). */
export class Validator extends YamlFields {
  pos(node: Node | null | undefined): SourcePos {
    const p = this.lc.linePos(node?.range?.[0] ?? 0);
    return { line: p.line, column: p.col };
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
    const plant: Plant = { name, file: this.display, plcs };
    if (e.has('unknown_units') && unknownUnits !== undefined) plant.unknownUnits = unknownUnits;
    return plant;
  }

  plc(node: Node | null, field: string): PlcDef | undefined {
    const map = this.requireMap(node, field, 'a PLC with id, unit_id and points, registers or open_map');
    if (map === undefined) return undefined;
    const before = this.errors.length;
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
    const points = e.has('points') ? this.points(map, e, `${field}.points`) : [];
    const registers = e.has('registers') ? this.registers(e.get('registers')!, `${field}.registers`) : [];
    const openMap = this.bool(e, 'open_map', `${field}.open_map`);
    if (!e.has('points') && !e.has('registers') && openMap !== true) {
      this.fail(map, field, 'has no addresses: give points, registers (e.g. - holding[0..99]) or open_map: true');
    }
    const identityPair = e.get('identity');
    const identity = identityPair === undefined ? undefined : this.identity(identityPair.value, `${field}.identity`);
    const processPair = e.get('process');
    const blocks = processPair !== undefined && points !== undefined ? parseProcess(this, processPair.value, `${field}.process`, points) : undefined;
    const logicPair = e.get('logic');
    const logic = logicPair !== undefined && points !== undefined ? parseLogic(this, logicPair.value, `${field}.logic`, points) : undefined;
    if (this.errors.length !== before || id === undefined || unitId === undefined || points === undefined || registers === undefined || openMap === undefined) return undefined;
    const plc: PlcDef = { id, unitId, points, registers, openMap, source: this.pos(map) };
    if (identity !== undefined) plc.identity = identity;
    if (blocks !== undefined) plc.process = blocks;
    if (logic !== undefined) plc.logic = logic;
    if (model !== undefined) {
      plc.model = model;
      plc.modelSource = this.pos(modelNode);
    }
    return plc;
  }

  bool(e: Entries, key: string, field: string): boolean | undefined {
    const pair = e.get(key);
    if (pair === undefined) return false;
    const n = pair.value;
    if (!isScalar(n) || typeof n.value !== 'boolean') return this.fail(n ?? pair.key, field, 'must be true or false');
    return n.value;
  }

  /** `registers:` then `- holding[0..99]`, `- coil[0..15] read-only`: raw addresses that exist without names. */
  registers(pair: Pair<Node, Node | null>, field: string): RegisterRange[] | undefined {
    const seq = pair.value;
    if (!isSeq(seq) || seq.items.length === 0) {
      return this.fail(seq ?? pair.key, field, 'must be a non-empty list of ranges like holding[0..99] or coil[0..15] read-only');
    }
    const before = this.errors.length;
    const out: RegisterRange[] = [];
    (seq.items as (Node | null)[]).forEach((item, i) => {
      const rf = `${field}[${i}]`;
      const r = isScalar(item) && typeof item.value === 'string' ? parseRange(item.value, true) : 'must be a range like holding[0..99], coil[7] or holding[40..49] read-only';
      if (typeof r === 'string') this.fail(item, rf, r);
      else out.push({ ...r, source: this.pos(item) });
    });
    return this.errors.length === before ? out : undefined;
  }

  /** `identity: { vendor, product_code, revision, ..., extended: { 0x80: text } }` (FC 43/14 objects). */
  identity(node: Node | null, field: string): DeviceIdentity | undefined {
    const map = this.requireMap(node, field, 'Read Device Identification objects: vendor, product_code, revision, ...');
    if (map === undefined) return undefined;
    const before = this.errors.length;
    const e = this.entries(map, field, IDENTITY_KEYS);
    const objects: { id: number; value: string }[] = [];
    for (const [key, id] of Object.entries(IDENTITY_OBJECTS)) {
      const pair = e.get(key);
      if (pair === undefined) {
        // The basic objects are mandatory for any device that identifies itself (v1.1b3 §6.21).
        if (id <= 0x02) this.fail(map, `${field}.${key}`, 'is required (vendor, product_code and revision are the basic objects every device answers)');
        continue;
      }
      const value = this.identityText(pair.value ?? pair.key, `${field}.${key}`);
      if (value !== undefined) objects.push({ id, value });
    }
    const ext = e.get('extended');
    if (ext !== undefined) {
      const em = this.requireMap(ext.value, `${field}.extended`, 'object id 0x80..0xFF -> text');
      for (const item of (em?.items ?? []) as Pair<Node, Node | null>[]) {
        const k = isScalar(item.key) ? item.key.value : undefined;
        const id = typeof k === 'number' ? k : typeof k === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(k) ? Number(k) : NaN;
        const ef = `${field}.extended.${String(k)}`;
        if (!(Number.isInteger(id) && id >= 0x80 && id <= 0xff)) {
          this.fail(item.key, ef, 'extended object ids are 0x80..0xFF (128..255)');
          continue;
        }
        const value = this.identityText(item.value ?? item.key, ef);
        if (value !== undefined) objects.push({ id, value });
      }
    }
    if (this.errors.length !== before) return undefined;
    objects.sort((a, b) => a.id - b.id);
    return { objects };
  }

  private identityText(n: Node, field: string): string | undefined {
    const v = isScalar(n) ? n.value : undefined;
    const text = typeof v === 'number' ? String(v) : v;
    if (typeof text !== 'string' || text === '') return this.fail(n, field, 'must be non-empty text');
    if (!/^[\x20-\x7e\xa0-\xff]*$/.test(text)) return this.fail(n, field, 'must be printable Latin-1 text (one byte per character on the wire)');
    if (text.length > MAX_IDENTITY_OBJECT) return this.fail(n, field, `is ${text.length} characters, at most ${MAX_IDENTITY_OBJECT} fit one answer`);
    return text;
  }

  points(parent: Node, e: Entries, field: string): PointDef[] | undefined {
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
    const names = new Set<string>();
    for (const [key, p] of this.entries(map, field, null)) {
      const pf = `${field}.${key}`;
      const expanded = this.expand(key, p, pf);
      if (expanded === undefined) continue;
      for (const { name, index, first } of expanded) {
        if (names.has(name)) {
          this.fail(p.key, pf, `point ${name} is defined twice`);
          break;
        }
        names.add(name);
        const point = this.point(name, p.value, pf, index - first);
        if (point === undefined) break;
        const addrNode = (p.value as YAMLMap).get('address', true) as Node;
        let overlap = false;
        for (let a = point.address; a < point.address + point.words && !overlap; a++) {
          const other = used.get(`${point.table}:${a}`);
          if (other !== undefined) {
            this.fail(addrNode, `${pf}.address`, `${point.table} address ${a} overlaps point ${other.name}`);
            overlap = true;
          }
        }
        if (overlap) break;
        for (let a = point.address; a < point.address + point.words; a++) used.set(`${point.table}:${a}`, point);
        points.push(point);
      }
    }
    return this.errors.length === before ? points : undefined;
  }

  /** The point names a key stands for: itself, or each index of an array key (`temp[1..8]`). */
  private expand(key: string, p: Pair<Node, Node | null>, field: string): { name: string; index: number; first: number }[] | undefined {
    const m = ARRAY_NAME_RE.exec(key);
    if (m === null) {
      if (!POINT_NAME_RE.test(key)) return this.fail(p.key, field, `point name must match ${POINT_NAME_RE.source} (or be an array like temp[1..8] or pump[1..4].run)`);
      return [{ name: key, index: 0, first: 0 }];
    }
    const first = Number(m[2]);
    const last = Number(m[3]);
    if (last < first || last - first >= MAX_ARRAY) return this.fail(p.key, field, `array indexes must run upwards, at most ${MAX_ARRAY} of them`);
    const out: { name: string; index: number; first: number }[] = [];
    for (let i = first; i <= last; i++) {
      const name = `${m[1]}${i}${m[4]}`;
      if (!POINT_NAME_RE.test(name)) return this.fail(p.key, field, `${name} is not a point name (${POINT_NAME_RE.source})`);
      out.push({ name, index: i, first });
    }
    return out;
  }

  /** One point; `offset` is its position in an array (address + offset × stride). */
  point(name: string, node: Node | null, field: string, offset = 0): PointDef | undefined {
    const map = this.requireMap(node, field, 'with table, address, type');
    if (map === undefined) return undefined;
    const before = this.errors.length;
    const e = this.entries(map, field, POINT_KEYS);
    const table = this.oneOf(map, e, 'table', `${field}.table`, TABLES);
    const type = this.oneOf(map, e, 'type', `${field}.type`, POINT_TYPES);
    const base = this.int(map, e, 'address', `${field}.address`, 0, 65535);
    const scale = this.num(e, 'scale', `${field}.scale`, { dflt: 1, nonZero: true });
    const scaleOffset = this.num(e, 'offset', `${field}.offset`, { dflt: 0 });
    const wordOrder = this.oneOf<WordOrder>(map, e, 'word_order', `${field}.word_order`, ['big', 'little'], 'big');
    const unit = this.str(map, e, 'unit', `${field}.unit`, false);
    const description = this.str(map, e, 'description', `${field}.description`, false);
    const readOnly = this.bool(e, 'read_only', `${field}.read_only`);
    if (table === undefined || type === undefined || base === undefined || readOnly === undefined) return undefined;
    const bitTable = table === 'coil' || table === 'discrete';
    const typeNode = e.get('type')?.value;
    if (bitTable && type !== 'bool') {
      this.fail(typeNode, `${field}.type`, `${type} cannot live in the ${table} table (bits hold only bool)`);
    } else if (!bitTable && type === 'bool') {
      this.fail(typeNode, `${field}.type`, `bool cannot live in the ${table} table (use coil or discrete)`);
    }
    let length: number | undefined;
    if (type === 'string') {
      length = this.int(map, e, 'length', `${field}.length`, 1, 2 * 123);
      for (const k of ['scale', 'offset', 'word_order']) {
        if (e.has(k)) this.fail(e.get(k)?.key, `${field}.${k}`, 'does not apply to a string (two characters per register, the first in the high byte)');
      }
    } else if (e.has('length')) {
      this.fail(e.get('length')?.key, `${field}.length`, `applies only to strings, not ${type}`);
    }
    const words = type === 'string' ? Math.ceil((length ?? 2) / 2) : type === 'int32' || type === 'uint32' || type === 'float32' ? 2 : 1;
    if (e.has('word_order') && words !== 2) {
      this.fail(e.get('word_order')?.value, `${field}.word_order`, `applies only to 32-bit types, not ${type}`);
    }
    if (type === 'bool' && (e.has('scale') || e.has('offset'))) {
      this.fail((e.get('scale') ?? e.get('offset'))?.key, field, 'scale and offset do not apply to bool points');
    }
    if (readOnly && (table === 'input' || table === 'discrete')) {
      this.fail(e.get('read_only')?.key, `${field}.read_only`, `${table} points are read-only for clients already; read_only applies to holding and coil`);
    }
    const stride = e.has('stride') ? this.int(map, e, 'stride', `${field}.stride`, 1, 65535) : words;
    const address = base + offset * (stride ?? words);
    if (address + words - 1 > 65535) {
      this.fail(e.get('address')?.value, `${field}.address`, `a ${type} at ${address} runs past address 65535`);
    }
    if (this.errors.length !== before || scale === undefined || scaleOffset === undefined || wordOrder === undefined) {
      return undefined;
    }
    const point: PointDef = { name, table, address, type, words, wordOrder, scale, offset: scaleOffset, source: this.pos(map) };
    if (length !== undefined) point.length = length;
    if (readOnly) point.readOnly = true;
    if (unit !== undefined) point.unit = unit;
    if (description !== undefined) point.description = description;
    if (e.has('initial')) {
      const initialNode = e.get('initial')?.value;
      if (type === 'string') {
        const text = isScalar(initialNode) ? String(initialNode.value) : undefined;
        try {
          if (text === undefined) throw new Error('must be text');
          textToWords(point, text, new Array<number>(words), 0);
        } catch (err) {
          return this.fail(initialNode, `${field}.initial`, (err as Error).message);
        }
        point.initial = text;
        return point;
      }
      const initial = this.num(e, 'initial', `${field}.initial`, { dflt: 0 });
      if (initial === undefined) return undefined;
      try {
        engineeringToRaw(point, initial);
      } catch (err) {
        return this.fail(initialNode, `${field}.initial`, (err as Error).message);
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
