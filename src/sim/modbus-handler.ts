// What a simulated PLC answers to one decoded Modbus request: reads and writes its data tables
// like a PLC with its memory map (exception 0x02 for any address the map does not have, and for a
// write touching a read-only register or coil), echoes diagnostics, identifies itself with the
// plant file's identity objects. Pure: no sockets, no framing; the codec does bytes.
import { ModbusException } from '../core/reasons.js';
import { MAX_PDU_LENGTH, type Request, type Response } from '../../protocols/modbus/codec.js';
import type { DeviceIdentity } from '../assets/plant.js';
import type { PlcTables } from './tables.js';

/** What a PLC whose plant file gives no `identity:` answers to Read Device Identification. */
export const DEVICE_IDENTITY = {
  vendor: 'plantgate',
  product: 'plantgate-sim',
  revision: '0.1.0',
} as const;

interface EncodedIdentity {
  /** Objects by id, encoded once (Latin-1); undefined where the device has none. */
  objects: (Buffer | undefined)[];
  /** 0x81, 0x82 or 0x83: the highest category present, stream and individual access. */
  conformity: number;
}

const MEI_DEVICE_ID = 0x0e;
/** Last object id of each category read as a stream: basic, regular, extended (v1.1b3 §6.21). */
const CATEGORY_END: Record<number, number> = { 1: 0x02, 2: 0x7f, 3: 0xff };

function encodeIdentity(identity: DeviceIdentity | undefined): EncodedIdentity {
  const list = identity?.objects ?? [
    { id: 0, value: DEVICE_IDENTITY.vendor },
    { id: 1, value: DEVICE_IDENTITY.product },
    { id: 2, value: DEVICE_IDENTITY.revision },
  ];
  const objects = new Array<Buffer | undefined>(256).fill(undefined);
  let top = 1;
  for (const o of list) {
    objects[o.id] = Buffer.from(o.value, 'latin1');
    top = Math.max(top, o.id >= 0x80 ? 3 : o.id >= 0x03 ? 2 : 1);
  }
  return { objects, conformity: 0x80 | top };
}

const encoded = new WeakMap<PlcTables, EncodedIdentity>();
function identityOf(t: PlcTables): EncodedIdentity {
  let e = encoded.get(t);
  if (e === undefined) encoded.set(t, (e = encodeIdentity(t.plc.identity)));
  return e;
}

function exception(fc: number, code: number): Response {
  return { fc, exception: code };
}

function readBits(bits: Uint8Array, address: number, quantity: number): boolean[] {
  const out = new Array<boolean>(quantity);
  for (let i = 0; i < quantity; i++) out[i] = bits[address + i] !== 0;
  return out;
}

function readRegisters(regs: Uint16Array, address: number, quantity: number): number[] {
  const out = new Array<number>(quantity);
  for (let i = 0; i < quantity; i++) out[i] = regs[address + i];
  return out;
}

/**
 * Read Device Identification (FC 43 / MEI 14): the whole response PDU, or an exception code.
 * A stream (codes 1..3) answers the objects the device has from the object id to the end of the
 * category, restarting at 0 for an id it does not have; what does not fit one PDU follows with "more
 * follows" and the next object id. Code 4 answers one object, 0x02 if the device lacks it.
 */
function deviceIdentification(identity: EncodedIdentity, data: Buffer): Buffer | number {
  // data = [readDeviceIdCode, objectId]; the codec checked the length and that the code is 1..4.
  const code = data[0];
  const start = data[1];
  const ids: number[] = [];
  if (code === 4) {
    if (identity.objects[start] === undefined) return ModbusException.ILLEGAL_DATA_ADDRESS;
    ids.push(start);
  } else {
    const end = CATEGORY_END[code];
    // An object id the device does not have restarts the stream at 0; a category above the
    // device's conformity level is answered with what it has (v1.1b3 §6.21).
    const first = start <= end && identity.objects[start] !== undefined ? start : 0;
    for (let id = first; id <= end; id++) if (identity.objects[id] !== undefined) ids.push(id);
  }
  let len = 7;
  let n = 0;
  while (n < ids.length && len + 2 + identity.objects[ids[n]]!.length <= MAX_PDU_LENGTH) len += 2 + identity.objects[ids[n++]]!.length;
  const more = n < ids.length;
  const out = Buffer.allocUnsafe(len);
  out[0] = 43;
  out[1] = MEI_DEVICE_ID;
  out[2] = code;
  out[3] = identity.conformity;
  out[4] = more ? 0xff : 0x00;
  out[5] = more ? ids[n] : 0x00;
  out[6] = n;
  let at = 7;
  for (let k = 0; k < n; k++) {
    const value = identity.objects[ids[k]]!;
    out[at++] = ids[k];
    out[at++] = value.length;
    value.copy(out, at);
    at += value.length;
  }
  return out;
}

/**
 * The counters a device reports through FC 8's read-only sub-functions (v1.1b3 §6.8.1), counted
 * by the server since start. Serial-only counters (CRC errors, NAKs, overruns) stay 0 on TCP.
 */
