// Durable writes for generated key material: write a temp file, fsync, rename, fsync the
// directory, so a crash never leaves a half-written key under the real name.
// Never widens permissions: secrets are created 0600 from the first byte, not chmod-ed afterwards.
import { open, rename, mkdir, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';

export async function writeFileDurable(path: string, data: string, mode: number): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    // The umask may have narrowed the mode (fine); chmod makes a wider umask irrelevant too.
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;
