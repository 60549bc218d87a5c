// Durations in policy sources ('15m', '30d'). Owns the text form only; never reads a clock.

const UNIT_SEC: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^([0-9]{1,9})([smhd])$/;

/** Seconds, or null when the text is not a positive duration like '90s', '15m', '12h', '30d'. */
export function parseDurationSec(text: string): number | null {
  const m = DURATION.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * UNIT_SEC[m[2]!]!;
  return n > 0 ? n : null;
}
