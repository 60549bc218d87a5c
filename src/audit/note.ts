// C2SP signed-note (https://c2sp.org/signed-note), Ed25519 only, as Go's golang.org/x/mod/sumdb/note
// writes and reads it: a UTF-8 text ending in "\n", a blank line, then signature lines
// "— <name> <base64(keyhash(4) || signature)>\n". The key hash of an Ed25519 key is the first four
// bytes of SHA-256(name || "\n" || 0x01 || pubkey); a verifier key is "name+hex8(keyhash)+base64(0x01 || pubkey)".
// Pure apart from node:crypto: formats, parses, signs and verifies; never reads files.
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';

/** Signature type byte of an Ed25519 note key (signed-note §Signatures). */
export const ALG_ED25519 = 0x01;
const SIG_PREFIX = '\u2014 '; // "— " (U+2014 EM DASH, space)
const MAX_SIGNATURES = 100;
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export type NoteErrorCode = 'MALFORMED_NOTE' | 'MALFORMED_KEY' | 'UNKNOWN_KEY' | 'BAD_SIGNATURE' | 'NO_VERIFIED_SIGNATURE';

export class NoteError extends Error {
  override readonly name = 'NoteError';
  constructor(
    readonly code: NoteErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface NoteSigner {
  readonly name: string;
  readonly keyHash: number;
  sign(msg: Uint8Array): Uint8Array;
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyHash: number;
  verify(msg: Uint8Array, sig: Uint8Array): boolean;
}

export interface NoteSignature {
  name: string;
  keyHash: number;
  /** base64(keyhash || signature), as on the line. */
  base64: string;
}

export interface Note {
  text: string;
  sigs: NoteSignature[];
}

/** A key name: non-empty, no Unicode spaces, no "+" (signed-note §Signatures). */
export function isKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !/[\u0000-\u001f\u007f]/.test(name);
}

/** First 4 bytes of SHA-256(name || "\n" || typed public key), as a uint32. */
export function keyHash(name: string, typedPublicKey: Uint8Array): number {
  const h = createHash('sha256').update(name).update('\n').update(typedPublicKey).digest();
  return h.readUInt32BE(0);
}

export function hex8(v: number): string {
  return v.toString(16).padStart(8, '0');
}

/** The 32-byte raw public key of an Ed25519 KeyObject (public or private). */
export function rawEd25519PublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new NoteError('MALFORMED_KEY', `key is ${pub.asymmetricKeyType}, not Ed25519`);
  const der = pub.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

export function ed25519PrivateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new NoteError('MALFORMED_KEY', `an Ed25519 seed is 32 bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

export function ed25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new NoteError('MALFORMED_KEY', `an Ed25519 public key is 32 bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** An Ed25519 note signer named `name`. */
export function noteSigner(name: string, privateKey: KeyObject): NoteSigner {
  if (!isKeyName(name)) throw new NoteError('MALFORMED_KEY', `key name "${name}" must be non-empty without spaces or "+"`);
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new NoteError('MALFORMED_KEY', 'a note signer needs an Ed25519 private key');
  }
  const pub = rawEd25519PublicKey(privateKey);
  const hash = keyHash(name, Buffer.concat([Buffer.from([ALG_ED25519]), pub]));
  return { name, keyHash: hash, sign: (msg) => edSign(null, msg, privateKey) };
}

/** The verifier key string of a signer's key: name+hex(keyhash)+base64(0x01 || pubkey). */
export function verifierKey(name: string, key: KeyObject): string {
  const typed = Buffer.concat([Buffer.from([ALG_ED25519]), rawEd25519PublicKey(key)]);
  return `${name}+${hex8(keyHash(name, typed))}+${typed.toString('base64')}`;
}

function strictBase64(s: string): Buffer | undefined {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return undefined;
  return Buffer.from(s, 'base64');
}

/** Splits "name+hash+base64" and checks the hash against the key. */
function splitKey(vkey: string, what: string): { name: string; hash: number; key: Buffer } {
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(vkey);
  const key = m ? strictBase64(m[3]) : undefined;
  if (!m || !key || !isKeyName(m[1]) || key.length < 1) throw new NoteError('MALFORMED_KEY', `not a ${what}: "${vkey.slice(0, 80)}"`);
  const hash = parseInt(m[2], 16);
  if (keyHash(m[1], key) !== hash) throw new NoteError('MALFORMED_KEY', `${what} "${m[1]}": key hash ${m[2]} does not match the key`);
  return { name: m[1], hash, key };
}

/** Parses a signed-note verifier key (Ed25519, type 0x01). */
export function parseVerifierKey(vkey: string): NoteVerifier {
  const { name, hash, key } = splitKey(vkey.trim(), 'verifier key');
  if (key[0] !== ALG_ED25519 || key.length !== 33) {
    throw new NoteError('MALFORMED_KEY', `verifier key "${name}": only Ed25519 keys (type 0x01, 32 bytes) are supported`);
  }
  const pub = ed25519PublicKeyFromRaw(key.subarray(1));
  return { name, keyHash: hash, verify: (msg, sig) => sig.length === 64 && edVerify(null, msg, pub, sig) };
}

/** Parses Go's "PRIVATE+KEY+name+hash+base64(0x01 || seed)" signer key (for interop and tests). */
export function parseSignerKey(skey: string): NoteSigner {
  if (!skey.startsWith('PRIVATE+KEY+')) throw new NoteError('MALFORMED_KEY', 'a signer key starts with PRIVATE+KEY+');
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(skey.slice('PRIVATE+KEY+'.length));
  const key = m ? strictBase64(m[3]) : undefined;
  if (!m || !key || key.length !== 33 || key[0] !== ALG_ED25519) throw new NoteError('MALFORMED_KEY', 'malformed signer key');
  const signer = noteSigner(m[1], ed25519PrivateKeyFromSeed(key.subarray(1)));
  if (signer.keyHash !== parseInt(m[2], 16)) throw new NoteError('MALFORMED_KEY', `signer key "${m[1]}": key hash does not match`);
  return signer;
}

function validText(text: string): boolean {
  // Text ends in a newline and holds no control characters but newlines (signed-note §Format).
  return text.length > 0 && text.endsWith('\n') && !/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text);
}

