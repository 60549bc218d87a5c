// Turns one decoded Modbus request into the protocol-neutral Command (docs/architecture.md, Seams). Pure and cheap:
// it runs once per request on the hot path.
import type { Command, ModbusTable, Operation, Target } from '../../src/core/command.js';
import { classifyFunctionCode, type Request } from './codec.js';

const READ_TABLE: Record<number, ModbusTable> = { 1: 'coil', 2: 'discrete', 3: 'holding', 4: 'input' };

export function commandFromRequest(sessionId: string, unitId: number, req: Request): Command {
  const operation: Operation = classifyFunctionCode(req.fc) ?? 'admin';
  const cmd: Command = {
    sessionId,
    protocol: 'modbus',
    unitId,
    assetId: '',
    operation,
    functionCode: req.fc,
    targets: targetsOf(req),
    points: [],
  };
  const raw = rawValuesOf(req);
  if (raw !== undefined) cmd.rawValues = raw;
  return cmd;
}

function targetsOf(req: Request): Target[] {
  switch (req.fc) {
    case 1:
    case 2:
    case 3:
    case 4:
      return [{ table: READ_TABLE[req.fc], address: req.address, count: req.quantity }];
    case 5:
      return [{ table: 'coil', address: req.address, count: 1 }];
    case 15:
      return [{ table: 'coil', address: req.address, count: req.quantity }];
    case 6:
    case 22:
      return [{ table: 'holding', address: req.address, count: 1 }];
    case 16:
      return [{ table: 'holding', address: req.address, count: req.quantity }];
    case 23:
      return [
        { table: 'holding', address: req.readAddress, count: req.readQuantity },
        { table: 'holding', address: req.writeAddress, count: req.writeQuantity },
      ];
    case 24:
      // The FIFO's length is only known to the PLC; the pointer register is the target.
      return [{ table: 'holding', address: req.address, count: 1 }];
    case 8:
      return [{ subFunction: req.subFunction }];
    case 43:
      return [meiTarget(req.meiType, req.data)];
    default:
      // 7, 11, 12, 17: the function code is all there is to select on.
      return [];
  }
}

const MEI_READ_DEVICE_ID = 14;
/** Last object id of each Read Device ID category (v1.1b3 §6.21): basic, regular, extended. */
const CATEGORY_END: Record<number, number> = { 1: 0x02, 2: 0x7f, 3: 0xff };

/**
 * FC 43 as policy sees it. For Read Device Identification the objects it may read: code 4 one
 * object; a stream (codes 1..3) reads to the end of its category from the object id, or from 0
 * when the device does not have that object (v1.1b3 §6.21), which only the device knows: so a
 * stream may read its whole category from 0 up.
 */
function meiTarget(meiType: number, data: Buffer): Target {
  if (meiType !== MEI_READ_DEVICE_ID) return { meiType };
  const code = data[0]!;
  const id = data[1]!;
  if (code === 4) return { meiType, objectFrom: id, objectTo: id };
  return { meiType, objectFrom: 0, objectTo: CATEGORY_END[code]! };
}

function rawValuesOf(req: Request): number[] | undefined {
  switch (req.fc) {
    case 5:
      return [req.value ? 1 : 0];
    case 6:
      return [req.value];
    case 15:
      return req.values.map((v) => (v ? 1 : 0));
    case 16:
    case 23:
      return req.values;
    default:
      return undefined;
  }
}

/**
 * The values of a read answer (FC 1-4, validated by the upstream against its request) for policy's
 * step bases (Outcome.readValue): coil or register i of the range, NaN past the byte count.
 */
export function readAnswerValues(functionCode: number, pdu: Buffer): ((i: number) => number) | undefined {
  const end = Math.min(pdu.length, 2 + pdu[1]!);
  if (functionCode === 1 || functionCode === 2) return (i) => (i >= 0 && 2 + (i >> 3) < end ? (pdu[2 + (i >> 3)]! >> (i & 7)) & 1 : NaN);
  if (functionCode === 3 || functionCode === 4) return (i) => (i >= 0 && 4 + 2 * i <= end ? pdu.readUInt16BE(2 + 2 * i) : NaN);
  return undefined;
}
