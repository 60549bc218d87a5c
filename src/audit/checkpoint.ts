// C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) and tlog-cosignature/v1
// (https://c2sp.org/tlog-cosignature), Ed25519. A checkpoint body is "<origin>\n<size>\n<base64 root>\n"
// (extension lines are neither written nor accepted), signed as a signed note by the gateway's audit
// key. A witness cosignature is a note signature line "— <name> base64(keyid(4) || u64be time || sig(64))"
// over "cosignature/v1\ntime <t>\n" + body, with keyid from SHA-256(name || "\n" || 0x04 || pubkey).
// Pure: formats, parses, signs, verifies.
import { createHash, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { HASH_BYTES } from './hash.js';
import {
  ed25519PublicKeyFromRaw,
  hex8,
  isKeyName,
  keyHash,
  NoteError,
  openNote,
  parseNote,
  rawEd25519PublicKey,
  signNote,
  type NoteSigner,
  type NoteVerifier,
} from './note.js';

/** Signature type of a cosignature/v1 key (tlog-cosignature §Format). */
export const ALG_COSIGNATURE_V1 = 0x04;

export interface Checkpoint {
  origin: string;
  size: number;
  root: Uint8Array;
}

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    readonly code: 'MALFORMED_CHECKPOINT' | 'WRONG_ORIGIN' | 'BAD_COSIGNATURE',
    message: string,
  ) {
    super(message);
  }
}

export function checkpointBody(cp: Checkpoint): string {
  if (cp.origin.length === 0 || /[\n\r]/.test(cp.origin)) throw new CheckpointError('MALFORMED_CHECKPOINT', 'origin must be one non-empty line');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw new CheckpointError('MALFORMED_CHECKPOINT', `bad tree size ${cp.size}`);
  if (cp.root.length !== HASH_BYTES) throw new CheckpointError('MALFORMED_CHECKPOINT', 'root hash must be 32 bytes');
  return `${cp.origin}\n${cp.size}\n${Buffer.from(cp.root).toString('base64')}\n`;
}

export function parseCheckpointBody(text: string): Checkpoint {
  const bad = (why: string): never => {
    throw new CheckpointError('MALFORMED_CHECKPOINT', `malformed checkpoint: ${why}`);
  };
  const lines = text.split('\n');
  if (lines.length !== 4 || lines[3] !== '') bad('expected exactly three lines: origin, size, root hash');
  const [origin, sizeText, rootText] = lines;
  if (origin.length === 0) bad('empty origin line');
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(sizeText)) bad(`tree size "${sizeText.slice(0, 20)}" is not a decimal without leading zeros`);
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) bad('tree size too large');
  const root = /^[A-Za-z0-9+/]{43}=$/.test(rootText) ? Buffer.from(rootText, 'base64') : undefined;
  if (!root || root.length !== HASH_BYTES) bad('root hash is not 32 bytes of standard base64');
  return { origin, size, root: new Uint8Array(root!) };
}

/** The signed checkpoint note text. */
export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  return signNote(checkpointBody(cp), [signer]);
}

export interface OpenedCheckpoint extends Checkpoint {
  note: string;
  body: string;
}

/**
 * Verifies a checkpoint note with the log's verifier and parses it; the origin must be the
 * verifier's key name unless `origin` says otherwise. Throws NoteError or CheckpointError.
 */
export function openCheckpoint(note: string, verifier: NoteVerifier, origin = verifier.name): OpenedCheckpoint {
  const opened = openNote(note, [verifier]);
  const cp = parseCheckpointBody(opened.text);
  if (cp.origin !== origin) throw new CheckpointError('WRONG_ORIGIN', `checkpoint origin "${cp.origin}", expected "${origin}"`);
  return { ...cp, note, body: opened.text };
}

// ---- cosignature/v1 ----

export interface Cosigner {
  readonly name: string;
  readonly keyId: number;
  /** The signature line (with trailing newline) for `body` at `timeSec`. */
  cosign(body: string, timeSec: number): string;
}

export interface CosignatureVerifier {
  readonly name: string;
  readonly keyId: number;
  /** The cosignature's time when `line` is a valid cosignature of `body` by this key; else undefined. */
  verify(body: string, line: string): number | undefined;
}

function cosignedMessage(body: string, timeSec: number): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timeSec}\n${body}`, 'utf8');
}

export function cosigner(name: string, privateKey: KeyObject): Cosigner {
  if (!isKeyName(name)) throw new NoteError('MALFORMED_KEY', `cosigner name "${name}" must be non-empty without spaces or "+"`);
  const pub = rawEd25519PublicKey(privateKey);
  const id = keyHash(name, Buffer.concat([Buffer.from([ALG_COSIGNATURE_V1]), pub]));
  return {
    name,
    keyId: id,
    cosign(body, timeSec) {
      if (!Number.isSafeInteger(timeSec) || timeSec < 0) throw new CheckpointError('BAD_COSIGNATURE', `bad cosignature time ${timeSec}`);
      const sig = edSign(null, cosignedMessage(body, timeSec), privateKey);
      const raw = Buffer.alloc(4 + 8 + 64);
      raw.writeUInt32BE(id, 0);
      raw.writeBigUInt64BE(BigInt(timeSec), 4);
      raw.set(sig, 12);
      return `\u2014 ${name} ${raw.toString('base64')}\n`;
    },
  };
}

/** The witness's verifier key: name+hex(keyid)+base64(0x04 || pubkey). */
export function cosignerVerifierKey(name: string, key: KeyObject): string {
  const typed = Buffer.concat([Buffer.from([ALG_COSIGNATURE_V1]), rawEd25519PublicKey(key)]);
  return `${name}+${hex8(keyHash(name, typed))}+${typed.toString('base64')}`;
}

export function parseCosignerVerifierKey(vkey: string): CosignatureVerifier {
  const m = /^([^+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  const typed = m ? Buffer.from(m[3], 'base64') : undefined;
  if (!m || !typed || typed.length !== 33 || typed[0] !== ALG_COSIGNATURE_V1 || !isKeyName(m[1])) {
    throw new NoteError('MALFORMED_KEY', `not a cosignature/v1 verifier key: "${vkey.slice(0, 80)}"`);
  }
  const name = m[1];
  const id = parseInt(m[2], 16);
  if (keyHash(name, typed) !== id) throw new NoteError('MALFORMED_KEY', `cosigner key "${name}": key id does not match the key`);
  const pub = ed25519PublicKeyFromRaw(typed.subarray(1));
  return {
    name,
    keyId: id,
    verify(body, line) {
      let sigs;
      try {
        sigs = parseNote(`${body}\n${line.endsWith('\n') ? line : `${line}\n`}`).sigs;
      } catch {
        return undefined;
      }
      if (sigs.length !== 1 || sigs[0].name !== name || sigs[0].keyHash !== id) return undefined;
      const raw = Buffer.from(sigs[0].base64, 'base64');
      if (raw.length !== 4 + 8 + 64) return undefined;
      const t = raw.readBigUInt64BE(4);
      if (t > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
      const timeSec = Number(t);
      return edVerify(null, cosignedMessage(body, timeSec), pub, raw.subarray(12)) ? timeSec : undefined;
    },
  };
}

/** Hex SHA-256 of a checkpoint body: a short name for it in logs and alerts. */
export function checkpointId(body: string): string {
  return createHash('sha256').update(body).digest('hex').slice(0, 16);
}
