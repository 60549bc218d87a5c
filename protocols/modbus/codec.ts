// The Modbus/TCP codec: MBAP framing with streaming reassembly, and strict decoding / encoding of
// request and response PDUs (Modbus Application Protocol v1.1b3, Modbus Messaging on TCP/IP
// Implementation Guide v1.0b). Used by the gateway's listener and upstream pool and by the PLC
// simulator.
// It owns bytes ↔ frames ↔ PDU objects and nothing else: it never opens a socket, starts a timer,
// logs, or decides whether a command is allowed. Every malformed input ends in a ModbusFrameError
// with a stable `code`; no other exception may escape (docs/architecture.md, Invariants: no crash on malformed input).
// Hot path: the decoder hands out subarray views, copies only frames that straddle chunks, and
// reads length fields only after checking them against the bytes actually present.
import { PlantgateError } from '../../src/core/errors.js';

export {
  classifyFunctionCode,
  tableForFunctionCode,
  functionCodeInfo,
  FUNCTION_CODES,
} from './function-codes.js';
export type { FcClass, FunctionCodeInfo } from './function-codes.js';

export const MBAP_HEADER_LENGTH = 7;
export const MAX_PDU_LENGTH = 253; // so max ADU = 260
export const MAX_ADU_LENGTH = MBAP_HEADER_LENGTH + MAX_PDU_LENGTH;
/** The MBAP length field counts the unit id and the PDU: 2 (unit id + function code) .. 254. */
export const MIN_MBAP_LENGTH_FIELD = 2;
export const MAX_MBAP_LENGTH_FIELD = MAX_PDU_LENGTH + 1;

// Quantity limits, v1.1b3 §6.1–§6.17: each is what a 253-byte PDU can carry.
export const MAX_READ_BITS = 2000;
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_COILS = 1968;
export const MAX_WRITE_REGISTERS = 123;
export const MAX_RW_READ_REGISTERS = 125;
export const MAX_RW_WRITE_REGISTERS = 121;
export const MAX_FIFO_COUNT = 31;
const FILE_REFERENCE_TYPE = 6;
const MAX_FILE_RECORD_NUMBER = 0x270f;
const COIL_ON = 0xff00;
const COIL_OFF = 0x0000;

// ---------------------------------------------------------------------------------------------
// Errors

export type ModbusFrameErrorCode =
  | 'BAD_PROTOCOL_ID'
  | 'BAD_LENGTH'
  | 'PDU_TOO_LONG'
  | 'BAD_PDU'
  | 'UNSUPPORTED_FUNCTION'
  | 'RESPONSE_MISMATCH';

/**
 * A frame or PDU that plantgate refuses. `code` says which rule it broke; `reason` is
 * UNSUPPORTED_FUNCTION for an unknown function code and PROTOCOL_VIOLATION for everything else.
 * `functionCode` and `exceptionCode` let a server answer a bad request with the exception the
 * spec prescribes (0x01 unknown function, 0x02 address range, 0x03 bad data) instead of silence.
 */
export class ModbusFrameError extends PlantgateError {
  readonly code: ModbusFrameErrorCode;
  readonly functionCode: number | undefined;
  readonly exceptionCode: number;
  constructor(
    code: ModbusFrameErrorCode,
    message: string,
    options: { functionCode?: number; exceptionCode?: number } = {},
  ) {
    super(code === 'UNSUPPORTED_FUNCTION' ? 'UNSUPPORTED_FUNCTION' : 'PROTOCOL_VIOLATION', message);
    this.code = code;
    this.functionCode = options.functionCode;
    this.exceptionCode = options.exceptionCode ?? (code === 'UNSUPPORTED_FUNCTION' ? 0x01 : 0x03);
  }
}

function badPdu(fc: number, message: string, exceptionCode = 0x03): never {
  throw new ModbusFrameError('BAD_PDU', `FC${fc}: ${message}`, { functionCode: fc, exceptionCode });
}

function mismatch(fc: number, message: string): never {
  throw new ModbusFrameError('RESPONSE_MISMATCH', `FC${fc} response: ${message}`, { functionCode: fc });
}

