// A point of a Modbus asset as the MCP front reads and writes it: the Modbus request a Modbus agent
// would send for it (so the Command, its policy decision and the PLC's view are the same whichever
// front asked) and the point's engineering value from the PLC's answer. Pure; no sockets.
// Decoding is the gateway's own (src/policy/values.ts); encoding here is its inverse and is held
// to it by a property test (test/unit/mcp/modbus-points.test.ts).
import { pointWidth, type PointDef } from '../../src/assets/bundle-asset.js';
import { decodePoint } from '../../src/assets/values.js';
import type { Request, Response } from '../modbus/codec.js';

const READ_FC = { coil: 1, discrete: 2, holding: 3, input: 4 } as const;

const RAW_RANGE: Record<string, [number, number]> = {
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

// One scratch view for float32 words; safe because encoding runs synchronously.
const scratch = new DataView(new ArrayBuffer(4));

/** Points only coils and holding registers can be written over Modbus. */
export function isWritable(def: PointDef): boolean {
  return def.table === 'coil' || def.table === 'holding';
}

export function readRequest(def: PointDef): Request {
  return { fc: READ_FC[def.table], address: def.address, quantity: pointWidth(def) };
}

/** The function code a write of this point uses (FC 5 coil, FC 6 one register, FC 16 two). */
export function writeFunctionCode(def: PointDef): 5 | 6 | 16 {
  if (def.table === 'coil') return 5;
  return pointWidth(def) === 1 ? 6 : 16;
}

/** Lowest and highest engineering value the point's type can carry. */
export function typeRange(def: PointDef): [number, number] {
  if (def.type === 'bool') return [0, 1];
  if (def.type === 'float32') return [-3.4028234663852886e38, 3.4028234663852886e38];
  const [lo, hi] = RAW_RANGE[def.type]!;
  const scale = def.scale ?? 1;
  const offset = def.offset ?? 0;
  const a = lo * scale + offset;
  const b = hi * scale + offset;
  return a <= b ? [a, b] : [b, a];
}

/**
 * The write request for an engineering value, or why it cannot be written: a value the point's
 * type cannot hold is VALUE_OUT_OF_BOUNDS (never wrapped), a point outside coils and holding
 * registers is UNSUPPORTED_FUNCTION.
 */
export function writeRequest(def: PointDef, value: number): Request | { refused: 'VALUE_OUT_OF_BOUNDS' | 'UNSUPPORTED_FUNCTION'; why: string } {
  if (!isWritable(def)) return { refused: 'UNSUPPORTED_FUNCTION', why: `a ${def.table} point cannot be written over Modbus` };
  if (!Number.isFinite(value)) return { refused: 'VALUE_OUT_OF_BOUNDS', why: `${value} is not a finite number` };
  if (def.type === 'bool') {
    if (value !== 0 && value !== 1) return { refused: 'VALUE_OUT_OF_BOUNDS', why: `a bool point takes true/false (1/0), not ${value}` };
    return def.table === 'coil' ? { fc: 5, address: def.address, value: value === 1 } : { fc: 6, address: def.address, value };
  }
  const raw = (value - (def.offset ?? 0)) / (def.scale ?? 1);
  if (def.type === 'float32') {
    scratch.setFloat32(0, raw);
    if (!Number.isFinite(scratch.getFloat32(0))) return { refused: 'VALUE_OUT_OF_BOUNDS', why: `${value} does not fit a float32` };
  } else {
    const rounded = Math.round(raw);
    const [lo, hi] = RAW_RANGE[def.type]!;
    if (rounded < lo || rounded > hi) return { refused: 'VALUE_OUT_OF_BOUNDS', why: `${value} is raw ${rounded}, outside ${def.type} ${lo}..${hi}` };
    if (def.type === 'int16' || def.type === 'uint16') return { fc: 6, address: def.address, value: rounded & 0xffff };
    if (def.type === 'int32') scratch.setInt32(0, rounded);
    else scratch.setUint32(0, rounded);
  }
  const hi = scratch.getUint16(0);
  const lo = scratch.getUint16(2);
  const values = def.word_order === 'little' ? [lo, hi] : [hi, lo];
  return { fc: 16, address: def.address, quantity: 2, values };
}

/**
 * The point's engineering value from the PLC's answer to readRequest(def), at the point's
 * resolution (a register of 538 with scale 0.1 reads 53.8, not 53.800000000000004); NaN if
 * undecodable. An agent reads this value; what policy judges is the Command, not this number.
 */
export function valueFromResponse(def: PointDef, res: Response): number {
  if (!('values' in res)) return NaN;
  const v = res.values as Array<number | boolean>;
  const value = decodePoint(def, Number(v[0] ?? NaN), pointWidth(def) === 2 ? Number(v[1] ?? NaN) : 0);
  if (def.type === 'float32' || !Number.isFinite(value)) return value;
  const digits = Math.max(decimalsOf(def.scale ?? 1), decimalsOf(def.offset ?? 0));
  return digits === 0 ? value : Number(value.toFixed(Math.min(digits, 15)));
}

/** Decimal places of a scale or offset as written (0.1 → 1, 0.25 → 2, 2 → 0). */
function decimalsOf(n: number): number {
  const text = String(n);
  const e = /e-(\d+)$/.exec(text);
  if (e !== null) return Number(e[1]) + (text.split('e')[0]!.split('.')[1]?.length ?? 0);
  return text.split('.')[1]?.length ?? 0;
}
