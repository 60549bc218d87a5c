// Resolution: turning a command's wire addresses (a Modbus unit id and register range, an OPC UA
// NodeId) into the asset and points a bundle names (docs/architecture.md, "The path of one
// command", step 2). Each protocol owns its resolver (protocols/<protocol>/resolve.ts); policy only
// reads what resolution fills in — cmd.assetId, cmd.points, cmd.values — and never a wire address's
// meaning. A resolver is built once per bundle and must not allocate beyond the names it returns.
import type { Command, Protocol } from '../core/command.js';
import type { BundleAsset } from './bundle-asset.js';

export interface CommandResolver {
  /**
   * Fills cmd.assetId and cmd.points (and cmd.values where the wire carries raw words). False when
   * no asset answers to the command's address at all: there is no path behind the gateway
   * (NO_ROUTE), told apart from an address the asset does not map (no point, no rule covers it).
   */
  resolve(cmd: Command): boolean;
}

/** Builds a protocol's resolver for one bundle's assets. */
export type ResolverFactory = (assets: readonly BundleAsset[]) => CommandResolver;

/** The resolvers of the protocols this process speaks, by the protocol a command carries. */
export type ResolverFactories = Readonly<Partial<Record<Protocol, ResolverFactory>>>;

/**
 * One bundle's resolution for every protocol. A command of a protocol with no resolver names no
 * asset and has no route (fail closed).
 */
export function bundleResolver(factories: ResolverFactories, assets: readonly BundleAsset[]): CommandResolver {
  const byProtocol = new Map<Protocol, CommandResolver>();
  for (const [protocol, factory] of Object.entries(factories) as [Protocol, ResolverFactory][]) byProtocol.set(protocol, factory(assets));
  return {
    resolve(cmd) {
      const resolver = byProtocol.get(cmd.protocol);
      if (resolver !== undefined) return resolver.resolve(cmd);
      cmd.assetId = '';
      cmd.points = [];
      return false;
    },
  };
}
