import { createHash, generateKeyPairSync, verify as edVerify } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkpointBody,
  cosigner,
  cosignerVerifierKey,
  openCheckpoint,
  parseCheckpointBody,
  parseCosignerVerifierKey,
  signCheckpoint,
} from '../../../src/audit/checkpoint.js';
import {
  addSignatureLines,
  ed25519PrivateKeyFromSeed,
  noteSigner,
  openNote,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  verifierKey,
} from '../../../src/audit/note.js';

// Published vectors of golang.org/x/mod/sumdb/note (note_test.go): an independent implementation.
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

describe('signed notes (C2SP signed-note, interoperable with Go sumdb/note)', () => {
  it('signs the published example note byte for byte like Go', () => {
    const signer = parseSignerKey(PETER_SKEY);
    expect(signer.keyHash).toBe(0xc74f20a3);
    expect(signNote(TEXT, [signer])).toBe(`${TEXT}\n${PETER_SIG}`);
  });

  it('derives the published verifier key from the private key', () => {
    const seed = Buffer.from(PETER_SKEY.split('+').slice(4).join('+'), 'base64').subarray(1);
    expect(verifierKey('PeterNeumann', ed25519PrivateKeyFromSeed(seed))).toBe(PETER_VKEY);
  });

  it("verifies Go's signatures, and only those by keys it was given", () => {
    const peter = parseVerifierKey(PETER_VKEY);
    const enoch = parseVerifierKey(ENOCH_VKEY);
    const both = openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter, enoch]);
    expect(both.text).toBe(TEXT);
    expect(both.verified.map((s) => s.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter]).verified.map((s) => s.name)).toEqual(['PeterNeumann']);
    expect(() => openNote(`${TEXT}\n${PETER_SIG}`, [enoch])).toThrow(expect.objectContaining({ code: 'NO_VERIFIED_SIGNATURE' }));
  });

  it('rejects a note whose text or signature was changed', () => {
    const peter = parseVerifierKey(PETER_VKEY);
    expect(() => openNote(`${TEXT.replace('answer', 'Answer')}\n${PETER_SIG}`, [peter])).toThrow(
      expect.objectContaining({ code: 'BAD_SIGNATURE' }),
    );
    const tampered = PETER_SIG.slice(0, 60) + 'ABCD' + PETER_SIG.slice(60);
    expect(() => openNote(`${TEXT}\n${tampered}`, [peter])).toThrow(expect.objectContaining({ code: 'BAD_SIGNATURE' }));
  });

  it('rejects the malformed encodings Go rejects', () => {
    for (const msg of [
      TEXT,
      `${TEXT}\n`,
      `${TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\u0001${TEXT}\n${PETER_SIG}`,
      `${TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      `${TEXT}\n${PETER_SIG}Unexpected line.\n`,
      `${TEXT}\n${PETER_SIG.repeat(101)}`,
    ]) {
      expect(() => openNote(msg, [parseVerifierKey(PETER_VKEY)]), JSON.stringify(msg.slice(-30))).toThrow(
        expect.objectContaining({ code: 'MALFORMED_NOTE' }),
      );
    }
  });

  it('rejects mangled verifier keys', () => {
    expect(() => parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(/key hash/);
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow();
    expect(() => parseVerifierKey(PETER_VKEY.slice(0, -1))).toThrow();
    expect(() => parseVerifierKey(PETER_VKEY.slice(1))).toThrow();
  });

  it('never throws anything but a NoteError on random input', () => {
    const peter = parseVerifierKey(PETER_VKEY);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          openNote(s, [peter]);
        } catch (err) {
          expect((err as Error).name).toBe('NoteError');
        }
      }),
    );
  });
});

describe('checkpoints (C2SP tlog-checkpoint) and cosignatures (C2SP tlog-cosignature/v1)', () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  const origin = 'plantgate/gw-1';
  const root = createHash('sha256').update('x').digest();

  it('writes the three-line body and verifies it with the verifier key string', () => {
    const note = signCheckpoint({ origin, size: 42, root }, noteSigner(origin, privateKey));
    expect(note.startsWith(`plantgate/gw-1\n42\n${root.toString('base64')}\n\n— plantgate/gw-1 `)).toBe(true);
    const cp = openCheckpoint(note, parseVerifierKey(verifierKey(origin, privateKey)));
    expect(cp.size).toBe(42);
    expect(Buffer.from(cp.root).equals(root)).toBe(true);
  });

  it('rejects a checkpoint for another origin, or with extra or malformed lines', () => {
    const other = signCheckpoint({ origin: 'plantgate/gw-2', size: 1, root }, noteSigner('plantgate/gw-1', privateKey));
    expect(() => openCheckpoint(other, parseVerifierKey(verifierKey(origin, privateKey)))).toThrow(/origin/);
    expect(() => parseCheckpointBody(`${origin}\n042\n${root.toString('base64')}\n`)).toThrow(/leading zeros/);
    expect(() => parseCheckpointBody(`${origin}\n42\n${root.toString('base64')}\nextension\n`)).toThrow(/three lines/);
    expect(() => parseCheckpointBody(`${origin}\n42\nAAAA\n`)).toThrow(/32 bytes/);
  });

  it('cosigns "cosignature/v1\\ntime <t>\\n<body>" with a key id over 0x04 || pubkey, verifiable from the key string', () => {
    const witness = generateKeyPairSync('ed25519');
    const w = cosigner('soc.example/witness', witness.privateKey);
    const body = checkpointBody({ origin, size: 7, root });
    const line = w.cosign(body, 1_767_000_000);
    const raw = Buffer.from(line.trim().split(' ')[2], 'base64');
    const pub = witness.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    const expectedId = createHash('sha256').update('soc.example/witness\n').update(Buffer.from([0x04])).update(pub).digest().readUInt32BE(0);
    expect(raw.readUInt32BE(0)).toBe(expectedId);
    expect(raw.readBigUInt64BE(4)).toBe(1_767_000_000n);
    expect(edVerify(null, Buffer.from(`cosignature/v1\ntime 1767000000\n${body}`), witness.publicKey, raw.subarray(12))).toBe(true);

    const v = parseCosignerVerifierKey(cosignerVerifierKey('soc.example/witness', witness.privateKey));
    expect(v.verify(body, line)).toBe(1_767_000_000);
    expect(v.verify(checkpointBody({ origin, size: 8, root }), line)).toBeUndefined();
    // A cosigned checkpoint is still a checkpoint the log's key verifies.
    const note = addSignatureLines(signCheckpoint({ origin, size: 7, root }, noteSigner(origin, privateKey)), [line]);
    expect(parseNote(note).sigs).toHaveLength(2);
    expect(openCheckpoint(note, parseVerifierKey(verifierKey(origin, privateKey))).size).toBe(7);
  });
});
