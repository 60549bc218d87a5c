// Offline tools over a spool directory and proof files, for `plantgate audit prove|verify`: read the
// segments without changing them, recompute the chain and the tree, check tree.hashes and every
// checkpoint (records and files) against them, build and check inclusion and consistency proofs.
// Never writes to the spool. Each problem names the seq (or checkpoint size) and expected/actual hash.
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { openCheckpoint, type CosignatureVerifier, type OpenedCheckpoint } from './checkpoint.js';
import { hashEquals, leafHash, toHex, ZERO_HASH } from './hash.js';
import { CHECKPOINT_DIR } from './log.js';
import {
  consistencyProof,
  Frontier,
  inclusionProof,
  MemoryHashStore,
  storedHashCount,
  storedHashIndex,
  treeHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import { parseNote, type NoteVerifier } from './note.js';
import { scanSpool } from './recover.js';
import { decodeRecord, type DecodedRecord } from './schema.js';
import { FRAME_HEADER_BYTES, LOST_FLAG, MAX_RECORD_BYTES, parseFrame } from './spool-scan.js';
import { fileHashReader, leavesCovered, TREE_FILE } from './tree-store.js';

export interface Problem {
  seq?: number;
  checkpointSize?: number;
  where: string;
  message: string;
  expected?: string;
  actual?: string;
}

export interface SpoolRecord {
  seq: number;
  bytes: Uint8Array;
  /** Undefined when the bytes do not decode (reported as a problem; the leaf still counts). */
  record: DecodedRecord | undefined;
  /** A lost record (marker written by audit recover): its leaf hash; bytes is empty. */
  lost?: Uint8Array;
}

/** The leaf hash of a spool entry. */
export function spoolLeaf(r: SpoolRecord): Uint8Array {
  return r.lost ?? leafHash(r.bytes);
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** Reads every whole record of the spool's segments in order, reporting (not repairing) damage. */
export async function readSpool(dir: string): Promise<{ records: SpoolRecord[]; problems: Problem[] }> {
  const names = (await readdir(dir)).filter((n) => /^\d{16}\.seg$/.test(n)).sort();
  const records: SpoolRecord[] = [];
  const problems: Problem[] = [];
  for (const name of names) {
    const data = await readFile(join(dir, name));
    let pos = 0;
    while (pos < data.length) {
      const where = `${name}@${pos}`;
      if (data.length - pos < FRAME_HEADER_BYTES) {
        problems.push({ where, message: 'partial frame header (torn tail)' });
        break;
      }
      const raw = data.readUInt32BE(pos);
      const seq = records.length > 0 ? records[records.length - 1].seq + 1 : Number(name.slice(0, 16));
      if ((raw & LOST_FLAG) !== 0) {
        // A lost record's marker (docs/audit.md, Recovery): its seq and leaf hash only.
        const f = parseFrame(data, pos);
        if (!f.ok) {
          problems.push({ seq, where, message: `lost-record marker: ${f.problem}` });
          if (!f.complete) break;
          pos = f.end;
          records.push({ seq, bytes: new Uint8Array(0), record: undefined });
          continue;
        }
        records.push({ seq: f.seq, bytes: new Uint8Array(0), record: undefined, lost: f.hash });
        pos = f.end;
        continue;
      }
      const len = raw;
      if (len > MAX_RECORD_BYTES || data.length - pos - FRAME_HEADER_BYTES < len) {
        problems.push({ where, message: `frame length ${len} runs past the end of the file (torn tail)` });
        break;
      }
      const bytes = data.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + len);
      pos += FRAME_HEADER_BYTES + len;
      if (crc32(bytes) !== data.readUInt32BE(pos - len - 4)) {
        problems.push({ seq, where, message: `record bytes do not match their CRC (changed on disk)` });
      }
      let record: DecodedRecord | undefined;
      try {
        record = decodeRecord(bytes);
      } catch {
        problems.push({ seq, where, message: 'record does not decode' });
      }
      // A record that decodes carries its own seq (so a reordering shows); one that does not keeps
      // its place, so the damage is reported once and the rest of the log is still checked.
      records.push({ seq: record?.seq ?? seq, bytes, record });
    }
  }
  return { records, problems };
}

function readTreeFile(dir: string): Promise<Buffer> {
  return readFile(join(dir, TREE_FILE)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  });
}

