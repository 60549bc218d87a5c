// What a rule's rate limit counts by (docs/policy.md, rate limits): the keys of its budgets. The
// rate itself and its token bucket are src/core/rate.ts.
import type { RateSpec } from '../core/rate.js';

/** What a rate limit counts by: one budget per distinct combination (docs/policy.md, rate limits). */
export const RATE_KEYS = ['workload', 'owner', 'task', 'asset'] as const;
export type RateKey = (typeof RATE_KEYS)[number];

/** A rate limit as the bundle carries it: `count` per `per_sec`, one budget per `per` key. */
export interface KeyedRate extends RateSpec {
  per: RateKey[];
}
