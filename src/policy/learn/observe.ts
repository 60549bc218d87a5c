// What `policy learn` remembers of recorded traffic, per principal (workload, or the human a
// delegated command acts for), asset and operation: how often and when, the points and raw
// addresses touched, function codes, written values, commands per minute (per gateway: each
// gateway has its own rate buckets) and hour of the week in the chosen time zone. Memory is
// bounded by the number of groups (capped) and the asset's size, never by the number of records.
// Owns the statistics only; turning them into rules is rules.ts's job. Never decides anything.
import type { Command, ModbusTable, Operation, Subject } from '../../core/command.js';
import { principalFor } from '../engine.js';
import { ASSURANCES, MODBUS_TABLES, RULE_OPERATIONS, pointWidth, type BundleAsset } from '../payload.js';
import { ZoneClock } from '../windows.js';
import { resolveWith, type ObservedCommand } from '../observed/command.js';
import type { CommandResolver } from '../../assets/resolver.js';

/** Past this many distinct (principal, asset, operation) groups, new ones are counted, not kept. */
export const MAX_GROUPS = 100_000;
/** Distinct Modbus targets per group whose unmapped addresses were already noted (reads repeat). */
const MAX_TARGET_CACHE = 4096;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** 1970-01-01 was a Thursday. */
const EPOCH_WEEKDAY = 4;

export interface Evidence {
  gatewayId: string;
  seq: number;
  timeMs: number;
}

/** A command kept as an example (for the rule's comment and the generated policy test). */
export interface Example extends Evidence {
  cmd: Command;
  subject: Subject;
}

export interface Seen {
  count: number;
  first: Evidence;
  last: Evidence;
}

export interface PointStats extends Seen {
  /** Writes: lowest and highest decoded value (engineering units), with the commands that wrote them. */
  min: number;
  max: number;
  minEx?: Example;
  maxEx?: Example;
  /** Writes to the point whose value could not be decoded (half a 32-bit point): no bounds then. */
  undecodable: number;
}

interface GatewayMinute {
  minute: number;
  count: number;
}

export class Group {
  count = 0;
  first: Example;
  last: Evidence;
  /** Index into ASSURANCES of the weakest session assurance seen. */
  minAssurance = ASSURANCES.length - 1;
  readonly functionCodes = new Set<number>();
  readonly points = new Map<string, PointStats>();
  /** Raw addresses outside the asset's point map, per table (writes counted per address). */
  readonly unmapped = new Map<ModbusTable, Map<number, Seen>>();
  private readonly doneTargets = new Set<number>();
  /** Commands in a minute → how many active minutes had that many (per gateway). */
  readonly perMinute = new Map<number, number>();
  activeMinutes = 0;
  private readonly gateways = new Map<string, GatewayMinute>();
  /** Commands per local hour of the week (index weekday * 24 + hour, weekday 0 = Sunday). */
  readonly hours = new Uint32Array(168);
  /** Commands a monitor-mode bundle let through that it would have denied CROSS_ZONE. */
  crossZone = 0;

  constructor(
    readonly principal: string,
    readonly asset: BundleAsset,
    readonly operation: Operation,
    first: Example,
  ) {
    this.first = first;
    this.last = first;
  }

  /** Closes the open minutes (call once, after the last command). */
  finish(): void {
    for (const g of this.gateways.values()) this.closeMinute(g);
    this.gateways.clear();
  }

  addTime(gatewayId: string, t: number, zone: ZoneClock): void {
    const minute = Math.floor(t / MINUTE_MS);
    let g = this.gateways.get(gatewayId);
    if (g === undefined) {
      this.gateways.set(gatewayId, { minute, count: 1 });
    } else if (g.minute === minute) {
      g.count++;
    } else {
      // Records of one gateway are in time order; a step back (a clock set back) starts a new minute.
      this.closeMinute(g);
      g.minute = minute;
      g.count = 1;
    }
    const local = zone.localMs(t);
    const day = Math.floor(local / DAY_MS);
    const hour = Math.floor((local - day * DAY_MS) / HOUR_MS);
    const weekday = (((day + EPOCH_WEEKDAY) % 7) + 7) % 7;
    this.hours[weekday * 24 + hour]!++;
  }

