// One logger factory. Secrets never reach a log line (docs/architecture.md, Invariants): three layers, because any one
// of them alone has holes.
//  1. REDACT_PATHS: pino's fast-redact censors the field names under which a token or key travels
//     (cheap; only covers the top level and one level down).
//  2. formatters.log: a bounded deep walk censors those names at any depth, and any string value
//     that *looks* like a secret (a compact JWS/JWT, a PEM private key) whatever it is called.
//  3. hooks.logMethod: the same value patterns in the message string.
// The per-command path logs at debug only, so the walk never runs per command in production.
// PLANTGATE_LOG_FORMAT=pretty prints human-readable lines through pino-pretty (in a worker
// thread, after redaction); JSON lines otherwise.
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  'jwt',
  '*.jwt',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  '*.headers.authorization',
  'privateKey',
  '*.privateKey',
  'privateJwk',
  '*.privateJwk',
  'key',
  '*.key',
  'd',
  '*.d',
  'password',
  '*.password',
  'secret',
  '*.secret',
];

/** Field names whose value is censored at any depth. Lower-case; compared case-insensitively. */
const SECRET_KEYS = new Set([
  'token', 'jwt', 'authorization', 'cookie', 'privatekey', 'private_key', 'privatejwk', 'key', 'd', 'p', 'q', 'dp', 'dq', 'qi',
  'password', 'secret', 'bearer', 'access_token', 'id_token', 'refresh_token', 'client_secret',
]);

/** A compact JWS/JWT (header starts with '{"' → "eyJ"), or a PEM private key block. */
const SECRET_VALUE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;

export const CENSOR = '[redacted]';
const MAX_DEPTH = 8;

/** Censors secret-looking substrings of a string. */
export function scrubString(s: string): string {
  return s.includes('eyJ') || s.includes('PRIVATE KEY') ? s.replace(SECRET_VALUE, CENSOR) : s;
}

/**
 * A copy of `value` with secret fields and secret-looking strings censored. Never mutates its
 * input (callers log live objects); bounded depth, so a cycle or a huge structure cannot hang a log call.
 */
export function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubString(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return value;
  if (value instanceof Error) {
    return { type: value.name, message: scrubString(value.message), ...(value.stack ? { stack: scrubString(value.stack) } : {}) };
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEYS.has(k.toLowerCase()) && v !== undefined && v !== null && v !== '' ? CENSOR : scrub(v, depth + 1);
  return out;
}

export interface CreateLoggerExtra {
  /** Where lines go (tests capture them here); default stdout, or pino-pretty when PLANTGATE_LOG_FORMAT=pretty. */
  destination?: DestinationStream;
}

export function createLogger(name: string, options: LoggerOptions = {}, extra: CreateLoggerExtra = {}): Logger {
  const pretty = extra.destination === undefined && options.transport === undefined && process.env.PLANTGATE_LOG_FORMAT === 'pretty';
  const opts: LoggerOptions = {
    name,
    level: process.env.PLANTGATE_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { destination: 1, colorize: process.stdout.isTTY === true } } } : {}),
    ...options,
    formatters: { ...options.formatters, log: (obj) => scrub(obj) as Record<string, unknown> },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = scrubString(args[i] as string);
        method.apply(this, args);
      },
    },
  };
  return extra.destination === undefined ? pino(opts) : pino(opts, extra.destination);
}

/** A logger that writes nothing: for library use and tests that assert on behaviour, not logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
