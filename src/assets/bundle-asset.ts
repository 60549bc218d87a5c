// The compiled asset format: what a signed bundle says about each asset (point map with types,
// scaling and NodeIds, methods, read-only ranges) and the register layout of a point. Read by the
// rule compiler and engine, the interlocks' process image and the fronts alike, so none of them
// has to import another for it (docs/architecture.md, Seams: assets). Types and pure helpers only.
import type { ModbusTable } from '../core/command.js';

export const MODBUS_TABLES = ['coil', 'discrete', 'holding', 'input'] as const;
export const POINT_TYPES = ['bool', 'int16', 'uint16', 'int32', 'uint32', 'float32', 'string'] as const;
export type PointType = (typeof POINT_TYPES)[number];
export const CRITICALITIES = ['low', 'medium', 'high', 'critical'] as const;

/** One named point of an asset (same shape as the simulator's plant file). */
export interface PointDef {
  table: ModbusTable;
  address: number;
  type: PointType;
  /** Strings: characters, two per register (the first in the high byte). */
  length?: number;
  word_order?: 'big' | 'little';
  scale?: number;
  offset?: number;
  unit?: string;
  /** OPC UA NodeId of the point ('ns=2;s=Tank1.Level'), for OPC UA assets. */
  node_id?: string;
}

/** OPC UA data types a method argument may have (the front declares them, the server checks them). */
export const ARGUMENT_TYPES = ['Boolean', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Float', 'Double'] as const;
export type ArgumentType = (typeof ARGUMENT_TYPES)[number];

/** One argument of an OPC UA method; min/max (inputs only) bound every call (VALUE_OUT_OF_BOUNDS). */
export interface MethodArgument {
  name: string;
  type: ArgumentType;
  min?: number;
  max?: number;
}

/** An OPC UA method of an asset; rules name it like a point (`points: [pump1.start]`, `operations: [call]`). */
export interface MethodDef {
  /** Canonical NodeId `nsu=<namespace>;<identifier>`. */
  node_id: string;
  inputs: MethodArgument[];
  outputs: MethodArgument[];
}

export interface BundleAsset {
  id: string;
  zone: string;
  criticality: (typeof CRITICALITIES)[number];
  protocol: 'modbus' | 'opcua';
  unit_id: number;
  /** OPC UA namespace URI of the asset's server (OPC UA assets). */
  namespace?: string;
  points: Record<string, PointDef>;
  /** OPC UA: the asset's object node (canonical NodeId): the target a `browse` rule covers. */
  object_node?: string;
  /** OPC UA: methods by name. */
  methods?: Record<string, MethodDef>;
  /**
   * Modbus: holding registers and coils the device lets clients read but not write (the plant
   * file's `read-only` ranges and `read_only` points); a write touching one is NOT_WRITABLE.
   */
  read_only?: AddressRange[];
}

export interface AddressRange {
  table: ModbusTable;
  /** Inclusive. */
  from: number;
  /** Inclusive. */
  to: number;
}

/** Registers a point spans: two for 32-bit values, one per two characters of a string, else one. */
export function pointWidth(def: { type: PointType; length?: number }): number {
  if (def.type === 'string') return Math.ceil((def.length ?? 2) / 2);
  return def.type === 'int32' || def.type === 'uint32' || def.type === 'float32' ? 2 : 1;
}
