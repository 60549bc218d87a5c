// From what `policy learn` observed (observe.ts) to draft rules in the project's YAML shape, each
// with the evidence behind it: the points and raw ranges touched, function codes, write envelopes
// (min/max seen, widened by a margin of the span and rounded outward to the point's resolution),
// a rate limit from the 99th percentile of commands per minute, and a time-of-day window when
// the traffic clearly keeps to one. State-changing commands (writes, calls, diagnostics) seen
// fewer than N times on a point or address are left out and listed. Pure: no I/O, no clock.
// Never widens past what was seen except by the stated margins.
import type { ModbusTable } from '../../core/command.js';
import { mustBeDurable } from '../../core/command.js';
import { principalFor } from '../engine.js';
import { ASSURANCES, MODBUS_TABLES, type PointDef } from '../payload.js';
import { WEEKDAYS, type WindowSpec } from '../windows.js';
import { describeCommand } from '../observed/command.js';
import type { Evidence, Example, Group, Observations, Seen } from './observe.js';

export interface LearnOptions {
  /** State-changing commands seen fewer times than this on a point (or raw address) are left out. */
  minWrites: number;
  /** Bounds are widened by this percentage of the observed span (of |value| when all writes were equal). */
  marginPct: number;
  /** The rate limit is the p99 of commands per active minute plus this percentage. */
  rateMarginPct: number;
  /** IANA time zone of learned windows. */
  timeZone: string;
  /** A window is learned only from this many hours without traffic in every day... */
  windowMinGapHours: number;
  /** ...over at least this many days of observation... */
  windowMinDays: number;
  /** ...and at least this many commands. */
  windowMinCommands: number;
}

export const DEFAULT_LEARN_OPTIONS: LearnOptions = {
  minWrites: 3,
  marginPct: 10,
  rateMarginPct: 50,
  timeZone: 'UTC',
  windowMinGapHours: 6,
  windowMinDays: 2,
  windowMinCommands: 20,
};

/** A rule in source form (the keys of rules/README.md), ready for YAML. */
export interface RuleSource {
  id: string;
  description: string;
  subject: { workload: string; assurance?: string };
  asset: string;
  operations: string[];
  points?: string[];
  ranges?: { table: ModbusTable; from: number; to: number }[];
  function_codes?: number[];
  bounds?: Record<string, { min: number; max: number }>;
  windows?: string[];
  rate_limit?: { rate: string; per: string[] }[];
}

export interface LearnedRule {
  source: RuleSource;
  /** Comment lines (evidence) to print above the rule. */
  evidence: string[];
  group: Group;
}

export interface LeftOut {
  principal: string;
  asset: string;
  operation: string;
  /** A point name, or `table address` for a raw address. */
  target: string;
  seen: Seen;
}

export interface Unexpressible {
  principal: string;
  asset: string;
  operation: string;
  count: number;
  why: string;
}

export interface LearnedPolicy {
  rules: LearnedRule[];
  windows: WindowSpec[];
  leftOut: LeftOut[];
  unexpressible: Unexpressible[];
  /** Observed commands the learned rules must allow (for tests/observed.yaml), in time order. */
  examples: { example: Example; ruleId: string }[];
}

const DAY_MS = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();
const fmt = (n: number): string => n.toLocaleString('en-US');
/** A decoded value for people: 62.800000000000004 (628 × 0.1) reads 62.8. */
const num = (v: number): string => String(Number(v.toPrecision(12)));
const ev = (e: Evidence): string => `${e.gatewayId} seq ${e.seq} at ${iso(e.timeMs)}`;

/** `spiffe://plant.example/agent/optimizer` → `agent-optimizer`; `user:alice@x` → `user-alice-x`. */
function slug(principal: string): string {
  const m = /^spiffe:\/\/[^/]+\/(.*)$/.exec(principal);
  const s = (m ? m[1]! : principal).replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '');
  return s === '' ? 'principal' : s;
}

function p99(perMinute: Map<number, number>, minutes: number): number {
  const counts = [...perMinute.keys()].sort((a, b) => a - b);
  const need = Math.ceil(minutes * 0.99);
  let acc = 0;
  for (const c of counts) {
    acc += perMinute.get(c)!;
    if (acc >= need) return c;
  }
  return counts[counts.length - 1] ?? 0;
}

const RAW_RANGE: Record<Exclude<PointDef['type'], 'string'>, [number, number]> = {
  bool: [0, 1],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  float32: [-3.4028234663852886e38, 3.4028234663852886e38],
};