async function readCheckpointFiles(dir: string): Promise<{ name: string; note: string }[]> {
  const cpDir = join(dir, CHECKPOINT_DIR);
  let names: string[];
  try {
    names = (await readdir(cpDir)).filter((n) => /^\d{16}\.checkpoint$/.test(n)).sort();
  } catch {
    return [];
  }
  return Promise.all(names.map(async (name) => ({ name: `${CHECKPOINT_DIR}/${name}`, note: await readFile(join(cpDir, name), 'utf8') })));
}

export interface SpoolReport {
  ok: boolean;
  firstSeq: number;
  records: number;
  treeSize: number;
  checkpoints: number;
  latestCheckpointSize: number;
  /** Records lost to damage and declared by AUDIT_GAP records (audit recover), [first, last]. */
  lost: [number, number][];
  /** How many witnessed states the spool was checked against. */
  witnessed: number;
  problems: Problem[];
}

/**
 * What a witness holds of this gateway's log (docs/audit.md, Verifying a spool): a checkpoint note
 * (signed by the gateway, with the witness's cosignature: the collector's latest.checkpoint), and/or
 * the collector's state (<gateway>.state.json: how many records it stored, the last one's leaf hash
 * and the last checkpoint it witnessed). The spool must extend it.
 */
export interface Witnessed {
  /** Where it came from, for messages (a file name). */
  source: string;
  note?: string;
  records?: { count: number; lastHash: Uint8Array };
  /** A tree size and root the witness verified (unsigned: the collector's state). */
  tree?: { size: number; root: Uint8Array };
}

export interface VerifyOptions {
  witnessed?: Witnessed[];
  /** The witness's cosignature key: each witnessed note must carry its valid cosignature. */
  witness?: CosignatureVerifier;
}

/**
 * Verifies a spool: frames, seq order, prev_hash chain, tree.hashes against the records, every
 * checkpoint record and file (signature by `verifier`, root = the recomputed tree); what the rest
 * of the directory says existed (acked.json, tree.hashes, checkpoint files: the gateway's own
 * start-up scan, spool-scan.ts) against the segments; and, given what a witness holds, that the
 * spool's tree extends it (so a tail cut back to an older checkpoint, evidence and all, fails).
 */
