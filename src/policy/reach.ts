// What a subject could be allowed by a bundle: per asset, the points it may read or write and the
// methods it may call, with the bounds, windows and approvals of the rules that would allow them.
// The MCP front lists its tools from this (docs/mcp.md, Tools); it never decides anything: every
// command still goes through the decision engine, which alone says allow or deny.
//
// It reads the rules as the engine matches them (docs/policy.md, Precedence): subject (workload
// glob, owner, roles, scopes, assurance, act), operation, required scope, function codes, cross-zone,
// points by glob or address range, and delegation (every human the agent acts for must be allowed
// too). What depends on the moment (windows, freezes, rate limits, values, interlocks) does not
// remove a point here; it is reported so a caller can say when and how a command could pass.
// Pure and not on any hot path: the front computes it once per token and bundle.
import type { Operation, Subject } from '../core/command.js';
import { canonicalPrincipal } from '../core/principal.js';
import { principalFor, ruleWorkload } from './engine.js';
import { pointGlob, workloadMatcher } from '../core/glob.js';
import { ASSURANCES, pointWidth, type BundleAsset, type BundlePayload, type BundleRule, type PointDef } from './payload.js';

export type ReachOperation = Extract<Operation, 'read' | 'write' | 'call'>;

/** How the rules that cover one point (or method) for one operation would let it pass. */
export interface Grant {
  /** The covering rules, in bundle order (the subject's own, then those of the humans it acts for). */
  ruleIds: string[];
  /** Lowest and highest engineering value some covering rule allows (±Infinity: unbounded). */
  min: number;
  max: number;
  /** Every covering rule requires a human approval. */
  approval: boolean;
  /** Every covering rule is limited to windows: the union of their window ids; [] = not limited. */
  windows: string[];
  /** Largest step per write some covering rule allows; undefined = not limited. */
  maxStep?: number;
}

export interface AssetReach {
  asset: BundleAsset;
  read: Map<string, Grant>;
  write: Map<string, Grant>;
  /** OPC UA methods by name. */
  call: Map<string, Grant>;
}

export interface ReachOptions {
  /**
   * The function code the caller's front sends for this point and operation: a rule that lists
   * `function_codes` covers the point only when the code is among them.
   */
  functionCode?(asset: BundleAsset, point: PointDef | undefined, op: ReachOperation): number;
}

const ASSURANCE_LEVEL: Record<string, number> = Object.fromEntries(ASSURANCES.map((a, i) => [a, i]));
const OPERATIONS: readonly ReachOperation[] = ['read', 'write', 'call'];

/** The same subject match the engine applies (engine.ts subjectMatches). */
function subjectMatches(rule: BundleRule, s: Subject): boolean {
  const m = rule.subject;
  if (!workloadMatcher(ruleWorkload(m.workload))(s.workloadId)) return false;
  if (m.owner !== undefined && canonicalPrincipal(m.owner) !== canonicalPrincipal(s.owner)) return false;
  if (!m.roles.every((r) => s.roles.includes(r))) return false;
  if (m.scopes !== undefined && !m.scopes.every((x) => s.scopes.includes(x))) return false;
  if (m.assurance !== undefined && !((ASSURANCE_LEVEL[s.assurance] ?? -1) >= ASSURANCE_LEVEL[m.assurance]!)) return false;
  if (m.act !== undefined) {
    const glob = pointGlob(canonicalPrincipal(m.act));
    if (!(s.actSub ?? []).some((a) => glob.test(canonicalPrincipal(a)))) return false;
  }
  return true;
}

function hasScope(scopes: readonly string[], required: string): boolean {
  return scopes.includes(required) || scopes.includes('*');
}

function inRanges(rule: BundleRule, def: PointDef): boolean {
  const last = def.address + pointWidth(def) - 1;
  for (let a = def.address; a <= last; a++) {
    if (!rule.ranges.some((r) => r.table === def.table && r.from <= a && a <= r.to)) return false;
  }
  return rule.ranges.length > 0;
}

