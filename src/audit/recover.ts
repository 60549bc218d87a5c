// `plantgate audit recover`: what a damaged spool lost, and, once an operator accepts that loss,
// a spool the gateway can run on again (docs/audit.md, Recovery). Every damaged segment is copied
// to damaged-<time>/ first (the evidence stays), then the segments are rewritten with what survived
// and, in each lost record's place, a marker holding its seq and leaf hash (or a placeholder when
// that is lost too), so seq numbers are never reused and the tree stays the one the signed
// checkpoints were made over. The log then records one AUDIT_GAP per lost range.
// Never deletes a record that survived; safe to run again after an interruption (a half-applied
// rewrite scans as damage of the same records).
import { copyFile, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readEvidence } from './evidence.js';
import { AuditLog, CHECKPOINT_DIR, checkpointFileName, type CheckpointOptions } from './log.js';
import { parseCheckpointBody } from './checkpoint.js';
import { parseNote } from './note.js';
import { fsyncDir, segmentName } from './spool.js';
import { encodeLostFrame, GAP_LEAF, SpoolScanner, type Lost, type ScanResult } from './spool-scan.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { auditGapRecord } from './records.js';

const SEGMENT = /^\d{16}\.seg$/;

/** Scans a spool the way the gateway does when it opens it, without changing anything. */
export async function scanSpool(dir: string): Promise<{ scan: ScanResult; names: string[] }> {
  const evidence = await readEvidence(dir);
  try {
    const names = (await readdir(dir)).filter((n) => SEGMENT.test(n)).sort();
    const scanner = new SpoolScanner(evidence);
    for (let i = 0; i < names.length; i++) {
      scanner.segment(i, names[i], Number(names[i].slice(0, 16)), await readFile(join(dir, names[i])), i === names.length - 1);
    }
    return { scan: scanner.finish(), names };
  } finally {
    evidence.close();
  }
}

export interface Recovered {
  /** Each lost range and the seq of the AUDIT_GAP record that declares it. */
  gaps: { first: number; last: number; gapSeq: number; cause: string; unknownHashes: number }[];
  /** Where the damaged segments were copied. */
  damagedDir: string;
}

/**
 * Rewrites a damaged spool (see the module comment) and appends the AUDIT_GAP records. The gateway
 * must be stopped. `scan` is scanSpool's result for the same directory.
 */
export async function acceptLoss(
  dir: string,
  found: { scan: ScanResult; names: string[] },
  opts: { gatewayId: string; clock: Clock; logger?: Logger; checkpoints?: CheckpointOptions; maxBytes?: number; command: string },
): Promise<Recovered> {
  const { scan, names } = found;
  const stamp = new Date(opts.clock.now()).toISOString().replace(/[:.]/g, '-');
  const damagedDir = join(dir, `damaged-${stamp}`);
  await mkdir(damagedDir, { recursive: true });
  // The originals, as found, before anything is rewritten.
  for (const n of names) await copyFile(join(dir, n), join(damagedDir, n));
  await fsyncDir(damagedDir);

  // What survives, in seq order, grouped back into the segments it came from.
  const groups: { seg: number | undefined; first: number; parts: Buffer[] }[] = [];
  const data = new Map<number, Buffer>();
  const segData = async (i: number): Promise<Buffer> => {
    let d = data.get(i);
    if (!d) data.set(i, (d = await readFile(join(dir, names[i]))));
    return d;
  };
  for (const it of scan.items) {
    let g = groups[groups.length - 1];
    if (it.kind === 'run') {
      if (!g || (g.seg !== undefined && g.seg !== it.seg)) groups.push((g = { seg: it.seg, first: it.firstSeq, parts: [] }));
      g.seg = it.seg;
      g.parts.push((await segData(it.seg)).subarray(it.offsets[0], it.end));
    } else {
      if (!g) groups.push((g = { seg: undefined, first: it.first, parts: [] }));
      for (let s = it.first; s < it.end; s++) g.parts.push(encodeLostFrame(s, it.hashes[s - it.first] ?? GAP_LEAF));
    }
  }
  const tmp = join(dir, '.recover');
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  const written: string[] = [];
  for (const g of groups) {
    const name = segmentName(g.first);
    const h = await open(join(tmp, name), 'w');
    try {
      await h.writev(g.parts);
      await h.sync();
    } finally {
      await h.close();
    }
    written.push(name);
  }
  await fsyncDir(tmp);
  // Each file is replaced whole (rename), then segments that no longer exist are removed.
  for (const name of written) await rename(join(tmp, name), join(dir, name));
  for (const n of names) if (!written.includes(n)) await rm(join(dir, n), { force: true });
  await fsyncDir(dir);
  await rm(tmp, { recursive: true, force: true });

  const lastCp = await latestCheckpoint(dir);
  const log = await AuditLog.open({ dir, gatewayId: opts.gatewayId, clock: opts.clock, logger: opts.logger, checkpoints: opts.checkpoints, maxBytes: opts.maxBytes, declaringLoss: true });
  const gaps: Recovered['gaps'] = [];
  try {
    const detail = `${opts.command} at ${new Date(opts.clock.now()).toISOString()}; the damaged segments as found are in ${damagedDir}`;
    const ranges: (Pick<Lost, 'first' | 'end' | 'cause'> & { unknown: number })[] = [];
    for (const it of scan.items) {
      if (it.kind === 'lost') ranges.push({ first: it.first, end: it.end, cause: it.cause, unknown: it.hashes.filter((h) => h === undefined).length });
    }
    for (const [a, b] of scan.undeclared) ranges.push({ first: a, end: b + 1, cause: 'marked lost by an earlier recover that did not finish', unknown: 0 });
    for (const r of ranges) {
      const gapSeq = log.append(
        auditGapRecord({ firstSeq: r.first, lastSeq: r.end - 1, cause: r.cause, lastCheckpoint: lastCp, unknownHashes: r.unknown, detail }),
      );
      gaps.push({ first: r.first, last: r.end - 1, gapSeq, cause: r.cause, unknownHashes: r.unknown });
    }
    await log.sync();
  } finally {
    await log.close();
  }
  return { gaps, damagedDir };
}

async function latestCheckpoint(dir: string): Promise<{ size: number; root: Uint8Array } | undefined> {
  const names = (await readdir(join(dir, CHECKPOINT_DIR)).catch(() => [] as string[])).filter((n) => /^\d{16}\.checkpoint$/.test(n)).sort().reverse();
  for (const n of names) {
    try {
      const cp = parseCheckpointBody(parseNote(await readFile(join(dir, CHECKPOINT_DIR, n), 'utf8')).text);
      if (checkpointFileName(cp.size) === n) return { size: cp.size, root: cp.root };
    } catch {
      // not a checkpoint note: not evidence
    }
  }
  return undefined;
}