export async function verifySpool(dir: string, verifier: NoteVerifier, opts: VerifyOptions = {}): Promise<SpoolReport> {
  const { records, problems } = await readSpool(dir);
  const lost = lostRanges(records);
  const treeBytes = await readTreeFile(dir);
  const stored: Uint8Array[] = [];
  for (let i = 0; i + 32 <= treeBytes.length; i += 32) stored.push(treeBytes.subarray(i, i + 32));
  const firstSeq = records.length > 0 ? records[0].seq : leavesCovered(stored.length);

  // The tree before the first record on disk comes from tree.hashes (those records were shipped and
  // deleted); from there on it is recomputed from the records themselves.
  let frontier: Frontier;
  try {
    frontier = Frontier.fromStored(firstSeq, (idx) => idx.map((i) => stored[i] ?? failMissing(i)));
  } catch (err) {
    problems.push({ where: TREE_FILE, message: `cannot rebuild the tree before seq ${firstSeq}: ${(err as Error).message}` });
    return { ok: false, firstSeq, records: records.length, treeSize: 0, checkpoints: 0, latestCheckpointSize: -1, lost, witnessed: 0, problems };
  }
  const recomputed: Uint8Array[] = stored.slice(0, storedHashCount(firstSeq));
  let prev: Uint8Array | undefined = firstSeq === 0 ? ZERO_HASH : undefined;
  let checkpoints = 0;
  let latest = -1;
  let expectSeq = firstSeq;
  for (const r of records) {
    if (r.seq !== expectSeq) {
      problems.push({ seq: expectSeq, where: 'spool', message: `record seq ${r.seq} found where seq ${expectSeq} belongs (removed or reordered)` });
      break;
    }
    if (prev && r.record && !hashEquals(r.record.prevHash, prev)) {
      problems.push({
        seq: r.seq,
        where: 'spool',
        message: `prev_hash does not match the leaf hash of seq ${r.seq - 1}`,
        expected: toHex(prev),
        actual: toHex(r.record!.prevHash),
      });
    }
    const leaf = spoolLeaf(r);
    const cp = r.record?.checkpoint;
    if (cp) {
      checkpoints++;
      latest = Math.max(latest, Number(cp.treeSize));
      checkCheckpoint(`record ${r.seq}`, cp.note ?? '', verifier, frontier, problems, r.seq);
    }
    const li = storedHashIndex(0, r.seq);
    if (li < stored.length && !hashEquals(stored[li], leaf)) {
      problems.push({ seq: r.seq, where: TREE_FILE, message: 'record hash differs from the leaf hash in tree.hashes (record or tree changed)', expected: toHex(stored[li]), actual: toHex(leaf) });
    }
    for (const h of frontier.append(leaf)) recomputed.push(h);
    prev = leaf;
    expectSeq = r.seq + 1;
  }
  const treeSize = frontier.size;
  for (let i = storedHashCount(firstSeq); i < Math.min(stored.length, recomputed.length); i++) {
    if (!hashEquals(stored[i], recomputed[i])) {
      problems.push({ where: TREE_FILE, message: `stored hash ${i} differs from the one recomputed from the records`, expected: toHex(recomputed[i]), actual: toHex(stored[i]) });
      break;
    }
  }
  const read = (idx: number[]): Uint8Array[] => idx.map((i) => recomputed[i] ?? failMissing(i));
  for (const f of await readCheckpointFiles(dir)) {
    let opened: OpenedCheckpoint;
    try {
      opened = openCheckpoint(f.note, verifier);
    } catch (err) {
      problems.push({ where: f.name, message: (err as Error).message });
      continue;
    }
    checkpoints++;
    latest = Math.max(latest, opened.size);
    if (opened.size > treeSize) {
      problems.push({ checkpointSize: opened.size, where: f.name, message: `checkpoint covers ${opened.size} records but the log holds ${treeSize}` });
      continue;
    }
    const root = treeHash(opened.size, read);
    if (!hashEquals(opened.root, root)) {
      problems.push({ checkpointSize: opened.size, where: f.name, message: 'signed root differs from the tree recomputed from the records', expected: toHex(root), actual: toHex(opened.root) });
    }
  }
  await checkEvidence(dir, problems);
  const leaf = (seq: number): Uint8Array | undefined => {
    if (seq >= firstSeq) {
      const r = records[seq - firstSeq];
      return r?.seq === seq ? spoolLeaf(r) : undefined;
    }
    return stored[storedHashIndex(0, seq)];
  };
  for (const w of opts.witnessed ?? []) checkWitnessed(w, verifier, opts.witness, treeSize, read, leaf, problems);
  return { ok: problems.length === 0, firstSeq, records: records.length, treeSize, checkpoints, latestCheckpointSize: latest, lost, witnessed: opts.witnessed?.length ?? 0, problems };
}

function lostRanges(records: SpoolRecord[]): [number, number][] {
  const out: [number, number][] = [];
  for (const r of records) {
    if (!r.lost) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === r.seq - 1) last[1] = r.seq;
    else out.push([r.seq, r.seq]);
  }
  return out;
}

