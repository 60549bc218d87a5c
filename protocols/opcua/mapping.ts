// Node mapping for OPC UA assets (issue 4): turns a policy bundle's OPC UA asset (namespace URI,
// points with `node_id`) into the FrontAsset the front exposes, and fixes the one NodeId form that
// Commands, the bundle's index and the upstream share: `nsu=<namespace URI>;<identifier>`.
// Namespace indexes (`ns=2;`) differ between servers and across restarts, so they never appear in a
// Command or a bundle. Pure; takes the asset structurally so protocol code does not import policy.
import { PlantgateError } from '../../src/core/errors.js';
import type { FrontAsset, FrontMethod, FrontPoint, PointDataType } from './front.js';

/** The parts of a bundle asset (src/policy/payload.ts BundleAsset) the front needs. */
export interface OpcuaAssetMap {
  id: string;
  protocol: string;
  namespace?: string;
  points: Record<string, { table: string; type: string; node_id?: string }>;
}

export interface FrontAssetOptions {
  /** NodeId identifier of the asset's object on the server (methods' parent); default `s=<asset id>`. */
  folderIdentifier?: string;
  /** Browse name of that object; default the asset id. */
  folder?: string;
  methods?: FrontMethod[];
}

const IDENTIFIER_RE = /^(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$/s;

export class NodeMappingError extends PlantgateError {
  constructor(message: string) {
    super('PROTOCOL_VIOLATION', message);
  }
}

/**
 * The canonical Command target for a point's NodeId: `nsu=<namespace>;<identifier>`. Accepts that
 * form (its URI must be the asset's) or a bare identifier (`s=tank1.level`, `i=1001`), which is
 * read in the asset's namespace. Refuses `ns=<index>;…` (index-dependent) and anything else.
 */
export function canonicalNodeId(namespace: string, nodeId: string): string {
  let identifier = nodeId;
  if (nodeId.startsWith('nsu=')) {
    const semi = nodeId.indexOf(';', 4);
    const uri = semi < 0 ? '' : nodeId.slice(4, semi);
    if (uri !== namespace) throw new NodeMappingError(`NodeId '${nodeId}' names namespace '${uri}', not the asset's '${namespace}'`);
    identifier = nodeId.slice(semi + 1);
  } else if (nodeId.startsWith('ns=')) {
    throw new NodeMappingError(`NodeId '${nodeId}' uses a namespace index; write it as 'nsu=${namespace};${nodeId.slice(nodeId.indexOf(';') + 1)}' or as the bare identifier`);
  }
  if (!IDENTIFIER_RE.test(identifier)) throw new NodeMappingError(`NodeId '${nodeId}': '${identifier}' is not an OPC UA identifier (i=, s=, g= or b=)`);
  return `nsu=${namespace};${identifier}`;
}

/** Points whose values are bits are Boolean; every other value is Double in engineering units (like the simulator). */
function dataTypeOf(type: string): PointDataType {
  return type === 'bool' ? 'Boolean' : 'Double';
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
    points.push({ name, identifier: target.slice(namespace.length + 5), dataType: dataTypeOf(p.type), writable: p.table === 'holding' || p.table === 'coil' });
  }
  return {
    assetId: asset.id,
    namespaceUri: namespace,
    folder: opts.folder ?? asset.id,
    folderIdentifier: opts.folderIdentifier ?? `s=${asset.id}`,
    points,
    methods: opts.methods ?? [],
  };
}
