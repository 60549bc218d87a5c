// The table of public Modbus function codes (Modbus Application Protocol v1.1b3 §5.1) and how
// plantgate classes each one. Owns only facts about function codes; never decodes bytes.
// An unknown code has no class, and the callers deny it: the table is the allow-list of what the
// codec understands well enough to validate.
import type { ModbusTable } from '../../src/core/command.js';

export type FcClass = 'read' | 'write' | 'diagnostic';

export interface FunctionCodeInfo {
  readonly code: number;
  readonly name: string;
  readonly fcClass: FcClass;
  /** The data table a request addresses, for codes that address one. */
  readonly table?: ModbusTable;
}

export const FUNCTION_CODES: readonly FunctionCodeInfo[] = [
  { code: 1, name: 'Read Coils', fcClass: 'read', table: 'coil' },
  { code: 2, name: 'Read Discrete Inputs', fcClass: 'read', table: 'discrete' },
  { code: 3, name: 'Read Holding Registers', fcClass: 'read', table: 'holding' },
  { code: 4, name: 'Read Input Registers', fcClass: 'read', table: 'input' },
  { code: 5, name: 'Write Single Coil', fcClass: 'write', table: 'coil' },
  { code: 6, name: 'Write Single Register', fcClass: 'write', table: 'holding' },
  // 7, 11, 12, 17 and 8 are the spec's "Diagnostics" group (serial line only, but gateways pass
  // them through); they read device state, yet a diagnostic sub-function can restart the
  // device's communications, so the whole group is audited like a write.
  { code: 7, name: 'Read Exception Status', fcClass: 'diagnostic' },
  { code: 8, name: 'Diagnostics', fcClass: 'diagnostic' },
  { code: 11, name: 'Get Comm Event Counter', fcClass: 'diagnostic' },
  { code: 12, name: 'Get Comm Event Log', fcClass: 'diagnostic' },
  { code: 15, name: 'Write Multiple Coils', fcClass: 'write', table: 'coil' },
  { code: 16, name: 'Write Multiple Registers', fcClass: 'write', table: 'holding' },
  { code: 17, name: 'Report Server ID', fcClass: 'diagnostic' },
  { code: 20, name: 'Read File Record', fcClass: 'read' },
  { code: 21, name: 'Write File Record', fcClass: 'write' },
  { code: 22, name: 'Mask Write Register', fcClass: 'write', table: 'holding' },
  // 23 reads and writes in one request: it is a write for every purpose that matters.
  { code: 23, name: 'Read/Write Multiple Registers', fcClass: 'write', table: 'holding' },
  { code: 24, name: 'Read FIFO Queue', fcClass: 'read', table: 'holding' },
  // MEI 13 (CANopen general reference) can reach any CANopen object, so 43 as a whole is not a
  // plain read even though MEI 14 (device identification) is.
  { code: 43, name: 'Encapsulated Interface Transport', fcClass: 'diagnostic' },
];

// Lookup tables indexed by function code, built once: classification is on the hot path.
const CLASS_BY_CODE: (FcClass | undefined)[] = new Array<FcClass | undefined>(256).fill(undefined);
const TABLE_BY_CODE: (ModbusTable | undefined)[] = new Array<ModbusTable | undefined>(256).fill(undefined);
const INFO_BY_CODE: (FunctionCodeInfo | undefined)[] = new Array<FunctionCodeInfo | undefined>(256).fill(undefined);
for (const info of FUNCTION_CODES) {
  CLASS_BY_CODE[info.code] = info.fcClass;
  TABLE_BY_CODE[info.code] = info.table;
  INFO_BY_CODE[info.code] = info;
}

function inByteRange(fc: number): boolean {
  return Number.isInteger(fc) && fc >= 0 && fc <= 255;
}

/** Every public function code: 1,2,3,4,5,6,7,8,11,12,15,16,17,20,21,22,23,24,43. Unknown → undefined. */
export function classifyFunctionCode(fc: number): FcClass | undefined {
  return inByteRange(fc) ? CLASS_BY_CODE[fc] : undefined;
}

/** The data table a function code addresses (coil, discrete, holding, input), if any. */
export function tableForFunctionCode(fc: number): ModbusTable | undefined {
  return inByteRange(fc) ? TABLE_BY_CODE[fc] : undefined;
}

export function functionCodeInfo(fc: number): FunctionCodeInfo | undefined {
  return inByteRange(fc) ? INFO_BY_CODE[fc] : undefined;
}
