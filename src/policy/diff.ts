// What a new bundle changes against an old one (`plantgate bundle diff`): header, issuers, assets
// and their points, windows, and rules field by field. Pure: payloads in, lines out; never reads
// files and never decides trust (the caller says whether the inputs were verified).
import { isDeepStrictEqual } from 'node:util';
import type { BundlePayload } from './payload.js';

export interface BundleChange {
  /** '+' added, '-' removed, '~' changed. */
  kind: '+' | '-' | '~';
  /** 'header', 'issuer', 'asset', 'point', 'window', 'rule'. */
  what: string;
  id: string;
  detail: string;
}

const show = (v: unknown): string => (v === undefined ? '(none)' : JSON.stringify(v));

function byId<T>(items: readonly T[], id: (t: T) => string): Map<string, T> {
  return new Map(items.map((t) => [id(t), t]));
}

/** Field-level changes between two records, as "field: old -> new". */
function fieldChanges(a: object, b: object): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const out: string[] = [];
  for (const k of keys) {
    const x = (a as Record<string, unknown>)[k];
    const y = (b as Record<string, unknown>)[k];
    if (!isDeepStrictEqual(x, y)) out.push(`${k}: ${show(x)} -> ${show(y)}`);
  }
  return out;
}

function diffSets<T>(out: BundleChange[], what: string, a: readonly T[], b: readonly T[], id: (t: T) => string, describe: (t: T) => string, inner?: (x: T, y: T) => void): void {
  const am = byId(a, id);
  const bm = byId(b, id);
  for (const [k, x] of am) if (!bm.has(k)) out.push({ kind: '-', what, id: k, detail: describe(x) });
  for (const [k, y] of bm) {
    const x = am.get(k);
    if (x === undefined) out.push({ kind: '+', what, id: k, detail: describe(y) });
    else if (inner) inner(x, y);
    else if (!isDeepStrictEqual(x, y)) out.push({ kind: '~', what, id: k, detail: fieldChanges(x as object, y as object).join('; ') });
  }
}

export function diffBundles(a: BundlePayload, b: BundlePayload): BundleChange[] {
  const out: BundleChange[] = [];
  const header = (p: BundlePayload) => ({
    name: p.name,
    revision: p.revision,
    audience: p.audience,
    mode: p.mode ?? 'enforce',
    not_before: new Date(p.not_before * 1000).toISOString(),
    expires_at: new Date(p.expires_at * 1000).toISOString(),
    max_token_ttl_sec: p.limits.max_token_ttl_sec,
    step_base_max_age_ms: p.limits.step_base_max_age_ms,
    step_base_poll_ms: p.limits.step_base_poll_ms,
  });
  for (const line of fieldChanges(header(a), header(b))) out.push({ kind: '~', what: 'header', id: line.split(':')[0]!, detail: line });
  diffSets(out, 'issuer', a.issuers, b.issuers, (i) => i.iss, (i) => `${i.jwks.keys.length} key(s)`);
  diffSets(out, 'window', a.windows ?? [], b.windows ?? [], (w) => w.id, (w) => JSON.stringify(w));
  diffSets(out, 'freeze', a.freezes ?? [], b.freezes ?? [], (f) => f.window, (f) => `${f.operations.join(',')} on ${f.assets.join(',')}`);
  diffSets(
    out,
    'asset',
    a.assets,
    b.assets,
    (x) => x.id,
    (x) => `zone ${x.zone}, ${x.criticality}, ${x.protocol}, ${Object.keys(x.points).length} points`,
    (x, y) => {
      const { points: px, ...hx } = x;
      const { points: py, ...hy } = y;
      const h = fieldChanges(hx, hy);
      if (h.length > 0) out.push({ kind: '~', what: 'asset', id: x.id, detail: h.join('; ') });
      const pa = Object.entries(px).map(([name, def]) => ({ name, ...def }));
      const pb = Object.entries(py).map(([name, def]) => ({ name, ...def }));
      diffSets(out, 'point', pa, pb, (p) => `${x.id}/${p.name}`, (p) => `${p.table} ${p.address} ${p.type}`);
    },
  );
  diffSets(out, 'rule', a.rules, b.rules, (r) => r.id, (r) => `${r.operations.join(',')} on ${r.assets.join(',')} for ${r.subject.workload}${r.mode === 'monitor' ? ' (monitor)' : ''}`);
  // Order is precedence: the same rules in another order can decide differently.
  const common = (p: BundlePayload, other: BundlePayload) => p.rules.map((r) => r.id).filter((id) => other.rules.some((o) => o.id === id));
  const oa = common(a, b);
  const ob = common(b, a);
  if (!isDeepStrictEqual(oa, ob)) out.push({ kind: '~', what: 'rule', id: '(order)', detail: `evaluation order changed: ${oa.join(', ')} -> ${ob.join(', ')}` });
  return out;
}
