// What an operator may ask of the emergency freeze, validated once at the boundary (operator API
// JSON bodies and console forms alike): exactly one scope, a reason, an optional expiry.
// Owns validation and messages only; never touches the store.
import { isSpiffeId } from '../identity/spiffe.js';
import { MAX_FREEZE_REASON, type Freeze, type FreezeMode, type FreezeRequest, type FreezeScope, type LiftedFreeze } from './store.js';

const MAX_VALUE = 512;
/** A freeze longer than a week should be a policy change, not an emergency. */
const MAX_EXPIRY_SEC = 7 * 24 * 3600;

/** A workload pattern is a SPIFFE ID whose path segments may be `*` (one segment) or `**` (any run). */
export function isWorkloadPattern(p: string): boolean {
  return isSpiffeId(p.replace(/\*\*?/g, 'x'));
}

export function parseReason(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const r = v.trim();
  return r === '' || r.length > MAX_FREEZE_REASON ? undefined : r;
}

/**
 * `{"site": true | "asset": id | "workload": pattern | "owner": name, "reason": "...",
 * "mode": "writes" | "all", "expires_in_sec": n | "expires_at": ISO}` → a request (without `by`), or
 * a message naming the field. `knownAssets`: the active bundle's asset ids (undefined: not checked).
 */
export function parseFreezeBody(body: unknown, nowMs: number, knownAssets?: readonly string[]): Omit<FreezeRequest, 'by'> | string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'body must be a JSON object {"site": true | "asset" | "workload" | "owner": "...", "reason": "..."}';
  const b = body as Record<string, unknown>;
  const allowed = new Set(['site', 'asset', 'workload', 'owner', 'reason', 'mode', 'expires_in_sec', 'expires_at']);
  for (const k of Object.keys(b)) if (!allowed.has(k)) return `unknown field "${k}"`;
  const named = (['site', 'asset', 'workload', 'owner'] as const).filter((k) => b[k] !== undefined && b[k] !== '' && b[k] !== false);
  if (named.length !== 1) return 'name exactly one scope: "site": true, "asset", "workload" or "owner"';
  const scope: FreezeScope = named[0]!;
  let value = '';
  if (scope === 'site') {
    if (b.site !== true) return '"site" must be true';
  } else {
    const v = b[scope];
    if (typeof v !== 'string' || v.trim() === '' || v.length > MAX_VALUE) return `"${scope}" must be a non-empty string of at most ${MAX_VALUE} characters`;
    value = v.trim();
    if (scope === 'workload' && !isWorkloadPattern(value)) return '"workload" must be a SPIFFE ID or pattern (spiffe://trust-domain/path, "*" for one segment, "**" for any)';
    if (scope === 'asset' && knownAssets !== undefined && !knownAssets.includes(value)) {
      return `"asset": no asset '${value}' in the active bundle (known: ${knownAssets.join(', ') || 'none'})`;
    }
  }
  const reason = parseReason(b.reason);
  if (reason === undefined) return `"reason" is required: a non-empty string of at most ${MAX_FREEZE_REASON} characters (it goes into the audit log)`;
  const mode = b.mode ?? 'writes';
  if (mode !== 'writes' && mode !== 'all') return '"mode" must be "writes" (writes, method calls, diagnostics) or "all" (every command)';
  if (b.expires_in_sec !== undefined && b.expires_at !== undefined) return 'give "expires_in_sec" or "expires_at", not both';
  let expiresAtMs: number | undefined;
  if (b.expires_in_sec !== undefined) {
    const s = b.expires_in_sec;
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 1 || s > MAX_EXPIRY_SEC) return `"expires_in_sec" must be an integer from 1 to ${MAX_EXPIRY_SEC}`;
    expiresAtMs = nowMs + s * 1000;
  } else if (b.expires_at !== undefined) {
    const t = typeof b.expires_at === 'string' ? Date.parse(b.expires_at) : NaN;
    if (!Number.isFinite(t)) return '"expires_at" must be an ISO 8601 time';
    if (t <= nowMs) return '"expires_at" is not in the future';
    if (t > nowMs + MAX_EXPIRY_SEC * 1000) return `"expires_at" is more than ${MAX_EXPIRY_SEC / 86400} days ahead`;
    expiresAtMs = t;
  }
  return { scope, value, mode: mode as FreezeMode, reason, ...(expiresAtMs !== undefined ? { expiresAtMs } : {}) };
}

/** What an operator sees of a freeze (JSON of the operator API). */
export function freezeView(f: Freeze | LiftedFreeze, needed: number): Record<string, unknown> {
  const iso = (ms: number) => new Date(ms).toISOString();
  const lifted = 'liftedAtMs' in f ? f : undefined;
  return {
    id: f.id,
    scope: f.scope,
    ...(f.scope !== 'site' ? { value: f.value } : {}),
    mode: f.mode,
    reason: f.reason,
    by: f.by,
    frozen_at: iso(f.frozenAtMs),
    expires_at: f.expiresAtMs === undefined ? null : iso(f.expiresAtMs),
    unfreeze: { needed, by: f.unfreezeVotes.map((v) => ({ by: v.by, at: iso(v.atMs), reason: v.reason })) },
    ...(lifted !== undefined ? { lifted_at: iso(lifted.liftedAtMs), lifted_how: lifted.liftedHow } : {}),
  };
}