function unsupported(fc: number, message = `function code ${fc} (0x${hex2(fc)}) is not supported`): never {
  throw new ModbusFrameError('UNSUPPORTED_FUNCTION', message, { functionCode: fc, exceptionCode: 0x01 });
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

// ---------------------------------------------------------------------------------------------
// Frames and streaming reassembly

/** One ADU as it came off the wire. */
export interface Frame {
  transactionId: number;
  unitId: number;
  /** pdu[0] */
  functionCode: number;
  /**
   * Function code + data, length = MBAP length - 1. A view into the pushed chunk, or a fresh
   * buffer when the frame straddled chunks; never a buffer the decoder reuses. Copy it if the
   * chunk's owner may overwrite it.
   */
  pdu: Buffer;
}

/** Why the header at buf[off..off+avail) is refused, or null while it is (so far) acceptable. */
function headerError(buf: Buffer, off: number, avail: number): ModbusFrameError | null {
  if (avail >= 4) {
    const protocolId = (buf[off + 2] << 8) | buf[off + 3];
    if (protocolId !== 0) {
      return new ModbusFrameError('BAD_PROTOCOL_ID', `MBAP protocol id is ${protocolId}, must be 0 (Modbus)`);
    }
  }
  if (avail >= 6) {
    const length = (buf[off + 4] << 8) | buf[off + 5];
    if (length < MIN_MBAP_LENGTH_FIELD || length > MAX_MBAP_LENGTH_FIELD) {
      return new ModbusFrameError(
        'BAD_LENGTH',
        `MBAP length is ${length}, must be ${MIN_MBAP_LENGTH_FIELD}..${MAX_MBAP_LENGTH_FIELD}`,
      );
    }
  }
  return null;
}

/**
 * Streaming reassembly of MBAP frames across TCP segments (and many frames in one segment).
 * push() calls onFrame for each complete frame, in order. After the first framing error
 * (protocol id != 0, length < 2 or > 254) it calls onError once and ignores all later input:
 * the stream cannot be resynchronised, so the connection is to be closed.
 * Bounded: never buffers more than one max ADU (260 bytes) of partial input.
 */
export class FrameDecoder {
  private readonly onFrame: (frame: Frame) => void;
  private readonly onError: (err: ModbusFrameError) => void;
  // Bytes of a frame that started in an earlier chunk; preallocated once per connection.
  private readonly partial: Buffer = Buffer.allocUnsafe(MAX_ADU_LENGTH);
  private partialLength = 0;
  private isFailed = false;

  constructor(onFrame: (frame: Frame) => void, onError: (err: ModbusFrameError) => void) {
    this.onFrame = onFrame;
    this.onError = onError;
  }

  get failed(): boolean {
    return this.isFailed;
  }

  /** Bytes held of an incomplete frame (0..259). */
  get pendingBytes(): number {
    return this.partialLength;
  }

  push(chunk: Buffer): void {
    if (this.isFailed) return;
    const end = chunk.length;
    let off = 0;
    if (this.partialLength > 0) {
      off = this.continuePartial(chunk);
      if (off < 0) return; // failed, or the chunk was used up inside the straddling frame
    }
    // Common path: whole frames inside this chunk are emitted as views, no copying.
    while (end - off >= MBAP_HEADER_LENGTH) {
      const err = headerError(chunk, off, MBAP_HEADER_LENGTH);
      if (err !== null) return this.fail(err);
      const total = 6 + ((chunk[off + 4] << 8) | chunk[off + 5]);
      if (end - off < total) break;
      const transactionId = (chunk[off] << 8) | chunk[off + 1];
      if (!this.emit(transactionId, chunk[off + 6], chunk.subarray(off + MBAP_HEADER_LENGTH, off + total))) return;
      off += total;
    }
    if (off < end) {
      const rest = end - off;
      const err = headerError(chunk, off, rest);
      if (err !== null) return this.fail(err);
      chunk.copy(this.partial, 0, off, end);
      this.partialLength = rest;
    }
  }

  /** Feeds the straddling frame; returns the offset in chunk after it, or -1 to stop. */
  private continuePartial(chunk: Buffer): number {
    const partial = this.partial;
    let off = 0;
    if (this.partialLength < 6) {
      const take = Math.min(6 - this.partialLength, chunk.length);
      chunk.copy(partial, this.partialLength, 0, take);
      this.partialLength += take;
      off = take;
      const err = headerError(partial, 0, this.partialLength);
      if (err !== null) {
        this.fail(err);
        return -1;
      }
      if (this.partialLength < 6) return -1;
    }
    const total = 6 + ((partial[4] << 8) | partial[5]);
    const take = Math.min(total - this.partialLength, chunk.length - off);
    chunk.copy(partial, this.partialLength, off, off + take);
    this.partialLength += take;
    off += take;
    if (this.partialLength < total) return -1;
    this.partialLength = 0;
    // A fresh copy: the partial buffer is reused for the next straddling frame, and the consumer
    // may hold this pdu across an await (audit before forward).
    const pdu = Buffer.allocUnsafe(total - MBAP_HEADER_LENGTH);
    partial.copy(pdu, 0, MBAP_HEADER_LENGTH, total);
    if (!this.emit((partial[0] << 8) | partial[1], partial[6], pdu)) return -1;
    return off;
  }

  private emit(transactionId: number, unitId: number, pdu: Buffer): boolean {
    try {
      this.onFrame({ transactionId, unitId, functionCode: pdu[0], pdu });
      return true;
    } catch (err) {
      // The rest of the chunk was not consumed, so the stream is out of step: treat as closed.
      this.isFailed = true;
      this.partialLength = 0;
      throw err;
    }
  }

  private fail(err: ModbusFrameError): void {
    this.isFailed = true;
    this.partialLength = 0;
    this.onError(err);
  }
}

/** Writes the MBAP header + pdu into one new Buffer (allocation of exactly 7+pdu.length). */
export function encodeFrame(transactionId: number, unitId: number, pdu: Buffer): Buffer {
  if (!isU16(transactionId)) {
    throw new ModbusFrameError('BAD_LENGTH', `transaction id ${transactionId} is not 0..65535`);
  }
  if (!isU8(unitId)) throw new ModbusFrameError('BAD_LENGTH', `unit id ${unitId} is not 0..255`);
  checkPduLength(pdu);
  const out = Buffer.allocUnsafe(MBAP_HEADER_LENGTH + pdu.length);
  out[0] = transactionId >>> 8;
  out[1] = transactionId & 0xff;
  out[2] = 0;
  out[3] = 0;
  const length = pdu.length + 1;
  out[4] = length >>> 8;
  out[5] = length & 0xff;
  out[6] = unitId;
  pdu.copy(out, MBAP_HEADER_LENGTH);
  return out;
}

function checkPduLength(pdu: Buffer): void {
  if (pdu.length === 0) throw new ModbusFrameError('BAD_PDU', 'empty PDU (no function code)');
  if (pdu.length > MAX_PDU_LENGTH) {
    throw new ModbusFrameError('PDU_TOO_LONG', `PDU is ${pdu.length} bytes, max ${MAX_PDU_LENGTH}`, {
      functionCode: pdu[0],
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

/** Decoded request PDUs (discriminated on `fc`). Addresses are 0-based protocol addresses. */
export type Request =
  | { fc: 1 | 2 | 3 | 4; address: number; quantity: number }
  | { fc: 5; address: number; value: boolean } // 0xFF00 / 0x0000 only, else BAD_PDU
  | { fc: 6; address: number; value: number }
  | { fc: 15; address: number; quantity: number; values: boolean[] }
  | { fc: 16; address: number; quantity: number; values: number[] }
  | { fc: 22; address: number; andMask: number; orMask: number }
  | {
      fc: 23;
      readAddress: number;
      readQuantity: number;
      writeAddress: number;
      writeQuantity: number;
      values: number[];
    }
  | { fc: 24; address: number } // read FIFO queue
  | { fc: 7 | 11 | 12 | 17 } // no data
  /** data: the bytes after the sub-function (a copy). */
  | { fc: 8; subFunction: number; data: Buffer }
  /** data: the sub-requests after the byte count (a copy); the byte count is implied. */
  | { fc: 20 | 21; data: Buffer } // file records: validated byte counts, data kept raw
  /** data: the bytes after the MEI type (a copy). */
  | { fc: 43; meiType: number; data: Buffer };

/** Diagnostics (FC8) sub-functions of v1.1b3 §6.8.1; the rest are reserved. */
export const DIAGNOSTIC_SUB_FUNCTIONS: ReadonlySet<number> = new Set([
  0x00, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x14,
]);
const MEI_CANOPEN = 13;
const MEI_READ_DEVICE_ID = 14;

function expectLength(pdu: Buffer, fc: number, length: number): void {
  if (pdu.length !== length) badPdu(fc, `PDU is ${pdu.length} bytes, must be exactly ${length}`);
}

function checkQuantity(fc: number, what: string, quantity: number, max: number): void {
  if (quantity < 1 || quantity > max) badPdu(fc, `${what} ${quantity} out of range 1..${max}`);
}

function checkSpan(fc: number, address: number, quantity: number): void {
  // Protocol addresses are 0..65535; a range that runs past the end is an address error (0x02).
  if (address + quantity > 0x10000) {
    badPdu(fc, `address ${address} + quantity ${quantity} runs past 65535`, 0x02);
  }
}

function readBits(pdu: Buffer, start: number, count: number): boolean[] {
  const values = new Array<boolean>(count);
  for (let i = 0; i < count; i++) values[i] = (pdu[start + (i >>> 3)] & (1 << (i & 7))) !== 0;
  return values;
}

function readRegisters(pdu: Buffer, start: number, count: number): number[] {
  const values = new Array<number>(count);
  for (let i = 0; i < count; i++) values[i] = (pdu[start + 2 * i] << 8) | pdu[start + 2 * i + 1];
  return values;
}

function u16At(pdu: Buffer, off: number): number {
  return (pdu[off] << 8) | pdu[off + 1];
}

/**
 * Strictly validates a request PDU: quantity limits per FC, byte count consistent with quantity
 * and with the PDU length, address+quantity <= 65536, exact PDU length.
 * Throws ModbusFrameError (BAD_PDU / PDU_TOO_LONG / UNSUPPORTED_FUNCTION).
 */
export function decodeRequest(pdu: Buffer): Request {
  checkPduLength(pdu);
  const len = pdu.length;
  const fc = pdu[0];
  switch (fc) {
    case 1:
    case 2:
    case 3:
    case 4: {
      expectLength(pdu, fc, 5);
      const address = u16At(pdu, 1);
      const quantity = u16At(pdu, 3);
      checkQuantity(fc, 'quantity', quantity, fc <= 2 ? MAX_READ_BITS : MAX_READ_REGISTERS);
      checkSpan(fc, address, quantity);
      return { fc: fc as 1 | 2 | 3 | 4, address, quantity };
    }
    case 5: {
      expectLength(pdu, fc, 5);
      const raw = u16At(pdu, 3);
      if (raw !== COIL_ON && raw !== COIL_OFF) {
        badPdu(fc, `coil value 0x${raw.toString(16).padStart(4, '0')} must be 0xFF00 (on) or 0x0000 (off)`);
      }
      return { fc: 5, address: u16At(pdu, 1), value: raw === COIL_ON };
    }
    case 6:
      expectLength(pdu, fc, 5);
      return { fc: 6, address: u16At(pdu, 1), value: u16At(pdu, 3) };
    case 7:
    case 11:
    case 12:
    case 17:
      expectLength(pdu, fc, 1);
      return { fc: fc as 7 | 11 | 12 | 17 };
    case 8: {
      // Sub-function (2) + data (N × 2 bytes, v1.1b3 §6.8).
      if (len < 5 || (len - 3) % 2 !== 0) {
        badPdu(fc, `PDU is ${len} bytes, must be 3 + a non-zero even number of data bytes`);
      }
      const subFunction = u16At(pdu, 1);
      checkDiagnosticRequest(subFunction, pdu);
      return { fc: 8, subFunction, data: Buffer.from(pdu.subarray(3)) };
    }
    case 15: {
      if (len < 7) badPdu(fc, `PDU is ${len} bytes, at least 7 needed`);
      const address = u16At(pdu, 1);
      const quantity = u16At(pdu, 3);
      checkQuantity(fc, 'quantity', quantity, MAX_WRITE_COILS);
      checkSpan(fc, address, quantity);
      const byteCount = pdu[5];
      const expected = (quantity + 7) >>> 3;
      if (byteCount !== expected) badPdu(fc, `byte count ${byteCount} does not match quantity ${quantity} (${expected})`);
      if (len !== 6 + byteCount) badPdu(fc, `PDU is ${len} bytes, byte count ${byteCount} needs ${6 + byteCount}`);
      return { fc: 15, address, quantity, values: readBits(pdu, 6, quantity) };
    }
    case 16: {
      if (len < 8) badPdu(fc, `PDU is ${len} bytes, at least 8 needed`);
      const address = u16At(pdu, 1);
      const quantity = u16At(pdu, 3);
      checkQuantity(fc, 'quantity', quantity, MAX_WRITE_REGISTERS);
      checkSpan(fc, address, quantity);
      const byteCount = pdu[5];
      if (byteCount !== 2 * quantity) badPdu(fc, `byte count ${byteCount} does not match quantity ${quantity} (${2 * quantity})`);
      if (len !== 6 + byteCount) badPdu(fc, `PDU is ${len} bytes, byte count ${byteCount} needs ${6 + byteCount}`);
      return { fc: 16, address, quantity, values: readRegisters(pdu, 6, quantity) };
    }
    case 20:
      checkReadFileRecordRequest(pdu);
      return { fc: 20, data: Buffer.from(pdu.subarray(2)) };
    case 21:
      checkWriteFileRecordRequest(pdu);
      return { fc: 21, data: Buffer.from(pdu.subarray(2)) };
    case 22:
      expectLength(pdu, fc, 7);
      return { fc: 22, address: u16At(pdu, 1), andMask: u16At(pdu, 3), orMask: u16At(pdu, 5) };
    case 23: {
      if (len < 12) badPdu(fc, `PDU is ${len} bytes, at least 12 needed`);
      const readAddress = u16At(pdu, 1);
      const readQuantity = u16At(pdu, 3);
      const writeAddress = u16At(pdu, 5);
      const writeQuantity = u16At(pdu, 7);
      checkQuantity(fc, 'read quantity', readQuantity, MAX_RW_READ_REGISTERS);
      checkQuantity(fc, 'write quantity', writeQuantity, MAX_RW_WRITE_REGISTERS);
      checkSpan(fc, readAddress, readQuantity);
      checkSpan(fc, writeAddress, writeQuantity);
      const byteCount = pdu[9];
      if (byteCount !== 2 * writeQuantity) {
        badPdu(fc, `write byte count ${byteCount} does not match write quantity ${writeQuantity} (${2 * writeQuantity})`);
      }
      if (len !== 10 + byteCount) badPdu(fc, `PDU is ${len} bytes, byte count ${byteCount} needs ${10 + byteCount}`);
      return {
        fc: 23,
        readAddress,
        readQuantity,
        writeAddress,
        writeQuantity,
        values: readRegisters(pdu, 10, writeQuantity),
      };
    }
    case 24:
      expectLength(pdu, fc, 3);
      return { fc: 24, address: u16At(pdu, 1) };
    case 43: {
      if (len < 2) badPdu(fc, 'MEI type missing');
      const meiType = pdu[1];
      if (meiType === MEI_READ_DEVICE_ID) {
        // MEI type, Read Device ID code (1 basic, 2 regular, 3 extended, 4 one object), object id.
        expectLength(pdu, fc, 4);
        if (pdu[2] < 1 || pdu[2] > 4) badPdu(fc, `Read Device ID code ${pdu[2]} must be 1..4`);
      } else if (meiType !== MEI_CANOPEN) {
        unsupported(fc, `FC43 MEI type ${meiType} is not supported (13 CANopen, 14 Read Device ID)`);
      }
      return { fc: 43, meiType, data: Buffer.from(pdu.subarray(2)) };
    }
    default:
      return unsupported(fc);
  }
}

function checkDiagnosticRequest(subFunction: number, pdu: Buffer): void {
  if (!DIAGNOSTIC_SUB_FUNCTIONS.has(subFunction)) {
    unsupported(8, `FC8 sub-function ${subFunction} is reserved / not supported`);
  }
  if (subFunction === 0x00) return; // Return Query Data: any N × 2 bytes, echoed back
  if (pdu.length !== 5) badPdu(8, `sub-function ${subFunction} takes exactly 2 data bytes, got ${pdu.length - 3}`);
  const data = u16At(pdu, 3);
  if (subFunction === 0x01) {
    if (data !== 0x0000 && data !== 0xff00) badPdu(8, `restart option 0x${data.toString(16)} must be 0x0000 or 0xFF00`);
  } else if (subFunction === 0x03) {
    if (pdu[4] !== 0) badPdu(8, 'change ASCII delimiter takes CHAR 0x00');
  } else if (data !== 0) {
    badPdu(8, `sub-function ${subFunction} takes data 0x0000, got 0x${data.toString(16)}`);
  }
}

/** One file record reference of FC20 / FC21. */
export interface FileRecordRef {
  fileNumber: number;
  recordNumber: number;
  recordLength: number;
}

function checkFileRecordHeader(fc: number, pdu: Buffer, off: number): number {
  if (pdu[off] !== FILE_REFERENCE_TYPE) badPdu(fc, `file reference type ${pdu[off]} must be 6`);
  const recordNumber = u16At(pdu, off + 3);
  if (recordNumber > MAX_FILE_RECORD_NUMBER) badPdu(fc, `record number ${recordNumber} exceeds 9999`, 0x02);
  const recordLength = u16At(pdu, off + 5);
  if (recordLength === 0) badPdu(fc, 'record length 0');
  return recordLength;
}

function checkReadFileRecordRequest(pdu: Buffer): void {
  const fc = 20;
  if (pdu.length < 2) badPdu(fc, 'byte count missing');
  const byteCount = pdu[1];
  if (byteCount < 7 || byteCount > 0xf5 || byteCount % 7 !== 0) {
    badPdu(fc, `byte count ${byteCount} must be a multiple of 7 in 7..245`);
  }
  if (pdu.length !== 2 + byteCount) badPdu(fc, `PDU is ${pdu.length} bytes, byte count ${byteCount} needs ${2 + byteCount}`);
  // The answer must fit a PDU too (v1.1b3 §6.14): 2 + Σ(2 + 2 × record length) <= 253.
  let responseLength = 2;
  for (let off = 2; off < pdu.length; off += 7) {
    responseLength += 2 + 2 * checkFileRecordHeader(fc, pdu, off);
  }
  if (responseLength > MAX_PDU_LENGTH) badPdu(fc, `the response would be ${responseLength} bytes, max ${MAX_PDU_LENGTH}`);
}

function checkWriteFileRecordRequest(pdu: Buffer): void {
  const fc = 21;
  if (pdu.length < 2) badPdu(fc, 'request data length missing');
  const byteCount = pdu[1];
  if (byteCount < 9 || byteCount > 0xfb) badPdu(fc, `request data length ${byteCount} must be 9..251`);
  if (pdu.length !== 2 + byteCount) badPdu(fc, `PDU is ${pdu.length} bytes, byte count ${byteCount} needs ${2 + byteCount}`);
  let off = 2;
  while (off < pdu.length) {
    if (pdu.length - off < 7) badPdu(fc, `sub-request at byte ${off} is truncated`);
    const recordLength = checkFileRecordHeader(fc, pdu, off);
    off += 7 + 2 * recordLength;
    if (off > pdu.length) badPdu(fc, `record data of ${recordLength} registers runs past the PDU`);
  }
}

/** The file records an FC20 / FC21 request references (data as in Request). */
export function fileRecordRefs(req: { fc: 20 | 21; data: Buffer }): FileRecordRef[] {
  const refs: FileRecordRef[] = [];
  const data = req.data;
  let off = 0;
  while (off + 7 <= data.length) {
    const ref = { fileNumber: u16At(data, off + 1), recordNumber: u16At(data, off + 3), recordLength: u16At(data, off + 5) };
    refs.push(ref);
    off += req.fc === 20 ? 7 : 7 + 2 * ref.recordLength;
  }
  return refs;
}

function isU16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}
function isU8(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;
}
function u16(fc: number, field: string, v: unknown): number {
  if (!isU16(v)) badPdu(fc, `${field} ${String(v)} is not an integer 0..65535`);
  return v;
}
function u8(fc: number, field: string, v: unknown): number {
  if (!isU8(v)) badPdu(fc, `${field} ${String(v)} is not an integer 0..255`);
  return v;
}
function checkBytes(fc: number, field: string, v: unknown): Buffer {
  if (!Buffer.isBuffer(v)) badPdu(fc, `${field} must be a Buffer`);
  if (v.length > MAX_PDU_LENGTH) {
    throw new ModbusFrameError('PDU_TOO_LONG', `FC${fc}: ${field} is ${v.length} bytes`, { functionCode: fc });
  }
  return v;
}
function checkArray(fc: number, field: string, v: unknown, length: number): void {
  if (!Array.isArray(v)) badPdu(fc, `${field} must be an array`);
  if (v.length !== length) badPdu(fc, `${field} has ${v.length} entries, quantity says ${length}`);
}

function writeBits(out: Buffer, start: number, values: readonly boolean[]): void {
  out.fill(0, start, start + ((values.length + 7) >>> 3));
  for (let i = 0; i < values.length; i++) if (values[i] === true) out[start + (i >>> 3)] |= 1 << (i & 7);
}

function writeRegisters(fc: number, out: Buffer, start: number, values: readonly number[]): void {
  for (let i = 0; i < values.length; i++) out.writeUInt16BE(u16(fc, `values[${i}]`, values[i]), start + 2 * i);
}

/** Encodes a request PDU. Throws ModbusFrameError for anything decodeRequest would refuse. */
export function encodeRequest(req: Request): Buffer {
  const out = buildRequest(req);
  // What we send must be exactly what we would accept: the decoder is the single definition
  // of a valid request (quantity limits, spans, sub-functions, file record layout).
  decodeRequest(out);
  return out;
}

function buildRequest(req: Request): Buffer {
  const fc = req.fc;
  switch (req.fc) {
    case 1:
    case 2:
    case 3:
    case 4:
      return pdu5(fc, u16(fc, 'address', req.address), u16(fc, 'quantity', req.quantity));
    case 5:
      if (typeof req.value !== 'boolean') badPdu(fc, 'value must be a boolean');
      return pdu5(fc, u16(fc, 'address', req.address), req.value ? COIL_ON : COIL_OFF);
    case 6:
      return pdu5(fc, u16(fc, 'address', req.address), u16(fc, 'value', req.value));
    case 7:
    case 11:
    case 12:
    case 17:
      return Buffer.from([fc]);
    case 8: {
      const data = checkBytes(fc, 'data', req.data);
      const out = Buffer.allocUnsafe(3 + data.length);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'subFunction', req.subFunction), 1);
      data.copy(out, 3);
      return out;
    }
    case 15: {
      const quantity = u16(fc, 'quantity', req.quantity);
      checkArray(fc, 'values', req.values, quantity);
      const byteCount = (quantity + 7) >>> 3;
      if (byteCount > 0xff) badPdu(fc, `quantity ${quantity} out of range 1..${MAX_WRITE_COILS}`);
      const out = Buffer.allocUnsafe(6 + byteCount);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'address', req.address), 1);
      out.writeUInt16BE(quantity, 3);
      out[5] = byteCount;
      writeBits(out, 6, req.values);
      return out;
    }
    case 16: {
      const quantity = u16(fc, 'quantity', req.quantity);
      checkArray(fc, 'values', req.values, quantity);
      if (quantity > MAX_WRITE_REGISTERS) badPdu(fc, `quantity ${quantity} out of range 1..${MAX_WRITE_REGISTERS}`);
      const out = Buffer.allocUnsafe(6 + 2 * quantity);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'address', req.address), 1);
      out.writeUInt16BE(quantity, 3);
      out[5] = 2 * quantity;
      writeRegisters(fc, out, 6, req.values);
      return out;
    }
    case 20:
    case 21: {
      const data = checkBytes(fc, 'data', req.data);
      if (data.length > 0xff) badPdu(fc, `data is ${data.length} bytes, max 255`);
      const out = Buffer.allocUnsafe(2 + data.length);
      out[0] = fc;
      out[1] = data.length;
      data.copy(out, 2);
      return out;
    }
    case 22: {
      const out = Buffer.allocUnsafe(7);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'address', req.address), 1);
      out.writeUInt16BE(u16(fc, 'andMask', req.andMask), 3);
      out.writeUInt16BE(u16(fc, 'orMask', req.orMask), 5);
      return out;
    }
    case 23: {
      const writeQuantity = u16(fc, 'writeQuantity', req.writeQuantity);
      checkArray(fc, 'values', req.values, writeQuantity);
      if (writeQuantity > MAX_RW_WRITE_REGISTERS) {
        badPdu(fc, `write quantity ${writeQuantity} out of range 1..${MAX_RW_WRITE_REGISTERS}`);
      }
      const out = Buffer.allocUnsafe(10 + 2 * writeQuantity);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'readAddress', req.readAddress), 1);
      out.writeUInt16BE(u16(fc, 'readQuantity', req.readQuantity), 3);
      out.writeUInt16BE(u16(fc, 'writeAddress', req.writeAddress), 5);
      out.writeUInt16BE(writeQuantity, 7);
      out[9] = 2 * writeQuantity;
      writeRegisters(fc, out, 10, req.values);
      return out;
    }
    case 24: {
      const out = Buffer.allocUnsafe(3);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'address', req.address), 1);
      return out;
    }
    case 43: {
      const data = checkBytes(fc, 'data', req.data);
      const out = Buffer.allocUnsafe(2 + data.length);
      out[0] = fc;
      out[1] = u8(fc, 'meiType', req.meiType);
      data.copy(out, 2);
      return out;
    }
    default:
      return unsupported(typeof fc === 'number' ? fc : -1, `cannot encode a request with function code ${String(fc)}`);
  }
}

