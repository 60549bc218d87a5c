// The one NodeId form shared by Commands, bundles and the upstream session, the front's view of a
// bundle's OPC UA asset, and the NodeIds the simulator derives from a plant file.
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalNodeId, frontAssetFromMap, NodeMappingError } from '../../../protocols/opcua/mapping.js';
import { parseTarget } from '../../../protocols/opcua/upstream.js';
import { loadPlant } from '../../../src/assets/plant.js';
import { describeOpcua } from '../../../src/sim/opcua-server.js';

const NS = 'urn:plantgate:sim:water-treatment:plc1';

describe('OPC UA node mapping', () => {
  it('reads a bare identifier in the asset namespace and keeps an expanded one of the same namespace', () => {
    expect(canonicalNodeId(NS, 's=tank1.level')).toBe(`nsu=${NS};s=tank1.level`);
    expect(canonicalNodeId(NS, 'i=1001')).toBe(`nsu=${NS};i=1001`);
    expect(canonicalNodeId(NS, `nsu=${NS};s=a;b`)).toBe(`nsu=${NS};s=a;b`);
  });

  it('refuses namespace indexes, foreign namespaces and non-identifiers with the NodeId in the message', () => {
    expect(() => canonicalNodeId(NS, 'ns=2;s=tank1.level')).toThrow(/ns=2;s=tank1.level.*namespace index/);
    expect(() => canonicalNodeId(NS, 'nsu=urn:other;s=x')).toThrow(/names namespace 'urn:other'/);
    expect(() => canonicalNodeId(NS, 'tank1.level')).toThrow(NodeMappingError);
    expect(() => canonicalNodeId(NS, 'i=abc')).toThrow(/not an OPC UA identifier/);
  });

  it('canonical targets are idempotent and split back into namespace and identifier (property)', () => {
    fc.assert(
      // Namespace URIs hold no ';' (URNs and URLs of OPC UA servers); identifiers may.
      fc.property(fc.string().map((u) => `urn:${u.replaceAll(';', '')}`), fc.string({ minLength: 1 }), (uri, s) => {
        const once = canonicalNodeId(uri, `s=${s}`);
        expect(canonicalNodeId(uri, once)).toBe(once);
        expect(parseTarget(once)).toEqual({ uri, identifier: `s=${s}` });
      }),
    );
    expect(parseTarget('ns=2;s=x')).toBeUndefined();
    expect(parseTarget('nsu=urn:x')).toBeUndefined();
  });

  it('exposes only the points a bundle asset maps to NodeIds, writable where the plant file makes them so', () => {
    const asset = frontAssetFromMap({
      id: 'plc1',
      protocol: 'opcua',
      namespace: NS,
      points: {
        'tank1.level': { table: 'input', type: 'uint16', scale: 0.1, node_id: 's=tank1.level' },
        'tank1.setpoint': { table: 'holding', type: 'uint16', scale: 0.1, node_id: `nsu=${NS};s=tank1.setpoint` },
        'pump1.run': { table: 'coil', type: 'bool', node_id: 's=pump1.run' },
        'valve1.open': { table: 'coil', type: 'bool' },
      },
    });
    expect(asset).toMatchObject({ assetId: 'plc1', namespaceUri: NS, folder: 'plc1', folderIdentifier: 's=plc1', methods: [] });
    expect(asset.points).toEqual([
      { name: 'tank1.level', identifier: 's=tank1.level', dataType: 'Double', writable: false },
      { name: 'tank1.setpoint', identifier: 's=tank1.setpoint', dataType: 'Double', writable: true },
      { name: 'pump1.run', identifier: 's=pump1.run', dataType: 'Boolean', writable: true },
    ]);
  });

  it('exposes each point with the OPC UA type its register implies, and scaled points in engineering units as Double', () => {
    const types = (points: Record<string, { type: string; scale?: number; offset?: number }>) =>
      frontAssetFromMap({ id: 'plc9', protocol: 'opcua', namespace: NS, points: Object.fromEntries(Object.entries(points).map(([k, v]) => [k, { table: 'holding', node_id: `s=${k}`, ...v }])) }).points.map(
        (p) => [p.name, p.dataType],
      );
    expect(
      types({
        a: { type: 'int16' },
        b: { type: 'uint16' },
        c: { type: 'int32' },
        d: { type: 'uint32' },
        e: { type: 'float32' },
        f: { type: 'bool' },
        g: { type: 'uint16', scale: 0.1 },
        h: { type: 'int16', offset: -40 },
        i: { type: 'int32', scale: 1, offset: 0 },
      }),
    ).toEqual([
      ['a', 'Int16'],
      ['b', 'UInt16'],
      ['c', 'Int32'],
      ['d', 'UInt32'],
      ['e', 'Float'],
      ['f', 'Boolean'],
      ['g', 'Double'],
      ['h', 'Double'],
      ['i', 'Int32'],
    ]);
  });

  it('refuses a Modbus asset, an asset without namespace, and names the point of a bad NodeId', () => {
    expect(() => frontAssetFromMap({ id: 'plc1', protocol: 'modbus', points: {} })).toThrow(/is modbus, not opcua/);
    expect(() => frontAssetFromMap({ id: 'plc1', protocol: 'opcua', points: {} })).toThrow(/has no namespace/);
    expect(() => frontAssetFromMap({ id: 'plc1', protocol: 'opcua', namespace: NS, points: { x: { table: 'holding', type: 'int16', node_id: 'ns=3;i=7' } } })).toThrow(
      /asset 'plc1' point 'x'/,
    );
  });

  it('the simulator derives NodeIds s=<point> under one namespace per PLC, with start/stop and acknowledge methods', async () => {
    const plant = await loadPlant(path.resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml'));
    const [plc1] = describeOpcua(plant);
    expect(plc1).toMatchObject({ assetId: 'plc1', namespaceUri: NS, folderIdentifier: 's=plc1' });
    expect(plc1!.points.find((p) => p.name === 'tank1.level')).toEqual({ name: 'tank1.level', identifier: 's=tank1.level', dataType: 'Double', writable: false });
    expect(plc1!.points.find((p) => p.name === 'pump1.run')).toMatchObject({ dataType: 'Boolean', writable: true });
    // Unscaled registers keep their type on the simulated PLC too: the gateway exposes the same.
    expect(plc1!.points.find((p) => p.name === 'pump1.speed')).toMatchObject({ dataType: 'UInt16', writable: true });
    expect(plc1!.methods.map((m) => [m.name, m.inputs.map((a) => a.name)])).toEqual([
      ['pump1.start', ['speed']],
      ['pump1.stop', []],
      ['alarms.acknowledge', []],
    ]);
    expect(describeOpcua(plant, { plc1: 'urn:site:plc1' })[0]!.namespaceUri).toBe('urn:site:plc1');
  });
});