/** Signs `text` with each signer; returns the note. Existing signatures are not kept. */
export function signNote(text: string, signers: NoteSigner[]): string {
  if (!validText(text)) throw new NoteError('MALFORMED_NOTE', 'note text must be non-empty, end in a newline and hold no control characters');
  const msg = Buffer.from(text, 'utf8');
  let out = `${text}\n`;
  for (const s of signers) {
    const sig = s.sign(msg);
    const body = Buffer.alloc(4 + sig.length);
    body.writeUInt32BE(s.keyHash, 0);
    body.set(sig, 4);
    out += `${SIG_PREFIX}${s.name} ${body.toString('base64')}\n`;
  }
  return out;
}

/** Parses a note without verifying anything. Throws NoteError('MALFORMED_NOTE'). */
export function parseNote(msg: string): Note {
  const bad = (why: string): never => {
    throw new NoteError('MALFORMED_NOTE', `malformed note: ${why}`);
  };
  if (msg.includes('\r')) bad('carriage return');
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) bad('no blank line before the signatures');
  const text = msg.slice(0, split + 1);
  if (!validText(text)) bad('text must end in a newline and hold no control characters');
  const sigText = msg.slice(split + 2);
  if (!sigText.endsWith('\n')) bad('signature block must end in a newline');
  const lines = sigText.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) bad(`more than ${MAX_SIGNATURES} signatures`);
  const sigs: NoteSignature[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) bad(`signature line does not start with "${SIG_PREFIX}"`);
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    const name = rest.slice(0, sp);
    const b64 = rest.slice(sp + 1);
    const raw = sp > 0 ? strictBase64(b64) : undefined;
    if (!isKeyName(name) || !raw || raw.length < 5) bad(`bad signature line "${line.slice(0, 60)}"`);
    sigs.push({ name, keyHash: raw!.readUInt32BE(0), base64: b64 });
  }
  return { text, sigs };
}

export interface OpenedNote extends Note {
  /** Signatures verified by one of the given verifiers. */
  verified: NoteSignature[];
}

/**
 * Parses `msg` and verifies its signatures with `verifiers`. Throws NoteError: MALFORMED_NOTE,
 * BAD_SIGNATURE (a known key's signature does not verify: never ignored) or
 * NO_VERIFIED_SIGNATURE (no signature by a known key).
 */
export function openNote(msg: string, verifiers: NoteVerifier[]): OpenedNote {
  const note = parseNote(msg);
  const body = Buffer.from(note.text, 'utf8');
  const verified: NoteSignature[] = [];
  for (const s of note.sigs) {
    const v = verifiers.find((x) => x.name === s.name && x.keyHash === s.keyHash);
    if (!v) continue;
    const raw = Buffer.from(s.base64, 'base64');
    if (!v.verify(body, raw.subarray(4))) {
      throw new NoteError('BAD_SIGNATURE', `invalid signature for key ${s.name}+${hex8(s.keyHash)}`);
    }
    verified.push(s);
  }
  if (verified.length === 0) {
    const names = note.sigs.map((s) => `${s.name}+${hex8(s.keyHash)}`).join(', ') || 'none';
    throw new NoteError('NO_VERIFIED_SIGNATURE', `note has no signature by a known key (signed by: ${names})`);
  }
  return { ...note, verified };
}

/** Adds signature lines (e.g. a witness's cosignature) to a note, dropping exact duplicates. */
export function addSignatureLines(msg: string, lines: string[]): string {
  const note = parseNote(msg);
  let out = msg;
  for (const line of lines) {
    const l = line.endsWith('\n') ? line : `${line}\n`;
    parseNote(`${note.text}\n${l}`);
    if (!out.includes(l)) out += l;
  }
  return out;
}
