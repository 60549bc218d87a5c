// One logger factory. Secrets never reach a log line: the redact list covers every field name
// under which a token or key could travel, and the per-command path logs at debug only.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  'jwt',
  '*.jwt',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'privateKey',
  '*.privateKey',
  'key',
  '*.key',
  'd',
  '*.d',
];

export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  return pino({
    name,
    level: process.env.PLANTGATE_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...options,
  });
}

/** A logger that writes nothing: for library use and tests that assert on behaviour, not logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
