// Arguments `plantgate policy learn` and `policy replay` share: the audit inputs, the time range,
// percentages, and where the progress line goes. Owns parsing and the usage messages; reading the
// inputs is src/policy/observed's.
import { InputError, openAuditInputs, type AuditInputs } from '../../policy/observed/input.js';
import type { ProgressSink } from '../../policy/observed/progress.js';
import type { TimeRange } from '../../policy/observed/scan.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** An instant with a zone (or a date, midnight UTC), in ms. */
export function instant(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  if (!ISO.test(text) || Number.isNaN(ms)) throw new UsageError(`${option} must be an ISO 8601 instant with a zone or a date, e.g. 2026-01-15T00:00:00Z, got '${text}'`);
  return ms;
}

export function timeRange(since: string | undefined, until: string | undefined): TimeRange {
  const range: TimeRange = {};
  const s = instant('--since', since);
  const u = instant('--until', until);
  if (s !== undefined) range.sinceMs = s;
  if (u !== undefined) range.untilMs = u;
  if (s !== undefined && u !== undefined && u <= s) throw new UsageError('--until must be after --since');
  return range;
}

export function number(option: string, text: string, min: number, max: number, integer = false): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${option} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max}, got '${text}'`);
  }
  return n;
}

export async function inputs(paths: readonly string[]): Promise<AuditInputs> {
  try {
    return await openAuditInputs(paths);
  } catch (err) {
    if (err instanceof InputError) throw new UsageError(`--from ${err.message}`);
    throw err;
  }
}

export function progressSink(quiet: boolean | undefined): ProgressSink | undefined {
  if (quiet) return undefined;
  return { write: (s) => void process.stderr.write(s), isTTY: process.stderr.isTTY === true };
}

export const FROM_HELP = "audit to read: a gateway's spool directory, a collector output directory, or a collector <gateway>.ndjson file (several: oldest first)";
