// The simulator's OPC UA face as data: the namespace, NodeIds, data types and methods a plant's PLCs
// show over OPC UA. Pure and free of node-opcua, so the policy compiler derives an OPC UA asset
// from a plant file with exactly the map the simulator serves (src/sim/opcua-server.ts).
import { pointDataType, type PointDataType } from './data-type.js';
import type { Plant, PlcDef, PointDef } from './plant.js';

export interface FrontPoint {
  /** The asset's point name (policy and audit speak of points). */
  name: string;
  /** NodeId identifier part as on the upstream server, e.g. `s=tank1.level` or `i=1001`. */
  identifier: string;
  dataType: PointDataType;
  writable: boolean;
}

export interface FrontMethodArgument {
  name: string;
  dataType: PointDataType;
}

export interface FrontMethod {
  name: string;
  identifier: string;
  inputs: FrontMethodArgument[];
  outputs: FrontMethodArgument[];
}

/** An asset described by a plant file (the simulator's OPC UA face): its points and methods. */
export interface FrontAsset {
  assetId: string;
  namespaceUri: string;
  /** Browse name of the asset's folder under Objects (also the methods' parent object). */
  folder: string;
  /** NodeId identifier of that folder/object on the upstream, e.g. `s=plant`. */
  folderIdentifier: string;
  points: FrontPoint[];
  methods: FrontMethod[];
}


export function defaultNamespace(plant: Plant, plc: PlcDef): string {
  return `urn:plantgate:sim:${plant.name}:${plc.id}`;
}

export const writable = (p: PointDef): boolean => p.table === 'holding' || p.table === 'coil';

/** The OPC UA map of a plant, with the derived NodeIds (see the header). Pure. */
export function describeOpcua(plant: Plant, namespaces: Record<string, string> = {}): FrontAsset[] {
  return plant.plcs.map((plc) => {
    const points: FrontPoint[] = plc.points.map((p) => ({ name: p.name, identifier: `s=${p.name}`, dataType: pointDataType(p), writable: writable(p) }));
    const methods: FrontMethod[] = [];
    for (const p of plc.points) {
      if (p.table !== 'coil' || !p.name.endsWith('.run')) continue;
      const equipment = p.name.slice(0, -'.run'.length);
      const speed = plc.points.find((q) => q.name === `${equipment}.speed` && writable(q));
      methods.push({ name: `${equipment}.start`, identifier: `s=${equipment}.start`, inputs: speed ? [{ name: 'speed', dataType: 'Double' }] : [], outputs: [] });
      methods.push({ name: `${equipment}.stop`, identifier: `s=${equipment}.stop`, inputs: [], outputs: [] });
    }
    if (plc.points.some((p) => p.type === 'bool' && p.name.includes('alarm'))) {
      methods.push({ name: 'alarms.acknowledge', identifier: 's=alarms.acknowledge', inputs: [], outputs: [{ name: 'active', dataType: 'UInt32' }] });
    }
    return { assetId: plc.id, namespaceUri: namespaces[plc.id] ?? defaultNamespace(plant, plc), folder: plc.id, folderIdentifier: `s=${plc.id}`, points, methods };
  });
}

