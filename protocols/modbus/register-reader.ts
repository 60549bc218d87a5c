// The Modbus side of the gateway's own reads of live values (src/core/readers.ts): one connection of
// its own per PLC (the process image never shares, or starves, the agents' pool), FC 1-4 reads
// decoded to words. Never rejects: every failure is a short word the process image reports.
import type { ModbusTable } from '../../src/core/command.js';
import type { Logger } from '../../src/core/log.js';
import type { RegisterReader } from '../../src/core/readers.js';
import { decodeResponse, encodeRequest, isExceptionResponse, type Request } from './codec.js';
import { UpstreamPool, type UpstreamResult } from './upstream.js';

const FC_FOR: Record<ModbusTable, 1 | 2 | 3 | 4> = { coil: 1, discrete: 2, holding: 3, input: 4 };

export class ModbusRegisterReader implements RegisterReader {
  private readonly pool: UpstreamPool;

  constructor(
    private readonly endpoint: { host: string; port: number; unitId: number },
    opts: { timeoutMs: number; logger: Logger },
  ) {
    this.pool = new UpstreamPool({ host: endpoint.host, port: endpoint.port, connections: 1, timeoutMs: opts.timeoutMs, logger: opts.logger });
  }

  readRegisters(table: ModbusTable, address: number, quantity: number): Promise<ArrayLike<number> | string> {
    const request = { fc: FC_FOR[table], address, quantity } as Request;
    const pdu = encodeRequest(request);
    return new Promise((resolve) => this.pool.send(this.endpoint.unitId, pdu, request, (result) => resolve(wordsOf(request, result))));
  }

  ready(): Promise<void> {
    return this.pool.ready();
  }

  close(): void {
    this.pool.close();
  }
}

function wordsOf(request: Request, result: UpstreamResult): ArrayLike<number> | string {
  if (result.kind !== 'response') return result.kind;
  try {
    const res = decodeResponse(request, result.pdu);
    if (isExceptionResponse(res)) return `exception 0x${res.exception.toString(16).padStart(2, '0')}`;
    return (res as { values: (number | boolean)[] }).values.map((v) => (v === true ? 1 : v === false ? 0 : (v as number)));
  } catch {
    // The pool validated the answer already; a decode failure here leaves values to go stale.
    return 'undecodable';
  }
}
