// Modbus resolution (docs/architecture.md, "The path of one command"): the unit id names the asset,
// the register ranges name its points, and a write's raw words become engineering values per point.
// Built once per bundle; per command it allocates only the names and values it returns.
import type { Command, ModbusTable } from '../../src/core/command.js';
import { MODBUS_TABLES, pointWidth, type BundleAsset, type PointDef } from '../../src/assets/bundle-asset.js';
import { textFromWords } from '../../src/assets/points.js';
import type { CommandResolver, ResolverFactory } from '../../src/assets/resolver.js';
import { decodePoint } from '../../src/assets/values.js';

interface AddressedPoint {
  name: string;
  def: PointDef;
  width: number;
}

interface ModbusAsset {
  id: string;
  /** Address → point per table; a 32-bit point appears under each of its addresses. */
  byAddress: Record<ModbusTable, Map<number, AddressedPoint>>;
}

class ModbusResolver implements CommandResolver {
  private readonly byUnit = new Map<number, ModbusAsset>();

  constructor(assets: readonly BundleAsset[]) {
    for (const a of assets) {
      if (a.protocol !== 'modbus') continue;
      const byAddress = {} as Record<ModbusTable, Map<number, AddressedPoint>>;
      for (const t of MODBUS_TABLES) byAddress[t] = new Map();
      for (const [name, def] of Object.entries(a.points)) {
        const p: AddressedPoint = { name, def, width: pointWidth(def) };
        for (let k = 0; k < p.width; k++) byAddress[def.table].set(def.address + k, p);
      }
      // The bundle is refused when two assets share a unit id (policy engine): the first is kept here.
      if (!this.byUnit.has(a.unit_id)) this.byUnit.set(a.unit_id, { id: a.id, byAddress });
    }
  }

  /**
   * Written raw values belong to the last target (FC 23 carries the read range first, the write
   * range second). A point only partly written (one half of a 32-bit value) gets no value.
   */
  resolve(cmd: Command): boolean {
    const asset = this.byUnit.get(cmd.unitId ?? -1);
    if (asset === undefined) {
      cmd.assetId = '';
      cmd.points = [];
      return false;
    }
    cmd.assetId = asset.id;
    const names: string[] = [];
    for (const t of cmd.targets) {
      if (t.table === undefined || t.address === undefined) continue;
      const map = asset.byAddress[t.table];
      if (map.size === 0) continue;
      const end = t.address + (t.count ?? 1);
      for (let a = t.address; a < end; a++) {
        const p = map.get(a);
        // A 32-bit point is met at two addresses; consecutive addresses make a repeat adjacent.
        if (p !== undefined && names[names.length - 1] !== p.name && !names.includes(p.name)) names.push(p.name);
      }
    }
    cmd.points = names;

    const raw = cmd.rawValues;
    if (cmd.operation !== 'write' || !raw || cmd.targets.length === 0) return true;
    const t = cmd.targets[cmd.targets.length - 1]!;
    if (t.table === undefined || t.address === undefined) return true;
    const map = asset.byAddress[t.table];
    const count = Math.min(t.count ?? 1, raw.length);
    let values: Record<string, number> | undefined;
    for (let i = 0; i < count; i++) {
      const p = map.get(t.address + i);
      if (p === undefined || p.def.address !== t.address + i) continue;
      if (p.def.type === 'string') {
        // A string written whole reaches bounds-free policy and the audit as its text.
        if (i + p.width <= count) (cmd.typedValues ??= {})[p.name] = textFromWords(p.def.length ?? 2, raw, i);
        continue;
      }
      const second = p.width === 2 ? (i + 1 < count ? raw[i + 1]! : NaN) : 0;
      const v = decodePoint(p.def, raw[i]!, second);
      if (Number.isNaN(v)) continue;
      (values ??= {})[p.name] = v;
    }
    if (values) cmd.values = values;
    return true;
  }
}

export const modbusResolver: ResolverFactory = (assets) => new ModbusResolver(assets);