/**
 * The gateway's own start-up scan (spool-scan.ts) weighs acked.json, tree.hashes and the checkpoint
 * files against the segments: a deleted first segment nobody acknowledged, a deleted newest segment
 * acked.json or tree.hashes vouch for, lost-record markers no AUDIT_GAP declares. Damage the record
 * checks above already named is not repeated.
 */
async function checkEvidence(dir: string, problems: Problem[]): Promise<void> {
  const { scan } = await scanSpool(dir);
  const named = problems.filter((p) => p.seq !== undefined).map((p) => p.seq!);
  for (const d of scan.damage) {
    const first = d.first;
    if (first === undefined ? problems.length > 0 : named.some((s) => s >= first && s < (d.end ?? first + 1))) continue;
    problems.push({ ...(first !== undefined ? { seq: first } : {}), where: d.where, message: d.end !== undefined ? `records ${first}..${d.end - 1} are missing: ${d.message}` : d.message });
  }
  for (const [first, last] of scan.undeclared) {
    problems.push({ seq: first, where: 'spool', message: `records ${first}..${last} are lost-record markers that no AUDIT_GAP record declares (audit recover was interrupted: run it again)` });
  }
}

/** The spool must extend what the witness holds: same root at its size, same leaf at its last record. */
function checkWitnessed(
  w: Witnessed,
  verifier: NoteVerifier,
  witness: CosignatureVerifier | undefined,
  treeSize: number,
  read: (idx: number[]) => Uint8Array[],
  leaf: (seq: number) => Uint8Array | undefined,
  problems: Problem[],
): void {
  const behind = (n: number, what: string): void => {
    problems.push({ where: w.source, message: `${what}, but the spool's log holds only ${treeSize} records: records ${treeSize}..${n - 1} are gone (cut back after the witness saw them)`, expected: String(n), actual: String(treeSize) });
  };
  const trees: { size: number; root: Uint8Array; what: string }[] = [];
  if (w.note !== undefined) {
    try {
      const cp = openCheckpoint(w.note, verifier);
      if (witness !== undefined && !cosignedBy(cp, witness)) {
        problems.push({ checkpointSize: cp.size, where: w.source, message: `witnessed checkpoint of ${cp.size} records carries no valid cosignature by ${witness.name}` });
      }
      trees.push({ ...cp, what: `the witness holds a signed checkpoint of ${cp.size} records` });
    } catch (err) {
      problems.push({ where: w.source, message: `witnessed checkpoint: ${(err as Error).message}` });
    }
  }
  if (w.tree !== undefined) trees.push({ ...w.tree, what: `the witness verified a checkpoint of ${w.tree.size} records` });
  for (const t of trees) {
    if (t.size > treeSize) behind(t.size, t.what);
    else if (t.size > 0) {
      const root = treeHash(t.size, read);
      if (!hashEquals(root, t.root)) {
        problems.push({ checkpointSize: t.size, where: w.source, message: `the spool's tree of ${t.size} records differs from the one the witness holds: history was rewritten`, expected: toHex(t.root), actual: toHex(root) });
      }
    }
  }
  const r = w.records;
  if (r !== undefined && r.count > 0) {
    if (r.count > treeSize) behind(r.count, `the witness stored ${r.count} records`);
    else {
      const h = leaf(r.count - 1);
      if (h !== undefined && !hashEquals(h, r.lastHash)) {
        problems.push({ seq: r.count - 1, where: w.source, message: `record ${r.count - 1} differs from the one the witness stored: history was rewritten`, expected: toHex(r.lastHash), actual: toHex(h) });
      }
    }
  }
}

function cosignedBy(cp: OpenedCheckpoint, witness: CosignatureVerifier): boolean {
  return parseNote(cp.note).sigs.some((s) => s.name === witness.name && witness.verify(cp.body, `\u2014 ${s.name} ${s.base64}\n`) !== undefined);
}

function failMissing(i: number): never {
  throw new Error(`stored hash ${i} is missing`);
}