function pdu5(fc: number, a: number, b: number): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = fc;
  out[1] = a >>> 8;
  out[2] = a & 0xff;
  out[3] = b >>> 8;
  out[4] = b & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Responses

/** Responses. Exception response = fc | 0x80 + exception code. */
export type Response =
  | { fc: 1 | 2; values: boolean[] } // byteCount implied
  | { fc: 3 | 4 | 23; values: number[] }
  | { fc: 5; address: number; value: boolean }
  | { fc: 6; address: number; value: number }
  | { fc: 15 | 16; address: number; quantity: number }
  | { fc: 22; address: number; andMask: number; orMask: number }
  /** Other FCs (7, 8, 11, 12, 17, 20, 21, 24, 43): the whole PDU (function code included), a copy. */
  | { fc: number; raw: Buffer }
  /** fc is the request's function code; encodeResponse sets the 0x80 bit (and accepts it set). */
  | { fc: number; exception: number };

export type ExceptionResponse = { fc: number; exception: number };
export type RawResponse = { fc: number; raw: Buffer };

export function isExceptionResponse(res: Response): res is ExceptionResponse {
  return 'exception' in res;
}
export function isRawResponse(res: Response): res is RawResponse {
  return 'raw' in res;
}

/**
 * Validates a response PDU against the request it answers: same fc or fc|0x80; for reads the
 * byte count must equal what the request's quantity implies; for echo responses (5, 6, 15, 16,
 * 22, 21, and the echoing FC8 sub-functions) the echoed fields must match the request.
 * Throws ModbusFrameError('RESPONSE_MISMATCH' or 'BAD_PDU' / 'PDU_TOO_LONG'). Allocates nothing
 * on success: the proxy calls this on every PLC answer.
 */
