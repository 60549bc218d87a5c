// Token revocation (docs/identity.md, Revocation): by jti, by sub (a workload or a human), by owner, and
// by task, from the policy bundle and from the operator and agent APIs. Owns the revocation index,
// its append-only file in the state directory and the `revoked` event. It never verifies tokens and
// never decides anything but "is this Subject revoked".
//
// Semantics (docs/identity.md "Revocation"):
// - jti: that token is dead for good, whenever it was issued.
// - sub / owner / task: every token *issued at or before* the revocation (iat ≤ revoked_at + leeway)
//   is dead; a token the issuer mints afterwards works again. Revoking a sub says "whatever that
//   workload holds now is compromised", not "this workload may never act again": stopping a
//   workload for good is the issuer's job (stop minting) or the CA's (revoke the certificate).
//   The leeway covers an issuer whose clock runs ahead: its token minted just before the
//   revocation may carry an iat a little after it, and must die too.
// - A revoked principal is revoked wherever a token names it: a sub (SPIFFE ID, or a human as
//   `user:<name>`) or an owner refuses every token whose sub, owner or any `act` entry is that
//   principal, compared in canonical form (src/core/principal.ts). Revoking alice stops the agents
//   acting for her, not only those she owns.
// - owner-scoped sub: an owner revoking one of their own agents revokes only that agent's tokens
//   that carry their owner claim (they cannot revoke another owner's use of a shared workload).
// - task: every agent's tokens for the task (an operator), or those carrying one owner claim (the
//   owner, or an agent completing its task); older records name one workload.
//
// Hot path: isRevoked() is a few Map lookups and allocates nothing while no principal is revoked;
// with principal revocations it puts the token's principals in canonical form (cached per Subject).
import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import type { Subject } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import { canonicalPrincipal } from '../core/principal.js';
import { isSpiffeId } from './spiffe.js';

export type RevocationKind = 'jti' | 'sub' | 'owner' | 'task';
export type RevocationSource = 'bundle' | 'operator' | 'owner' | 'agent';

export interface Revocation {
  kind: RevocationKind;
  /** The jti, the SPIFFE ID or `user:<human>`, the owner, or (kind task) the task id. */
  value: string;
  /** kind task from older records: the one workload whose tokens for the task end. */
  workloadId?: string;
  /** kind sub or task revoked by an owner (or an agent for its owner): only tokens with this owner claim. */
  owner?: string;
  reason: string;
  /** ms since epoch; tokens issued at or before it (plus leeway) are revoked (jti: all). */
  revokedAtMs: number;
  source: RevocationSource;
  /** Who asked: the operator token's sub, or the agent's SPIFFE ID for task-complete. */
  by: string;
}

/**
 * What a policy bundle may list under `revocations` (coordinated with the policy compiler by this
 * type only). Exactly one of jti / sub / owner. `revoked_at` in seconds since the epoch; when
 * absent, the bundle's `issued_at` is used.
 */
export interface BundleRevocation {
  jti?: string;
  sub?: string;
  owner?: string;
  reason?: string;
  revoked_at?: number;
}

/** A request to revoke, as the operator or agent API hands it over (validated by parseRevocationRequest). */
export interface RevocationRequest {
  kind: RevocationKind;
  value: string;
  workloadId?: string;
  owner?: string;
  reason: string;
  source: RevocationSource;
  by: string;
}

export class RevocationError extends PlantgateError {
  readonly code: 'BAD_REQUEST' | 'STORE_FULL' | 'STORE_CORRUPT' | 'STORE_UNAVAILABLE';
  constructor(code: RevocationError['code'], message: string, options?: { cause?: unknown }) {
    super(code === 'BAD_REQUEST' ? 'PROTOCOL_VIOLATION' : 'TOKEN_REVOKED', message, options);
    this.code = code;
  }
}

const MAX_VALUE_LENGTH = 2048;
const MAX_REASON_LENGTH = 512;
const FILE_NAME = 'revocations.ndjson';

/** A human principal as the operator API, the CLI and bundles name it: `user:<name>`. */
export function isHumanPrincipal(value: string): boolean {
  return /^user:./i.test(value.trim());
}

/**
 * Validates an untrusted JSON body `{jti|sub|owner|task, reason}`; returns the request or a message.
 * `sub` is a workload's SPIFFE ID or a human as `user:<name>`.
 */
