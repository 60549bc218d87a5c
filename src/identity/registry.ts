// The token registry (docs/identity.md, "Present the token, then speak Modbus"): Modbus has no place for a token, so an agent PUTs
// its current JWT to the agent API and every command on its mTLS connections uses that token.
// Owns the binding workload identity → current verified Subject, the per-identity bound on live
// tokens, and answering per command whether that Subject may still act (expiry, revocation, a key
// removed from the bundle). It never verifies a signature itself (the agent API does, with
// verify.ts) and never answers with a token that has expired or been revoked.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import type { Subject } from '../core/command.js';
import type { TrustedIssuers } from './issuers.js';
import { revocationApplies, type Revocation, type RevocationStore } from './revocation.js';
import { TokenError } from './token-error.js';

export { VerifiedTokenCache } from './token-cache.js';

export type CurrentToken = Subject | 'NO_TOKEN' | 'TOKEN_EXPIRED' | 'TOKEN_REVOKED' | 'TOKEN_INVALID';

/** Default bound on distinct unexpired tokens one identity may have registered (see put()). */
export const DEFAULT_MAX_TOKENS_PER_IDENTITY = 8;

interface Entry {
  subject: Subject;
  /** `kid` of the issuer key that verified the token: a bundle that drops the key kills the token. */
  keyId: string | undefined;
  /** Set when the token died by revocation or key removal: the agent is told why, not NO_TOKEN. */
  dead: 'TOKEN_REVOKED' | 'TOKEN_INVALID' | undefined;
  /** jti → exp (ms) of every unexpired token this identity registered: the per-identity bound. */
  live: Map<string, number>;
}

export interface TokenRegistryOptions {
  clock: Clock;
  maxIdentities?: number;
  maxTokensPerIdentity?: number;
  revocations?: RevocationStore;
}

export class TokenRegistry {
  private readonly clock: Clock;
  // Bounded: identities come from certificates we issued, but a bound is what keeps a bug or a
  // compromised CA from growing memory without limit. An evicted identity just re-PUTs its token.
  private readonly byWorkload: LRUCache<string, Entry>;
  private readonly maxTokensPerIdentity: number;
  private revocations: RevocationStore | undefined;
  private readonly onRevoked = (r: Revocation): void => this.killRevoked(r);

  constructor(opts: TokenRegistryOptions) {
    this.clock = opts.clock;
    this.byWorkload = new LRUCache<string, Entry>({ max: opts.maxIdentities ?? 10_000 });
    this.maxTokensPerIdentity = opts.maxTokensPerIdentity ?? DEFAULT_MAX_TOKENS_PER_IDENTITY;
    if (opts.revocations !== undefined) this.attachRevocations(opts.revocations);
  }

  /**
   * Consults `store` on every command and kills matching bindings the moment a revocation is
   * emitted. Idempotent; replaces a previously attached store.
   */
  attachRevocations(store: RevocationStore): void {
    if (this.revocations === store) return;
    this.revocations?.off('revoked', this.onRevoked);
    this.revocations = store;
    store.on('revoked', this.onRevoked);
    for (const e of this.byWorkload.values()) if (store.isRevoked(e.subject) !== undefined) e.dead = 'TOKEN_REVOKED';
  }

  /**
   * Binds a verified token to its workload; replaces the previous one (rotation without
   * reconnecting). Refuses a revoked token (TOKEN_REVOKED) and an identity that already has
   * `maxTokensPerIdentity` distinct unexpired tokens registered (RATE_LIMITED): rotation every few
   * minutes needs two or three; dozens mean a runaway or hostile agent spraying cold verifications.
   */
  put(workloadId: string, subject: Subject, meta: { keyId?: string } = {}): void {
    const live = this.admitted(workloadId, subject);
    live.set(subject.jti, subject.expiresAtMs);
    this.byWorkload.set(workloadId, { subject, keyId: meta.keyId, dead: undefined, live });
  }

  /** Throws what put() would refuse, without binding anything (token intake: before the acceptance is recorded). */
  admit(workloadId: string, subject: Subject): void {
    this.admitted(workloadId, subject);
  }