export function validateResponse(request: Request, pdu: Buffer): void {
  checkPduLength(pdu);
  const len = pdu.length;
  const fc = request.fc;
  if (pdu[0] === (fc | 0x80)) {
    if (len !== 2) badPdu(fc, `exception response is ${len} bytes, must be 2`);
    // Any non-zero code is passed on: vendors define their own beyond the spec's list.
    if (pdu[1] === 0) badPdu(fc, 'exception code 0');
    return;
  }
  if (pdu[0] !== fc) mismatch(fc, `function code ${pdu[0]} answers neither ${fc} nor its exception ${fc | 0x80}`);
  switch (request.fc) {
    case 1:
    case 2:
      return checkReadByteCount(pdu, fc, (request.quantity + 7) >>> 3);
    case 3:
    case 4:
      return checkReadByteCount(pdu, fc, 2 * request.quantity);
    case 23:
      return checkReadByteCount(pdu, fc, 2 * request.readQuantity);
    case 5: {
      expectLength(pdu, fc, 5);
      const raw = u16At(pdu, 3);
      if (raw !== COIL_ON && raw !== COIL_OFF) badPdu(fc, `coil value 0x${raw.toString(16)} must be 0xFF00 or 0x0000`);
      if (u16At(pdu, 1) !== request.address) mismatch(fc, `echoed address ${u16At(pdu, 1)} != ${request.address}`);
      if ((raw === COIL_ON) !== request.value) mismatch(fc, 'echoed coil value differs from the request');
      return;
    }
    case 6:
      expectLength(pdu, fc, 5);
      if (u16At(pdu, 1) !== request.address) mismatch(fc, `echoed address ${u16At(pdu, 1)} != ${request.address}`);
      if (u16At(pdu, 3) !== request.value) mismatch(fc, `echoed value ${u16At(pdu, 3)} != ${request.value}`);
      return;
    case 15:
    case 16:
      expectLength(pdu, fc, 5);
      if (u16At(pdu, 1) !== request.address) mismatch(fc, `echoed address ${u16At(pdu, 1)} != ${request.address}`);
      if (u16At(pdu, 3) !== request.quantity) mismatch(fc, `echoed quantity ${u16At(pdu, 3)} != ${request.quantity}`);
      return;
    case 22:
      expectLength(pdu, fc, 7);
      if (u16At(pdu, 1) !== request.address || u16At(pdu, 3) !== request.andMask || u16At(pdu, 5) !== request.orMask) {
        mismatch(fc, 'echoed address / masks differ from the request');
      }
      return;
    case 7:
      return expectLength(pdu, fc, 2);
    case 11:
      return expectLength(pdu, fc, 5);
    case 12: {
      // byte count, status (2), event count (2), message count (2), 0..64 events.
      if (len < 8) badPdu(fc, `PDU is ${len} bytes, at least 8 needed`);
      const byteCount = pdu[1];
      if (byteCount !== len - 2) badPdu(fc, `byte count ${byteCount} != ${len - 2} bytes present`);
      if (byteCount > 6 + 64) badPdu(fc, `byte count ${byteCount} exceeds 6 + 64 events`);
      return;
    }
    case 17: {
      if (len < 3) badPdu(fc, `PDU is ${len} bytes, at least 3 needed`);
      if (pdu[1] !== len - 2) badPdu(fc, `byte count ${pdu[1]} != ${len - 2} bytes present`);
      return;
    }
    case 8:
      return checkDiagnosticResponse(request, pdu);
    case 20:
      return checkReadFileRecordResponse(request, pdu);
    case 21:
      if (pdu[1] !== request.data.length || len !== 2 + request.data.length || !pdu.subarray(2).equals(request.data)) {
        if (len < 2 || pdu[1] !== len - 2) badPdu(fc, 'response data length does not match the bytes present');
        mismatch(fc, 'a write file record response must echo the request');
      }
      return;
    case 24: {
      if (len < 5) badPdu(fc, `PDU is ${len} bytes, at least 5 needed`);
      const byteCount = u16At(pdu, 1);
      const fifoCount = u16At(pdu, 3);
      if (byteCount !== len - 3) badPdu(fc, `byte count ${byteCount} != ${len - 3} bytes present`);
      if (fifoCount > MAX_FIFO_COUNT) badPdu(fc, `FIFO count ${fifoCount} exceeds ${MAX_FIFO_COUNT}`);
      if (byteCount !== 2 + 2 * fifoCount) badPdu(fc, `byte count ${byteCount} does not match FIFO count ${fifoCount}`);
      return;
    }
    case 43:
      return checkMeiResponse(request, pdu);
    default:
      // Only reachable with a request that did not come from decodeRequest: refuse, never pass.
      return unsupported((request as { fc: number }).fc);
  }
}

