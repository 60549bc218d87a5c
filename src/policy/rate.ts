// Token buckets for rule rate limits, driven by the decision's own clock reading (never a timer,
// never Date.now()), so tests move time by hand. Owns the text form ('10/m', '5/30s'), the keys a
// limit counts by, and the refill arithmetic; must never allocate per command: a bucket is two
// numbers mutated in place.
import { parseDurationSec } from './duration.js';

/** `count` commands per `per_sec` seconds, refilled continuously; the burst is `count`. */
export interface RateSpec {
  count: number;
  per_sec: number;
}

/** What a rate limit counts by: one budget per distinct combination (docs/policy.md, rate limits). */
export const RATE_KEYS = ['workload', 'owner', 'task', 'asset'] as const;
export type RateKey = (typeof RATE_KEYS)[number];

/** A rate limit as the bundle carries it: `count` per `per_sec`, one budget per `per` key. */
export interface KeyedRate extends RateSpec {
  per: RateKey[];
}

const RATE = /^([0-9]{1,9})\/([0-9]{0,9}[smhd])$/;

/** '10/m' (10 per minute), '5/30s', '100/1h' → RateSpec, or null. */
export function parseRate(text: string): RateSpec | null {
  const m = RATE.exec(text.trim());
  if (!m) return null;
  const count = Number(m[1]);
  const unit = m[2]!;
  const per = parseDurationSec(/^[0-9]/.test(unit) ? unit : `1${unit}`);
  if (count < 1 || per === null) return null;
  return { count, per_sec: per };
}

export function formatRate(r: RateSpec): string {
  return `${r.count}/${r.per_sec}s`;
}

/**
 * A token bucket read purely while deciding (`tokensAt`) and changed only when a decided command
 * is forwarded (`take`) or, refused by a later gate, given back (`give`): docs/policy.md,
 * "Decide, then commit".
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;
  private readonly perMs: number;
  private readonly capacity: number;

  constructor(spec: RateSpec, nowMs: number) {
    this.capacity = spec.count;
    this.tokens = spec.count;
    this.perMs = spec.count / (spec.per_sec * 1000);
    this.lastMs = nowMs;
  }

  /** Tokens available at `nowMs`, refilled continuously; changes nothing. */
  tokensAt(nowMs: number): number {
    // A clock that steps backwards refills nothing (and never drains): only forward time counts.
    if (!(nowMs > this.lastMs)) return this.tokens;
    const t = this.tokens + (nowMs - this.lastMs) * this.perMs;
    return t > this.capacity ? this.capacity : t;
  }

  /** Spends one token at `nowMs` (a forwarded command). Never goes below zero. */
  take(nowMs: number): void {
    const t = this.tokensAt(nowMs);
    if (nowMs > this.lastMs) this.lastMs = nowMs;
    this.tokens = t >= 1 ? t - 1 : 0;
  }

  /** Gives back the token of a command a later gate refused after all. */
  give(): void {
    this.tokens = this.tokens + 1 > this.capacity ? this.capacity : this.tokens + 1;
  }
}