  /** The identity's unexpired registered tokens (jti to exp) once `subject` is found admissible. */
  private admitted(workloadId: string, subject: Subject): Map<string, number> {
    if (subject.workloadId !== workloadId) {
      throw new TokenError('TOKEN_INVALID', 'SUB_MISMATCH', `token for ${subject.workloadId} cannot be bound to ${workloadId}`, { claim: 'sub' });
    }
    if (this.revocations?.isRevoked(subject) !== undefined) {
      throw new TokenError('TOKEN_REVOKED', 'REVOKED', 'token has been revoked (by jti, sub, owner or task)');
    }
    const now = this.clock.now();
    const prev = this.byWorkload.get(workloadId);
    const live = prev?.live ?? new Map<string, number>();
    for (const [jti, exp] of live) if (exp <= now) live.delete(jti);
    if (!live.has(subject.jti) && live.size >= this.maxTokensPerIdentity) {
      throw new TokenError('RATE_LIMITED', 'TOO_MANY_TOKENS', `identity already has ${live.size} unexpired tokens registered (limit ${this.maxTokensPerIdentity}); reuse the current one until it nears expiry`);
    }
    return live;
  }

  /**
   * Hot path, called on every command: O(1), no allocation. No leeway here: a command is never
   * checked against a token whose exp has passed on the gateway's clock.
   */
  current(workloadId: string): CurrentToken {
    const e = this.byWorkload.get(workloadId);
    if (e === undefined) return 'NO_TOKEN';
    if (e.dead !== undefined) return e.dead;
    // Expired entries stay so the agent is told TOKEN_EXPIRED (renew) rather than NO_TOKEN.
    if (e.subject.expiresAtMs <= this.clock.now()) return 'TOKEN_EXPIRED';
    // Checked per command as well as by the event, so no path (bundle revocations, a listener
    // attached late) can leave a revoked token usable.
    if (this.revocations !== undefined && this.revocations.isRevoked(e.subject) !== undefined) return 'TOKEN_REVOKED';
    return e.subject;
  }

  /**
   * Per-command validity of a token bound to a session rather than registered by workload (OPC UA
   * carries its JWT in ActivateSession): expiry and revocation, exactly as current() checks them.
   */
  check(subject: Subject): CurrentToken {
    if (subject.expiresAtMs <= this.clock.now()) return 'TOKEN_EXPIRED';
    if (this.revocations !== undefined && this.revocations.isRevoked(subject) !== undefined) return 'TOKEN_REVOKED';
    return subject;
  }

  /** The bound Subject whatever its state (for the operator API's ownership checks), or undefined. */
  peek(workloadId: string): Subject | undefined {
    return this.byWorkload.peek(workloadId)?.subject;
  }

  /** Every bound Subject (rare path: ownership checks, diagnostics). */
  subjects(): Subject[] {
    return [...this.byWorkload.values()].map((e) => e.subject);
  }

  /**
   * After a bundle activation: a token verified with an issuer or key the new bundle no longer
   * trusts stops working at once (TOKEN_INVALID), instead of living on until its exp. A token
   * without `kid` cannot be matched to a key and is dropped too (the agent re-PUTs it). Returns
   * how many bindings died.
   */
  retainTrusted(issuers: TrustedIssuers): number {
    let killed = 0;
    for (const e of this.byWorkload.values()) {
      if (e.dead !== undefined) continue;
      const iss = e.subject.issuer;
      const trusted =
        issuers.get(iss) !== undefined &&
        e.keyId !== undefined &&
        (issuers.hasKey === undefined || issuers.hasKey(iss, e.keyId));
      if (!trusted) {
        e.dead = 'TOKEN_INVALID';
        killed++;
      }
    }
    return killed;
  }

  remove(workloadId: string): void {
    this.byWorkload.delete(workloadId);
  }

  /** Removes every binding the predicate selects; returns how many. */
  removeWhere(predicate: (subject: Subject) => boolean): number {
    const doomed: string[] = [];
    for (const [workloadId, e] of this.byWorkload.entries()) {
      if (predicate(e.subject)) doomed.push(workloadId);
    }
    for (const workloadId of doomed) this.byWorkload.delete(workloadId);
    return doomed.length;
  }

  get size(): number {
    return this.byWorkload.size;
  }

  private killRevoked(r: Revocation): void {
    const leewayMs = (this.revocations?.leewaySec ?? 30) * 1000;
    for (const e of this.byWorkload.values()) {
      if (e.dead === undefined && revocationApplies(r, e.subject, leewayMs)) e.dead = 'TOKEN_REVOKED';
    }
  }
}
