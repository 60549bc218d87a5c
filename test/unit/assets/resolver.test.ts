// Resolution is the protocol's (src/assets/resolver.ts): the registry resolves each protocol's
// commands with that protocol's resolver, and a command of a protocol with no resolver names no
// asset and has no route, so the pipeline denies it NO_ROUTE instead of guessing.
import { describe, expect, it } from 'vitest';
import { bundleResolver } from '../../../src/assets/resolver.js';
import type { BundleAsset } from '../../../src/assets/bundle-asset.js';
import type { Command } from '../../../src/core/command.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

const plc: BundleAsset = {
  id: 'plc1', zone: 'z', criticality: 'low', protocol: 'modbus', unit_id: 1,
  points: { level: { table: 'input', address: 0, type: 'uint16' }, speed: { table: 'holding', address: 10, type: 'float32' } },
};
const press: BundleAsset = {
  id: 'press', zone: 'z', criticality: 'low', protocol: 'opcua', unit_id: 0, namespace: 'urn:press',
  points: { temp: { table: 'holding', address: 0, type: 'float32', node_id: 'nsu=urn:press;s=Temp' } },
};

function command(over: Partial<Command>): Command {
  return { sessionId: 's', protocol: 'modbus', assetId: '', operation: 'read', functionCode: 3, targets: [], points: [], ...over };
}

describe('resolution by the protocols’ own resolvers', () => {
  const resolver = bundleResolver(RESOLVERS, [plc, press]);

  it('names the Modbus asset behind the unit id and the points the registers cover, and decodes a write', () => {
    const read = command({ unitId: 1, functionCode: 4, targets: [{ table: 'input', address: 0, count: 1 }] });
    expect(resolver.resolve(read)).toBe(true);
    expect([read.assetId, read.points]).toEqual(['plc1', ['level']]);
    const write = command({ unitId: 1, operation: 'write', functionCode: 16, targets: [{ table: 'holding', address: 10, count: 2 }], rawValues: [0x4048, 0xf5c3] });
    resolver.resolve(write);
    expect(write.points).toEqual(['speed']);
    expect(write.values?.speed).toBeCloseTo(3.14, 5);
  });

  it('has no route for a unit id no asset answers to', () => {
    const cmd = command({ unitId: 9, targets: [{ table: 'holding', address: 0, count: 1 }] });
    expect(resolver.resolve(cmd)).toBe(false);
    expect([cmd.assetId, cmd.points]).toEqual(['', []]);
  });

  it('names the OPC UA asset and point by NodeId; an unmapped node is routed but names no asset', () => {
    const cmd = command({ protocol: 'opcua', functionCode: 0, targets: [{ nodeId: 'nsu=urn:press;s=Temp' }] });
    expect(resolver.resolve(cmd)).toBe(true);
    expect([cmd.assetId, cmd.points]).toEqual(['press', ['temp']]);
    const other = command({ protocol: 'opcua', functionCode: 0, targets: [{ nodeId: 'nsu=urn:other;s=X' }] });
    expect(resolver.resolve(other)).toBe(true);
    expect(other.assetId).toBe('');
  });

  it('gives a command of a protocol without a resolver no asset and no route', () => {
    const only = bundleResolver({ opcua: RESOLVERS.opcua }, [plc, press]);
    const cmd = command({ unitId: 1, assetId: 'plc1', targets: [{ table: 'input', address: 0, count: 1 }] });
    expect(only.resolve(cmd)).toBe(false);
    expect([cmd.assetId, cmd.points]).toEqual(['', []]);
  });
});