export function parseRevocationBody(body: unknown): { kind: 'jti' | 'sub' | 'owner' | 'task'; value: string; reason: string } | string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'body must be a JSON object {"jti"|"sub"|"owner"|"task": "...", "reason": "..."}';
  const b = body as Record<string, unknown>;
  const allowed = new Set(['jti', 'sub', 'owner', 'task', 'reason']);
  for (const k of Object.keys(b)) if (!allowed.has(k)) return `unknown field "${k}"`;
  const named = (['jti', 'sub', 'owner', 'task'] as const).filter((k) => b[k] !== undefined);
  if (named.length !== 1) return 'name exactly one of "jti", "sub", "owner" or "task"';
  const kind = named[0];
  const value = b[kind];
  if (typeof value !== 'string' || value.trim() === '' || value.length > MAX_VALUE_LENGTH) return `"${kind}" must be a non-empty string of at most ${MAX_VALUE_LENGTH} characters`;
  if (kind === 'sub' && !isSpiffeId(value) && !isHumanPrincipal(value)) return '"sub" must be a SPIFFE ID (spiffe://trust-domain/path) or a human as user:<name>';
  const reason = b.reason;
  if (typeof reason !== 'string' || reason.trim() === '' || reason.length > MAX_REASON_LENGTH) return `"reason" must be a non-empty string of at most ${MAX_REASON_LENGTH} characters`;
  return { kind, value, reason: reason.trim() };
}

/** The per-command lookup tables: one latest revocation time per key; principals in canonical form. */
class Index {
  readonly jti = new Map<string, number>();
  /** Workloads and humans (sub) and owners: a token naming one as sub, owner or in act is revoked. */
  readonly principal = new Map<string, number>();
  /** task id → time (every agent's tokens for the task). */
  readonly task = new Map<string, number>();
  /** task id → canonical owner → time. */
  readonly taskOwner = new Map<string, Map<string, number>>();
  /** workload → task id → time (older task-complete records: one workload). */
  readonly taskWorkload = new Map<string, Map<string, number>>();
  /** canonical workload → canonical owner → time (owner self-service revocation of one agent). */
  readonly subOwner = new Map<string, Map<string, number>>();

  add(r: Revocation): void {
    switch (r.kind) {
      case 'jti':
        later(this.jti, r.value, r.revokedAtMs);
        break;
      case 'sub':
        if (r.owner === undefined) later(this.principal, canonicalPrincipal(r.value), r.revokedAtMs);
        else later(nested(this.subOwner, canonicalPrincipal(r.value)), canonicalPrincipal(r.owner), r.revokedAtMs);
        break;
      case 'owner':
        later(this.principal, canonicalPrincipal(r.value), r.revokedAtMs);
        break;
      case 'task':
        if (r.workloadId !== undefined) later(nested(this.taskWorkload, r.workloadId), r.value, r.revokedAtMs);
        else if (r.owner !== undefined) later(nested(this.taskOwner, r.value), canonicalPrincipal(r.owner), r.revokedAtMs);
        else later(this.task, r.value, r.revokedAtMs);
        break;
    }
  }
}

function later(map: Map<string, number>, key: string, ms: number): void {
  const prev = map.get(key);
  if (prev === undefined || ms > prev) map.set(key, ms);
}

function nested(map: Map<string, Map<string, number>>, key: string): Map<string, number> {
  let inner = map.get(key);
  if (inner === undefined) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}

/**
 * A token's principals in canonical form: [sub, owner, ...act]. Cached per Subject object (a
 * registered token is one object for its whole life), so a command pays for it once per token.
 */
const principalsOf = new WeakMap<Subject, readonly string[]>();
function principals(s: Subject): readonly string[] {
  let p = principalsOf.get(s);
  if (p === undefined) {
    // Positions are fixed (0 sub, 1 owner): an empty claim stays '' and matches no revocation.
    p = [s.workloadId, s.owner, ...(s.actSub ?? [])].map(canonicalPrincipal);
    principalsOf.set(s, p);
  }
  return p;
}

/** Does revocation `r` apply to `s`? The same rule as the index, for event listeners (rare path). */
export function revocationApplies(r: Revocation, s: Subject, leewayMs: number): boolean {
  if (r.kind === 'jti') return s.jti === r.value;
  if (s.issuedAtMs > r.revokedAtMs + leewayMs) return false;
  switch (r.kind) {
    case 'sub':
      if (r.owner !== undefined) return canonicalPrincipal(s.workloadId) === canonicalPrincipal(r.value) && canonicalPrincipal(s.owner) === canonicalPrincipal(r.owner);
      return principals(s).includes(canonicalPrincipal(r.value));
    case 'owner':
      return principals(s).includes(canonicalPrincipal(r.value));
    case 'task':
      if (s.taskId !== r.value) return false;
      if (r.workloadId !== undefined) return s.workloadId === r.workloadId;
      return r.owner === undefined || canonicalPrincipal(s.owner) === canonicalPrincipal(r.owner);
  }
}

