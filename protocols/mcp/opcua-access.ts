// The MCP front's way to an OPC UA asset: the gateway's existing upstream session of that asset
// (protocols/opcua/upstream.ts), with values typed as the PLC declares them (data-type.ts), so an
// MCP write reaches the PLC exactly as an OPC UA agent's allowed write does. Loaded only when the
// gateway runs OPC UA (node-opcua is heavy). Executes what the pipeline allowed; decides nothing.
import { DataType, StatusCodes, Variant, type StatusCode } from 'node-opcua';
import type { ArgumentType, BundleAsset } from '../../src/assets/bundle-asset.js';
import { pointDataType } from '../../src/assets/data-type.js';
import { frontAssetFromMap, type OpcuaAssetMap } from '../opcua/mapping.js';
import type { OpcuaUpstream } from '../opcua/upstream.js';
import type { OpcuaAccess, UpstreamAnswer } from './commands.js';

const TYPE: Record<string, DataType> = {
  Boolean: DataType.Boolean,
  Int16: DataType.Int16,
  UInt16: DataType.UInt16,
  Int32: DataType.Int32,
  UInt32: DataType.UInt32,
  Float: DataType.Float,
  Double: DataType.Double,
};

function variant(value: number, type: string): Variant {
  const dataType = TYPE[type] ?? DataType.Double;
  return new Variant({ dataType, value: dataType === DataType.Boolean ? value !== 0 : value });
}

function answer(s: StatusCode): UpstreamAnswer {
  if (s.isGood()) return { status: 'ok' };
  if (s === StatusCodes.BadServerNotConnected || s === StatusCodes.BadCommunicationError) return { status: 'upstream_unavailable' };
  if (s === StatusCodes.BadTimeout) return { status: 'upstream_timeout' };
  return { status: 'exception', code: s.value, text: s.name };
}

function numberOf(v: Variant | undefined): number {
  if (v === undefined) return NaN;
  if (typeof v.value === 'boolean') return v.value ? 1 : 0;
  return typeof v.value === 'number' ? v.value : NaN;
}

/** Access to one OPC UA asset through its upstream session; `objectTarget` is the methods' parent. */
export function opcuaAccess(upstream: OpcuaUpstream, objectTarget: string): OpcuaAccess {
  return {
    read: (nodeIds) => upstream.readValues(nodeIds),
    write: async (nodeId, value, def) => answer(await upstream.write(nodeId, variant(value, pointDataType(def)))),
    call: async (methodNode, args: { value: number; type: ArgumentType }[]) => {
      const r = await upstream.call(objectTarget, methodNode, args.map((a) => variant(a.value, a.type)));
      return { ...answer(r.statusCode), outputs: r.outputs.map(numberOf) };
    },
  };
}

/**
 * The accesses of the gateway's OPC UA upstreams, by asset id. The object node is the one the OPC
 * UA front uses for the asset (the config's `object_node`, else the bundle's, else `s=<asset>`).
 */
export function opcuaAccesses(
  upstreams: ReadonlyMap<string, OpcuaUpstream>,
  assets: readonly BundleAsset[],
  config: readonly { asset: string; object_node?: string }[],
): Map<string, OpcuaAccess> {
  const out = new Map<string, OpcuaAccess>();
  for (const u of config) {
    const up = upstreams.get(u.asset);
    const asset = assets.find((a) => a.id === u.asset);
    if (up === undefined || asset === undefined) continue;
    const f = frontAssetFromMap(asset as OpcuaAssetMap, u.object_node !== undefined ? { folderIdentifier: u.object_node } : {});
    out.set(u.asset, opcuaAccess(up, `nsu=${f.namespaceUri};${f.folderIdentifier}`));
  }
  return out;
}
