// The collector's configuration file (YAML): where to listen, its TLS material, where to write.
// Validates once at the boundary; every problem names file, line, column and field. Relative
// paths are resolved against the config file's directory, so a config works from any cwd.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { SourceError, SourceErrors } from '../core/errors.js';
import { parseYamlWith } from '../core/yaml.js';
import { isKeyName, parseVerifierKey } from '../audit/note.js';
import { FLEET_DEFAULTS, type FleetOptions } from './fleet.js';
import type { OutputLayout } from './output.js';

const nonEmpty = z
  .string({ error: (iss) => (iss.input === undefined ? 'required' : 'must be a string') })
  .min(1, 'must not be empty');

const GATEWAY_ID = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'letters, digits, dot, dash, underscore only (1-128)');

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
        id: GATEWAY_ID,
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
  /**
   * Read these gateways' records from NATS JetStream (docs/audit.md, Fleets) besides the TLS
   * listener: each gateway by one collector of a fleet, through a durable consumer.
   */
  nats: z
    .strictObject({
      servers: z.array(nonEmpty).min(1, 'give at least one NATS server'),
      gateways: z.array(GATEWAY_ID).min(1, 'name the gateways this collector reads from the stream'),
      stream: nonEmpty.default('PLANTGATE_AUDIT'),
      subject_prefix: nonEmpty.default('plantgate.audit'),
      consumer_prefix: nonEmpty.default('plantgate-collector'),
      /** Mutual TLS to NATS with this collector's tls.ca/cert/key. */
      tls: z.boolean().default(false),
      creds_file: nonEmpty.optional(),
      nkey_seed_file: nonEmpty.optional(),
      /**
       * Share `gateways` with the other collectors of a fleet that list them too: each gateway is
       * read by the collector holding its lease, and taken over when that one stops or dies.
       */
      fleet: z
        .strictObject({
          member: nonEmpty.optional(),
          lease_ms: z.number().int('must be an integer').min(1000, 'must be at least 1000').default(FLEET_DEFAULTS.leaseMs),
          lease_bucket: nonEmpty.default(FLEET_DEFAULTS.leaseBucket),
          state_bucket: nonEmpty.default(FLEET_DEFAULTS.stateBucket),
        })
        .optional(),
      /** Ack wait of the consumers this collector creates (a message taken by a collector that died waits this long). */
      ack_wait_ms: z.number().int('must be an integer').min(1000, 'must be at least 1000').optional(),
    })
    .refine((n) => n.creds_file === undefined || n.nkey_seed_file === undefined, { message: 'give creds_file or nkey_seed_file, not both', path: ['nkey_seed_file'] })
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

export interface CollectorNatsConfig {
  servers: string[];
  gateways: string[];
  stream: string;
  subjectPrefix: string;
  consumerPrefix: string;
  tls: boolean;
  auth: { credsFile?: string; nkeySeedFile?: string };
  fleet: FleetOptions | undefined;
  ackWaitMs: number | undefined;
}

export interface CollectorConfig {
  listen: { host: string; port: number };
  tls: { ca: string; cert: string; key: string };
  outDir: string;
  output: { layout: OutputLayout; ocsf: boolean };
  gateways: CollectorGatewayConfig[] | undefined;
  witness: { name: string; keyFile: string } | undefined;
  nats: CollectorNatsConfig | undefined;
}

/** Reads and validates a collector config. Throws SourceErrors (bad content) or an fs error. */
export async function loadCollectorConfig(file: string): Promise<CollectorConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 1, 1, '(file)', `cannot read: ${(err as Error).message}`)]);
  }
  const c = parseYamlWith(
    schema.superRefine((c, ctx) => {
      if (c.nats === undefined) return;
      // Records read from the bus are verified like any others: against a listed gateway's key.
      const listed = new Set(c.gateways?.map((g) => g.id));
      c.nats.gateways.forEach((id, i) => {
        if (!listed.has(id)) ctx.addIssue({ code: 'custom', path: ['nats', 'gateways', i], message: `"${id}" is not in gateways: list it there with its verifier_key` });
      });
    }),
    text,
    file,
  );
  const base = dirname(resolve(file));
  return {
    listen: { host: c.listen.host, port: c.listen.port },
    tls: { ca: resolve(base, c.tls.ca), cert: resolve(base, c.tls.cert), key: resolve(base, c.tls.key) },
    outDir: resolve(base, c.out_dir),
    output: { layout: c.output.layout, ocsf: c.output.ocsf },
    gateways: c.gateways?.map((g) => ({ id: g.id, verifierKey: g.verifier_key, ...(g.identity !== undefined ? { identity: g.identity } : {}) })),
    witness: c.witness ? { name: c.witness.name, keyFile: resolve(base, c.witness.key_file) } : undefined,
    nats:
      c.nats === undefined
        ? undefined
        : {
            servers: c.nats.servers,
            gateways: c.nats.gateways,
            stream: c.nats.stream,
            subjectPrefix: c.nats.subject_prefix,
            consumerPrefix: c.nats.consumer_prefix,
            tls: c.nats.tls,
            auth: {
              ...(c.nats.creds_file !== undefined ? { credsFile: resolve(base, c.nats.creds_file) } : {}),
              ...(c.nats.nkey_seed_file !== undefined ? { nkeySeedFile: resolve(base, c.nats.nkey_seed_file) } : {}),
            },
            fleet:
              c.nats.fleet === undefined
                ? undefined
                : { ...(c.nats.fleet.member !== undefined ? { member: c.nats.fleet.member } : {}), leaseMs: c.nats.fleet.lease_ms, leaseBucket: c.nats.fleet.lease_bucket, stateBucket: c.nats.fleet.state_bucket },
            ackWaitMs: c.nats.ack_wait_ms,
          },
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
