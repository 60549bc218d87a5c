// Upstream routing: which PLC connection pool, and which unit id on the PLC side, an asset's allowed
// Modbus commands go to. Rebuilt when a bundle becomes active (the PLC-side unit id defaults to the
// asset's unit id in the bundle), so the per-command lookup is one Map get. Owns no connection.
import type { UpstreamRoute } from '../../protocols/modbus/listener.js';
import type { UpstreamPool } from '../../protocols/modbus/upstream.js';

export interface PoolEntry {
  pool: UpstreamPool;
  /** The unit id configured for the PLC side; undefined: the asset's unit id in the bundle. */
  unitId: number | undefined;
}

/** The route lookup the listeners call per command, over the gateway's pools and active bundle. */
export function upstreamRouter(
  pools: ReadonlyMap<string, PoolEntry>,
  engine: () => { asset(id: string): { unit_id: number } | undefined } | undefined,
): (assetId: string) => UpstreamRoute | undefined {
  let routes = new Map<string, UpstreamRoute>();
  let routedEngine: unknown;
  return (assetId) => {
    const active = engine();
    if (active !== routedEngine) {
      routedEngine = active;
      routes = new Map();
      for (const [id, { pool, unitId }] of pools) {
        const plcUnit = unitId ?? active?.asset(id)?.unit_id;
        if (plcUnit !== undefined) routes.set(id, { pool, unitId: plcUnit });
      }
    }
    return routes.get(assetId);
  };
}
