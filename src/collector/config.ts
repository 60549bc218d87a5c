// The collector's configuration file (YAML): where to listen, its TLS material, where to write.
// Validates once at the boundary; every problem names file, line, column and field. Relative
// paths are resolved against the config file's directory, so a config works from any cwd.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { SourceError, SourceErrors } from '../core/errors.js';
import { parseYamlWith } from '../core/yaml.js';
import { isKeyName, parseVerifierKey } from '../audit/note.js';
import type { OutputLayout } from './output.js';

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
  /** NDJSON per gateway per day (default), or one file per gateway; and the OCSF export. */
  output: z
    .strictObject({
      layout: z.enum(['daily', 'single']).default('daily'),
      ocsf: z.boolean().default(true),
    })
    .default({ layout: 'daily', ocsf: true }),
  /**
   * The gateways allowed to write: id, the verifier key of their checkpoints (`plantgate audit key`),
   * and optionally the certificate identity (SPIFFE ID or CN) that proves the id. When the list is
   * absent the collector runs open (trust on first use, no checkpoint signatures checked).
   */
  gateways: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'letters, digits, dot, dash, underscore only (1-128)'),
        verifier_key: nonEmpty.refine((k) => {
          try {
            parseVerifierKey(k);
            return true;
          } catch {
            return false;
          }
        }, 'not a signed-note Ed25519 verifier key (name+hash+base64, as `plantgate audit key` prints it)'),
        identity: nonEmpty.optional(),
      }),
    )
    .optional(),
  /** Countersign verified checkpoints (C2SP tlog-cosignature/v1) with this Ed25519 key. */
  witness: z
    .strictObject({
      name: nonEmpty.refine(isKeyName, 'must be non-empty without spaces or "+"'),
      key_file: nonEmpty,
    })
    .optional(),
});

export interface CollectorGatewayConfig {
  id: string;
  verifierKey: string;
  identity?: string;
}

export interface CollectorConfig {
  listen: { host: string; port: number };
  tls: { ca: string; cert: string; key: string };
  outDir: string;
  output: { layout: OutputLayout; ocsf: boolean };
  gateways: CollectorGatewayConfig[] | undefined;
  witness: { name: string; keyFile: string } | undefined;
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
    output: { layout: c.output.layout, ocsf: c.output.ocsf },
    gateways: c.gateways?.map((g) => ({ id: g.id, verifierKey: g.verifier_key, ...(g.identity !== undefined ? { identity: g.identity } : {}) })),
    witness: c.witness ? { name: c.witness.name, keyFile: resolve(base, c.witness.key_file) } : undefined,
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