function decimalsOf(step: number): number {
  const s = String(step);
  const e = /e-(\d+)$/.exec(s);
  if (e) return Number(e[1]);
  const dot = s.indexOf('.');
  return dot < 0 ? 0 : s.length - dot - 1;
}

/**
 * Bounds from the values seen: widened by `marginPct` of the span (of |value| when the span is 0),
 * rounded outward to the point's resolution (its scale; a float without scale to 3 significant
 * digits of the span), kept inside what the point's type can hold, and never narrower than seen.
 */
export function envelope(min: number, max: number, def: PointDef, marginPct: number): { min: number; max: number; step: number } {
  // A string point has no numeric bounds (its writes decode to text): what was seen is all there is.
  if (def.type === 'string') return { min, max, step: 1 };
  const scale = def.scale ?? 1;
  const offset = def.offset ?? 0;
  const [r0, r1] = RAW_RANGE[def.type];
  const lowest = Math.min(r0 * scale + offset, r1 * scale + offset);
  const highest = Math.max(r0 * scale + offset, r1 * scale + offset);
  if (def.type === 'bool') return { min: Math.max(min, lowest), max: Math.min(max, highest), step: 1 };
  const span = max - min;
  const margin = ((span > 0 ? span : Math.abs(max)) * marginPct) / 100;
  let step = Math.abs(scale);
  if (def.type === 'float32' && def.scale === undefined) {
    const mag = span > 0 ? span : Math.abs(max);
    step = mag > 0 ? 10 ** (Math.floor(Math.log10(mag)) - 2) : 1;
  }
  // The grid is offset + k * step: its decimals are those of both.
  const d = Math.max(decimalsOf(step), decimalsOf(offset));
  const round = (x: number): number => Number(x.toFixed(Math.min(d, 20)));
  let lo = round(offset + Math.floor((min - margin - offset) / step + 1e-9) * step);
  let hi = round(offset + Math.ceil((max + margin - offset) / step - 1e-9) * step);
  // Decimal rounding must never cut off a value that was seen (0.7 * 3 is 2.0999999999999996).
  while (lo > min) lo = round(lo - step);
  while (hi < max) hi = round(hi + step);
  return { min: Math.max(lo, lowest), max: Math.min(hi, highest), step };
}

interface Window {
  from: number;
  to: number;
  days?: string[];
}

/** A recurring window when every command fell in one stretch of the day, with a long empty rest. */
function detectWindow(g: Group, o: LearnOptions): Window | undefined {
  if (g.count < o.windowMinCommands || g.last.timeMs - g.first.timeMs < o.windowMinDays * DAY_MS) return undefined;
  const byHour = new Array<number>(24).fill(0);
  for (let i = 0; i < 168; i++) byHour[i % 24] += g.hours[i]!;
  // The longest circular run of empty hours.
  let bestStart = -1;
  let bestLen = 0;
  for (let s = 0; s < 24; s++) {
    if (byHour[s] !== 0 || byHour[(s + 23) % 24] === 0) continue;
    let len = 0;
    while (len < 24 && byHour[(s + len) % 24] === 0) len++;
    if (len > bestLen) {
      bestLen = len;
      bestStart = s;
    }
  }
  if (bestLen < o.windowMinGapHours || bestLen >= 24) return undefined;
  const to = bestStart;
  const from = (bestStart + bestLen) % 24;
  const w: Window = { from, to };
  // Days only from two weeks on: a week of traffic says too little about a weekday never seen.
  if (g.last.timeMs - g.first.timeMs >= 14 * DAY_MS) {
    const wraps = from > to && to !== 0;
    const days = new Set<number>();
    for (let i = 0; i < 168; i++) {
      if (g.hours[i] === 0) continue;
      const weekday = Math.floor(i / 24);
      const hour = i % 24;
      // A window past midnight belongs to the day it starts (docs/policy.md, windows).
      days.add(wraps && hour < to ? (weekday + 6) % 7 : weekday);
    }
    if (days.size < 7) w.days = [...days].sort((a, b) => ((a + 6) % 7) - ((b + 6) % 7)).map((d) => WEEKDAYS[d]!);
  }
  return w;
}

const hhmm = (h: number): string => `${String(h).padStart(2, '0')}:00`;

