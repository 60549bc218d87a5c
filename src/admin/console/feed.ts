// The console's live decisions: decision records as the audit log holds them (durable, the same
// bytes the SOC receives), so every front — Modbus, OPC UA, MCP — shows up without asking any of
// them. Owns tailing the log while someone watches, turning records into rows and filtering them.
// Decodes records only while a console is open (never on the command path); a watcher that cannot
// keep up is dropped by its sender, never buffered without bound here.
import type { AuditLog } from '../../audit/log.js';
import { decodeRecord } from '../../audit/schema.js';
import type { Logger } from '../../core/log.js';

export interface DecisionRow {
  seq: number;
  at: string;
  protocol: string;
  workload: string;
  owner: string;
  asset: string;
  operation: string;
  points: string[];
  /** Written values, "point=value" joined; '' for reads. */
  values: string;
  effect: 'allow' | 'deny';
  reason: string;
  rule: string;
  freeze: string;
  approval: string;
  interlock: string;
}

export interface DecisionFilter {
  agent?: string;
  asset?: string;
  effect?: 'allow' | 'deny';
  reason?: string;
}

/** Filters from query parameters; unknown or empty ones are ignored. */
export function filterFrom(q: URLSearchParams): DecisionFilter {
  const f: DecisionFilter = {};
  const agent = q.get('agent')?.trim();
  const asset = q.get('asset')?.trim();
  const effect = q.get('effect');
  const reason = q.get('reason')?.trim();
  if (agent) f.agent = agent.slice(0, 256);
  if (asset) f.asset = asset.slice(0, 128);
  if (effect === 'allow' || effect === 'deny') f.effect = effect;
  if (reason) f.reason = reason.slice(0, 64);
  return f;
}

/** `agent` matches a part of the workload id; the others match exactly. */
export function matches(row: DecisionRow, f: DecisionFilter): boolean {
  return (
    (f.agent === undefined || row.workload.includes(f.agent)) &&
    (f.asset === undefined || row.asset === f.asset) &&
    (f.effect === undefined || row.effect === f.effect) &&
    (f.reason === undefined || row.reason === f.reason)
  );
}

function rowOf(bytes: Uint8Array): DecisionRow | undefined {
  let r: ReturnType<typeof decodeRecord>;
  try {
    r = decodeRecord(bytes);
  } catch {
    // Our own records; one that does not decode is the verifier's business, not the console's.
    return undefined;
  }
  const d = r.decision;
  if (!d) return undefined;
  const c = d.command;
  const info = d.decision;
  const values = c?.values ? Object.entries(c.values).map(([k, v]) => `${k}=${v}`).join(' ') : '';
  return {
    seq: Number(r.seq ?? 0),
    at: new Date(Number(r.timeUnixMs ?? 0)).toISOString(),
    protocol: c?.protocol ?? '',
    workload: d.subject?.workloadId ?? '',
    owner: d.subject?.owner ?? '',
    asset: c?.assetId ?? '',
    operation: c?.operation ?? '',
    points: c?.points ?? [],
    values,
    effect: info?.effect === 1 ? 'allow' : 'deny',
    reason: info?.reason ?? '',
    rule: info?.ruleId ?? '',
    freeze: (info as { freezeId?: string } | null | undefined)?.freezeId ?? '',
    approval: info?.approvalId ?? '',
    interlock: info?.interlockId ?? '',
  };
}

type AuditSource = Pick<AuditLog, 'durableSeq' | 'firstSeq' | 'readFrom' | 'subscribe'>;

interface Watcher {
  filter: DecisionFilter;
  send(row: DecisionRow): void;
}

/** How far back the first page looks for decisions (records, not only decisions). */
const LOOKBACK = 2000;
const BATCH = 512;

export class DecisionFeed {
  private readonly watchers = new Set<Watcher>();
  private unsubscribe: (() => void) | undefined;
  private cursor = 0;
  private pumping: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly audit: AuditSource,
    private readonly logger: Logger,
  ) {}

  /** The most recent decisions matching `f`, newest first. */
  async recent(f: DecisionFilter, limit = 100): Promise<DecisionRow[]> {
    const end = this.audit.durableSeq;
    let from = Math.max(this.audit.firstSeq, end - LOOKBACK);
    const rows: DecisionRow[] = [];
    while (from < end) {
      const batch = await this.audit.readFrom(from, Math.min(BATCH, end - from));
      if (batch.length === 0) break;
      for (const r of batch) {
        const row = rowOf(r.bytes);
        if (row !== undefined && matches(row, f)) rows.push(row);
      }
      from = batch[batch.length - 1]!.seq + 1;
    }
    return rows.reverse().slice(0, limit);
  }

  /** Calls `send` with every new decision matching `filter` until the returned function is called. */
  watch(filter: DecisionFilter, send: (row: DecisionRow) => void): () => void {
    const w: Watcher = { filter, send };
    this.watchers.add(w);
    if (this.unsubscribe === undefined) {
      this.cursor = this.audit.durableSeq;
      this.unsubscribe = this.audit.subscribe(() => this.pump());
    }
    return () => {
      this.watchers.delete(w);
      if (this.watchers.size === 0) this.stop();
    };
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  get watching(): number {
    return this.watchers.size;
  }

  /** Reads what became durable since the last pump; one pump at a time, re-run if asked meanwhile. */
  private pump(): void {
    if (this.pumping !== undefined) {
      this.again = true;
      return;
    }
    this.pumping = this.drain()
      .catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'console feed: audit records unreadable; skipping ahead'))
      .finally(() => {
        this.pumping = undefined;
        if (this.again && this.unsubscribe !== undefined) {
          this.again = false;
          this.pump();
        }
      });
  }

  private async drain(): Promise<void> {
    while (this.unsubscribe !== undefined && this.cursor < this.audit.durableSeq) {
      // Records acknowledged and deleted meanwhile are gone from the spool: start after them.
      this.cursor = Math.max(this.cursor, this.audit.firstSeq);
      const batch = await this.audit.readFrom(this.cursor, BATCH);
      if (batch.length === 0) return;
      this.cursor = batch[batch.length - 1]!.seq + 1;
      for (const r of batch) {
        const row = rowOf(r.bytes);
        if (row === undefined) continue;
        for (const w of this.watchers) if (matches(row, w.filter)) w.send(row);
      }
    }
  }
}