function checkReadByteCount(pdu: Buffer, fc: number, expected: number): void {
  if (pdu.length < 2) badPdu(fc, 'byte count missing');
  const byteCount = pdu[1];
  if (pdu.length !== 2 + byteCount) badPdu(fc, `byte count ${byteCount} but ${pdu.length - 2} data bytes present`);
  if (byteCount !== expected) mismatch(fc, `byte count ${byteCount}, the request's quantity implies ${expected}`);
}

function checkDiagnosticResponse(request: { fc: 8; subFunction: number; data: Buffer }, pdu: Buffer): void {
  const fc = 8;
  const len = pdu.length;
  if (len < 5 || (len - 3) % 2 !== 0) badPdu(fc, `PDU is ${len} bytes, must be 3 + a non-zero even number`);
  const sub = u16At(pdu, 1);
  if (sub !== request.subFunction) mismatch(fc, `sub-function ${sub} answers ${request.subFunction}`);
  switch (sub) {
    case 0x00:
    case 0x01:
    case 0x03:
    case 0x0a:
    case 0x14:
      // These sub-functions echo the request.
      if (!pdu.subarray(3).equals(request.data)) mismatch(fc, `sub-function ${sub} must echo the request data`);
      return;
    case 0x04:
      mismatch(fc, 'force listen only mode has no response');
      return;
    default:
      expectLength(pdu, fc, 5); // a 16-bit register or counter
  }
}

