// The collector's configuration file (YAML): where to listen, its TLS material, where to write.
// Validates once at the boundary; every problem names file, line, column and field. Relative
// paths are resolved against the config file's directory, so a config works from any cwd.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { SourceError, SourceErrors } from '../core/errors.js';
import { parseYamlWith } from '../core/yaml.js';

const nonEmpty = z
  .string({ error: (iss) => (iss.input === undefined ? 'required' : 'must be a string') })
  .min(1, 'must not be empty');

const schema = z.strictObject({
  listen: z.strictObject({
    host: nonEmpty.default('0.0.0.0'),
    port: z
      .number({ error: (iss) => (iss.input === undefined ? 'required' : 'must be a number') })
      .int('must be an integer').min(0, 'must be 0..65535').max(65535, 'must be 0..65535'),
  }),
  tls: z.strictObject({
    ca: nonEmpty,
    cert: nonEmpty,
    key: nonEmpty,
  }),
  out_dir: nonEmpty,
});

export interface CollectorConfig {
  listen: { host: string; port: number };
  tls: { ca: string; cert: string; key: string };
  outDir: string;
}

/** Reads and validates a collector config. Throws SourceErrors (bad content) or an fs error. */
export async function loadCollectorConfig(file: string): Promise<CollectorConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 1, 1, '(file)', `cannot read: ${(err as Error).message}`)]);
  }
  const c = parseYamlWith(schema, text, file);
  const base = dirname(resolve(file));
  return {
    listen: { host: c.listen.host, port: c.listen.port },
    tls: { ca: resolve(base, c.tls.ca), cert: resolve(base, c.tls.cert), key: resolve(base, c.tls.key) },
    outDir: resolve(base, c.out_dir),
  };
}

/** Reads the PEM files a config names; a missing file is a config error naming the field. */
export async function readTlsFiles(file: string, tls: CollectorConfig['tls']): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> {
  const out: Partial<Record<'ca' | 'cert' | 'key', Buffer>> = {};
  const errors: SourceError[] = [];
  for (const field of ['ca', 'cert', 'key'] as const) {
    try {
      out[field] = await readFile(tls[field]);
    } catch (err) {
      errors.push(new SourceError(file, 1, 1, `tls.${field}`, `cannot read ${tls[field]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`));
    }
  }
  if (errors.length > 0) throw new SourceErrors(errors);
  return out as { ca: Buffer; cert: Buffer; key: Buffer };
}