function checkCheckpoint(where: string, note: string, verifier: NoteVerifier, frontier: Frontier, problems: Problem[], seq: number): void {
  let opened: OpenedCheckpoint;
  try {
    opened = openCheckpoint(note, verifier);
  } catch (err) {
    problems.push({ seq, where, message: `checkpoint: ${(err as Error).message}` });
    return;
  }
  if (opened.size !== frontier.size) {
    problems.push({ seq, where, message: `checkpoint record at seq ${seq} claims tree size ${opened.size}`, expected: String(frontier.size), actual: String(opened.size) });
    return;
  }
  const root = frontier.root();
  if (!hashEquals(opened.root, root)) {
    problems.push({ seq, checkpointSize: opened.size, where, message: 'signed root differs from the tree recomputed from the records', expected: toHex(root), actual: toHex(opened.root) });
  }
}

// ---- proofs ----

export interface InclusionBundle {
  checkpoint: string;
  index: number;
  leaf: string;
  inclusion: string[];
}

export interface ConsistencyBundle {
  old_checkpoint?: string;
  old_size: number;
  checkpoint: string;
  consistency: string[];
}

export class ProofError extends Error {
  override readonly name = 'ProofError';
}

async function latestCheckpointNote(dir: string, minSize: number, verifier?: NoteVerifier): Promise<{ size: number; note: string }> {
  const files = (await readCheckpointFiles(dir)).reverse();
  for (const f of files) {
    const size = Number(f.name.slice(CHECKPOINT_DIR.length + 1, CHECKPOINT_DIR.length + 17));
    if (size < minSize) break;
    if (verifier) openCheckpoint(f.note, verifier);
    return { size, note: f.note };
  }
  throw new ProofError(`no checkpoint in ${join(dir, CHECKPOINT_DIR)} covers a tree of at least ${minSize} records yet`);
}

function withTreeFile<T>(dir: string, fn: (read: (idx: number[]) => Uint8Array[]) => T): Promise<T> {
  const path = join(dir, TREE_FILE);
  return stat(path).then((st) => {
    const fd = openSync(path, 'r');
    try {
      return fn(fileHashReader(fd, Math.floor(st.size / 32), path));
    } finally {
      closeSync(fd);
    }
  });
}

/** Inclusion proof of record `seq` in the latest checkpoint (from tree.hashes, record bytes from the spool). */
export async function proveInclusion(dir: string, seq: number): Promise<InclusionBundle> {
  const cp = await latestCheckpointNote(dir, seq + 1);
  const { records } = await readSpool(dir);
  const rec = records.find((r) => r.seq === seq);
  if (!rec) throw new ProofError(`record ${seq} is not in the spool any more (shipped and deleted): prove it from the collector's copy (audit prove --collector <out_dir> --gateway <id> --seq ${seq})`);
  if (rec.lost) throw new ProofError(`record ${seq} was lost (declared by an AUDIT_GAP record): only its leaf hash remains`);
  const proof = await withTreeFile(dir, (read) => inclusionProof(seq, cp.size, read));
  return { checkpoint: cp.note, index: seq, leaf: b64(rec.bytes), inclusion: proof.map(b64) };
}

/** Consistency proof from the tree of `oldSize` to the latest checkpoint. */
export async function proveConsistency(dir: string, oldSize: number): Promise<ConsistencyBundle> {
  const cp = await latestCheckpointNote(dir, oldSize);
  const proof = await withTreeFile(dir, (read) => consistencyProof(oldSize, cp.size, read));
  let old: string | undefined;
  try {
    old = await readFile(join(dir, CHECKPOINT_DIR, `${String(oldSize).padStart(16, '0')}.checkpoint`), 'utf8');
  } catch {
    old = undefined;
  }
  return { ...(old ? { old_checkpoint: old } : {}), old_size: oldSize, checkpoint: cp.note, consistency: proof.map(b64) };
}

