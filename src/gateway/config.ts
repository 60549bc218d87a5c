// The gateway's configuration file (`plantgate serve --config FILE`): listeners, upstream PLC
// endpoints bound to asset ids, state directory, pinned policy keys, bundle file, audit sinks.
// Validated once at start; every problem names file, line and field. Relative paths are resolved
// against the config file's directory so a config can travel with its files.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { SourceError, SourceErrors } from '../core/errors.js';
import { parseYamlWith } from '../core/yaml.js';
import { plaintextListenerSchema } from '../identity/static-ip.js';
import { MIN_SPOOL_BYTES } from '../audit/log.js';
import { freezeConfigSchema } from '../freeze/config.js';
import { consoleConfigSchema } from '../admin/console/config.js';
import { mcpListenerSchema } from '../../protocols/mcp/config.js';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../identity/handshakes.js';

const host = z.string().min(1);
const port = z.number().int().min(0).max(65535);
const file = z.string().min(1);

const endpoint = z.strictObject({ host, port });

const schema = z.strictObject({
  gateway_id: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dot, dash, underscore only'),
  state_dir: file,
  /** SIGTERM: how long in-flight commands may take to finish before connections are closed. */
  drain_ms: z.number().int().min(0).max(60_000).default(5000),
  /**
   * `flat`: the gateway's heap grows in small steps (RSS ~120 MB, flat under load, ~5 % more CPU
   * per command); `throughput`: V8's defaults (RSS climbs to ~165 MB before its first full
   * collection). docs/performance.md, The gateway's memory.
   */
  memory: z.enum(['flat', 'throughput']).default('flat'),
  tls: z.strictObject({
    /** CA that signs agent (and collector) certificates. */
    ca: file,
    /** The gateway's own certificate and key, presented to agents and to the collector. */
    cert: file,
    key: file,
  }),
  listeners: z.strictObject({
    modbus_tls: endpoint,
    agent_api: endpoint,
    /** HTTPS with operator bearer tokens: revocations (and approvals, bundle status later). */
    operator_api: endpoint.optional(),
    /** /healthz, /readyz and /metrics (plain HTTP: bind it to a management interface). */
    ops: endpoint.optional(),
    /** Agent-facing OPC UA server front (Sign / SignAndEncrypt, JWT user tokens). */
    opcua: endpoint.optional(),
    /**
     * Plaintext Modbus/TCP with static source-address identities (legacy lab devices only; off
     * when absent). Every session is `static-ip+token` (docs/identity.md §6).
     */
    modbus_plain: plaintextListenerSchema.optional(),
    /** MCP (Streamable HTTP over TLS) for LLM agents: tools generated from the bundle (docs/mcp.md). */
    mcp: mcpListenerSchema.optional(),
  }),
  /** The gateway's OPC UA application identity (RSA certificate; see docs/opcua.md). */
  opcua: z
    .strictObject({
      application_uri: z.string().min(1),
      cert: file,
      key: file,
      /**
       * Agents' application certificates allowed to open a secure channel: a file (its URI SAN is
       * the agent's SPIFFE ID), or { cert, workload } to pin a certificate whose applicationUri is
       * not one (docs/opcua.md, "The applicationUri rule").
       */
      trusted_agent_certs: z
        .array(z.union([file, z.strictObject({ cert: file, workload: z.string().regex(/^spiffe:\/\/[^/\s]+\/\S+$/, 'a SPIFFE ID (spiffe://trust-domain/path)') })]))
        .default([]),
      /** Also take the JWT as a UserName password (encrypted, or on SignAndEncrypt): docs/opcua.md. */
      jwt_as_password: z.boolean().default(false),
    })
    .optional(),
  opcua_upstreams: z
    .array(
      z.strictObject({
        asset: z.string().min(1),
        endpoint_url: z.string().regex(/^opc\.tcp:\/\//, 'must be opc.tcp://host:port'),
        security: z.enum(['SignAndEncrypt', 'Sign', 'None']).default('SignAndEncrypt'),
        /** The PLC's server certificate (pinned). */
        server_cert: file,
        timeout_ms: z.number().int().min(10).max(60_000).default(2000),
        object_node: z.string().optional(),
        /** A server that describes itself: browse roots (`/Line1` or `nsu=<uri>;<id>`), default `/`. */
        browse: z
          .array(z.string().refine((r) => r.startsWith('/') || /^nsu=[^;]+;(?:i|s|g|b)=.+$/s.test(r), 'a browse path from Objects (/Line1) or a NodeId nsu=<namespace URI>;<identifier>'))
          .min(1)
          .optional(),
        /** At most this many mirrored nodes (the rest are logged, never silently dropped). */
        max_nodes: z.number().int().min(1).max(1_000_000).default(10_000),
      }),
    )
    .default([]),
  upstreams: z
    .array(
      z.strictObject({
        asset: z.string().min(1),
        host,
        port,
        /** Unit id on the PLC side; defaults to the asset's unit id from the bundle. */
        unit_id: z.number().int().min(0).max(255).optional(),
        connections: z.number().int().min(1).max(16).default(2),
        timeout_ms: z.number().int().min(10).max(60_000).default(1000),
      }),
    )
    .default([])
    .superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((u, i) => {
        if (seen.has(u.asset)) ctx.addIssue({ code: 'custom', path: [i, 'asset'], message: `asset '${u.asset}' is bound twice` });
        seen.add(u.asset);
      });
    }),
  policy: z.strictObject({
    bundle_file: file,
    /** Pinned policy-signing keys (public JWKS files). A bundle signed by any other key is refused. */
    trusted_keys: z.array(file).min(1),
    /** Allow reads under an expired bundle (docs/configuration.md; safe mode: docs/architecture.md, Invariants). */
    reads_when_expired: z.boolean().default(true),
    // --- bundle lifecycle (issue 9): key rotation and distribution ---
    /** Key ids still pinned but rotated out: a bundle signed by one is refused (RETIRED_KEY). */
    retired_keys: z.array(z.string().min(1)).default([]),
    /**
     * Where new bundles come from. A watched file, or an HTTPS URL polled with ETag; either way a
     * candidate is verified, then written as `bundle_file` and activated. Absent: `bundle_file` is
     * loaded at start, on SIGHUP and on POST /v1/bundle/reload only.
     */
    source: z
      .union([
        z.strictObject({
          file,
          watch: z.boolean().default(true),
          debounce_ms: z.number().int().min(0).max(60_000).default(250),
        }),
        z.strictObject({
          url: z.string().regex(/^https:\/\/[^\s]+$/, 'must be an https:// URL (bundles are never fetched over plain http)'),
          /** PEM CA the distribution server's certificate chains to; absent, the system roots. */
          ca: file.optional(),
          poll_ms: z.number().int().min(100).max(86_400_000).default(60_000),
          timeout_ms: z.number().int().min(100).max(300_000).default(10_000),
          max_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(16 * 1024 * 1024),
          max_backoff_ms: z.number().int().min(100).max(86_400_000).default(600_000),
        }),
      ])
      .optional(),
  }),
  /** The operator's emergency freeze: the two-person rule for lifting one (docs/operator.md). */
  emergency_freeze: freezeConfigSchema,
  /** The web console on the operator API (docs/operator.md). */
  console: consoleConfigSchema,
  identity: z
    .strictObject({
      leeway_sec: z.number().int().min(0).max(300).default(30),
      max_identities: z.number().int().min(1).default(10_000),
      max_tokens_per_identity: z.number().int().min(1).max(1000).default(8),
      max_connections_per_workload: z.number().int().min(1).max(1024).default(8),
    })
    .default({ leeway_sec: 30, max_identities: 10_000, max_tokens_per_identity: 8, max_connections_per_workload: 8 }),
  /** Hostile connections on the TLS listeners (docs/configuration.md, Hostile connections). */
  connections: z
    .strictObject({
      handshake_timeout_ms: z.number().int().min(100).max(120_000).default(DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs),
      max_pending_handshakes: z.number().int().min(1).max(65_536).default(DEFAULT_CONNECTION_LIMITS.maxPendingHandshakes),
      max_pending_handshakes_per_source: z.number().int().min(1).max(65_536).default(DEFAULT_CONNECTION_LIMITS.maxPendingHandshakesPerSource),
      idle_timeout_ms: z.number().int().min(0).max(86_400_000).default(DEFAULT_CONNECTION_LIMITS.idleTimeoutMs),
    })
    .prefault({}),
  audit: z.strictObject({
    spool_dir: file,
    /** At least 256 KiB: 1/16 is kept for reads' records and 1/16 for denials' when the spool is full (docs/audit.md, Full spool). */
    max_bytes: z
      .number()
      .int()
      .min(MIN_SPOOL_BYTES, `must be at least ${MIN_SPOOL_BYTES} (256 KiB): 1/16 of it is kept for the records of reads and 1/16 for those of denials when the spool is full`)
      .default(256 * 1024 * 1024),
    /** When the spool is nearly full: deny state-changing commands first (reads go on while the headroom lasts) or everything. */
    when_full: z.enum(['deny_writes', 'deny_all']).default('deny_writes'),
    /** Ed25519 key (private JWK or PEM) that signs checkpoints; the verifier key comes from `plantgate audit key`. */
    key_file: file.optional(),
    checkpoint_every_records: z.number().int().min(1).default(1000),
    checkpoint_every_ms: z.number().int().min(100).default(60_000),
    collector: z
      .strictObject({
        host,
        port,
        /** Name on the collector's certificate, when it differs from host. */
        server_name: z.string().optional(),
      })
      .optional(),
    /** Fleet sink: NATS JetStream (subject per site and gateway; Nats-Msg-Id deduplicates). */
    nats: z
      .strictObject({
        servers: z.array(z.string().min(1)).min(1),
        site: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, dash, underscore only (it is a NATS subject token)'),
        stream: z.string().min(1).default('PLANTGATE_AUDIT'),
        subject_prefix: z.string().min(1).default('plantgate.audit'),
        create_stream: z.boolean().default(false),
        /** Mutual TLS to NATS with the gateway's tls.ca/cert/key. */
        tls: z.boolean().default(false),
        /** NATS credentials (docs/configuration.md, audit.nats): a .creds file (account JWT + nkey) or an nkey seed file. */
        creds_file: z.string().min(1).optional(),
        nkey_seed_file: z.string().min(1).optional(),
      })
      .refine((n) => n.creds_file === undefined || n.nkey_seed_file === undefined, { message: 'give creds_file or nkey_seed_file, not both', path: ['nkey_seed_file'] })
      .optional(),
  }),
});

