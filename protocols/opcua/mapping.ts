// Node mapping for OPC UA assets (issue 4): turns a policy bundle's OPC UA asset (namespace URI,
// points with `node_id`) into the FrontAsset the front exposes, and fixes the one NodeId form that
// Commands, the bundle's index and the upstream share: `nsu=<namespace URI>;<identifier>`.
// Namespace indexes (`ns=2;`) differ between servers and across restarts, so they never appear in a
// Command or a bundle. Pure; takes the asset structurally so protocol code does not import policy.
import { Argument, DataType, LocalizedText } from 'node-opcua';
import { PlantgateError } from '../../src/core/errors.js';
import { expandNodeId, identifierOf } from '../../src/assets/node-id.js';
import { pointDataType } from '../../src/assets/data-type.js';
import type { FrontAsset, FrontMethod, FrontMethodArgument, FrontPoint, PointDataType } from './front.js';
import { REF, type MirrorModel, type MirrorNode } from './mirror.js';

/** The parts of a bundle asset (src/policy/payload.ts BundleAsset) the front needs. */
export interface OpcuaAssetMap {
  id: string;
  protocol: string;
  namespace?: string;
  points: Record<string, { table: string; type: string; scale?: number; offset?: number; node_id?: string }>;
  /** The asset's object on the server (browse target, methods' parent), canonical NodeId. */
  object_node?: string;
  /** Methods by name: canonical NodeId and typed arguments (bounds are policy's, not the front's). */
  methods?: Record<string, { node_id: string; inputs: { name: string; type: string }[]; outputs: { name: string; type: string }[] }>;
}

export interface FrontAssetOptions {
  /** NodeId identifier of the asset's object on the server (methods' parent); default `s=<asset id>`. */
  folderIdentifier?: string;
  /** Browse name of that object; default the asset id. */
  folder?: string;
  methods?: FrontMethod[];
}

export class NodeMappingError extends PlantgateError {
  constructor(message: string) {
    super('PROTOCOL_VIOLATION', message);
  }
}

/**
 * The canonical Command target for a point's NodeId: `nsu=<namespace>;<identifier>`. Accepts that
 * form (its URI must be the asset's) or a bare identifier (`s=tank1.level`, `i=1001`), which is
 * read in the asset's namespace. Refuses `ns=<index>;…` (index-dependent) and anything else.
 * The policy compiler applies the same function (src/policy/node-id.ts), so both sides agree.
 */
export function canonicalNodeId(namespace: string, nodeId: string): string {
  try {
    return expandNodeId(namespace, nodeId);
  } catch (err) {
    throw new NodeMappingError((err as Error).message);
  }
}

