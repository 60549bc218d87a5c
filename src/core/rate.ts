// Rates in their text form ('10/m', '5/30s') and token buckets driven by the caller's own clock
// reading (never a timer, never Date.now()), so tests move time by hand. Shared by policy's rule
// limits and the fronts' own limits (the MCP front's per-session budget); must never allocate per
// command: a bucket is two numbers mutated in place.
import { parseDurationMs, POLICY_DURATION } from './duration.js';

/** `count` commands per `per_sec` seconds, refilled continuously; the burst is `count`. */
export interface RateSpec {
  count: number;
  per_sec: number;
}

const RATE = /^([0-9]{1,9})\/([0-9]{0,9}[smhd])$/;

/** '10/m' (10 per minute), '5/30s', '100/1h' → RateSpec, or null. */
export function parseRate(text: string): RateSpec | null {
  const m = RATE.exec(text.trim());
  if (!m) return null;
  const count = Number(m[1]);
  const unit = m[2]!;
  const perMs = parseDurationMs(/^[0-9]/.test(unit) ? unit : `1${unit}`, POLICY_DURATION);
  if (count < 1 || perMs === null) return null;
  return { count, per_sec: perMs / 1000 };
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