const checkedSchema = schema.superRefine((c, ctx) => {
  if (c.upstreams.length === 0 && c.opcua_upstreams.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['upstreams'], message: 'at least one upstream PLC (upstreams or opcua_upstreams) is required' });
  }
  // Each sink's acknowledgement deletes spool segments: two sinks would lose records for one of them.
  if (c.audit.collector !== undefined && c.audit.nats !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['audit', 'nats'], message: 'choose one audit sink: collector or nats, not both' });
  }
  if (c.audit.nats !== undefined && !/^[A-Za-z0-9_-]+$/.test(c.gateway_id)) {
    ctx.addIssue({ code: 'custom', path: ['gateway_id'], message: 'with a NATS sink the gateway id is a subject token: no dots' });
  }
  if (c.listeners.opcua !== undefined && c.opcua === undefined) {
    ctx.addIssue({ code: 'custom', path: ['listeners', 'opcua'], message: 'an OPC UA listener needs the opcua block (application_uri, cert, key)' });
  }
});

export type GatewayConfig = z.output<typeof schema> & { file: string };

/** The `connections` block as the listeners take it. */
export function connectionLimits(config: GatewayConfig): ConnectionLimits {
  const c = config.connections;
  return {
    handshakeTimeoutMs: c.handshake_timeout_ms,
    maxPendingHandshakes: c.max_pending_handshakes,
    maxPendingHandshakesPerSource: c.max_pending_handshakes_per_source,
    idleTimeoutMs: c.idle_timeout_ms,
  };
}


