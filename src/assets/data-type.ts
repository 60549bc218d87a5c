// The OPC UA data type of a point (issue 4, typed writes): one rule shared by the gateway's front
// (protocols/opcua/mapping.ts) and the simulator's OPC UA face (src/assets/opcua-face.ts), so a point
// has the same type on the PLC and on the gateway and agent code written against one works against
// the other. Pure, no imports.
//
// A point whose PLC register needs scaling (scale ≠ 1 or offset ≠ 0) is served in engineering
// units, which are fractional: Double. Any other point keeps the type of its register: a PLC that
// declares a UInt16 speed answers a Double write with BadTypeMismatch, and so does the gateway.
export type PointDataType = 'Boolean' | 'Int16' | 'UInt16' | 'Int32' | 'UInt32' | 'Float' | 'Double';

const BY_TYPE: Record<string, PointDataType> = {
  bool: 'Boolean',
  int16: 'Int16',
  uint16: 'UInt16',
  int32: 'Int32',
  uint32: 'UInt32',
  float32: 'Float',
};

/** The OPC UA type of a point given its policy / plant definition; Double for anything unknown. */
export function pointDataType(def: { type: string; scale?: number; offset?: number }): PointDataType {
  if (def.type === 'bool') return 'Boolean';
  const scaled = (def.scale !== undefined && def.scale !== 1) || (def.offset !== undefined && def.offset !== 0);
  if (scaled) return 'Double';
  return BY_TYPE[def.type] ?? 'Double';
}
