import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cosigner, cosignerVerifierKey, openCheckpoint, parseCheckpointBody, parseCosignerVerifierKey } from '../../../src/audit/checkpoint.js';
import { AuditLog, CHECKPOINT_DIR } from '../../../src/audit/log.js';
import { noteSigner, parseNote, parseVerifierKey, verifierKey } from '../../../src/audit/note.js';
import { proveConsistency, proveInclusion, verifyCheckpointPair, verifyInclusionBundle, verifySpool } from '../../../src/audit/offline.js';
import { violationRecord } from '../../../src/audit/records.js';
import { storedHashCount } from '../../../src/audit/merkle.js';
import { TREE_FILE } from '../../../src/audit/tree-store.js';
import { FRAME_HEADER_BYTES } from '../../../src/audit/spool-scan.js';
import { leafHash } from '../../../src/audit/hash.js';
import { cutBackTo, segments } from './spool-cut.js';
import { ManualClock } from '../../../src/core/clock.js';

const { privateKey } = generateKeyPairSync('ed25519');
const ORIGIN = 'plantgate/gw-1';
const signer = noteSigner(ORIGIN, privateKey);
const verifier = parseVerifierKey(verifierKey(ORIGIN, privateKey));
const ev = (i: number) => violationRecord({ sessionId: `s-${i}`, protocol: 'modbus', remoteAddress: '127.0.0.1:5020', detail: `bad frame ${i}` });

let dir: string;
let clock: ManualClock;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plantgate-vlog-'));
  clock = new ManualClock();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeRecords(n: number, everyRecords = 10): Promise<AuditLog> {
  const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords, everyMs: 60_000 } });
  for (let i = 0; i < n; i++) log.append(ev(i));
  await log.sync();
  return log;
}

async function checkpointFiles(): Promise<string[]> {
  return (await readdir(join(dir, CHECKPOINT_DIR))).sort();
}