export interface RevocationStoreOptions {
  /** Directory for `revocations.ndjson` (the gateway's state dir). */
  stateDir: string;
  clock: Clock;
  /** Issuer clock leeway: tokens with iat up to this far after a revocation still die. Default 30 s. */
  leewaySec?: number;
  /** Bound on persisted revocations; past it new ones are refused loudly (never silently dropped). */
  maxEntries?: number;
}

export interface RevocationStoreEvents {
  revoked: [Revocation];
}

export class RevocationStore extends EventEmitter<RevocationStoreEvents> {
  private index = new Index();
  private readonly persisted: Revocation[] = [];
  private bundle: Revocation[] = [];
  private readonly file: string;
  private readonly leewayMs: number;
  private readonly maxEntries: number;
  private fh: FileHandle | undefined;
  // Appends are serialized so lines never interleave and each one is fsynced before it counts.
  private tail: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: RevocationStoreOptions) {
    super();
    this.file = path.join(opts.stateDir, FILE_NAME);
    this.leewayMs = (opts.leewaySec ?? 30) * 1000;
    this.maxEntries = opts.maxEntries ?? 100_000;
  }

  /**
   * Opens (creating if needed) the revocation file and loads it. A torn last line (a crash in the
   * middle of an append that was never acknowledged) is ignored; any other unreadable line refuses
   * the start: forgetting a revocation would fail open.
   */
  static async open(opts: RevocationStoreOptions): Promise<RevocationStore> {
    const store = new RevocationStore(opts);
    await mkdir(opts.stateDir, { recursive: true });
    let text = '';
    try {
      text = await readFile(store.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new RevocationError('STORE_UNAVAILABLE', `cannot read ${store.file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const lines = text.split('\n');
    // The last piece is '' after a final newline, or a torn line: either way not a record.
    const complete = lines.length - 1;
    for (let i = 0; i < complete; i++) {
      const line = lines[i];
      if (line === '') continue;
      const r = parseStoredRevocation(line);
      if (typeof r === 'string') throw new RevocationError('STORE_CORRUPT', `${store.file}:${i + 1}: ${r}`);
      store.persisted.push(r);
    }
    store.rebuild();
    if (text !== '' && !text.endsWith('\n')) {
      // A torn tail was never acknowledged: cut it off so the next append starts a clean line.
      const keep = Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1));
      const fix = await open(store.file, 'r+');
      try {
        await fix.truncate(keep);
        await fix.sync();
      } finally {
        await fix.close();
      }
    }
    store.fh = await open(store.file, 'a', 0o600);
    return store;
  }

  /**
   * Per command: the reason this Subject may not act, or undefined. O(1), allocation-free.
   */
  isRevoked(s: Subject): 'TOKEN_REVOKED' | undefined {
    const ix = this.index;
    if (ix.jti.size !== 0 && ix.jti.has(s.jti)) return 'TOKEN_REVOKED';
    const limit = s.issuedAtMs - this.leewayMs;
    let t: number | undefined;
    if (ix.principal.size !== 0) {
      const p = principals(s);
      for (let i = 0; i < p.length; i++) {
        t = ix.principal.get(p[i]!);
        if (t !== undefined && limit <= t) return 'TOKEN_REVOKED';
      }
    }
    if (ix.task.size !== 0) {
      t = ix.task.get(s.taskId);
      if (t !== undefined && limit <= t) return 'TOKEN_REVOKED';
    }
    if (ix.taskOwner.size !== 0) {
      t = ix.taskOwner.get(s.taskId)?.get(principals(s)[1]!);
      if (t !== undefined && limit <= t) return 'TOKEN_REVOKED';
    }
    if (ix.taskWorkload.size !== 0) {
      t = ix.taskWorkload.get(s.workloadId)?.get(s.taskId);
      if (t !== undefined && limit <= t) return 'TOKEN_REVOKED';
    }
    if (ix.subOwner.size !== 0) {
      const p = principals(s);
      t = ix.subOwner.get(p[0]!)?.get(p[1]!);
      if (t !== undefined && limit <= t) return 'TOKEN_REVOKED';
    }
    return undefined;
  }

  /**
   * Records a revocation durably (appended and fsynced), then makes it effective and emits
   * `revoked`. Effective before the promise resolves, so an API answer means "next command denied".
   */
  async revoke(req: RevocationRequest): Promise<Revocation> {
    const fh = this.fh;
    if (fh === undefined) throw new RevocationError('STORE_UNAVAILABLE', 'revocation store is closed');
    if (this.persisted.length >= this.maxEntries) {
      throw new RevocationError('STORE_FULL', `revocation store holds ${this.maxEntries} entries; compact it before adding more`);
    }
    const r: Revocation = { kind: req.kind, value: req.value, reason: req.reason, revokedAtMs: this.opts.clock.now(), source: req.source, by: req.by };
    if (req.workloadId !== undefined) r.workloadId = req.workloadId;
    if (req.owner !== undefined) r.owner = req.owner;
    // Effective in memory at once: a command racing the fsync is denied rather than forwarded.
    this.persisted.push(r);
    this.index.add(r);
    const line = JSON.stringify(r) + '\n';
    const write = this.tail.then(async () => {
      await fh.write(line);
      await fh.datasync();
    });
    this.tail = write.catch(() => undefined);
    try {
      await write;
    } catch (err) {
      // Still effective in memory (fail closed) but the caller must learn it is not durable.
      throw new RevocationError('STORE_UNAVAILABLE', `revocation not persisted: ${(err as Error).message}`, { cause: err });
    } finally {
      this.emit('revoked', r);
    }
    return r;
  }

  /** Replaces the revocations that came from the policy bundle (on every bundle activation). */
  setBundleRevocations(list: readonly BundleRevocation[], bundleIssuedAtSec: number): void {
    const next: Revocation[] = [];
    for (const [i, b] of list.entries()) {
      const named = (['jti', 'sub', 'owner'] as const).filter((k) => b[k] !== undefined);
      if (named.length !== 1) throw new PlantgateError('BUNDLE_UNAVAILABLE', `revocations[${i}]: name exactly one of jti, sub, owner`);
      if (b.sub !== undefined && !isSpiffeId(b.sub) && !isHumanPrincipal(b.sub)) throw new PlantgateError('BUNDLE_UNAVAILABLE', `revocations[${i}].sub: not a SPIFFE ID or user:<name>`);
      const kind = named[0];
      const value = b[kind] as string;
      if (typeof value !== 'string' || value === '') throw new PlantgateError('BUNDLE_UNAVAILABLE', `revocations[${i}].${kind}: must be a non-empty string`);
      next.push({
        kind,
        value,
        reason: b.reason ?? 'listed in the policy bundle',
        revokedAtMs: (b.revoked_at ?? bundleIssuedAtSec) * 1000,
        source: 'bundle',
        by: 'bundle',
      });
    }
    const added = next.filter((r) => !this.bundle.some((o) => o.kind === r.kind && o.value === r.value && o.revokedAtMs === r.revokedAtMs));
    this.bundle = next;
    this.rebuild();
    for (const r of added) this.emit('revoked', r);
  }

  /** Every revocation in force: persisted ones (API) first, then the bundle's. */
  list(): Revocation[] {
    return [...this.persisted, ...this.bundle];
  }

  get leewaySec(): number {
    return this.leewayMs / 1000;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await this.tail;
    await fh?.close();
  }

  private rebuild(): void {
    const ix = new Index();
    for (const r of this.persisted) ix.add(r);
    for (const r of this.bundle) ix.add(r);
    // One assignment: a command sees the old index or the new one, never half of one.
    this.index = ix;
  }
}

const KINDS: ReadonlySet<string> = new Set(['jti', 'sub', 'owner', 'task']);
const SOURCES: ReadonlySet<string> = new Set(['bundle', 'operator', 'owner', 'agent']);

function parseStoredRevocation(line: string): Revocation | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  if (v === null || typeof v !== 'object') return 'not an object';
  const r = v as Record<string, unknown>;
  if (typeof r.kind !== 'string' || !KINDS.has(r.kind)) return 'kind: must be jti, sub, owner or task';
  if (typeof r.value !== 'string' || r.value === '') return 'value: must be a non-empty string';
  if (typeof r.revokedAtMs !== 'number' || !Number.isFinite(r.revokedAtMs)) return 'revokedAtMs: must be a number';
  if (typeof r.source !== 'string' || !SOURCES.has(r.source)) return 'source: unknown';
  return {
    kind: r.kind as RevocationKind,
    value: r.value,
    ...(typeof r.workloadId === 'string' ? { workloadId: r.workloadId } : {}),
    ...(typeof r.owner === 'string' ? { owner: r.owner } : {}),
    reason: typeof r.reason === 'string' ? r.reason : '',
    revokedAtMs: r.revokedAtMs,
    source: r.source as RevocationSource,
    by: typeof r.by === 'string' ? r.by : '',
  };
}
