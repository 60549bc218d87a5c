// Durations in policy sources ('15m', '30d') in seconds, the form bundles carry. The grammar is
// src/core/duration.ts (one parser for every human-written duration).
import { parseDurationMs, POLICY_DURATION } from '../core/duration.js';

/** Seconds, or null when the text is not a positive duration like '90s', '15m', '12h', '30d'. */
export function parseDurationSec(text: string): number | null {
  const ms = parseDurationMs(text, POLICY_DURATION);
  return ms === null ? null : ms / 1000;
}
