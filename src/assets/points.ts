// Converts one point between raw Modbus words and engineering units (engineering = raw * scale +
// offset), and a string point between its registers and its text, per the point map in plant.ts.
// Pure and allocation-free on the numeric decode side so the simulator and the gateway can call it
// per command; never touches tables or sockets.
import { PlantgateError } from '../core/errors.js';
import type { PointDef } from './plant.js';

// One scratch view for float32 <-> register pairs; safe because Node runs this synchronously.
const scratch = new DataView(new ArrayBuffer(4));

/**
 * The text of a string point: two characters per register, the first in the high byte (the
 * convention of most PLCs), Latin-1, trailing NULs and spaces dropped.
 */
export function wordsToText(point: PointDef, words: ArrayLike<number>, at = 0): string {
  return textFromWords(point.length ?? 2 * point.words, words, at);
}

/** `length` characters from registers starting at `at` (see wordsToText); the policy engine decodes written strings with it. */
export function textFromWords(length: number, words: ArrayLike<number>, at = 0): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    const w = words[at + (i >> 1)] & 0xffff;
    out += String.fromCharCode((i & 1) === 0 ? w >> 8 : w & 0xff);
  }
  return out.replace(/[\0 ]+$/, '');
}

/** Writes a string point's registers (NUL-padded); throws VALUE_OUT_OF_BOUNDS when the text does not fit. */
export function textToWords(point: PointDef, text: string, out: { [i: number]: number }, at = 0): void {
  const length = point.length ?? 2 * point.words;
  if (text.length > length) {
    throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: "${text}" is ${text.length} characters, the point holds ${length}`);
  }
  if (!/^[\x00-\xff]*$/.test(text)) throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: only Latin-1 text fits one byte per character`);
  for (let r = 0; r < point.words; r++) {
    const hi = 2 * r < text.length ? text.charCodeAt(2 * r) : 0;
    const lo = 2 * r + 1 < text.length ? text.charCodeAt(2 * r + 1) : 0;
    out[at + r] = (hi << 8) | lo;
  }
}

/** Raw (unscaled) value of a numeric point from its words in address order, starting at `at` (NaN for a string). */
export function wordsToRaw(point: PointDef, words: ArrayLike<number>, at = 0): number {
  const w0 = words[at] & 0xffff;
  switch (point.type) {
    case 'string':
      return NaN;
    case 'bool':
      return w0 !== 0 ? 1 : 0;
    case 'uint16':
      return w0;
    case 'int16':
      return (w0 << 16) >> 16;
  }
  const w1 = words[at + 1] & 0xffff;
  const hi = point.wordOrder === 'big' ? w0 : w1;
  const lo = point.wordOrder === 'big' ? w1 : w0;
  scratch.setUint16(0, hi);
  scratch.setUint16(2, lo);
  switch (point.type) {
    case 'uint32':
      return scratch.getUint32(0);
    case 'int32':
      return scratch.getInt32(0);
    default:
      return scratch.getFloat32(0);
  }
}

export function rawToEngineering(point: PointDef, raw: number): number {
  if (point.type === 'bool') return raw;
  return raw * point.scale + point.offset;
}

export function wordsToEngineering(point: PointDef, words: ArrayLike<number>, at = 0): number {
  return rawToEngineering(point, wordsToRaw(point, words, at));
}

const RAW_RANGE: Record<string, [number, number]> = {
  bool: [0, 1],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

/**
 * The raw value for an engineering value, rounded to the point's resolution. Throws
 * VALUE_OUT_OF_BOUNDS when the point's type cannot hold it (never wraps silently).
 */
export function engineeringToRaw(point: PointDef, value: number): number {
  if (point.type === 'string') throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: a string point takes text, not ${value}`);
  if (!Number.isFinite(value)) {
    throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: ${value} is not a finite number`);
  }
  if (point.type === 'bool') {
    if (value !== 0 && value !== 1) throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: bool takes 0 or 1, not ${value}`);
    return value;
  }
  const raw = (value - point.offset) / point.scale;
  if (point.type === 'float32') return raw;
  const rounded = Math.round(raw);
  const [min, max] = RAW_RANGE[point.type];
  if (rounded < min || rounded > max) {
    throw new PlantgateError(
      'VALUE_OUT_OF_BOUNDS',
      `${point.name}: ${value} ${point.unit ?? ''} is raw ${rounded}, outside ${point.type} ${min}..${max}`.replace('  ', ' '),
    );
  }
  return rounded;
}

/** Writes the words of a raw value in address order into `out` at `at`. */
export function rawToWords(point: PointDef, raw: number, out: { [i: number]: number }, at = 0): void {
  switch (point.type) {
    case 'string':
      throw new PlantgateError('VALUE_OUT_OF_BOUNDS', `${point.name}: a string point takes text (textToWords)`);
    case 'bool':
      out[at] = raw !== 0 ? 1 : 0;
      return;
    case 'uint16':
    case 'int16':
      out[at] = raw & 0xffff;
      return;
    case 'uint32':
      scratch.setUint32(0, raw >>> 0);
      break;
    case 'int32':
      scratch.setInt32(0, raw | 0);
      break;
    default:
      scratch.setFloat32(0, raw);
  }
  const hi = scratch.getUint16(0);
  const lo = scratch.getUint16(2);
  out[at] = point.wordOrder === 'big' ? hi : lo;
  out[at + 1] = point.wordOrder === 'big' ? lo : hi;
}

export function engineeringToWords(point: PointDef, value: number): number[] {
  const out: number[] = point.words === 2 ? [0, 0] : [0];
  rawToWords(point, engineeringToRaw(point, value), out);
  return out;
}

/**
 * The raw value nearest to an engineering value that the point's type can hold: what a sensor
 * input card does at the end of its range (saturates, never wraps). For simulated measurements.
 */
export function engineeringToRawClamped(point: PointDef, value: number): number {
  if (point.type === 'bool') return value >= 0.5 ? 1 : 0;
  if (point.type === 'string') return NaN;
  const raw = (value - point.offset) / point.scale;
  if (point.type === 'float32') return Number.isFinite(raw) ? raw : 0;
  const [min, max] = RAW_RANGE[point.type];
  if (Number.isNaN(raw)) return min;
  return Math.min(Math.max(Math.round(raw), min), max);
}
