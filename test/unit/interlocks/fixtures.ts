// The water-treatment PLC as a bundle asset (same point map as fixtures/plants/water-treatment.yaml),
// for interlock unit tests that need no files.
import type { Command } from '../../../src/core/command.js';
import type { BundleAsset } from '../../../src/policy/payload.js';

export const PLC1: BundleAsset = {
  id: 'plc1',
  zone: 'treatment',
  criticality: 'high',
  protocol: 'modbus',
  unit_id: 1,
  points: {
    'tank1.level': { table: 'input', address: 0, type: 'uint16', scale: 0.1, unit: '%' },
    'tank1.setpoint': { table: 'holding', address: 0, type: 'uint16', scale: 0.1, unit: '%' },
    'pump1.speed': { table: 'holding', address: 1, type: 'uint16', unit: 'rpm' },
    'pump1.run': { table: 'coil', address: 0, type: 'bool' },
    'valve1.open': { table: 'coil', address: 1, type: 'bool' },
    'control.auto': { table: 'coil', address: 2, type: 'bool' },
    'pump1.running': { table: 'discrete', address: 0, type: 'bool' },
    'tank1.high_alarm': { table: 'discrete', address: 1, type: 'bool' },
    'tank1.low_alarm': { table: 'discrete', address: 2, type: 'bool' },
  },
};

export const PLC2: BundleAsset = {
  id: 'plc2',
  zone: 'treatment',
  criticality: 'medium',
  protocol: 'modbus',
  unit_id: 2,
  points: { 'header.pressure': { table: 'input', address: 10, type: 'int16', scale: 0.01, unit: 'bar' } },
};

/** A write as the policy engine leaves it: asset and points resolved, values in engineering units. */
export function writeCmd(point: string, value: number | undefined, over: Partial<Command> = {}): Command {
  const def = PLC1.points[point]!;
  return {
    sessionId: 's1',
    protocol: 'modbus',
    unitId: 1,
    assetId: 'plc1',
    operation: 'write',
    functionCode: def.table === 'coil' ? 5 : 6,
    targets: [{ table: def.table, address: def.address, count: 1 }],
    points: [point],
    rawValues: value === undefined ? undefined : [Math.round(value / (def.scale ?? 1))],
    values: value === undefined ? undefined : { [point]: value },
    ...over,
  };
}