  private closeMinute(g: GatewayMinute): void {
    if (g.count === 0) return;
    this.perMinute.set(g.count, (this.perMinute.get(g.count) ?? 0) + 1);
    this.activeMinutes++;
    g.count = 0;
  }

  /** Notes the raw addresses of a Modbus target that belong to no point of the asset. */
  addUnmapped(table: ModbusTable, address: number, count: number, pointAt: Uint8Array, ev: Evidence, isWrite: boolean): void {
    const key = (MODBUS_TABLES.indexOf(table) * 65536 + address) * 4096 + count;
    if (!isWrite && this.doneTargets.has(key)) return;
    if (!isWrite && this.doneTargets.size < MAX_TARGET_CACHE) this.doneTargets.add(key);
    const end = Math.min(address + count, 65536);
    for (let a = address; a < end; a++) {
      if (pointAt[a] === 1) continue;
      let m = this.unmapped.get(table);
      if (m === undefined) this.unmapped.set(table, (m = new Map()));
      const s = m.get(a);
      if (s === undefined) m.set(a, { count: 1, first: ev, last: ev });
      else {
        s.count++;
        s.last = ev;
      }
    }
  }
}

/** Why a recorded command did not become evidence for a rule. */
export interface NotLearned {
  count: number;
  example: Evidence & { what: string };
}

interface AssetMaps {
  asset: BundleAsset;
  /** Per table: 1 where an address belongs to a point. */
  pointAt: Record<ModbusTable, Uint8Array>;
  /** OPC UA NodeIds the asset maps (points, methods, the object node). */
  nodeIds: Set<string>;
}

/** The statistics of one learn pass. */
export class Observations {
  readonly groups = new Map<string, Group>();
  groupsDropped = 0;
  /** Commands learned from (recorded allowed, identity and asset known). */
  learned = 0;
  readonly notLearned = new Map<string, NotLearned>();
  private readonly assets = new Map<string, AssetMaps>();
  private readonly zone: ZoneClock;

  constructor(
    /** The base bundle's resolution: commands are learned by the points it names. */
    private readonly base: CommandResolver,
    assets: readonly BundleAsset[],
    readonly timeZone: string,
  ) {
    this.zone = new ZoneClock(timeZone);
    for (const a of assets) {
      const pointAt = {} as Record<ModbusTable, Uint8Array>;
      for (const t of MODBUS_TABLES) pointAt[t] = new Uint8Array(65536);
      const nodeIds = new Set<string>();
      for (const p of Object.values(a.points)) {
        for (let k = 0; k < pointWidth(p); k++) pointAt[p.table][p.address + k] = 1;
        if (p.node_id !== undefined) nodeIds.add(p.node_id);
      }
      for (const m of Object.values(a.methods ?? {})) nodeIds.add(m.node_id);
      if (a.object_node !== undefined) nodeIds.add(a.object_node);
      this.assets.set(a.id, { asset: a, pointAt, nodeIds });
    }
  }

  private skip(why: string, oc: ObservedCommand): void {
    const n = this.notLearned.get(why);
    if (n === undefined) this.notLearned.set(why, { count: 1, example: { gatewayId: oc.gatewayId, seq: oc.seq, timeMs: oc.timeMs, what: `${oc.subject?.workloadId || 'no identity'} on ${oc.cmd.assetId || `unit ${oc.cmd.unitId ?? '?'}`}` } });
    else n.count++;
  }

