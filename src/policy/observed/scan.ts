// One pass over recorded traffic for the offline policy tools: every record of the inputs whose
// time lies in [since, until), in input order, with the progress line fed and input damage kept
// (the first few in full, all of them counted), and records given twice (a gateway's spool and
// the collector's copy of it) skipped. Owns the time range and the pass; what a record means is
// the caller's.
import type { DecodedRecord } from '../../audit/schema.js';
import type { AuditInputs, InputProblem } from './input.js';
import type { Progress } from './progress.js';

const KEPT_PROBLEMS = 100;
/** Gateways whose next seq is tracked (for duplicates); far above any fleet one audit holds. */
const MAX_GATEWAYS = 100_000;

export interface TimeRange {
  /** Inclusive, ms since the epoch. */
  sinceMs?: number;
  /** Exclusive. */
  untilMs?: number;
}

export interface ScanTotals {
  /** Records read (every kind, in range or not). */
  records: number;
  /** Records inside the time range. */
  inRange: number;
  problems: InputProblem[];
  /** All problems, including those not kept; torn tails are not counted here. */
  problemCount: number;
  tornTails: number;
  /** Records of a gateway at or below a seq already passed (inputs overlapping, oldest first). */
  duplicates: number;
  progress: ReturnType<Progress['finish']>;
}

export async function scanRecords(inputs: AuditInputs, range: TimeRange, progress: Progress, onRecord: (r: DecodedRecord) => void): Promise<ScanTotals> {
  const since = range.sinceMs ?? Number.NEGATIVE_INFINITY;
  const until = range.untilMs ?? Number.POSITIVE_INFINITY;
  const problems: InputProblem[] = [];
  let problemCount = 0;
  let tornTails = 0;
  let records = 0;
  let inRange = 0;
  let duplicates = 0;
  // Per gateway, the seq after the last record passed; the current gateway's is kept in locals.
  const nextSeq = new Map<string, number>();
  let lastGw: string | undefined;
  let lastNext = -1;
  for await (const batch of inputs.batches((p) => {
    if (p.tornTail) tornTails++;
    else problemCount++;
    if (problems.length < KEPT_PROBLEMS) problems.push(p);
  })) {
    const list = batch.records;
    records += list.length;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      const t = r.timeUnixMs as number;
      if (t < since || t >= until) continue;
      const gw = r.gatewayId ?? '';
      const seq = r.seq as number;
      if (gw !== lastGw) {
        if (lastGw !== undefined && (nextSeq.has(lastGw) || nextSeq.size < MAX_GATEWAYS)) nextSeq.set(lastGw, lastNext);
        lastGw = gw;
        lastNext = nextSeq.get(gw) ?? -1;
      }
      if (seq < lastNext) {
        duplicates++;
        continue;
      }
      lastNext = seq + 1;
      inRange++;
      onRecord(r);
    }
    progress.add(list.length, batch.bytes);
  }
  return { records, inRange, problems, problemCount, tornTails, duplicates, progress: progress.finish() };
}
