// What a protocol layer offers the gateway's own reads of live values (the interlocks' process image,
// max_step bases): a seam like CommandPipeline, so the process image asks a reader and the protocol
// layer implements it (protocols/opcua/upstream.ts, protocols/modbus/register-reader.ts) without
// either importing the other.
import type { ModbusTable } from './command.js';

/**
 * Reads nodes of an OPC UA asset in one request (the gateway's own upstream session). Resolves one
 * value per target in engineering units (booleans 1/0), NaN for a node whose answer is not Good; or
 * a short word saying why nothing could be read ('unavailable', 'timeout', 'failed'). Never rejects.
 */
export interface NodeReader {
  readValues(targets: readonly string[]): Promise<Float64Array | string>;
}

/** The most registers or bits one readRegisters call asks for (the Modbus PDU limits of FC 1-4). */
export const MAX_READ_QUANTITY: Readonly<Record<ModbusTable, number>> = { coil: 2000, discrete: 2000, holding: 125, input: 125 };

/**
 * Reads a range of a Modbus asset's registers or bits (the gateway's own connection to the PLC, not
 * the agents'). Resolves one word per address (bits as 1/0), or a short word saying why nothing was
 * read ('timeout', 'unavailable', 'exception 0x02', 'undecodable'). Never rejects.
 */
export interface RegisterReader {
  readRegisters(table: ModbusTable, address: number, quantity: number): Promise<ArrayLike<number> | string>;
  /** Resolves once the connection is up. */
  ready(): Promise<void>;
  close(): void;
}
