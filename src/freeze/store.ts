// The operator's emergency freeze (docs/operator.md, "Emergency freeze"): which freezes are in
// force, whether one holds a command, and their durable state. A freeze stops state-changing
// commands (writes, method calls, diagnostics) — or, with mode `all`, every command — for the whole
// site, one asset, the workloads matching a SPIFFE pattern, or one owner's agents.
// Owns the freeze list, its file (`freezes.json`, written atomically with fsync before any answer
// says "frozen" or "lifted") and the `changed` event the gateway turns into audit records and
// metrics. It never decides policy and never looks at tokens beyond the Subject it is handed: no
// scope, rule or approval can outweigh a freeze, because the pipeline asks this store first.
//
// Hot path: check() returns at once when nothing is frozen; otherwise it walks the (few) active
// freezes, comparing precomputed values. Expiry is noticed there and recorded off the hot path.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { mustBeDurable, type Command, type Subject } from '../core/command.js';
import { writeFileAtomic } from '../core/files.js';
import { canonicalPrincipal } from '../core/principal.js';
import { workloadMatcher } from '../core/glob.js';

export type FreezeScope = 'site' | 'asset' | 'workload' | 'owner';
/** `writes`: state-changing commands (write, call, diagnostic, admin). `all`: every command. */
export type FreezeMode = 'writes' | 'all';

export interface UnfreezeVote {
  by: string;
  atMs: number;
  reason: string;
}

export interface Freeze {
  id: string;
  scope: FreezeScope;
  /** '' for the site; the asset id; the SPIFFE pattern; the owner as the operator typed it. */
  value: string;
  mode: FreezeMode;
  reason: string;
  by: string;
  frozenAtMs: number;
  /** Lifted by itself at this time; undefined = until an operator lifts it. */
  expiresAtMs?: number;
  /** Two-person rule: operators who asked to lift it so far (each vote lapses after voteTtl). */
  unfreezeVotes: UnfreezeVote[];
}

export interface LiftedFreeze extends Freeze {
  liftedAtMs: number;
  /** 'operator' (by the votes in unfreezeVotes) or 'expired'. */
  liftedHow: 'operator' | 'expired';
}

export interface FreezeRequest {
  scope: FreezeScope;
  value: string;
  mode: FreezeMode;
  reason: string;
  by: string;
  expiresAtMs?: number;
}

export type FreezeChangeKind = 'frozen' | 'unfreeze_requested' | 'unfrozen' | 'expired';

export interface FreezeChange {
  kind: FreezeChangeKind;
  freeze: Freeze;
  /** Who acted (the freezer, the voter, the operator who completed the lift; '' when expired). */
  by: string;
  /** The reason given for this change (freeze reason, or the unfreeze reason). */
  reason: string;
  /** Operators needed to lift it (the two-person rule's N). */
  needed: number;
}

export type FreezeErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'ALREADY_VOTED' | 'STORE_FULL' | 'STORE_CORRUPT' | 'STORE_UNAVAILABLE';

export class FreezeError extends Error {
  readonly code: FreezeErrorCode;
  constructor(code: FreezeErrorCode, message: string) {
    super(message);
    this.name = 'FreezeError';
    this.code = code;
  }
}

export interface FreezeStoreOptions {
  /** Directory of freezes.json (the gateway's state dir + /freeze). */
  stateDir: string;
  clock: Clock;
  /** Distinct operators who must ask before a freeze is lifted (two-person rule: 2). Default 1. */
  unfreezeQuorum?: number;
  /** How long one operator's unfreeze vote waits for the others. Default 15 min. */
  voteTtlMs?: number;
  /** Bound on active freezes (each costs a comparison per command while in force). Default 256. */
  maxActive?: number;
  /**
   * Records a change (the gateway: a durable audit record, a metric, a log line). Awaited before
   * freeze() / unfreeze() resolve, so an operator's answer means the record is on disk too; a
   * failure is the hook's to report (the freeze holds either way).
   */
  record?(change: FreezeChange): Promise<void> | void;
}

