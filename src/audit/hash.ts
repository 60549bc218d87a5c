// The hash chain's arithmetic (RFC 9162 §2.1.1): a record's leaf hash is SHA-256(0x00 || bytes) and
// each record carries the previous leaf hash. Pure: no I/O, no state.
import { createHash, hash } from 'node:crypto';

export const HASH_BYTES = 32;
/** prev_hash of seq 0. */
export const ZERO_HASH: Uint8Array = new Uint8Array(HASH_BYTES);
const LEAF_PREFIX = new Uint8Array([0x00]);

/** 0x00 || record, for the one-shot hash (a Hash object per record costs a third more). */
const scratch = Buffer.alloc(4096);

export function leafHash(recordBytes: Uint8Array): Buffer {
  const n = recordBytes.length + 1;
  if (n > scratch.length) return createHash('sha256').update(LEAF_PREFIX).update(recordBytes).digest();
  scratch[0] = 0x00;
  scratch.set(recordBytes, 1);
  return hash('sha256', scratch.subarray(0, n), 'buffer');
}

export function hashEquals(a: Uint8Array | null | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(bytes: Uint8Array | null | undefined): string {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex') : '';
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/i.test(hex)) throw new Error(`not a hex string: ${hex.slice(0, 16)}`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
