// Pending approval requests and the single-use grants they become (docs/safety.md, Approvals). Owns
// the life of an approval: requested (first attempt denied APPROVAL_REQUIRED) → approved by N
// distinct operators, none of them the requester (the agent or a human it acts for) nor, unless the
// rule says otherwise, its owner, all compared in canonical form (src/core/principal.ts) → consumed
// by the agent's identical retry before its execute-by deadline, or rejected, or expired (a request
// not fully approved by its approve-by deadline lapses).
// Bounded (an agent cannot flood operators or memory) and persisted: requests and grants survive
// a gateway restart, and so does the fact that a grant was used, so a restart never revives one.
// Never decides policy: the pipeline asks it only for commands a rule marked approval: required.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { targetText, type Command, type Subject } from '../core/command.js';
import { writeFileAtomic } from '../core/files.js';
import { silentLogger, type Logger } from '../core/log.js';
import { samePrincipal } from '../core/principal.js';
import { commandDigest } from './digest.js';

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'consumed' | 'expired';

export interface ApprovalRequest {
  id: string;
  status: ApprovalStatus;
  /** commandDigest of the command the grant is bound to. */
  digest: string;
  ruleId: string;
  assetId: string;
  operation: string;
  /** Targets as text ("coil 0 x1", "node ns=2;s=Pump1.Run"): what the operator reads. */
  targets: string[];
  points: string[];
  /** Written values in engineering units per point, where known. */
  values?: Record<string, number>;
  rawValues?: number[];
  workloadId: string;
  owner: string;
  taskId: string;
  taskPurpose: string;
  /** Humans the agent acts for (act.sub chain): none of them may approve. */
  actSub?: string[];
  jti: string;
  requestedAtMs: number;
  /** The approve-by deadline: a request not fully approved by then lapses. */
  expiresAtMs: number;
  /** Distinct people who must approve (N-person rule); absent in older state = 1. */
  approvers?: number;
  /** Who may not approve besides the requester: the owner (absent in older state = the owner). */
  distinctFrom?: ApprovalExclusion[];
  /** How long the grant lives after the last approval: the execute-by deadline. */
  executeWithinMs?: number;
  /** The approvals given so far, in order. */
  approvals?: { by: string; atMs: number; reason: string }[];
  decidedBy?: string;
  decidedAtMs?: number;
  reason?: string;
  /** An approved grant must be used before this time. */
  grantExpiresAtMs?: number;
  consumedAtMs?: number;
}

export type ApprovalErrorCode = 'NOT_FOUND' | 'NOT_PENDING' | 'EXPIRED' | 'SAME_PERSON' | 'ALREADY_APPROVED' | 'BAD_REASON' | 'STORE_UNAVAILABLE';

/** Who else may not approve (docs/safety.md): the token's owner; the requester is always excluded. */
export type ApprovalExclusion = 'owner' | 'requester';

/** What the rule asks of an approval (the policy decision's `approval`). */
export interface ApprovalRequirement {
  approvers: number;
  distinct_from: ApprovalExclusion[];
  approve_within_sec?: number;
  execute_within_sec?: number;
}

export class ApprovalError extends Error {
  readonly code: ApprovalErrorCode;
  constructor(code: ApprovalErrorCode, message: string) {
    super(message);
    this.name = 'ApprovalError';
    this.code = code;
  }
}

export interface ApprovalStoreOptions {
  /** Directory of approvals.json; undefined keeps everything in memory (tests, dry runs). */
  stateDir?: string;
  /** How long a request waits for an operator. */
  pendingTtlMs?: number;
  /** How long an approved grant may wait for the agent's retry. */
  grantTtlMs?: number;
  maxPending?: number;
  maxPendingPerWorkload?: number;
  /** How long decided, used and expired requests stay listed. */
  retainMs?: number;
  logger?: Logger;
}

export const DEFAULT_PENDING_TTL_MS = 15 * 60_000;
export const DEFAULT_GRANT_TTL_MS = 2 * 60_000;
const MAX_REASON = 500;
const STATE_FILE = 'approvals.json';
const MAX_RETAINED = 1000;