function checkReadFileRecordResponse(request: { data: Buffer }, pdu: Buffer): void {
  const fc = 20;
  const len = pdu.length;
  if (len < 2) badPdu(fc, 'response data length missing');
  if (pdu[1] !== len - 2) badPdu(fc, `response data length ${pdu[1]} != ${len - 2} bytes present`);
  let off = 2;
  let reqOff = 0;
  while (off < len) {
    const fileResponseLength = pdu[off];
    if (fileResponseLength < 1 || off + 1 + fileResponseLength > len) badPdu(fc, `sub-response at byte ${off} is truncated`);
    if (pdu[off + 1] !== FILE_REFERENCE_TYPE) badPdu(fc, `file reference type ${pdu[off + 1]} must be 6`);
    if (reqOff >= request.data.length) mismatch(fc, 'more sub-responses than sub-requests');
    const recordLength = u16At(request.data, reqOff + 5);
    if (fileResponseLength !== 1 + 2 * recordLength) {
      mismatch(fc, `sub-response length ${fileResponseLength}, the request's record length implies ${1 + 2 * recordLength}`);
    }
    off += 1 + fileResponseLength;
    reqOff += 7;
  }
  if (reqOff !== request.data.length) mismatch(fc, 'fewer sub-responses than sub-requests');
}

