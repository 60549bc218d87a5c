// Decoding written Modbus values into engineering units, per the point map. Owns the register
// layout rules (signedness, 32-bit word order, scale/offset); must never allocate per register
// beyond what the caller asked for, since it runs for every write.
import type { PointDef } from './bundle-asset.js';

const f32 = new Float32Array(1);
const f32u16 = new Uint16Array(f32.buffer);
// Float32Array views share the platform's byte order; word halves are placed accordingly.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The engineering value of `point` from its raw register/coil value(s): `hi` is the register at
 * the point's address, `lo` the one after it (32-bit types only). Returns NaN when it cannot be
 * decoded (a caller then treats a bounded point as out of bounds: fail closed).
 */
export function decodePoint(point: PointDef, first: number, second: number): number {
  let raw: number;
  switch (point.type) {
    case 'bool':
      raw = first !== 0 ? 1 : 0;
      break;
    case 'uint16':
      raw = first & 0xffff;
      break;
    case 'int16':
      raw = (first << 16) >> 16;
      break;
    case 'int32':
    case 'uint32':
    case 'float32': {
      if (Number.isNaN(second)) return NaN;
      const big = point.word_order !== 'little';
      const hi = (big ? first : second) & 0xffff;
      const lo = (big ? second : first) & 0xffff;
      if (point.type === 'float32') {
        f32u16[LITTLE_ENDIAN_HOST ? 1 : 0] = hi;
        f32u16[LITTLE_ENDIAN_HOST ? 0 : 1] = lo;
        raw = f32[0]!;
      } else if (point.type === 'int32') {
        raw = ((hi << 16) | lo) | 0;
      } else {
        raw = hi * 65536 + lo;
      }
      break;
    }
    default:
      return NaN;
  }
  return raw * (point.scale ?? 1) + (point.offset ?? 0);
}