/** Grants of one principal: by asset id, operation and point (or method) name. */
function grantsOf(payload: BundlePayload, s: Subject, opts: ReachOptions): Map<string, Map<string, Grant>> {
  const out = new Map<string, Map<string, Grant>>();
  const assets = new Map(payload.assets.map((a) => [a.id, a]));
  for (const rule of payload.rules) {
    if (!subjectMatches(rule, s)) continue;
    const globs = rule.points.map(pointGlob);
    for (const assetId of rule.assets) {
      const asset = assets.get(assetId);
      if (asset === undefined) continue;
      const zone = s.zone;
      if (zone !== undefined && zone !== '' && zone !== asset.zone && !(rule.cross_zone ?? []).some((z) => z === '*' || z === zone)) continue;
      for (const op of OPERATIONS) {
        if (!rule.operations.includes(op) || !hasScope(s.scopes, rule.require_scope ?? op)) continue;
        const names: [string, PointDef | undefined][] =
          op === 'call'
            ? Object.keys(asset.methods ?? {}).map((n) => [n, undefined])
            : Object.entries(asset.points);
        for (const [name, def] of names) {
          const covered = globs.some((g) => g.test(name)) || (def !== undefined && asset.protocol === 'modbus' && inRanges(rule, def));
          if (!covered) continue;
          if (rule.function_codes !== undefined) {
            const fc = opts.functionCode?.(asset, def, op);
            if (fc === undefined || !rule.function_codes.includes(fc)) continue;
          }
          const key = `${assetId}\u0000${op}`;
          let byName = out.get(key);
          if (byName === undefined) out.set(key, (byName = new Map()));
          const b = rule.bounds[name];
          const step = rule.max_step?.[name];
          const prev = byName.get(name);
          if (prev === undefined) {
            byName.set(name, {
              ruleIds: [rule.id],
              min: b?.min ?? -Infinity,
              max: b?.max ?? Infinity,
              approval: rule.approval === 'required',
              windows: [...(rule.windows ?? [])],
              ...(step !== undefined ? { maxStep: step } : {}),
            });
          } else {
            // Another rule covering the same point widens what could pass.
            prev.ruleIds.push(rule.id);
            prev.min = Math.min(prev.min, b?.min ?? -Infinity);
            prev.max = Math.max(prev.max, b?.max ?? Infinity);
            prev.approval &&= rule.approval === 'required';
            prev.windows = prev.windows.length === 0 || (rule.windows ?? []).length === 0 ? [] : [...new Set([...prev.windows, ...rule.windows!])];
            if (prev.maxStep !== undefined) {
              if (step === undefined) delete prev.maxStep;
              else prev.maxStep = Math.max(prev.maxStep, step);
            }
          }
        }
      }
    }
  }
  return out;
}

/** Both must allow (delegation): the narrower bounds, either's approval and windows. */
function intersect(a: Grant, b: Grant): Grant | undefined {
  const min = Math.max(a.min, b.min);
  const max = Math.min(a.max, b.max);
  if (min > max) return undefined;
  const g: Grant = { ruleIds: [...a.ruleIds, ...b.ruleIds], min, max, approval: a.approval || b.approval, windows: [...new Set([...a.windows, ...b.windows])] };
  const step = a.maxStep === undefined ? b.maxStep : b.maxStep === undefined ? a.maxStep : Math.min(a.maxStep, b.maxStep);
  if (step !== undefined) g.maxStep = step;
  return g;
}

/** Everything the subject could be allowed, asset by asset (assets it can do nothing on are left out). */
export function reachOf(payload: BundlePayload, subject: Subject, opts: ReachOptions = {}): AssetReach[] {
  const agent = grantsOf(payload, subject, opts);
  // The engine evaluates each delegating human as `user:<sub>` (or a SPIFFE ID) without roles.
  const humans = (subject.actSub ?? []).map((act) => {
    const human: Subject = { ...subject, workloadId: principalFor(act), roles: [] };
    delete human.actSub;
    return grantsOf(payload, human, opts);
  });
  const out: AssetReach[] = [];
  for (const asset of payload.assets) {
    const reach: AssetReach = { asset, read: new Map(), write: new Map(), call: new Map() };
    for (const op of OPERATIONS) {
      const key = `${asset.id}\u0000${op}`;
      for (const [name, own] of agent.get(key) ?? []) {
        let g: Grant | undefined = own;
        for (const h of humans) {
          const hg = h.get(key)?.get(name);
          g = hg === undefined || g === undefined ? undefined : intersect(g, hg);
        }
        if (g !== undefined) reach[op].set(name, g);
      }
    }
    if (reach.read.size + reach.write.size + reach.call.size > 0) out.push(reach);
  }
  return out;
}