const requestSchema = z.object({
  id: z.string().min(1),
  status: z.enum(['pending', 'approved', 'rejected', 'consumed', 'expired']),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  ruleId: z.string(),
  assetId: z.string(),
  operation: z.string(),
  targets: z.array(z.string()),
  points: z.array(z.string()),
  values: z.record(z.string(), z.number()).optional(),
  rawValues: z.array(z.number()).optional(),
  workloadId: z.string(),
  owner: z.string(),
  taskId: z.string(),
  taskPurpose: z.string(),
  actSub: z.array(z.string()).optional(),
  jti: z.string(),
  requestedAtMs: z.number(),
  expiresAtMs: z.number(),
  approvers: z.number().int().min(1).optional(),
  distinctFrom: z.array(z.enum(['owner', 'requester'])).optional(),
  executeWithinMs: z.number().int().min(1).optional(),
  approvals: z.array(z.object({ by: z.string(), atMs: z.number(), reason: z.string() })).optional(),
  decidedBy: z.string().optional(),
  decidedAtMs: z.number().optional(),
  reason: z.string().optional(),
  grantExpiresAtMs: z.number().optional(),
  consumedAtMs: z.number().optional(),
});
const stateSchema = z.object({ format: z.literal(1), requests: z.array(requestSchema) });

/**
 * Why `who` may not approve or reject `r`, or undefined. The requester (the agent, any human it acts
 * for) never may; the owner may not unless the rule left them out of distinct_from. Names are
 * compared in canonical form: no spelling of the owner's name is another person.
 */
export function excludedReason(r: ApprovalRequest, who: string): string | undefined {
  if (samePrincipal(who, r.workloadId)) return 'is the requesting agent';
  if ((r.actSub ?? []).some((h) => samePrincipal(h, who))) return 'is a human the agent acts for';
  if ((r.distinctFrom ?? ['owner']).includes('owner') && samePrincipal(who, r.owner)) return `is the agent's owner (${r.owner})`;
  return undefined;
}

/**
 * The grant belongs to this workload, owner and task: another agent, or the same agent on another
 * task, cannot use it. People in canonical form, like every comparison of principals.
 */
function sameSubject(r: ApprovalRequest, s: Subject): boolean {
  return samePrincipal(r.workloadId, s.workloadId) && samePrincipal(r.owner, s.owner) && r.taskId === s.taskId;
}

export class ApprovalStore {
  private readonly requests = new Map<string, ApprovalRequest>();
  /** Open (pending, approved, recently rejected) requests by digest: the command-path lookup. */
  private readonly open = new Map<string, ApprovalRequest[]>();
  private readonly pendingTtlMs: number;
  private readonly grantTtlMs: number;
  private readonly maxPending: number;
  private readonly maxPendingPerWorkload: number;
  private readonly retainMs: number;
  private readonly logger: Logger;
  private writing: Promise<void> = Promise.resolve();
  private scheduled: Promise<void> | undefined;

  private constructor(private readonly opts: ApprovalStoreOptions) {
    this.pendingTtlMs = opts.pendingTtlMs ?? DEFAULT_PENDING_TTL_MS;
    this.grantTtlMs = opts.grantTtlMs ?? DEFAULT_GRANT_TTL_MS;
    this.maxPending = opts.maxPending ?? 256;
    this.maxPendingPerWorkload = opts.maxPendingPerWorkload ?? 16;
    this.retainMs = opts.retainMs ?? 24 * 3600_000;
    this.logger = opts.logger ?? silentLogger;
  }

  /**
   * Opens the store and loads what survived the last run. A state file that cannot be read or
   * does not validate is set aside (approvals.json.corrupt-<time>) and every grant in it is void:
   * losing an approval costs an operator a click; reviving a used one could move a valve twice.
   */
  static async open(opts: ApprovalStoreOptions = {}): Promise<ApprovalStore> {
    const store = new ApprovalStore(opts);
    if (opts.stateDir === undefined) return store;
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    const file = path.join(opts.stateDir, STATE_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw new ApprovalError('STORE_UNAVAILABLE', `cannot read ${file}: ${(err as Error).message}`);
    }
    let parsed: z.infer<typeof stateSchema> | undefined;
    try {
      const r = stateSchema.safeParse(JSON.parse(text));
      if (r.success) parsed = r.data;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined) {
      const aside = `${file}.corrupt-${Date.now()}`;
      await rename(file, aside);
      store.logger.error({ file, aside }, 'approval state unreadable: set aside, every grant in it is void');
      return store;
    }
    for (const r of parsed.requests) store.add(r as ApprovalRequest);
    return store;
  }

  private add(r: ApprovalRequest): void {
    this.requests.set(r.id, r);
    if (r.status === 'pending' || r.status === 'approved' || r.status === 'rejected') {
      let list = this.open.get(r.digest);
      if (list === undefined) this.open.set(r.digest, (list = []));
      list.push(r);
    }
  }

  private close_(r: ApprovalRequest, status: ApprovalStatus): void {
    r.status = status;
    const list = this.open.get(r.digest);
    if (list === undefined) return;
    const i = list.indexOf(r);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.open.delete(r.digest);
  }

