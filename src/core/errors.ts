// Typed errors. Every error that can end in a deny carries a reason code (src/core/reasons.ts), so the
// caller turns it into a Decision without looking at the message.
import type { Reason } from './reasons.js';

export class PlantgateError extends Error {
  readonly reason: Reason;
  constructor(reason: Reason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.reason = reason;
  }
}

/**
 * A problem in a file a human wrote (YAML rules, plant, config): names the file, line, column and
 * field so the engineer can go straight to it.
 */
export class SourceError extends Error {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly field: string;
  constructor(file: string, line: number, column: number, field: string, problem: string) {
    super(`${file}:${line}:${column}: ${field}: ${problem}`);
    this.name = 'SourceError';
    this.file = file;
    this.line = line;
    this.column = column;
    this.field = field;
  }
}

/** Several source problems reported at once, so one build run shows them all. */
export class SourceErrors extends Error {
  readonly errors: SourceError[];
  constructor(errors: SourceError[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'SourceErrors';
    this.errors = errors;
  }
}
