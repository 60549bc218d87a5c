// Loads the gateway's Ed25519 audit key (or a collector's witness key) from a file: a private JWK
// (as `plantgate keys gen --alg EdDSA` writes it) or a PKCS#8 PEM. Never logs or returns key material
// in messages.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export class AuditKeyError extends Error {
  override readonly name = 'AuditKeyError';
}

export async function loadEd25519PrivateKey(file: string): Promise<KeyObject> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new AuditKeyError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let key: KeyObject;
  try {
    if (text.trimStart().startsWith('{')) {
      const jwk = JSON.parse(text) as Record<string, unknown>;
      if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string') throw new Error('not an Ed25519 private JWK (kty OKP, crv Ed25519, d)');
      key = createPrivateKey({ key: jwk as never, format: 'jwk' });
    } else {
      key = createPrivateKey(text);
    }
  } catch (err) {
    throw new AuditKeyError(`${file}: ${(err as Error).message.replace(/\s+/g, ' ').slice(0, 200)}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new AuditKeyError(`${file}: the audit key must be Ed25519, got ${key.asymmetricKeyType}`);
  return key;
}