describe('verifiable audit log', () => {
  it('signs a checkpoint every N records, as a record at seq = tree size and as a file, and the spool verifies', async () => {
    const log = await writeRecords(25);
    // seq 10 and 21 are checkpoints of sizes 10 and 21 (each checkpoint record is itself a leaf).
    const recs = await log.readFrom(0, 100);
    expect(log.latestCheckpoint()?.size).toBe(21);
    expect(await checkpointFiles()).toEqual(['0000000000000010.checkpoint', '0000000000000021.checkpoint']);
    const cp = openCheckpoint(log.latestCheckpoint()!.note, verifier);
    expect(cp.size).toBe(21);
    expect(recs.length).toBe(27);
    await log.close(); // closing signs a last checkpoint covering everything
    const report = await verifySpool(dir, verifier);
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ ok: true, treeSize: 28, latestCheckpointSize: 27, checkpoints: 6 });
  });

  it('signs a checkpoint when T has passed on the log clock and records were added', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords: 1000, everyMs: 5000 } });
    log.append(ev(0));
    log.maybeCheckpoint();
    expect(log.nextSeq).toBe(1);
    clock.advance(5000);
    log.maybeCheckpoint();
    expect(log.nextSeq).toBe(2);
    clock.advance(5000);
    log.maybeCheckpoint(); // nothing new since the last checkpoint
    expect(log.nextSeq).toBe(2);
    await log.sync();
    expect(log.latestCheckpoint()?.size).toBe(1);
    await log.close();
  });

  it('proves one record with a bundle an offline verifier accepts, and rejects it for another record', async () => {
    const log = await writeRecords(40);
    await log.close();
    const bundle = await proveInclusion(dir, 17);
    expect(Object.keys(bundle)).toEqual(['checkpoint', 'index', 'leaf', 'inclusion']);
    expect(verifyInclusionBundle(JSON.parse(JSON.stringify(bundle)), verifier)).toEqual([]);
    const other = await proveInclusion(dir, 18);
    const forged = { ...bundle, leaf: other.leaf };
    expect(verifyInclusionBundle(forged, verifier).map((p) => p.where)).toContain('inclusion');
  });

  it('proves that a later checkpoint only appended to an earlier one', async () => {
    const log = await writeRecords(40);
    await log.close();
    const files = await checkpointFiles();
    const oldNote = await readFile(join(dir, CHECKPOINT_DIR, files[0]), 'utf8');
    const oldSize = parseCheckpointBody(parseNote(oldNote).text).size;
    const bundle = await proveConsistency(dir, oldSize);
    expect(bundle.old_checkpoint).toBe(oldNote);
    expect(verifyCheckpointPair(oldNote, bundle.checkpoint, verifier, bundle.consistency)).toEqual([]);
  });

  it('points at the record flipped on disk', async () => {
    const log = await writeRecords(30);
    await log.close();
    const seg = join(dir, (await readdir(dir)).find((n) => n.endsWith('.seg'))!);
    const data = await readFile(seg);
    expect((await verifySpool(dir, verifier)).ok).toBe(true);
    // Flip one byte inside record 5's payload (after its 8-byte frame header).
    let pos = 0;
    for (let i = 0; i < 5; i++) pos += 8 + data.readUInt32BE(pos);
    data[pos + 8 + 10] ^= 0x01;
    await writeFile(seg, data);
    const report = await verifySpool(dir, verifier);
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatchObject({ seq: 5 });
    expect(report.problems, JSON.stringify(report.problems, null, 1)).toSatisfy((ps: { seq?: number; where: string }[]) => ps.some((p) => p.seq === 5 && p.where === TREE_FILE));
  });

  it('detects a checkpoint re-signed over a rewritten history (a fork)', async () => {
    const log = await writeRecords(20);
    await log.close();
    const honest = log.latestCheckpoint()!.note;
    // A second log with the same key but a different history.
    const dir2 = await mkdtemp(join(tmpdir(), 'plantgate-vlog-fork-'));
    const forkLog = await AuditLog.open({ dir: dir2, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords: 1000 } });
    for (let i = 0; i < 21; i++) forkLog.append(ev(i === 3 ? 999 : i));
    await forkLog.close();
    const forked = forkLog.latestCheckpoint()!.note;
    expect(parseCheckpointBody(parseNote(forked).text).size).toBe(parseCheckpointBody(parseNote(honest).text).size);
    expect(verifyCheckpointPair(honest, forked, verifier)[0].message).toMatch(/forked/);
    await rm(dir2, { recursive: true, force: true });
  });

  it('rebuilds a torn or missing tree hash file from the spool on restart', async () => {
    let log = await writeRecords(30);
    await log.close();
    const before = (await verifySpool(dir, verifier)).treeSize;
    const size = (await stat(join(dir, TREE_FILE))).size;
    await truncate(join(dir, TREE_FILE), size - 45);
    log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords: 10 } });
    expect((await stat(join(dir, TREE_FILE))).size).toBe(size);
    for (let i = 0; i < 5; i++) log.append(ev(i));
    await log.close();
    await rm(join(dir, TREE_FILE));
    log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock });
    await log.close();
    const report = await verifySpool(dir, verifier);
    expect(report.problems).toEqual([]);
    expect(report.treeSize).toBeGreaterThan(before);
  });

  it('recomputes tree hashes written after the last checkpoint instead of trusting them (a power loss can leave them zeroed)', async () => {
    // Writes wait for the spool's fsync only; tree.hashes is fsynced before each checkpoint file.
    // Simulate a power loss: the state on disk is taken while the log runs, and the hashes past
    // the last checkpoint are zeroed, as some filesystems leave unsynced appended blocks.
    const log = await writeRecords(27); // checkpoints of sizes 10 and 21, then records up to 28
    const crashed = await mkdtemp(join(tmpdir(), 'plantgate-vlog-crash-'));
    try {
      await cp(dir, crashed, { recursive: true });
      await log.close();
      const trusted = storedHashCount(21) * 32;
      const tree = await readFile(join(crashed, TREE_FILE));
      expect(tree.length).toBeGreaterThan(trusted);
      tree.fill(0, trusted);
      await writeFile(join(crashed, TREE_FILE), tree);
      const reopened = await AuditLog.open({ dir: crashed, gatewayId: 'gw-1', clock, checkpoints: { signer, everyRecords: 10, everyMs: 60_000 } });
      for (let i = 0; i < 3; i++) reopened.append(ev(100 + i));
      await reopened.close();
      const report = await verifySpool(crashed, verifier);
      expect(report.problems).toEqual([]);
      expect(report.latestCheckpointSize).toBe(report.treeSize - 1);
    } finally {
      await rm(crashed, { recursive: true, force: true });
    }
  });

  it('keeps a witness cosignature next to its checkpoint', async () => {
    const log = await writeRecords(10);
    const cp = log.latestCheckpoint()!;
    const witness = cosigner('soc.example/witness', generateKeyPairSync('ed25519').privateKey);
    const line = witness.cosign(parseNote(cp.note).text, 1_767_000_000);
    await log.storeCosignature(cp.size, line);
    await log.storeCosignature(cp.size, line);
    const stored = await readFile(join(dir, CHECKPOINT_DIR, '0000000000000010.checkpoint'), 'utf8');
    expect(stored).toBe(cp.note + line);
    expect(openCheckpoint(stored, verifier).size).toBe(10);
    expect(log.latestCheckpoint()?.note).toBe(stored);
    await expect(log.storeCosignature(11, line)).rejects.toMatchObject({ reason: 'AUDIT_UNAVAILABLE' });
    await log.close();
  });

  it('reports the spool as full before it refuses records', async () => {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 64 * 1024 + 2000 });
    expect(log.isFull()).toBe(false);
    while (!log.isFull()) log.append(ev(1));
    expect(() => log.append(ev(2))).not.toThrow();
    await log.close();
    expect(log.isFull()).toBe(true);
  });
});

function newWitness() {
  const key = generateKeyPairSync('ed25519').privateKey;
  return { ...cosigner('soc.example/witness', key), verifier: parseCosignerVerifierKey(cosignerVerifierKey('soc.example/witness', key)) };
}