function checkMeiResponse(request: { fc: 43; meiType: number; data: Buffer }, pdu: Buffer): void {
  const fc = 43;
  const len = pdu.length;
  if (len < 2) badPdu(fc, 'MEI type missing');
  if (pdu[1] !== request.meiType) mismatch(fc, `MEI type ${pdu[1]} answers ${request.meiType}`);
  if (request.meiType !== MEI_READ_DEVICE_ID) return;
  // Read Device ID code, conformity level, more follows, next object id, number of objects, objects.
  if (len < 7) badPdu(fc, `Read Device ID response is ${len} bytes, at least 7 needed`);
  if (pdu[2] !== request.data[0]) mismatch(fc, `Read Device ID code ${pdu[2]} answers ${request.data[0]}`);
  const conformity = pdu[3] & 0x7f;
  if (conformity < 1 || conformity > 3) {
    badPdu(fc, `conformity level 0x${hex2(pdu[3])} is not 0x01..0x03 / 0x81..0x83`);
  }
  if (pdu[4] !== 0x00 && pdu[4] !== 0xff) badPdu(fc, `more follows 0x${hex2(pdu[4])} must be 0x00 or 0xFF`);
  const objects = pdu[6];
  // The spec's own "more follows" example (v1.1b3 §6.21) counts the objects of all responses,
  // and devices copy it: with more follows set, fewer objects than announced are accepted.
  const mayBeShort = pdu[4] === 0xff;
  let off = 7;
  for (let i = 0; i < objects; i++) {
    if (off === len && mayBeShort) break;
    if (off + 2 > len) badPdu(fc, `object ${i} of ${objects} is missing`);
    off += 2 + pdu[off + 1];
    if (off > len) badPdu(fc, `object ${i} runs past the PDU`);
  }
  if (off !== len) badPdu(fc, `${len - off} bytes after the last object`);
}

