// Per-gateway resume point on the collector's disk, <out>/<gateway>.state.json: next_seq,
// last_hash, the Merkle tree's right edge (frontier) of the first next_seq records, the certificate
// identity bound to the gateway id, and the last checkpoint this collector witnessed. Replaced by
// rename only (whole or absent). The NDJSON output is the record of truth: it is fsynced before the
// state, so after a crash it may be ahead, never behind (see output.ts for the reconciliation).
// The same JSON is what a fleet of collectors hands a gateway over with (jetstream.ts), and
// `first_seq` is where this collector's copy of a gateway taken over mid-stream begins.
import { writeFileAtomic } from '../core/files.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromHex, toHex, ZERO_HASH } from '../audit/hash.js';
import { Frontier } from '../audit/merkle.js';

export interface ResumePoint {
  nextSeq: number;
  lastHash: Uint8Array;
}

export interface GatewayState extends ResumePoint {
  /** The first record stored here: 0, or where this collector took the gateway over from another. */
  firstSeq: number;
  /** The tree of records [0, nextSeq); undefined in a state file written before the collector witnessed. */
  frontier: Frontier | undefined;
  /** The certificate identity (SPIFFE ID or CN) first seen for this gateway id, when not configured. */
  certificateIdentity: string | undefined;
  /** The last checkpoint verified and cosigned. */
  checkpoint: { size: number; root: Uint8Array } | undefined;
}

export class CollectorStateError extends Error {
  override readonly name = 'CollectorStateError';
}

export function statePath(outDir: string, gatewayId: string): string {
  return join(outDir, `${gatewayId}.state.json`);
}

/** The collector's copy of a gateway's tree hashes, rebuilt from the NDJSON `hash` fields where it lags. */
export function collectorTreeFile(gatewayId: string): string {
  return `${gatewayId}.tree.hashes`;
}

export const EMPTY_STATE: GatewayState = {
  firstSeq: 0,
  nextSeq: 0,
  lastHash: ZERO_HASH,
  frontier: new Frontier(),
  certificateIdentity: undefined,
  checkpoint: undefined,
};

export async function readState(path: string): Promise<GatewayState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...EMPTY_STATE, frontier: new Frontier() };
    throw err;
  }
  return parseState(text, path);
}

/** A state from its JSON text; `where` names its source in errors (a file, a key-value entry). */
export function parseState(text: string, where: string): GatewayState {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new CollectorStateError(`${where}: not JSON: ${(err as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new CollectorStateError(`${where}: ${why}`);
  };
  const count = (n: unknown, field: string): number => (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : bad(`${field} must be a non-negative integer`));
  const nextSeq = count(v.next_seq, 'next_seq');
  const firstSeq = v.first_seq === undefined ? 0 : count(v.first_seq, 'first_seq');
  if (firstSeq > nextSeq) bad('first_seq must not be after next_seq');
  const hex32 = (s: unknown, field: string): Uint8Array => {
    const h = typeof s === 'string' && /^[0-9a-f]{64}$/.test(s) ? fromHex(s) : undefined;
    return h ?? bad(`${field} must be 64 hex characters`);
  };
  const lastHash = hex32(v.last_hash, 'last_hash');
  let frontier: Frontier | undefined;
  if (v.tree !== undefined) {
    if (!Array.isArray(v.tree)) bad('tree must be an array of hashes');
    try {
      frontier = new Frontier(nextSeq, (v.tree as unknown[]).map((h, i) => hex32(h, `tree[${i}]`)));
    } catch (err) {
      bad(`tree: ${(err as Error).message}`);
    }
  }
  const certificateIdentity = typeof v.certificate_identity === 'string' ? v.certificate_identity : undefined;
  let checkpoint: GatewayState['checkpoint'];
  if (v.checkpoint !== undefined) {
    const c = v.checkpoint as { size?: unknown; root?: unknown };
    checkpoint = { size: count(c.size, 'checkpoint.size'), root: hex32(c.root, 'checkpoint.root') };
  }
  return { firstSeq, nextSeq, lastHash, frontier, certificateIdentity, checkpoint };
}

/** The state as one line of JSON (the state file's and the fleet's hand-over form). */
export function stateJson(s: GatewayState): string {
  const out: Record<string, unknown> = { next_seq: s.nextSeq, last_hash: toHex(s.lastHash) };
  if (s.firstSeq > 0) out.first_seq = s.firstSeq;
  if (s.frontier) out.tree = s.frontier.edge.map((h) => toHex(h));
  if (s.certificateIdentity !== undefined) out.certificate_identity = s.certificateIdentity;
  if (s.checkpoint) out.checkpoint = { size: s.checkpoint.size, root: toHex(s.checkpoint.root) };
  return JSON.stringify(out);
}

export async function writeState(path: string, s: GatewayState): Promise<void> {
  await writeFileAtomic(path, stateJson(s) + '\n');
}