export function learnRules(obs: Observations, o: LearnOptions): LearnedPolicy {
  const rules: LearnedRule[] = [];
  const windows = new Map<string, WindowSpec>();
  const leftOut: LeftOut[] = [];
  const unexpressible: Unexpressible[] = [];
  const ids = new Set<string>();
  const kept = new Map<Group, { points: Set<string>; addresses: Map<ModbusTable, Set<number>> }>();
  const groups = [...obs.groups.values()].sort(
    (a, b) => a.principal.localeCompare(b.principal) || a.asset.id.localeCompare(b.asset.id) || a.operation.localeCompare(b.operation),
  );
  for (const g of groups) {
    const where = { principal: g.principal, asset: g.asset.id, operation: g.operation };
    if (g.principal.includes('*')) {
      unexpressible.push({ ...where, count: g.count, why: "the principal contains '*', which rules read as a glob" });
      continue;
    }
    const changes = mustBeDurable(g.operation);
    const evidence: string[] = [];
    const points: string[] = [];
    const bounds: Record<string, { min: number; max: number }> = {};
    for (const [name, p] of [...g.points].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (changes && p.count < o.minWrites) {
        leftOut.push({ ...where, target: name, seen: p });
        continue;
      }
      points.push(name);
      if (g.operation !== 'write') continue;
      const def = g.asset.points[name];
      if (def === undefined || def.type === 'string' || !(p.max >= p.min)) {
        evidence.push(`  ${name}: ${fmt(p.count)} writes, ${def?.type === 'string' ? 'text (a string point)' : 'no value decoded'}: unbounded`);
        continue;
      }
      if (p.undecodable > 0) {
        evidence.push(`  ${name}: ${fmt(p.count)} writes, ${num(p.min)} .. ${num(p.max)}${def.unit ? ` ${def.unit}` : ''}; ${fmt(p.undecodable)} without a decodable value (half a 32-bit point): unbounded`);
        continue;
      }
      const env = envelope(p.min, p.max, def, o.marginPct);
      bounds[name] = { min: env.min, max: env.max };
      evidence.push(
        `  ${name}: ${fmt(p.count)} writes, ${num(p.min)} .. ${num(p.max)}${def.unit ? ` ${def.unit}` : ''} -> bounds ${env.min} .. ${env.max}` +
          (def.type === 'bool' ? '' : ` (margin ${o.marginPct} % of the span, step ${env.step})`),
      );
    }
    const ranges: { table: ModbusTable; from: number; to: number }[] = [];
    const addresses = new Map<ModbusTable, Set<number>>();
    for (const table of MODBUS_TABLES) {
      const m = g.unmapped.get(table);
      if (m === undefined) continue;
      const keep = new Set<number>();
      for (const [a, s] of [...m].sort((x, y) => x[0] - y[0])) {
        if (changes && s.count < o.minWrites) leftOut.push({ ...where, target: `${table} ${a}`, seen: s });
        else keep.add(a);
      }
      addresses.set(table, keep);
      const sorted = [...keep].sort((x, y) => x - y);
      for (const a of sorted) {
        const last = ranges[ranges.length - 1];
        if (last && last.table === table && last.to === a - 1) last.to = a;
        else ranges.push({ table, from: a, to: a });
      }
    }
    if (points.length === 0 && ranges.length === 0) {
      // A browse of the OPC UA object node alone: a rule must name a point to cover it.
      if (g.operation === 'browse' && g.points.size === 0 && g.asset.protocol === 'opcua' && Object.keys(g.asset.points).length > 0) {
        const first = Object.keys(g.asset.points).sort()[0]!;
        points.push(first);
        evidence.push(`  only the object node was browsed; a rule names at least one point, so ${first} (the first by name) is covered too`);
      } else {
        if (!changes || g.points.size + g.unmapped.size === 0) unexpressible.push({ ...where, count: g.count, why: 'its commands name no point or address a rule could cover' });
        continue;
      }
    }
    let id = `learned-${slug(g.principal)}-${g.asset.id}-${g.operation}`;
    for (let k = 2; ids.has(id); k++) id = `learned-${slug(g.principal)}-${g.asset.id}-${g.operation}-${k}`;
    ids.add(id);
    kept.set(g, { points: new Set(points), addresses });

    const source: RuleSource = {
      id,
      description: `learned from ${fmt(g.count)} commands seen ${iso(g.first.timeMs)} .. ${iso(g.last.timeMs)}`,
      subject: { workload: g.principal },
      asset: g.asset.id,
      operations: [g.operation],
    };
    if (g.minAssurance > 0) source.subject.assurance = ASSURANCES[g.minAssurance]!;
    if (points.length > 0) source.points = points;
    if (ranges.length > 0) source.ranges = ranges;
    const lines: string[] = [
      `${id}: ${fmt(g.count)} commands, ${iso(g.first.timeMs)} .. ${iso(g.last.timeMs)}`,
      `  e.g. ${ev(g.first)}: ${describeCommand(g.first.cmd)}`,
      ...evidence,
    ];
    if (ranges.length > 0) lines.push(`  raw addresses outside the point map: ${ranges.map((r) => `${r.table} ${r.from}${r.to > r.from ? `..${r.to}` : ''}`).join(', ')}`);
    if (g.functionCodes.size > 0) {
      source.function_codes = [...g.functionCodes].sort((a, b) => a - b);
      lines.push(`  function codes ${source.function_codes.join(', ')}; weakest session assurance ${ASSURANCES[g.minAssurance]}`);
    }
    if (Object.keys(bounds).length > 0) source.bounds = bounds;
    if (g.activeMinutes > 0) {
      const q = p99(g.perMinute, g.activeMinutes);
      const busiest = Math.max(...g.perMinute.keys());
      const limit = Math.max(1, Math.ceil((q * (100 + o.rateMarginPct)) / 100));
      // Per workload: one budget per principal, as the traffic was counted (per gateway, per minute).
      source.rate_limit = [{ rate: `${limit}/m`, per: ['workload'] }];
      lines.push(`  rate: p99 ${q}/min over ${fmt(g.activeMinutes)} active minute${g.activeMinutes === 1 ? '' : 's'} (busiest ${busiest}) + ${o.rateMarginPct} % -> ${limit}/m`);
    }
    const w = detectWindow(g, o);
    if (w !== undefined) {
      const wid = `learned-${hhmm(w.from).replace(':', '')}-${w.to === 0 ? '2400' : hhmm(w.to).replace(':', '')}${w.days ? `-${w.days.join('-')}` : ''}`;
      windows.set(wid, { id: wid, time_zone: o.timeZone, ...(w.days ? { days: w.days as WindowSpec['days'] } : {}), from: hhmm(w.from), to: w.to === 0 ? '24:00' : hhmm(w.to) });
      source.windows = [wid];
      lines.push(`  window: every command fell between ${hhmm(w.from)} and ${w.to === 0 ? '24:00' : hhmm(w.to)} ${o.timeZone}${w.days ? ` on ${w.days.join(', ')}` : ''} -> ${wid}`);
    }
    if (g.crossZone > 0) {
      lines.push(`  WARNING: ${fmt(g.crossZone)} of these commands came from another zone (shadow CROSS_ZONE); the audit does not say which: add cross_zone after review`);
    }
    rules.push({ source, evidence: lines, group: g });
  }

  // Examples for the generated policy test: each rule's first command and, for writes, the
  // commands that wrote the lowest and highest value of each bounded point.
  const examples: { example: Example; ruleId: string }[] = [];
  const groupOf = (principal: string, ex: Example): Group | undefined => obs.groups.get(`${principal}\u0000${ex.cmd.assetId}\u0000${ex.cmd.operation}`);
  const allowed = (ex: Example): boolean => {
    const principals = [ex.subject.workloadId, ...(ex.subject.actSub ?? []).map(principalFor)];
    return principals.every((p) => {
      const g = groupOf(p, ex);
      const k = g === undefined ? undefined : kept.get(g);
      if (k === undefined) return false;
      if (!ex.cmd.points.every((n) => k.points.has(n))) return false;
      return ex.cmd.targets.every((t) => {
        if (t.table === undefined || t.address === undefined) return true;
        const m = g!.unmapped.get(t.table);
        if (m === undefined) return true;
        for (let a = t.address; a < t.address + (t.count ?? 1); a++) if (m.has(a) && !k.addresses.get(t.table)!.has(a)) return false;
        return true;
      });
    });
  };
  for (const r of rules) {
    const g = r.group;
    if (g.principal !== g.first.subject.workloadId) continue; // a human's rule: tested through its agent's
    const seen = new Set<string>();
    const candidates = [g.first, ...[...g.points.values()].flatMap((p) => [p.minEx, p.maxEx])];
    for (const ex of candidates) {
      if (ex === undefined || seen.has(`${ex.gatewayId}:${ex.seq}`) || !allowed(ex)) continue;
      seen.add(`${ex.gatewayId}:${ex.seq}`);
      examples.push({ example: ex, ruleId: r.source.id });
    }
  }
  examples.sort((a, b) => a.example.timeMs - b.example.timeMs || a.example.seq - b.example.seq);
  return { rules, windows: [...windows.values()], leftOut, unexpressible, examples };
}

/** For the left-out list: `principal on asset: op target, N times, first .. last`. */
export function describeLeftOut(l: LeftOut, minWrites: number): string {
  return `${l.principal} ${l.operation} ${l.asset} ${l.target}: seen ${l.seen.count} time(s) (fewer than ${minWrites}), ${ev(l.seen.first)}${l.seen.count > 1 ? ` .. ${iso(l.seen.last.timeMs)}` : ''}`;
}
