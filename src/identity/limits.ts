// Per-identity connection limit (issue 8): one workload may hold at most N agent connections at
// once, so a runaway or compromised agent cannot exhaust the gateway's sockets or the PLC's
// bandwidth for everyone else. Owns the counts only; the listener asks before it opens a session
// and tells it when the connection closes. Never blocks or queues: over the limit is a refusal.

export const DEFAULT_MAX_CONNECTIONS_PER_WORKLOAD = 8;

export interface ConnectionLease {
  /** Gives the slot back; calling it twice is harmless (close and error may both fire). */
  release(): void;
}

export class ConnectionLimiter {
  private readonly counts = new Map<string, number>();
  readonly maxPerWorkload: number;

  constructor(opts: { maxPerWorkload?: number } = {}) {
    const max = opts.maxPerWorkload ?? DEFAULT_MAX_CONNECTIONS_PER_WORKLOAD;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxPerWorkload must be a positive integer, got ${max}`);
    this.maxPerWorkload = max;
  }

  /** A lease for one more connection of this workload, or undefined when it already holds the maximum. */
  acquire(workloadId: string): ConnectionLease | undefined {
    const n = this.counts.get(workloadId) ?? 0;
    if (n >= this.maxPerWorkload) return undefined;
    this.counts.set(workloadId, n + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.counts.get(workloadId) ?? 1) - 1;
        // Entries go when their count reaches zero, so the map is bounded by live connections.
        if (left <= 0) this.counts.delete(workloadId);
        else this.counts.set(workloadId, left);
      },
    };
  }

  connections(workloadId: string): number {
    return this.counts.get(workloadId) ?? 0;
  }
}