/** validateResponse, then the decoded answer. Exception responses carry the request's fc. */
export function decodeResponse(request: Request, pdu: Buffer): Response {
  validateResponse(request, pdu);
  if (pdu[0] & 0x80) return { fc: request.fc, exception: pdu[1] };
  switch (request.fc) {
    case 1:
    case 2:
      return { fc: request.fc, values: readBits(pdu, 2, request.quantity) };
    case 3:
    case 4:
      return { fc: request.fc, values: readRegisters(pdu, 2, request.quantity) };
    case 23:
      return { fc: 23, values: readRegisters(pdu, 2, request.readQuantity) };
    case 5:
      return { fc: 5, address: u16At(pdu, 1), value: u16At(pdu, 3) === COIL_ON };
    case 6:
      return { fc: 6, address: u16At(pdu, 1), value: u16At(pdu, 3) };
    case 15:
    case 16:
      return { fc: request.fc, address: u16At(pdu, 1), quantity: u16At(pdu, 3) };
    case 22:
      return { fc: 22, address: u16At(pdu, 1), andMask: u16At(pdu, 3), orMask: u16At(pdu, 5) };
    default:
      return { fc: request.fc, raw: Buffer.from(pdu) };
  }
}

/** Encodes a response PDU (the simulator's answers, the gateway's own exceptions). */
export function encodeResponse(res: Response): Buffer {
  if (isExceptionResponse(res)) return exceptionPdu(res.fc & 0x7f, res.exception);
  if (isRawResponse(res)) {
    const raw = checkBytes(res.fc, 'raw', res.raw);
    if (raw.length === 0 || raw[0] !== res.fc) badPdu(res.fc, 'raw PDU must start with its function code');
    return Buffer.from(raw);
  }
  const fc = res.fc;
  switch (fc) {
    case 1:
    case 2: {
      const values = (res as { values: boolean[] }).values;
      if (!Array.isArray(values) || values.length < 1 || values.length > MAX_READ_BITS) {
        badPdu(fc, `values must hold 1..${MAX_READ_BITS} bits`);
      }
      const byteCount = (values.length + 7) >>> 3;
      const out = Buffer.allocUnsafe(2 + byteCount);
      out[0] = fc;
      out[1] = byteCount;
      writeBits(out, 2, values);
      return out;
    }
    case 3:
    case 4:
    case 23: {
      const values = (res as { values: number[] }).values;
      if (!Array.isArray(values) || values.length < 1 || values.length > MAX_READ_REGISTERS) {
        badPdu(fc, `values must hold 1..${MAX_READ_REGISTERS} registers`);
      }
      const out = Buffer.allocUnsafe(2 + 2 * values.length);
      out[0] = fc;
      out[1] = 2 * values.length;
      writeRegisters(fc, out, 2, values);
      return out;
    }
    case 5: {
      const r = res as { address: number; value: boolean };
      if (typeof r.value !== 'boolean') badPdu(fc, 'value must be a boolean');
      return pdu5(fc, u16(fc, 'address', r.address), r.value ? COIL_ON : COIL_OFF);
    }
    case 6: {
      const r = res as { address: number; value: number };
      return pdu5(fc, u16(fc, 'address', r.address), u16(fc, 'value', r.value));
    }
    case 15:
    case 16: {
      const r = res as { address: number; quantity: number };
      return pdu5(fc, u16(fc, 'address', r.address), u16(fc, 'quantity', r.quantity));
    }
    case 22: {
      const r = res as { address: number; andMask: number; orMask: number };
      const out = Buffer.allocUnsafe(7);
      out[0] = fc;
      out.writeUInt16BE(u16(fc, 'address', r.address), 1);
      out.writeUInt16BE(u16(fc, 'andMask', r.andMask), 3);
      out.writeUInt16BE(u16(fc, 'orMask', r.orMask), 5);
      return out;
    }
    default:
      return unsupported(typeof fc === 'number' ? fc : -1, `cannot encode a response with function code ${String(fc)} without raw`);
  }
}

/** [fc | 0x80, exceptionCode]. */
export function exceptionPdu(functionCode: number, exceptionCode: number): Buffer {
  if (!Number.isInteger(functionCode) || functionCode < 1 || functionCode > 0x7f) {
    throw new ModbusFrameError('BAD_PDU', `function code ${functionCode} cannot carry an exception (1..127)`);
  }
  if (!Number.isInteger(exceptionCode) || exceptionCode < 1 || exceptionCode > 0xff) {
    throw new ModbusFrameError('BAD_PDU', `exception code ${exceptionCode} is not 1..255`, { functionCode });
  }
  const out = Buffer.allocUnsafe(2);
  out[0] = functionCode | 0x80;
  out[1] = exceptionCode;
  return out;
}
