// The one duration parser for text a human wrote ('250ms', '15m', '1.5min', '30d'): policy sources,
// interlocks, simulator scenarios and the CLI. Each field says which units it takes (a rate window
// in days makes sense, an interlock poll in days does not), whether fractions and a space before
// the unit are allowed, and whether zero is; the grammar and the arithmetic are here once.
// Owns the text form only; never reads a clock. Imports nothing.

export type DurationUnit = 'ms' | 's' | 'm' | 'min' | 'h' | 'd';

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };
// Longest unit names first, so 'ms' and 'min' are not read as 'm' followed by garbage.
const DURATION = /^([0-9]+)(\.[0-9]+)?( *)(ms|min|s|m|h|d)$/;

export interface DurationSyntax {
  /** The units this field takes. */
  units: readonly DurationUnit[];
  /** '1.5min' (default: whole numbers only). */
  fractions?: boolean;
  /** '30 s' (default: the unit follows the number directly). */
  spaces?: boolean;
  /** '0s' (default: a duration is positive). */
  zero?: boolean;
}

/** Milliseconds, or null when `text` (trimmed) is not a duration of that syntax. */
export function parseDurationMs(text: string, syntax: DurationSyntax): number | null {
  const m = DURATION.exec(text.trim());
  if (m === null) return null;
  const [, whole, fraction, space, unit] = m as unknown as [string, string, string | undefined, string, DurationUnit];
  if ((fraction !== undefined && syntax.fractions !== true) || (space !== '' && syntax.spaces !== true) || !syntax.units.includes(unit)) return null;
  const ms = Number(`${whole}${fraction ?? ''}`) * UNIT_MS[unit];
  if (!Number.isSafeInteger(Math.round(ms)) || ms < 0 || (ms === 0 && syntax.zero !== true)) return null;
  return ms;
}

/** Policy sources' durations (rate windows, token lifetimes): whole s, m, h or d. */
export const POLICY_DURATION: DurationSyntax = { units: ['s', 'm', 'h', 'd'] };
/** Poll intervals and freshness bounds of values the gateway reads: whole ms, s or m. */
export const POLL_DURATION: DurationSyntax = { units: ['ms', 's', 'm'] };