  /** Lapses what has timed out; forgets finished requests older than the retention. */
  private sweep(nowMs: number): boolean {
    let changed = false;
    for (const r of this.requests.values()) {
      if (r.status === 'pending' && r.expiresAtMs <= nowMs) {
        this.close_(r, 'expired');
        changed = true;
      } else if (r.status === 'approved' && (r.grantExpiresAtMs ?? 0) <= nowMs) {
        this.close_(r, 'expired');
        changed = true;
      } else if (r.status === 'rejected' && (r.decidedAtMs ?? 0) + this.pendingTtlMs <= nowMs && this.open.get(r.digest)?.includes(r)) {
        // A rejection holds off identical retries for one pending period, then stops counting.
        this.close_(r, 'rejected');
        changed = true;
      }
      const endedAt = r.consumedAtMs ?? r.decidedAtMs ?? r.expiresAtMs;
      if (r.status !== 'pending' && r.status !== 'approved' && endedAt + this.retainMs <= nowMs) {
        this.requests.delete(r.id);
        changed = true;
      }
    }
    // History is bounded too: beyond MAX_RETAINED the oldest finished requests go first.
    if (this.requests.size > MAX_RETAINED) {
      for (const r of this.requests.values()) {
        if (this.requests.size <= MAX_RETAINED) break;
        if (r.status === 'pending' || r.status === 'approved' || this.open.get(r.digest)?.includes(r)) continue;
        this.requests.delete(r.id);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * The pipeline, for a command a rule allows only with approval: the id of an approved grant for
   * exactly this command and subject, now used up; or undefined. Synchronous: the grant is spent
   * in memory at once (single use even under concurrent retries); its persistence is queued, and
   * whenDurable() resolves once it is on disk.
   */
  consume(cmd: Command, subject: Subject, nowMs: number): string | undefined {
    const list = this.open.get(commandDigest(cmd));
    if (list === undefined) return undefined;
    for (const r of list) {
      if (r.status !== 'approved' || !sameSubject(r, subject)) continue;
      if ((r.grantExpiresAtMs ?? 0) <= nowMs) continue;
      r.consumedAtMs = nowMs;
      this.close_(r, 'consumed');
      void this.persist().catch(() => undefined);
      return r.id;
    }
    return undefined;
  }

  /**
   * The pipeline, after a first attempt was denied APPROVAL_REQUIRED: the id of the request an
   * operator will see. The same command from the same subject while a request is pending (or was
   * just rejected) gets that request's id, not a new one. undefined when the store is full (the
   * command is still denied; operators are not flooded).
   */
  request(cmd: Command, subject: Subject, ruleId: string, nowMs: number, requirement?: ApprovalRequirement): string | undefined {
    if (this.sweep(nowMs)) void this.persist().catch(() => undefined);
    const digest = commandDigest(cmd);
    for (const r of this.open.get(digest) ?? []) {
      if (sameSubject(r, subject) && (r.status === 'pending' || r.status === 'rejected')) return r.id;
    }
    let pending = 0;
    let mine = 0;
    for (const r of this.requests.values()) {
      if (r.status !== 'pending') continue;
      pending++;
      if (r.workloadId === subject.workloadId) mine++;
    }
    if (pending >= this.maxPending || mine >= this.maxPendingPerWorkload) {
      this.logger.warn({ workload: subject.workloadId, pending, mine }, 'approval request refused: too many pending');
      return undefined;
    }
    const r: ApprovalRequest = {
      id: `apr-${randomBytes(9).toString('base64url')}`,
      status: 'pending',
      digest,
      ruleId,
      assetId: cmd.assetId,
      operation: cmd.operation,
      targets: cmd.targets.map(targetText),
      points: [...cmd.points],
      ...(cmd.values !== undefined ? { values: { ...cmd.values } } : {}),
      ...(cmd.rawValues !== undefined ? { rawValues: [...cmd.rawValues] } : {}),
      workloadId: subject.workloadId,
      owner: subject.owner,
      taskId: subject.taskId,
      taskPurpose: subject.taskPurpose,
      ...(subject.actSub !== undefined && subject.actSub.length > 0 ? { actSub: [...subject.actSub] } : {}),
      jti: subject.jti,
      requestedAtMs: nowMs,
      expiresAtMs: nowMs + (requirement?.approve_within_sec !== undefined ? requirement.approve_within_sec * 1000 : this.pendingTtlMs),
      approvers: requirement?.approvers ?? 1,
      distinctFrom: requirement?.distinct_from ?? ['owner', 'requester'],
      ...(requirement?.execute_within_sec !== undefined ? { executeWithinMs: requirement.execute_within_sec * 1000 } : {}),
      approvals: [],
    };
    this.add(r);
    void this.persist().catch(() => undefined);
    return r.id;
  }

  /**
   * An operator approves. With the N-person rule the request stays pending until N distinct people
   * approved; the last approval makes it a grant valid until its execute-by deadline. Resolves once
   * the change is on disk (a grant the operator was told about must survive a restart).
   */
  async approve(id: string, approver: string, reason: string, nowMs: number): Promise<ApprovalRequest> {
    const r = this.decidable(id, approver, reason, nowMs);
    if ((r.approvals ?? []).some((a) => samePrincipal(a.by, approver))) {
      throw new ApprovalError('ALREADY_APPROVED', `'${approver}' already approved request '${id}': the N-person rule needs another person`);
    }
    const before = { ...r, approvals: [...(r.approvals ?? [])] };
    r.approvals = [...(r.approvals ?? []), { by: approver, atMs: nowMs, reason }];
    if (r.approvals.length >= (r.approvers ?? 1)) {
      r.status = 'approved';
      r.decidedBy = approver;
      r.decidedAtMs = nowMs;
      r.reason = reason;
      r.grantExpiresAtMs = nowMs + (r.executeWithinMs ?? this.grantTtlMs);
    }
    return this.commit(r, before);
  }

  /** An operator rejects: identical retries stay denied (same request id) for one pending period. */
  async reject(id: string, approver: string, reason: string, nowMs: number): Promise<ApprovalRequest> {
    const r = this.decidable(id, approver, reason, nowMs);
    const before = { ...r };
    r.status = 'rejected';
    r.decidedBy = approver;
    r.decidedAtMs = nowMs;
    r.reason = reason;
    return this.commit(r, before);
  }

  private decidable(id: string, approver: string, reason: string, nowMs: number): ApprovalRequest {
    if (this.sweep(nowMs)) void this.persist().catch(() => undefined);
    const r = this.requests.get(id);
    if (r === undefined) throw new ApprovalError('NOT_FOUND', `no approval request '${id}'`);
    if (r.status === 'expired') throw new ApprovalError('EXPIRED', `approval request '${id}' expired at ${new Date(r.expiresAtMs).toISOString()}`);
    if (r.status !== 'pending') throw new ApprovalError('NOT_PENDING', `approval request '${id}' is ${r.status}, not pending`);
    if (typeof reason !== 'string' || reason.trim() === '' || reason.length > MAX_REASON) {
      throw new ApprovalError('BAD_REASON', `a reason (1..${MAX_REASON} characters) is required`);
    }
    const excluded = excludedReason(r, approver);
    if (excluded !== undefined) {
      throw new ApprovalError('SAME_PERSON', `two-person rule: '${approver}' ${excluded}; another operator must decide`);
    }
    return r;
  }

  private async commit(r: ApprovalRequest, before: ApprovalRequest): Promise<ApprovalRequest> {
    try {
      await this.persist();
    } catch (err) {
      // Not on disk: undo, so no grant exists that a restart would silently forget.
      Object.assign(r, before);
      if (before.decidedBy === undefined) delete r.decidedBy;
      if (before.decidedAtMs === undefined) delete r.decidedAtMs;
      if (before.reason === undefined) delete r.reason;
      if (before.grantExpiresAtMs === undefined) delete r.grantExpiresAtMs;
      throw new ApprovalError('STORE_UNAVAILABLE', `approval state not durable: ${(err as Error).message}`);
    }
    return { ...r };
  }

  get(id: string): ApprovalRequest | undefined {
    const r = this.requests.get(id);
    return r && { ...r };
  }

  /** Newest first; by default only what waits for an operator. */
  list(nowMs: number, filter: { status?: ApprovalStatus | 'all' } = {}): ApprovalRequest[] {
    if (this.sweep(nowMs)) void this.persist().catch(() => undefined);
    const want = filter.status ?? 'pending';
    return [...this.requests.values()]
      .filter((r) => want === 'all' || r.status === want)
      .sort((a, b) => b.requestedAtMs - a.requestedAtMs)
      .map((r) => ({ ...r }));
  }

  /** Resolves when every change so far is on disk; rejects when the last write failed. */
  whenDurable(): Promise<void> {
    return this.writing;
  }

  /** Writes are coalesced: changes made while one write runs go out in the next one. */
  private persist(): Promise<void> {
    const dir = this.opts.stateDir;
    if (dir === undefined) return Promise.resolve();
    if (this.scheduled !== undefined) return this.scheduled;
    const next = this.writing
      .catch(() => undefined)
      .then(() => {
        this.scheduled = undefined;
        const text = JSON.stringify({ format: 1, requests: [...this.requests.values()] });
        return writeFileAtomic(path.join(dir, STATE_FILE), text);
      });
    next.catch((err: unknown) => this.logger.error({ err: (err as Error).message }, 'approval state write failed'));
    this.scheduled = next;
    this.writing = next;
    return next;
  }

  async close(): Promise<void> {
    await this.writing.catch(() => undefined);
  }
}
