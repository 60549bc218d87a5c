// Token buckets for rule rate limits, driven by the decision's own clock reading (never a timer,
// never Date.now()), so tests move time by hand. Owns the text form ('10/m', '5/30s') and the
// refill arithmetic; must never allocate per command: a bucket is two numbers mutated in place.
import { parseDurationSec } from './duration.js';

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
  const per = parseDurationSec(/^[0-9]/.test(unit) ? unit : `1${unit}`);
  if (count < 1 || per === null) return null;
  return { count, per_sec: per };
}

export function formatRate(r: RateSpec): string {
  return `${r.count}/${r.per_sec}s`;
}

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

  /** Refills up to now and says whether one command may pass; takes nothing. */
  available(nowMs: number): boolean {
    // A clock that steps backwards refills nothing (and never drains): only forward time counts.
    if (nowMs > this.lastMs) {
      const t = this.tokens + (nowMs - this.lastMs) * this.perMs;
      this.tokens = t > this.capacity ? this.capacity : t;
      this.lastMs = nowMs;
    }
    return this.tokens >= 1;
  }

  /** Takes one token; call only right after `available` said yes, in the same turn. */
  take(): void {
    if (this.tokens >= 1) this.tokens -= 1;
  }
}
