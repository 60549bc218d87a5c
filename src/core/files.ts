// Durable file writes: a file is either the old version or the new one, never torn (temp file in
// the same directory, fsync, rename, fsync of the directory). Secrets are created with their final
// mode from the first byte, never chmod-ed wider afterwards. Every state and key file goes through here.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = SECRET_MODE): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
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
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