  /**
   * Why a recorded command is not evidence for a rule, or undefined when it is (the command is
   * then resolved against the base bundle). Only what went through counts: in monitor mode that
   * includes what the bundle would have denied.
   */
  whyNotLearned(oc: ObservedCommand): string | undefined {
    const { cmd, subject, recorded } = oc;
    if (recorded.effect !== 'allow') return `denied at the time (${recorded.reason})`;
    if (subject === undefined || subject.workloadId === '') return 'no identity recorded';
    if (!(RULE_OPERATIONS as readonly string[]).includes(cmd.operation)) return `operation '${cmd.operation}' has no rules`;
    // A rule requires the operation's scope; learning one for a token without it would need
    // require_scope, a decision for a person, not for learn.
    if (!subject.scopes.includes(cmd.operation) && !subject.scopes.includes('*')) return `the token lacked the '${cmd.operation}' scope`;
    resolveWith(this.base, cmd);
    const maps = this.assets.get(cmd.assetId);
    if (maps === undefined) return 'asset not in the base bundle';
    if (cmd.protocol === 'opcua') {
      for (const t of cmd.targets) if (t.nodeId === undefined || !maps.nodeIds.has(t.nodeId)) return 'OPC UA node the base bundle does not map';
    }
    return undefined;
  }

  add(oc: ObservedCommand): void {
    const why = this.whyNotLearned(oc);
    if (why !== undefined) return this.skip(why, oc);
    const { cmd, subject } = oc;
    this.learned++;
    const maps = this.assets.get(cmd.assetId)!;
    const example: Example = { gatewayId: oc.gatewayId, seq: oc.seq, timeMs: oc.timeMs, cmd, subject: subject! };
    this.addTo(subject!.workloadId, maps, example, oc.recorded.shadowReasons.includes('CROSS_ZONE'));
    // A delegated command is allowed only if the human's rules allow it too (docs/policy.md, Delegation).
    if (subject!.actSub) for (const a of subject!.actSub) this.addTo(principalFor(a), maps, example, false);
  }

  private addTo(principal: string, maps: AssetMaps, ex: Example, crossZone: boolean): void {
    const { cmd, subject } = ex;
    const key = `${principal}\u0000${cmd.assetId}\u0000${cmd.operation}`;
    let g = this.groups.get(key);
    if (g === undefined) {
      if (this.groups.size >= MAX_GROUPS) {
        this.groupsDropped++;
        return;
      }
      this.groups.set(key, (g = new Group(principal, maps.asset, cmd.operation, ex)));
    }
    const ev: Evidence = { gatewayId: ex.gatewayId, seq: ex.seq, timeMs: ex.timeMs };
    g.count++;
    g.last = ev;
    if (crossZone) g.crossZone++;
    const level = ASSURANCES.indexOf(subject.assurance);
    if (level < g.minAssurance) g.minAssurance = Math.max(level, 0);
    if (cmd.protocol === 'modbus') g.functionCodes.add(cmd.functionCode);
    g.addTime(ex.gatewayId, ex.timeMs, this.zone);
    const write = cmd.operation === 'write';
    for (const name of cmd.points) {
      let p = g.points.get(name);
      if (p === undefined) g.points.set(name, (p = { count: 0, first: ev, last: ev, min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY, undecodable: 0 }));
      p.count++;
      p.last = ev;
      if (!write) continue;
      const v = cmd.values?.[name];
      if (v === undefined || !Number.isFinite(v)) {
        p.undecodable++;
        continue;
      }
      if (v < p.min) {
        p.min = v;
        p.minEx = ex;
      }
      if (v > p.max) {
        p.max = v;
        p.maxEx = ex;
      }
    }
    if (cmd.protocol === 'modbus') {
      for (const t of cmd.targets) {
        if (t.table !== undefined && t.address !== undefined) g.addUnmapped(t.table, t.address, t.count ?? 1, maps.pointAt[t.table], ev, write);
      }
    }
  }

  finish(): void {
    for (const g of this.groups.values()) g.finish();
  }
}