function unb64(s: unknown, what: string): Uint8Array {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new ProofError(`${what} is not base64`);
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/** Checks an inclusion bundle offline. Returns the problems (empty when it proves the record). */
export function verifyInclusionBundle(bundle: unknown, verifier: NoteVerifier): Problem[] {
  const b = bundle as Partial<InclusionBundle>;
  let cp: OpenedCheckpoint;
  try {
    cp = openCheckpoint(String(b.checkpoint ?? ''), verifier);
  } catch (err) {
    return [{ where: 'checkpoint', message: (err as Error).message }];
  }
  if (typeof b.index !== 'number' || !Number.isSafeInteger(b.index) || b.index < 0) return [{ where: 'index', message: 'index must be a non-negative integer' }];
  let leaf: Uint8Array;
  let path: Uint8Array[];
  try {
    leaf = unb64(b.leaf, 'leaf');
    if (!Array.isArray(b.inclusion)) throw new ProofError('inclusion must be an array of base64 hashes');
    path = b.inclusion.map((h, i) => unb64(h, `inclusion[${i}]`));
  } catch (err) {
    return [{ where: 'bundle', message: (err as Error).message }];
  }
  const problems: Problem[] = [];
  try {
    const rec = decodeRecord(leaf);
    if (rec.seq !== b.index) problems.push({ seq: b.index, where: 'leaf', message: `record says seq ${rec.seq}`, expected: String(b.index), actual: String(rec.seq) });
  } catch {
    problems.push({ seq: b.index, where: 'leaf', message: 'leaf is not an audit record' });
  }
  if (!verifyInclusion(b.index, cp.size, leafHash(leaf), path, cp.root)) {
    problems.push({ seq: b.index, checkpointSize: cp.size, where: 'inclusion', message: `record ${b.index} is not proven to be in the signed tree of size ${cp.size}`, actual: toHex(leafHash(leaf)) });
  }
  return problems;
}

/**
 * Checks two checkpoints: both signed by `verifier`, and the newer extends the older (with a
 * consistency proof, or equal roots when the sizes are equal).
 */
export function verifyCheckpointPair(oldNote: string, newNote: string, verifier: NoteVerifier, proof?: string[]): Problem[] {
  const open = (note: string, where: string): OpenedCheckpoint | Problem => {
    try {
      return openCheckpoint(note, verifier);
    } catch (err) {
      return { where, message: (err as Error).message };
    }
  };
  const a = open(oldNote, 'old checkpoint');
  const b = open(newNote, 'new checkpoint');
  if ('message' in a) return [a];
  if ('message' in b) return [b];
  let [oldCp, newCp] = [a, b];
  if (oldCp.size > newCp.size) [oldCp, newCp] = [newCp, oldCp];
  if (oldCp.size === newCp.size) {
    return hashEquals(oldCp.root, newCp.root)
      ? []
      : [{ checkpointSize: oldCp.size, where: 'checkpoints', message: 'two signed checkpoints of the same size with different roots: the log forked', expected: toHex(oldCp.root), actual: toHex(newCp.root) }];
  }
  if (!proof) return [{ where: 'consistency', message: `a consistency proof from ${oldCp.size} to ${newCp.size} is needed (audit prove --consistency ${oldCp.size})` }];
  let path: Uint8Array[];
  try {
    path = proof.map((h, i) => unb64(h, `consistency[${i}]`));
  } catch (err) {
    return [{ where: 'consistency', message: (err as Error).message }];
  }
  return verifyConsistency(oldCp.size, newCp.size, oldCp.root, newCp.root, path)
    ? []
    : [{ checkpointSize: newCp.size, where: 'consistency', message: `the tree of size ${newCp.size} does not extend the tree of size ${oldCp.size}: history was rewritten` }];
}

/** For tests and tools: a whole spool's stored hashes recomputed in memory from its records. */
export function memoryTree(records: SpoolRecord[]): MemoryHashStore {
  const s = new MemoryHashStore();
  for (const r of records) s.append(spoolLeaf(r));
  return s;
}
