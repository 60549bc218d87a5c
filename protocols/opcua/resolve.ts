// OPC UA resolution (docs/architecture.md, "The path of one command"): the asset is the one the
// front named, else the one whose map holds the first target's NodeId; each target names the point
// or method mapped to its NodeId, else its browse path (a mirrored server's node outside the map).
// Values are the front's: it types them from the request. Built once per bundle.
import type { Command } from '../../src/core/command.js';
import type { BundleAsset } from '../../src/assets/bundle-asset.js';
import type { CommandResolver, ResolverFactory } from '../../src/assets/resolver.js';

interface NodeAsset {
  id: string;
  opcua: boolean;
  /** NodeId → point or method name. */
  names: Map<string, string>;
  objectNode: string | undefined;
}

class OpcuaResolver implements CommandResolver {
  private readonly byId = new Map<string, NodeAsset>();
  /** NodeId → asset, for commands that arrive without an asset id. */
  private readonly byNode = new Map<string, NodeAsset>();

  constructor(assets: readonly BundleAsset[]) {
    for (const a of assets) {
      const names = new Map<string, string>();
      const asset: NodeAsset = { id: a.id, opcua: a.protocol === 'opcua', names, objectNode: a.object_node };
      this.byId.set(a.id, asset);
      if (!asset.opcua) continue;
      for (const [name, def] of Object.entries(a.points)) if (def.node_id !== undefined) names.set(def.node_id, name);
      for (const [name, def] of Object.entries(a.methods ?? {})) names.set(def.node_id, name);
      // Two assets mapping one node make the bundle refused (policy engine): the first is kept here.
      for (const nodeId of [...names.keys(), ...(a.object_node !== undefined ? [a.object_node] : [])]) if (!this.byNode.has(nodeId)) this.byNode.set(nodeId, asset);
    }
  }

  /** A NodeId no asset maps names no point and no rule covers it (default deny): never NO_ROUTE. */
  resolve(cmd: Command): boolean {
    let asset = cmd.assetId !== '' ? this.byId.get(cmd.assetId) : undefined;
    if (asset === undefined) {
      const first = cmd.targets[0]?.nodeId;
      asset = first === undefined ? undefined : this.byNode.get(first);
    }
    if (asset === undefined || !asset.opcua) {
      cmd.assetId = '';
      cmd.points = [];
      return true;
    }
    cmd.assetId = asset.id;
    const names: string[] = [];
    for (const t of cmd.targets) {
      if (t.nodeId === undefined) continue;
      // The asset's object is no point.
      if (t.nodeId === asset.objectNode) continue;
      const name = asset.names.get(t.nodeId) ?? t.browsePath ?? t.nodeId;
      if (!names.includes(name)) names.push(name);
    }
    cmd.points = names;
    return true;
  }
}

export const opcuaResolver: ResolverFactory = (assets) => new OpcuaResolver(assets);
