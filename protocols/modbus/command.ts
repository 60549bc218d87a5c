// Turns one decoded Modbus request into the protocol-neutral Command (DESIGN §3). Pure and cheap:
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
    default:
      return [];
  }
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
