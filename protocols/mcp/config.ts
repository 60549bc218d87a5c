// The `listeners.mcp` block of the gateway config (docs/configuration.md, docs/mcp.md): where the
// MCP front listens, the resource URI its tokens must name, and the bounds it puts on callers.
// Owns the schema and its defaults only; must never open sockets or read files.
import { z } from 'zod';
import { parseRate, type RateSpec } from '../../src/core/rate.js';

const hostname = z.string().min(1).regex(/^[^\s/:]+$|^\[[0-9a-fA-F:.]+\]$/, 'a hostname without scheme or port (IPv6 in brackets)');

export const mcpListenerSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(0).max(65535),
  /**
   * This MCP server's resource identifier (RFC 8707, RFC 9728 `resource`): the URL clients connect
   * to, and the only `aud` a token may name here. Default `https://<host>:<bound port>/mcp`.
   */
  resource: z
    .string()
    .regex(/^https:\/\/[^\s#?]+$/, 'must be an https:// URL without query or fragment')
    .optional(),
  /**
   * Host header values accepted (DNS rebinding protection), hostnames without port. Default: the
   * resource URL's hostname.
   */
  allowed_hosts: z.array(hostname).optional(),
  /**
   * Browser Origins accepted, as hostnames. Requests without Origin (every non-browser MCP client)
   * pass; a request with any other Origin is refused 403. Default: none.
   */
  allowed_origins: z.array(hostname).default([]),
  /** Largest request body read, in bytes (413 beyond). */
  max_body_bytes: z.number().int().min(1024).max(4 * 1024 * 1024).default(64 * 1024),
  /** Requests per token (jti), e.g. '50/s', '600/m': beyond it 429. */
  rate_limit: z
    .string()
    .default('50/1s')
    .transform((text, ctx): RateSpec => {
      const r = parseRate(text);
      if (r === null) {
        ctx.addIssue({ code: 'custom', message: `'${text}' is not a rate such as '50/s' or '600/1m'` });
        return z.NEVER;
      }
      return r;
    }),
  /** Refuse callers without a client certificate (otherwise bearer tokens alone are accepted). */
  require_client_certificate: z.boolean().default(false),
  /** Concurrent MCP sessions (2025 protocol revisions); the least recently used is closed beyond it. */
  max_sessions: z.number().int().min(1).max(100_000).default(1000),
  /** A session unused this long is closed. */
  session_idle_ms: z.number().int().min(1000).max(86_400_000).default(30 * 60_000),
}).superRefine((c, ctx) => {
  // A wildcard bind address names no host a client could put in a URL (or a token's aud).
  if (c.resource === undefined && (c.host === '0.0.0.0' || c.host === '::' || c.host === '[::]')) {
    ctx.addIssue({ code: 'custom', path: ['resource'], message: `listening on ${c.host} needs the public resource URL (e.g. https://gateway.plant.example:8443/mcp)` });
  }
});

export type McpListenerConfig = z.output<typeof mcpListenerSchema>;
