// The token registry (DESIGN §4 "Presentation"): Modbus has no place for a token, so an agent PUTs
// its current JWT to the agent API and every command on its mTLS connections uses that token.
// Owns the binding workload identity → current verified Subject. It never verifies a token itself
// (the agent API does, with verify.ts) and never answers with a token that has expired.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import type { Subject } from '../core/command.js';
import { TokenError } from './token-error.js';

export { VerifiedTokenCache } from './token-cache.js';

export type CurrentToken = Subject | 'NO_TOKEN' | 'TOKEN_EXPIRED';

export class TokenRegistry {
  private readonly clock: Clock;
  // Bounded: identities come from certificates we issued, but a bound is what keeps a bug or a
  // compromised CA from growing memory without limit. An evicted identity just re-PUTs its token.
  private readonly byWorkload: LRUCache<string, Subject>;

  constructor(opts: { clock: Clock; maxIdentities?: number }) {
    this.clock = opts.clock;
    this.byWorkload = new LRUCache<string, Subject>({ max: opts.maxIdentities ?? 10_000 });
  }

  /** Binds a verified token to its workload; replaces the previous one (rotation without reconnecting). */
  put(workloadId: string, subject: Subject): void {
    if (subject.workloadId !== workloadId) {
      throw new TokenError('TOKEN_INVALID', 'SUB_MISMATCH', `token for ${subject.workloadId} cannot be bound to ${workloadId}`, { claim: 'sub' });
    }
    this.byWorkload.set(workloadId, subject);
  }

  /**
   * Hot path, called on every command: O(1), no allocation. No leeway here: a command is never
   * checked against a token whose exp has passed on the gateway's clock.
   */
  current(workloadId: string): CurrentToken {
    const subject = this.byWorkload.get(workloadId);
    if (subject === undefined) return 'NO_TOKEN';
    // Expired entries stay so the agent is told TOKEN_EXPIRED (renew) rather than NO_TOKEN.
    if (subject.expiresAtMs <= this.clock.now()) return 'TOKEN_EXPIRED';
    return subject;
  }

  remove(workloadId: string): void {
    this.byWorkload.delete(workloadId);
  }

  /** Removes every binding the predicate selects (revocation by jti, sub or owner); returns how many. */
  removeWhere(predicate: (subject: Subject) => boolean): number {
    const doomed: string[] = [];
    for (const [workloadId, subject] of this.byWorkload.entries()) {
      if (predicate(subject)) doomed.push(workloadId);
    }
    for (const workloadId of doomed) this.byWorkload.delete(workloadId);
    return doomed.length;
  }

  get size(): number {
    return this.byWorkload.size;
  }
}