const FILE_NAME = 'freezes.json';
const MAX_LIFTED = 50;
export const MAX_FREEZE_REASON = 500;
const DEFAULT_VOTE_TTL_MS = 15 * 60_000;

const voteSchema = z.object({ by: z.string(), atMs: z.number(), reason: z.string() });
const freezeSchema = z.object({
  id: z.string().min(1),
  scope: z.enum(['site', 'asset', 'workload', 'owner']),
  value: z.string(),
  mode: z.enum(['writes', 'all']),
  reason: z.string(),
  by: z.string(),
  frozenAtMs: z.number(),
  expiresAtMs: z.number().optional(),
  unfreezeVotes: z.array(voteSchema),
});
const liftedSchema = freezeSchema.extend({ liftedAtMs: z.number(), liftedHow: z.enum(['operator', 'expired']) });
const stateSchema = z.object({ format: z.literal(1), active: z.array(freezeSchema), lifted: z.array(liftedSchema) });

/** A freeze with what check() compares, computed once. */
interface Compiled {
  freeze: Freeze;
  writesOnly: boolean;
  matches(cmd: Command, subject: Subject, owners: readonly string[]): boolean;
}

function compile(f: Freeze): Compiled {
  const writesOnly = f.mode === 'writes';
  switch (f.scope) {
    case 'site':
      return { freeze: f, writesOnly, matches: () => true };
    case 'asset':
      return { freeze: f, writesOnly, matches: (cmd) => cmd.assetId === f.value };
    case 'workload': {
      const match = workloadMatcher(canonicalPrincipal(f.value));
      return { freeze: f, writesOnly, matches: (_cmd, s) => match(s.workloadId) };
    }
    case 'owner': {
      const owner = canonicalPrincipal(f.value);
      return { freeze: f, writesOnly, matches: (_cmd, _s, owners) => owners.includes(owner) };
    }
  }
}

// A session's Subject object is reused for each of its commands: canonicalise its humans once.
const subjectOwners = new WeakMap<Subject, string[]>();
/** The owner and every human the agent acts for (act chain), canonical: a frozen owner is frozen in any role. */
function ownersOf(s: Subject): string[] {
  let o = subjectOwners.get(s);
  if (o === undefined) {
    o = [s.owner, ...(s.actSub ?? [])].filter((x) => x !== '').map(canonicalPrincipal);
    subjectOwners.set(s, o);
  }
  return o;
}