describe('audit verify weighs everything the spool directory and a witness say existed', () => {
  /** A log over several segments (8 KiB each), checkpoints every 10 records. */
  async function segmentedLog(n: number): Promise<AuditLog> {
    const log = await AuditLog.open({ dir, gatewayId: 'gw-1', clock, maxBytes: 64 * 1024, checkpoints: { signer, everyRecords: 10, everyMs: 60_000 } });
    for (let i = 0; i < n; i++) log.append(ev(i));
    await log.sync();
    return log;
  }

  it('fails a spool whose newest segment was deleted, naming the records tree.hashes vouches for', async () => {
    const log = await segmentedLog(300);
    await log.close();
    const segs = await segments(dir);
    expect(segs.length).toBeGreaterThan(2);
    const newest = segs[segs.length - 1];
    await unlink(join(dir, newest));
    const report = await verifySpool(dir, verifier);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(new RegExp(`records ${Number(newest.slice(0, 16))}\\.\\.\\d+ are gone from the spool, yet tree\\.hashes holds`));
  });

  it('fails a spool cut back below the record acked.json says the collector acknowledged, even with tree.hashes cut to match', async () => {
    const log = await segmentedLog(300);
    const acked = log.nextSeq - 20;
    await log.markAcked(acked);
    await log.close();
    await cutBackTo(dir, acked - 5, false);
    await truncate(join(dir, TREE_FILE), storedHashCount(acked - 5) * 32);
    const report = await verifySpool(dir, verifier);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(new RegExp(`acked\\.json says the collector acknowledged seq ${acked}`));
  });

  it('fails a spool whose first segment was deleted although nothing was acknowledged', async () => {
    const log = await segmentedLog(300);
    await log.close();
    const [first, second] = await segments(dir);
    await unlink(join(dir, first));
    const report = await verifySpool(dir, verifier);
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 0, message: expect.stringMatching(new RegExp(`records 0\\.\\.${Number(second.slice(0, 16)) - 1} are missing`)) }));
  });

  it('fails a tail cut back to a checkpoint while tree.hashes still holds the records cut', async () => {
    const log = await writeRecords(60);
    await log.close();
    await cutBackTo(dir, 33, false);
    const report = await verifySpool(dir, verifier);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(/tree\.hashes holds the leaf hashes of \d+ records/);
  });

  it("fails a tail cut back to a checkpoint with every trace removed, given the witness's checkpoint or the collector's record count", async () => {
    const log = await writeRecords(60);
    await log.close();
    const witnessKey = newWitness();
    const latest = log.latestCheckpoint()!;
    const witnessed = latest.note + witnessKey.cosign(parseNote(latest.note).text, 1_767_000_000);
    const [lastRec] = await log.readFrom(log.nextSeq - 1, 1);
    const collectorCount = { count: log.nextSeq, lastHash: leafHash(lastRec.bytes) };
    await cutBackTo(dir, 33, true);

    // The directory alone cannot tell: what is left is a whole, consistent log (docs/audit.md says so).
    expect((await verifySpool(dir, verifier)).problems).toEqual([]);
    const byNote = await verifySpool(dir, verifier, { witnessed: [{ source: 'latest.checkpoint', note: witnessed }], witness: witnessKey.verifier });
    expect(byNote.ok).toBe(false);
    expect(byNote.problems[0].message).toMatch(new RegExp(`signed checkpoint of ${latest.size} records, but the spool's log holds only 33 records: records 33\\.\\.${latest.size - 1} are gone`));
    const byCount = await verifySpool(dir, verifier, { witnessed: [{ source: 'gw-1.state.json', records: collectorCount }] });
    expect(byCount.problems[0].message).toMatch(new RegExp(`the witness stored ${log.nextSeq} records`));
  });

  it('accepts a spool that extends what the witness holds, and refuses a witnessed note without the witness cosignature', async () => {
    const log = await writeRecords(30);
    const cp = log.latestCheckpoint()!;
    const witnessKey = newWitness();
    const cosigned = cp.note + witnessKey.cosign(parseNote(cp.note).text, 1_767_000_000);
    const [rec] = await log.readFrom(cp.size, 1);
    for (let i = 0; i < 25; i++) log.append(ev(1000 + i));
    await log.close();
    const fine = await verifySpool(dir, verifier, {
      witnessed: [{ source: 'latest.checkpoint', note: cosigned }, { source: 'state', records: { count: cp.size + 1, lastHash: leafHash(rec.bytes) } }],
      witness: witnessKey.verifier,
    });
    expect(fine.problems).toEqual([]);
    expect(fine.witnessed).toBe(2);
    const unsigned = await verifySpool(dir, verifier, { witnessed: [{ source: 'copy.checkpoint', note: cp.note }], witness: witnessKey.verifier });
    expect(unsigned.problems[0].message).toMatch(/carries no valid cosignature by soc\.example\/witness/);
  });
});