export class DiagnosticCounters {
  /** Messages the device received (any unit id). Shared by all PLCs of one server. */
  bus = 0;
  /** Messages addressed to this PLC. */
  server = 0;
  /** Exception responses it sent. */
  exceptions = 0;
  /** Requests it did not answer. */
  noResponse = 0;
  /** Busy (0x06) exceptions it sent. */
  busy = 0;
}

const ZERO_COUNTERS = new DiagnosticCounters();

/** FC 8 sub-functions that only read (0x02 diagnostic register, 0x0B..0x12 counters). */
function diagnosticValue(sub: number, bus: number, c: DiagnosticCounters): number | undefined {
  switch (sub) {
    case 0x02:
      return 0; // diagnostic register: no fault bits set
    case 0x0b:
      return bus;
    case 0x0c:
      return 0; // bus communication (CRC) errors: none on TCP
    case 0x0d:
      return c.exceptions;
    case 0x0e:
      return c.server;
    case 0x0f:
      return c.noResponse;
    case 0x10:
      return 0; // NAKs: serial line only
    case 0x11:
      return c.busy;
    case 0x12:
      return 0; // character overruns: serial line only
    default:
      return undefined;
  }
}

/** The answer of a PLC whose memory is `t` to request `req` (already validated by the codec). */
export function handleRequest(t: PlcTables, req: Request, diag: DiagnosticCounters = ZERO_COUNTERS, busMessages = 0): Response {
  switch (req.fc) {
    case 1:
    case 2: {
      const table = req.fc === 1 ? 'coil' : 'discrete';
      if (!t.covers(table, req.address, req.quantity)) return exception(req.fc, ModbusException.ILLEGAL_DATA_ADDRESS);
      return { fc: req.fc, values: readBits(t.bits(table), req.address, req.quantity) };
    }
    case 3:
    case 4: {
      const table = req.fc === 3 ? 'holding' : 'input';
      if (!t.covers(table, req.address, req.quantity)) return exception(req.fc, ModbusException.ILLEGAL_DATA_ADDRESS);
      return { fc: req.fc, values: readRegisters(t.registers(table), req.address, req.quantity) };
    }
    case 5:
      if (!t.writable('coil', req.address, 1)) return exception(5, ModbusException.ILLEGAL_DATA_ADDRESS);
      t.coils[req.address] = req.value ? 1 : 0;
      return { fc: 5, address: req.address, value: req.value };
    case 6:
      if (!t.writable('holding', req.address, 1)) return exception(6, ModbusException.ILLEGAL_DATA_ADDRESS);
      t.holding[req.address] = req.value;
      return { fc: 6, address: req.address, value: req.value };
    case 15: {
      if (!t.writable('coil', req.address, req.quantity)) return exception(15, ModbusException.ILLEGAL_DATA_ADDRESS);
      for (let i = 0; i < req.quantity; i++) t.coils[req.address + i] = req.values[i] ? 1 : 0;
      return { fc: 15, address: req.address, quantity: req.quantity };
    }
    case 16: {
      if (!t.writable('holding', req.address, req.quantity)) return exception(16, ModbusException.ILLEGAL_DATA_ADDRESS);
      t.holding.set(req.values, req.address);
      return { fc: 16, address: req.address, quantity: req.quantity };
    }
    case 22: {
      if (!t.writable('holding', req.address, 1)) return exception(22, ModbusException.ILLEGAL_DATA_ADDRESS);
      // Spec §6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask)
      const current = t.holding[req.address];
      t.holding[req.address] = (current & req.andMask) | (req.orMask & ~req.andMask & 0xffff);
      return { fc: 22, address: req.address, andMask: req.andMask, orMask: req.orMask };
    }
    case 23: {
      // Both ranges are checked before anything is written: a refused request changes nothing.
      if (!t.writable('holding', req.writeAddress, req.writeQuantity) || !t.covers('holding', req.readAddress, req.readQuantity)) {
        return exception(23, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      // Spec §6.17: the write is performed before the read.
      t.holding.set(req.values, req.writeAddress);
      return { fc: 23, values: readRegisters(t.holding, req.readAddress, req.readQuantity) };
    }
    case 8: {
      // Return Query Data (0) echoes byte for byte; the read-only counters answer their value.
      // Sub-functions that change the device (restart, clear, listen-only) are not served.
      if (req.subFunction === 0) {
        const raw = Buffer.allocUnsafe(3 + req.data.length);
        raw[0] = 8;
        raw.writeUInt16BE(0, 1);
        req.data.copy(raw, 3);
        return { fc: 8, raw };
      }
      const value = diagnosticValue(req.subFunction, busMessages, diag);
      if (value === undefined) return exception(8, ModbusException.ILLEGAL_FUNCTION);
      const raw = Buffer.allocUnsafe(5);
      raw[0] = 8;
      raw.writeUInt16BE(req.subFunction, 1);
      raw.writeUInt16BE(value & 0xffff, 3);
      return { fc: 8, raw };
    }
    case 43: {
      if (req.meiType !== MEI_DEVICE_ID) return exception(43, ModbusException.ILLEGAL_FUNCTION);
      const r = deviceIdentification(identityOf(t), req.data);
      return typeof r === 'number' ? exception(43, r) : { fc: 43, raw: r };
    }
    default:
      return exception(req.fc, ModbusException.ILLEGAL_FUNCTION);
  }
}