export class FreezeStore extends EventEmitter<{ changed: [FreezeChange] }> {
  private compiled: Compiled[] = [];
  private lifted: LiftedFreeze[] = [];
  private readonly file: string;
  private readonly quorum: number;
  private readonly voteTtlMs: number;
  private readonly maxActive: number;
  // One state write at a time: each writes the whole state as it is when it starts.
  private writing: Promise<void> = Promise.resolve();
  private sweeping = false;
  private expiryTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly opts: FreezeStoreOptions) {
    super();
    this.file = path.join(opts.stateDir, FILE_NAME);
    this.quorum = opts.unfreezeQuorum ?? 1;
    this.voteTtlMs = opts.voteTtlMs ?? DEFAULT_VOTE_TTL_MS;
    this.maxActive = opts.maxActive ?? 256;
  }

  /**
   * Opens the store and loads the freezes in force. An unreadable or invalid state file refuses the
   * start (STORE_CORRUPT): forgetting a freeze would let frozen writes through.
   */
  static async open(opts: FreezeStoreOptions): Promise<FreezeStore> {
    const store = new FreezeStore(opts);
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    let text: string;
    try {
      text = await readFile(store.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw new FreezeError('STORE_UNAVAILABLE', `cannot read ${store.file}: ${(err as Error).message}`);
    }
    let parsed: z.infer<typeof stateSchema>;
    try {
      const r = stateSchema.safeParse(JSON.parse(text));
      if (!r.success) {
        const issue = r.error.issues[0]!;
        throw new Error(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
      }
      parsed = r.data;
    } catch (err) {
      throw new FreezeError(
        'STORE_CORRUPT',
        `${store.file}: ${(err as Error).message}. The emergency freezes in force cannot be known, so the gateway does not start; ` +
          'restore the file, or remove it only after an operator has confirmed that no freeze must hold',
      );
    }
    store.compiled = parsed.active.map((f) => compile(f as Freeze));
    store.lifted = parsed.lifted as LiftedFreeze[];
    store.armExpiry();
    return store;
  }

  /** Operators needed to lift a freeze (1, or N under the two-person rule). */
  get unfreezeQuorum(): number {
    return this.quorum;
  }

  /**
   * Per command: the freeze that holds it, or undefined. Nothing frozen costs one length check.
   */
  check(cmd: Command, subject: Subject, nowMs: number): Freeze | undefined {
    const list = this.compiled;
    if (list.length === 0) return undefined;
    const changes = mustBeDurable(cmd.operation);
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (c.writesOnly && !changes) continue;
      const exp = c.freeze.expiresAtMs;
      if (exp !== undefined && exp <= nowMs) {
        this.scheduleSweep();
        continue;
      }
      if (c.matches(cmd, subject, c.freeze.scope === 'owner' ? ownersOf(subject) : [])) return c.freeze;
    }
    return undefined;
  }

  /**
   * Puts a freeze in force: effective in memory at once (a command racing the fsync is refused),
   * then written; resolves once it is on disk. STORE_UNAVAILABLE: in force but not durable.
   * `now`: the instant the request was read (its relative expiry was computed from it).
   */
  async freeze(req: FreezeRequest, now = this.opts.clock.now()): Promise<Freeze> {
    this.sweep(now);
    if (req.expiresAtMs !== undefined && req.expiresAtMs <= now) throw new FreezeError('BAD_REQUEST', 'the expiry is not in the future');
    if (this.compiled.length >= this.maxActive) throw new FreezeError('STORE_FULL', `${this.maxActive} freezes are in force; lift some, or freeze a wider scope`);
    const f: Freeze = {
      id: `frz-${randomBytes(6).toString('base64url')}`,
      scope: req.scope,
      value: req.scope === 'site' ? '' : req.value,
      mode: req.mode,
      reason: req.reason,
      by: req.by,
      frozenAtMs: now,
      ...(req.expiresAtMs !== undefined ? { expiresAtMs: req.expiresAtMs } : {}),
      unfreezeVotes: [],
    };
    // One assignment: a command sees the old list or the new one.
    this.compiled = [...this.compiled, compile(f)];
    this.armExpiry();
    try {
      await this.persist();
    } finally {
      await this.changed({ kind: 'frozen', freeze: { ...f }, by: req.by, reason: req.reason, needed: this.quorum });
    }
    return { ...f };
  }

  /**
   * An operator asks to lift a freeze. With a quorum of N, the freeze is lifted by the N-th
   * distinct operator (canonical principals) within voteTtl; before that the vote is recorded and
   * the freeze stays in force. A lift is written before it takes effect: if the write fails, the
   * freeze holds (STORE_UNAVAILABLE).
   */
  async unfreeze(id: string, by: string, reason: string): Promise<{ status: 'lifted' | 'pending'; freeze: Freeze; needed: number }> {
    const now = this.opts.clock.now();
    this.sweep(now);
    const c = this.compiled.find((x) => x.freeze.id === id);
    if (c === undefined) throw new FreezeError('NOT_FOUND', `no freeze '${id}' in force`);
    const f = c.freeze;
    const votes = f.unfreezeVotes.filter((v) => v.atMs + this.voteTtlMs > now);
    if (votes.some((v) => canonicalPrincipal(v.by) === canonicalPrincipal(by))) {
      throw new FreezeError('ALREADY_VOTED', `two-person rule: '${by}' already asked to lift ${id}; another operator must agree`);
    }
    const next: Freeze = { ...f, unfreezeVotes: [...votes, { by, atMs: now, reason }] };
    if (next.unfreezeVotes.length < this.quorum) {
      const voted = compile(next);
      this.compiled = this.compiled.map((x) => (x === c ? voted : x));
      try {
        await this.persist();
      } catch (err) {
        this.compiled = this.compiled.map((x) => (x === voted ? c : x));
        throw err;
      }
      await this.changed({ kind: 'unfreeze_requested', freeze: { ...next }, by, reason, needed: this.quorum });
      return { status: 'pending', freeze: { ...next }, needed: this.quorum };
    }
    await this.lift(c, next, now, 'operator');
    await this.changed({ kind: 'unfrozen', freeze: { ...next }, by, reason, needed: this.quorum });
    return { status: 'lifted', freeze: { ...next }, needed: this.quorum };
  }

  /** Freezes in force now (expired ones are recorded as such first). */
  active(nowMs: number): Freeze[] {
    this.sweep(nowMs);
    return this.compiled.map((c) => ({ ...c.freeze, unfreezeVotes: c.freeze.unfreezeVotes.filter((v) => v.atMs + this.voteTtlMs > nowMs) }));
  }

  /** The most recently lifted or expired freezes, newest first. */
  recentlyLifted(nowMs: number): LiftedFreeze[] {
    this.sweep(nowMs);
    return [...this.lifted];
  }

  /** Resolves when every change so far is on disk. */
  async close(): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    await this.writing.catch(() => undefined);
  }

  /**
   * Records the next expiry when it comes, so the audit says "expired" on time even when no command
   * and no operator asks in between (check() already stops holding at the expiry either way).
   */
  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    let next = Infinity;
    for (const c of this.compiled) if (c.freeze.expiresAtMs !== undefined && c.freeze.expiresAtMs < next) next = c.freeze.expiresAtMs;
    if (next === Infinity) return;
    // setTimeout's ceiling is 2^31-1 ms; a later expiry re-arms when this one fires.
    const delay = Math.min(Math.max(0, next - this.opts.clock.now()), 2_147_483_647);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.sweep(this.opts.clock.now());
      this.armExpiry();
    }, delay);
    this.expiryTimer.unref();
  }

  private async lift(c: Compiled, f: Freeze, now: number, how: LiftedFreeze['liftedHow']): Promise<void> {
    const record: LiftedFreeze = { ...f, liftedAtMs: now, liftedHow: how };
    this.compiled = this.compiled.filter((x) => x !== c);
    this.lifted = [record, ...this.lifted].slice(0, MAX_LIFTED);
    try {
      await this.persist();
    } catch (err) {
      // Not on disk: the freeze holds (a restart would bring it back anyway).
      this.compiled = [...this.compiled, c];
      this.lifted = this.lifted.filter((l) => l !== record);
      throw err;
    }
  }

  private async changed(c: FreezeChange): Promise<void> {
    this.emit('changed', c);
    await this.opts.record?.(c);
  }

  private scheduleSweep(): void {
    if (this.sweeping) return;
    this.sweeping = true;
    queueMicrotask(() => {
      this.sweeping = false;
      this.sweep(this.opts.clock.now());
    });
  }

  /** Records freezes whose expiry has passed (they already stopped holding commands in check()). */
  private sweep(nowMs: number): void {
    for (const c of this.compiled) {
      const exp = c.freeze.expiresAtMs;
      if (exp === undefined || exp > nowMs) continue;
      const f = c.freeze;
      this.lift(c, f, exp, 'expired').then(
        () => this.changed({ kind: 'expired', freeze: { ...f }, by: '', reason: 'expired', needed: this.quorum }),
        // Still expired in check(); the next sweep tries the write again.
        () => undefined,
      );
    }
  }

  private persist(): Promise<void> {
    const next = this.writing
      .catch(() => undefined)
      .then(() =>
        writeFileAtomic(this.file, JSON.stringify({ format: 1, active: this.compiled.map((c) => c.freeze), lifted: this.lifted })).catch((err: unknown) => {
          throw new FreezeError('STORE_UNAVAILABLE', `freeze state not durable: ${(err as Error).message}`);
        }),
      );
    this.writing = next;
    return next;
  }
}