const ARG_TYPES: ReadonlySet<string> = new Set(['Boolean', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Float', 'Double']);

/** A method argument's OPC UA data type as the bundle names it; anything else is refused. */
function argType(type: string): PointDataType {
  if (!ARG_TYPES.has(type)) throw new NodeMappingError(`unknown argument data type '${type}'`);
  return type as PointDataType;
}


/**
 * The front's view of one OPC UA asset: only points with a `node_id` are exposed (the policy maps
 * them); writable as in the plant file (holding registers and coils). Throws NodeMappingError
 * naming the asset and point when the asset is not OPC UA or a NodeId is unusable.
 */
export function frontAssetFromMap(asset: OpcuaAssetMap, opts: FrontAssetOptions = {}): FrontAsset {
  if (asset.protocol !== 'opcua') throw new NodeMappingError(`asset '${asset.id}' is ${asset.protocol}, not opcua`);
  const namespace = asset.namespace;
  if (namespace === undefined || namespace === '') throw new NodeMappingError(`OPC UA asset '${asset.id}' has no namespace`);
  const points: FrontPoint[] = [];
  for (const [name, p] of Object.entries(asset.points)) {
    if (p.node_id === undefined) continue;
    let target: string;
    try {
      target = canonicalNodeId(namespace, p.node_id);
    } catch (err) {
      throw new NodeMappingError(`asset '${asset.id}' point '${name}': ${(err as Error).message}`);
    }
    points.push({ name, identifier: target.slice(namespace.length + 5), dataType: pointDataType(p), writable: p.table === 'holding' || p.table === 'coil' });
  }
  const methods: FrontMethod[] = [];
  for (const [name, m] of Object.entries(asset.methods ?? {})) {
    let target: string;
    try {
      target = canonicalNodeId(namespace, m.node_id);
    } catch (err) {
      throw new NodeMappingError(`asset '${asset.id}' method '${name}': ${(err as Error).message}`);
    }
    methods.push({
      name,
      identifier: target.slice(namespace.length + 5),
      inputs: m.inputs.map((a) => ({ name: a.name, dataType: argType(a.type) })),
      outputs: m.outputs.map((a) => ({ name: a.name, dataType: argType(a.type) })),
    });
  }
  // The object node: the config's override, else the bundle's, else `s=<asset id>`.
  const objectIdentifier = opts.folderIdentifier ?? (asset.object_node !== undefined ? identifierOf(canonicalNodeId(namespace, asset.object_node)) : undefined) ?? `s=${asset.id}`;
  return {
    assetId: asset.id,
    namespaceUri: namespace,
    // Same browse name as the server's object when its identifier is a string (`s=plc1` → plc1).
    folder: opts.folder ?? (objectIdentifier.startsWith('s=') ? objectIdentifier.slice(2) : asset.id),
    folderIdentifier: objectIdentifier,
    points,
    methods: opts.methods ?? methods,
  };
}

const BASE_OBJECT_TYPE = 58;
const BASE_DATA_VARIABLE_TYPE = 63;

function argument(a: FrontMethodArgument): Argument {
  return new Argument({ name: a.name, dataType: DataType[a.dataType], valueRank: -1 });
}

/**
 * A plant file's asset as the model the front builds from (the same shape a browsed server's takes,
 * mirror.ts): the asset's object under Objects, its points as variables, its methods on the object.
 */
export function assetModel(asset: FrontAsset): MirrorModel {
  const ns = asset.namespaceUri;
  const folder = `nsu=${ns};${asset.folderIdentifier}`;
  const base = (identifier: string, name: string): Pick<MirrorNode, 'nodeId' | 'namespaceUri' | 'identifier' | 'browseName' | 'displayName' | 'writeMask'> => ({
    nodeId: `nsu=${ns};${identifier}`,
    namespaceUri: ns,
    identifier,
    browseName: { namespaceUri: ns, name },
    displayName: new LocalizedText({ text: name }),
    writeMask: 0,
  });
  const nodes: MirrorNode[] = [{ ...base(asset.folderIdentifier, asset.folder), nodeClass: 'Object', referenceType: REF.Organizes, typeDefinition: BASE_OBJECT_TYPE, browsePath: `/${asset.folder}` }];
  for (const p of asset.points) {
    nodes.push({
      ...base(p.identifier, p.name),
      nodeClass: 'Variable',
      parent: folder,
      referenceType: REF.HasComponent,
      typeDefinition: BASE_DATA_VARIABLE_TYPE,
      browsePath: `/${asset.folder}/${p.name}`,
      dataType: DataType[p.dataType],
      valueRank: -1,
      accessLevel: p.writable ? 0x03 : 0x01,
      minimumSamplingInterval: 100,
      historizing: false,
    });
  }
  for (const m of asset.methods) {
    nodes.push({
      ...base(m.identifier, m.name),
      nodeClass: 'Method',
      parent: folder,
      referenceType: REF.HasComponent,
      browsePath: `/${asset.folder}/${m.name}`,
      inputArguments: m.inputs.map(argument),
      outputArguments: m.outputs.map(argument),
    });
  }
  return { namespaceArray: ['http://opcfoundation.org/UA/', ns], nodes, unmirrored: [] };
}
