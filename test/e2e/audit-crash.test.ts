// Crash evidence (docs/audit.md, Crash evidence) with a real `plantgate serve` process killed with
// SIGKILL under a write load: the restart writes a record naming exactly the writes whose decision
// was durable and whose outcome was never recorded, closes the sessions the crash left open, and
// gets a witness cosignature for every checkpoint, also for those whose cosignature the crash lost.
import { watch } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseNote } from '../../src/audit/note.js';
import { auditRig, collectedThrough, servedWrites, socLines, writeLoad, type AuditRig } from './audit-harness.js';
import { assertBuilt } from './cli.js';

let dir: string;
let rig: AuditRig | undefined;

beforeAll(() => assertBuilt());
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Checkpoint files of the spool: size -> does it carry the witness's cosignature. */
async function checkpointFiles(spool: string): Promise<Map<number, boolean>> {
  const cpDir = path.join(spool, 'checkpoints');
  const out = new Map<number, boolean>();
  for (const n of (await readdir(cpDir)).filter((f) => /^\d{16}\.checkpoint$/.test(f))) {
    const note = parseNote(await readFile(path.join(cpDir, n), 'utf8'));
    out.set(Number(n.slice(0, 16)), note.sigs.some((s) => s.name === 'soc.example/witness'));
  }
  return out;
}

describe('crash evidence (real gateway process)', () => {
  it('after kill -9 under writes, a restart record names every write with a durable decision and no outcome, closes the open sessions, and every checkpoint gets cosigned', { timeout: 180_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plantgate-crash-'));
    rig = await auditRig(dir);
    const collector = await rig.startCollector();
    const gw = await rig.startGateway();
    const agents = await Promise.all([rig.agent(), rig.agent(), rig.agent()]);
    const load = writeLoad(agents, 200);
    await load.reached(60);
    // Killed the moment the witness cosigns a checkpoint: that cosignature is on its way back and
    // dies with the gateway, which must ask for it again.
    const lostCosignature = new Promise<number>((resolve) =>
      collector.once('cosigned', (_gw: string, size: number) => {
        gw.child.kill('SIGKILL');
        resolve(size);
      }),
    );
    const killedAt = await lostCosignature;
    await gw.exited;
    await load.stop();
    for (const a of agents) await a.close();

    const again = await rig.startGateway();
    // Everything the restarted gateway wrote at start (restart record, session closes) reaches the SOC.
    const soc0 = await socLines(rig);
    const restartAt = await new Promise<number>((resolve) => {
      const seen = soc0.find((l) => l.restart);
      if (seen) return resolve(seen.seq as number);
      const on = (_g: string, r: Record<string, any>) => {
        if (r.restart) {
          collector.off('record', on);
          resolve(r.seq as number);
        }
      };
      collector.on('record', on);
    });
    const soc = await socLines(rig);
    const restart = soc[restartAt].restart as { kind: string; lastSeq: number; outcomeUnknown?: number[]; sessionsClosed?: string[] };
    expect(restart.kind).toBe('unclean_stop');
    const before = soc.slice(0, restart.lastSeq + 1);

    // Exactly the durable write decisions with no outcome record.
    const outcomes = new Set(before.flatMap((l) => (l.outcome ? [l.outcome.decisionSeq ?? 0] : [])));
    const open = before.flatMap((l) => (l.decision?.decision?.effect === 'ALLOW' && l.decision.decision.durable && !outcomes.has(l.seq) ? [l.seq] : []));
    expect(restart.outcomeUnknown ?? []).toEqual(open);
    expect(open.length).toBeGreaterThan(0); // three agents had writes in flight
    // Exactly the sessions opened and not closed, each closed right after the restart record.
    const sessions = new Set<string>();
    for (const l of before) {
      if (l.session?.kind === 'open') sessions.add(l.session.sessionId);
      if (l.session?.kind === 'close') sessions.delete(l.session.sessionId);
    }
    expect([...(restart.sessionsClosed ?? [])].sort()).toEqual([...sessions].sort());
    // (a checkpoint may fall between them)
    await collectedThrough(rig, restartAt + sessions.size + 1);
    const closes = (await socLines(rig)).slice(restartAt + 1, restartAt + 2 + sessions.size).filter((l) => !l.checkpoint);
    expect(closes.slice(0, sessions.size).map((l) => [l.session?.kind, l.session?.detail])).toEqual([...sessions].map(() => ['close', expect.stringMatching(/^closed at restart/)]));
    expect(closes.slice(0, sessions.size).map((l) => l.session.sessionId).sort()).toEqual([...sessions].sort());

    // Every checkpoint the collector has the record of is cosigned in the gateway's files, also the
    // one whose cosignature the crash lost.
    const cpDir = path.join(rig.spoolDir, 'checkpoints');
    const watcher = watch(cpDir);
    try {
      for (;;) {
        const next = (await socLines(rig)).length;
        const files = await checkpointFiles(rig.spoolDir);
        const missing = [...files].filter(([size, cosigned]) => size < next && !cosigned).map(([size]) => size);
        if (missing.length === 0 && files.get(killedAt)) break;
        await new Promise<void>((resolve) => watcher.once('change', () => resolve()));
      }
    } finally {
      watcher.close();
    }
    await again.stop();
    // No write reached the PLC without its decision in the SOC's record.
    const values = new Set((await socLines(rig)).flatMap((l) => (l.decision?.decision?.effect === 'ALLOW' ? (l.decision.command?.rawValues ?? []) : [])));
    for (const v of servedWrites(rig.sim)) expect(values.has(v), `write ${v}`).toBe(true);
    expect(rig.collector!.stats().alerts).toMatchObject({ unclean_stop: 1 });
  });
});