export function parseGatewayConfig(text: string, file: string): GatewayConfig {
  const parsed = parseYamlWith(checkedSchema, text, file) as GatewayConfig;
  parsed.file = file;
  const base = path.dirname(file);
  const resolve = (p: string) => path.resolve(base, p);
  parsed.state_dir = resolve(parsed.state_dir);
  parsed.tls = { ca: resolve(parsed.tls.ca), cert: resolve(parsed.tls.cert), key: resolve(parsed.tls.key) };
  parsed.policy.bundle_file = resolve(parsed.policy.bundle_file);
  parsed.policy.trusted_keys = parsed.policy.trusted_keys.map(resolve);
  const source = parsed.policy.source;
  if (source !== undefined && 'file' in source) parsed.policy.source = { ...source, file: resolve(source.file) };
  if (source !== undefined && 'url' in source && source.ca !== undefined) parsed.policy.source = { ...source, ca: resolve(source.ca) };
  parsed.audit.spool_dir = resolve(parsed.audit.spool_dir);
  if (parsed.audit.key_file !== undefined) parsed.audit.key_file = resolve(parsed.audit.key_file);
  if (parsed.opcua !== undefined) {
    parsed.opcua = {
      ...parsed.opcua,
      cert: resolve(parsed.opcua.cert),
      key: resolve(parsed.opcua.key),
      trusted_agent_certs: parsed.opcua.trusted_agent_certs.map((t) => (typeof t === 'string' ? resolve(t) : { ...t, cert: resolve(t.cert) })),
    };
  }
  parsed.opcua_upstreams = parsed.opcua_upstreams.map((u) => ({ ...u, server_cert: resolve(u.server_cert) }));
  return parsed;
}

export async function loadGatewayConfig(file: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 1, 1, 'file', `cannot read config (${(err as NodeJS.ErrnoException).code ?? 'error'})`)]);
  }
  return parseGatewayConfig(text, file);
}
