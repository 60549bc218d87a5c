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

export interface InterlockDef {
  id: string;
  description: string;
  asset: string;
  operations: GuardedOperation[];
  guards: InterlockGuard[];
  /** Canonical text of the deny condition; unqualified points belong to `asset`. */
  deny_when: string;
  inputs: InterlockInput[];
}

const finite = z.number().refine(Number.isFinite, 'must be finite');

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
});

/** For the bundle payload schema: `interlocks: interlocksSchema.optional()`. */
export const interlocksSchema = z.array(interlockDefSchema);
