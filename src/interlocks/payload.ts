// The compiled form of interlocks as they travel inside the signed policy bundle, and the schema
// that checks them after the signature is verified. Owns that wire shape only: never reads files,
// never polls. The deny condition travels as its canonical source text (printExpr) and is parsed
// again when the gateway loads the bundle, so the bundle stays plain data and a gateway that
// cannot parse it refuses the bundle (fail closed).
import { z } from 'zod';

/** Operations an interlock may guard: the ones that change the process. */
export const GUARDED_OPERATIONS = ['write', 'call'] as const;
export type GuardedOperation = (typeof GUARDED_OPERATIONS)[number];

export const DEFAULT_POLL_MS = 500;
export const DEFAULT_MAX_AGE_MS = 2000;
/** Below this the gateway would load the PLC more than the agents it protects. */
export const MIN_POLL_MS = 50;

/** A command the interlock guards: a write to `point` (of the interlock's asset), optionally only of `value`. */
export interface InterlockGuard {
  point: string;
  /** Engineering units; absent = any written value. */
  value?: number;
}

/** One input of the deny condition: polled by the gateway itself. */
export interface InterlockInput {
  asset: string;
  point: string;
  poll_ms: number;
  /** A value older than this (or never read) makes the interlock deny INTERLOCK_INPUT_STALE. */
  max_age_ms: number;
}

/** A point an interlock names, qualified by its asset. */
export interface InputRef {
  asset: string;
  point: string;
}

/**
 * A plausibility check of interlock inputs (docs/safety.md, Plausibility); an input that fails
 * one makes the interlock deny INTERLOCK_INPUT_IMPLAUSIBLE.
 * - changes: the input must change at least once every `within_ms` while `while` holds (canonical
 *   expression text; absent = always): a stuck sensor. Once tripped it stays tripped until the
 *   input changes.
 * - rate: between two reads the input may change by at most `max_per_sec` per second.
 * - agree: two inputs (two sensors of one quantity) differ by at most `within`.
 */
export type PlausibilityDef =
  | { kind: 'changes'; input: InputRef; within_ms: number; while?: string }
  | { kind: 'rate'; input: InputRef; max_per_sec: number }
  | { kind: 'agree'; inputs: [InputRef, InputRef]; within: number };

export interface InterlockDef {
  id: string;
  description: string;
  asset: string;
  operations: GuardedOperation[];
  guards: InterlockGuard[];
  /** Canonical text of the deny condition; unqualified points belong to `asset`. */
  deny_when: string;
  /** Every point the condition and the plausibility checks name: polled by the gateway. */
  inputs: InterlockInput[];
  /**
   * A guarded command waits (at most this long) for a read of the inputs sent after it arrived;
   * without one in time it is denied INTERLOCK_INPUT_STALE (docs/safety.md, worst-case window).
   */
  confirm_ms?: number;
  plausible?: PlausibilityDef[];
}

const finite = z.number().refine(Number.isFinite, 'must be finite');

const inputRefSchema = z.strictObject({ asset: z.string().min(1), point: z.string().min(1) });
const plausibilitySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('changes'), input: inputRefSchema, within_ms: z.number().int().min(1), while: z.string().min(1).optional() }),
  z.strictObject({ kind: z.literal('rate'), input: inputRefSchema, max_per_sec: finite.refine((v) => v > 0, 'must be > 0') }),
  z.strictObject({ kind: z.literal('agree'), inputs: z.tuple([inputRefSchema, inputRefSchema]), within: finite.refine((v) => v >= 0, 'must be >= 0') }),
]);

/** Bounds of `confirm`: long enough for one PLC round trip, short enough that a command never hangs. */
export const MIN_CONFIRM_MS = 10;
export const MAX_CONFIRM_MS = 5000;

export const interlockDefSchema = z.strictObject({
  id: z.string().min(1),
  description: z.string(),
  asset: z.string().min(1),
  operations: z.array(z.enum(GUARDED_OPERATIONS)).min(1),
  guards: z.array(z.strictObject({ point: z.string().min(1), value: finite.optional() })).min(1),
  deny_when: z.string().min(1),
  inputs: z.array(
    z.strictObject({
      asset: z.string().min(1),
      point: z.string().min(1),
      poll_ms: z.number().int().min(MIN_POLL_MS),
      max_age_ms: z.number().int().min(1),
    }),
  ),
  confirm_ms: z.number().int().min(MIN_CONFIRM_MS).max(MAX_CONFIRM_MS).optional(),
  plausible: z.array(plausibilitySchema).optional(),
});

/** For the bundle payload schema: `interlocks: interlocksSchema.optional()`. */
export const interlocksSchema = z.array(interlockDefSchema);
