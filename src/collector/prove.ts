// `plantgate audit prove --collector OUT --gateway ID`: proofs for records the gateway has already
// shipped and deleted, from the SOC's own copy (docs/audit.md, "Proofs from the collector's copy"):
// the record's bytes are re-encoded from its NDJSON line (protobuf encoding of the same fields is
// deterministic here: the result must hash to the leaf the collector stored, or nothing is proven),
// the path comes from the collector's <gateway>.tree.hashes, the checkpoint is the newest one it
// witnessed (gateway signature and the witness's cosignature). The bundles are the spool's
// (offline.ts), so `audit verify` and any RFC 9162 verifier check them the same way.
// Reads only.
import { closeSync, openSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCheckpointBody } from '../audit/checkpoint.js';
import { hashEquals, HASH_BYTES, leafHash, toHex } from '../audit/hash.js';
import { consistencyProof, inclusionProof, storedHashIndex, type StoredHashReader } from '../audit/merkle.js';
import { parseNote } from '../audit/note.js';
import { ProofError, type ConsistencyBundle, type InclusionBundle } from '../audit/offline.js';
import { encodeRecord } from '../audit/schema.js';
import { fileHashReader } from '../audit/tree-store.js';
import { collectorNdjsonFiles, ndjsonBatches } from './ndjson-reader.js';
import { collectorTreeFile } from './state.js';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** The newest checkpoint the collector witnessed for the gateway (either output layout). */
async function witnessedCheckpoint(outDir: string, gatewayId: string): Promise<{ note: string; size: number }> {
  for (const p of [join(outDir, gatewayId, 'latest.checkpoint'), join(outDir, `${gatewayId}.checkpoint`)]) {
    let note: string;
    try {
      note = await readFile(p, 'utf8');
    } catch {
      continue;
    }
    return { note, size: parseCheckpointBody(parseNote(note).text).size };
  }
  throw new ProofError(`no witnessed checkpoint of ${gatewayId} in ${outDir} (latest.checkpoint is written when the collector cosigns: configure its witness key and the gateway's verifier key)`);
}

async function withTree<T>(outDir: string, gatewayId: string, fn: (read: StoredHashReader, count: number) => T): Promise<T> {
  const path = join(outDir, collectorTreeFile(gatewayId));
  const count = Math.floor((await stat(path)).size / HASH_BYTES);
  const fd = openSync(path, 'r');
  try {
    return fn(fileHashReader(fd, count, path), count);
  } finally {
    closeSync(fd);
  }
}

/** The record bytes of `seq` from the gateway's NDJSON, re-encoded. */
async function recordBytes(outDir: string, gatewayId: string, seq: number): Promise<Uint8Array> {
  const files = (await collectorNdjsonFiles(outDir)).filter((f) => f.path === join(outDir, `${gatewayId}.ndjson`) || f.path.startsWith(join(outDir, gatewayId) + '/'));
  let lost = false;
  for await (const batch of ndjsonBatches(files, (p) => (lost ||= p.message.startsWith(`record ${seq} was lost`)))) {
    const rec = batch.records.find((r) => r.gatewayId === gatewayId && Number(r.seq) === seq);
    if (rec) return encodeRecord(rec);
  }
  throw new ProofError(lost ? `record ${seq} was lost by the gateway (an AUDIT_GAP record declares it): only its leaf hash remains` : `record ${seq} of ${gatewayId} is not in the collector's NDJSON under ${outDir}`);
}

/** Inclusion of record `seq` in the newest witnessed checkpoint, from the collector's copy. */
export async function collectorInclusion(outDir: string, gatewayId: string, seq: number): Promise<InclusionBundle> {
  const cp = await witnessedCheckpoint(outDir, gatewayId);
  if (seq >= cp.size) throw new ProofError(`record ${seq} is not covered by the newest witnessed checkpoint (size ${cp.size}) yet`);
  const bytes = await recordBytes(outDir, gatewayId, seq);
  const proof = await withTree(outDir, gatewayId, (read) => {
    const [stored] = read([storedHashIndex(0, seq)]);
    if (!hashEquals(stored, leafHash(bytes))) {
      throw new ProofError(`record ${seq} re-encoded from the NDJSON hashes to ${toHex(leafHash(bytes))}, but the leaf the collector stored is ${toHex(stored)}: the NDJSON line was changed`);
    }
    return inclusionProof(seq, cp.size, read);
  });
  return { checkpoint: cp.note, index: seq, leaf: b64(bytes), inclusion: proof.map(b64) };
}

/** Consistency from the tree of `oldSize` to the newest witnessed checkpoint, from the collector's copy. */
export async function collectorConsistency(outDir: string, gatewayId: string, oldSize: number): Promise<ConsistencyBundle> {
  const cp = await witnessedCheckpoint(outDir, gatewayId);
  const proof = await withTree(outDir, gatewayId, (read) => consistencyProof(oldSize, cp.size, read));
  return { old_size: oldSize, checkpoint: cp.note, consistency: proof.map(b64) };
}
