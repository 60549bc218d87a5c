// What the log has open at its durable point (docs/audit.md, Crash evidence): sessions opened and
// not closed, and state-changing commands whose decision is durable but whose outcome is not
// recorded yet. After an unclean stop the log names both in a RestartEvent and closes the
// sessions. Kept as the records become durable, written to <spool>/open.json before records it
// depends on may be deleted (and at checkpoints), and rebuilt from there plus the records after it.
// Pure bookkeeping: the log does the I/O; nothing here is on the per-command path but a few
// property reads in note().
import type { AuditEvent } from './records.js';
import type { DecodedRecord } from './schema.js';

export const OPEN_FILE = 'open.json';

export interface OpenSession {
  id: string;
  protocol: string;
  remote: string;
  workload: string;
}

/** One change to the open work, noted when its record is appended, applied once it is durable. */
export type WorkChange =
  | { kind: 'open'; session: OpenSession }
  | { kind: 'close'; id: string }
  | { kind: 'decided'; seq: number }
  | { kind: 'outcome'; decisionSeq: number };

const ALLOW = 1;

/** The change a record makes, if any (records.ts builders and decoded records alike). */
export function workChange(seq: number, e: AuditEvent | DecodedRecord): WorkChange | undefined {
  const d = e.decision;
  if (d != null) {
    const info = d.decision;
    return info != null && info.durable && info.effect === ALLOW ? { kind: 'decided', seq } : undefined;
  }
  const o = e.outcome;
  if (o != null) return { kind: 'outcome', decisionSeq: Number(o.decisionSeq ?? 0) };
  const s = e.session;
  if (s != null) {
    const id = s.sessionId ?? '';
    if (s.kind === 'close') return { kind: 'close', id };
    if (s.kind === 'open') return { kind: 'open', session: { id, protocol: s.protocol ?? '', remote: s.remoteAddress ?? '', workload: s.subject?.workloadId ?? '' } };
  }
  return undefined;
}

export class OpenWork {
  readonly sessions = new Map<string, OpenSession>();
  readonly pending = new Set<number>();

  apply(c: WorkChange): void {
    switch (c.kind) {
      case 'open':
        this.sessions.set(c.session.id, c.session);
        break;
      case 'close':
        this.sessions.delete(c.id);
        break;
      case 'decided':
        this.pending.add(c.seq);
        break;
      case 'outcome':
        this.pending.delete(c.decisionSeq);
        break;
    }
  }

  /** The state as of seq `seq` (every record below it applied), as open.json holds it. */
  toJson(seq: number): string {
    return `${JSON.stringify({ seq, sessions: [...this.sessions.values()], pending: [...this.pending] })}\n`;
  }

  /** open.json's content; undefined when it is not one (then the caller replays from the first record on disk). */
  static fromJson(text: string): { seq: number; work: OpenWork } | undefined {
    try {
      const v = JSON.parse(text) as { seq?: unknown; sessions?: unknown; pending?: unknown };
      if (typeof v.seq !== 'number' || !Number.isSafeInteger(v.seq) || v.seq < 0 || !Array.isArray(v.sessions) || !Array.isArray(v.pending)) return undefined;
      const w = new OpenWork();
      for (const s of v.sessions as OpenSession[]) {
        if (typeof s?.id === 'string') w.sessions.set(s.id, { id: s.id, protocol: String(s.protocol ?? ''), remote: String(s.remote ?? ''), workload: String(s.workload ?? '') });
      }
      for (const p of v.pending) if (typeof p === 'number' && Number.isSafeInteger(p)) w.pending.add(p);
      return { seq: v.seq, work: w };
    } catch {
      return undefined;
    }
  }
}
