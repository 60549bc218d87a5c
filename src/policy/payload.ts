// The signed bundle's payload: its TypeScript shape and the schema that checks it after the
// signature is verified. Owns the wire form of a compiled bundle; must never read files or keys.
// A payload that verifies but does not match this schema is refused (fail closed): a signer bug
// must not become a gateway crash or a silently half-applied policy.
import { z } from 'zod';
import type { JSONWebKeySet } from 'jose';
import type { Assurance, ModbusTable, Operation } from '../core/command.js';
import { interlocksSchema, type InterlockDef } from '../interlocks/payload.js';
import type { BundleRevocation } from '../identity/revocation.js';
import { RATE_KEYS, type KeyedRate } from './rate.js';
import type { RateSpec } from '../core/rate.js';
import { WEEKDAYS, windowProblem, type WindowSpec } from './windows.js';
import { OPCUA_ATTRIBUTES, type NodeSelectorDef } from './opcua-nodes.js';
import { ARGUMENT_TYPES, CRITICALITIES, MODBUS_TABLES, POINT_TYPES, pointWidth, type AddressRange, type ArgumentType, type BundleAsset, type MethodArgument, type MethodDef, type PointDef, type PointType } from '../assets/bundle-asset.js';

// The asset part of the payload lives with the asset format (src/assets/bundle-asset.ts).
export { ARGUMENT_TYPES, CRITICALITIES, MODBUS_TABLES, POINT_TYPES, pointWidth, type AddressRange, type ArgumentType, type BundleAsset, type MethodArgument, type MethodDef, type PointDef, type PointType };

export const BUNDLE_FORMAT = 1;

/** docs/policy.md, max_step: the PLC value a step is measured from may be at most this old. */
export const DEFAULT_STEP_BASE_MAX_AGE_MS = 5000;
/** How often the gateway reads a point some max_step names, when the bundle does not say. */
export const DEFAULT_STEP_BASE_POLL_MS = 1000;

/** Operations a rule may name. `admin` belongs to the operator API, never to an agent rule. */
export const RULE_OPERATIONS = ['read', 'write', 'call', 'browse', 'subscribe', 'diagnostic'] as const;
export type RuleOperation = (typeof RULE_OPERATIONS)[number];

export const ASSURANCES = ['none', 'static-ip+token', 'mtls+token'] as const satisfies readonly Assurance[];
/** `monitor`: evaluated and reported as "would deny", never blocking (shadow mode). */
export const MODES = ['enforce', 'monitor'] as const;
export type Mode = (typeof MODES)[number];



export interface Bounds {
  min?: number;
  max?: number;
}

/** A rule after compilation: every optional field made explicit, every reference checked. */
export interface BundleRule {
  id: string;
  description: string;
  subject: {
    workload: string;
    owner?: string;
    roles: string[];
    /** The token must carry every one of these scopes for the rule to apply. */
    scopes?: string[];
    /** Glob over the delegating human (`act.sub`): the rule applies only to delegated commands. */
    act?: string;
    /** Minimum assurance of the session (none < static-ip+token < mtls+token). */
    assurance?: Assurance;
  };
  assets: string[];
  operations: RuleOperation[];
  /** Globs over point names ('*' matches any run of characters, dots included). */
  points: string[];
  /** OPC UA assets: nodes by NodeId or browse path (globs), per attribute, with typed bounds. */
  nodes?: NodeSelectorDef[];
  ranges: AddressRange[];
  /**
   * Allow-list of Modbus function codes; absent = any code of the rule's operations. A code without
   * register addresses (7, 8, 11, 12, 17, 43) is covered only by a rule that names it here.
   */
  function_codes?: number[];
  /** FC 8: the diagnostics sub-functions the rule covers; absent = any. */
  sub_functions?: number[];
  /** FC 43: the MEI types the rule covers; absent = any. */
  mei_types?: number[];
  /** FC 43/14: the device identification objects a request may read (inclusive ranges); absent = any. */
  object_ids?: { from: number; to: number }[];
  /** The token must carry this scope (or '*'); absent = the command's operation name ('write'). */
  require_scope?: string;
  /** Engineering-unit bounds per point name. */
  bounds: Record<string, Bounds>;
  /** `monitor`: the rule's condition failures are reported (shadow) but do not block. */
  mode?: Mode;
  /** Window ids: the rule allows only while one of them is open (OUTSIDE_WINDOW otherwise). */
  windows?: string[];
  /** Window ids: the rule never allows while one of them is open (CHANGE_FREEZE). */
  freezes?: string[];
  /** Largest change per write from the PLC's value of the point, engineering units (STEP_TOO_LARGE). */
  max_step?: Record<string, number>;
  /** Rate limits of this rule, each with one budget per distinct value of its keys (RATE_LIMITED). */
  rate_limits?: KeyedRate[];
  /** The older form, still read: per_subject = per [workload], per_asset = per [asset]. */
  rate_limit?: { per_subject?: RateSpec; per_asset?: RateSpec };
  /** Zones a subject's `zone` claim may name when it differs from the asset's zone ('*' = any). */
  cross_zone?: string[];
  /**
   * A command this rule would allow is denied APPROVAL_REQUIRED until approved; `required` is one
   * approver distinct from the owner and the requester, with the gateway's default deadlines.
   */
  approval?: 'required' | ApprovalRule;
}

/** Who is excluded from approving: the token's owner; the requesting agent and every human it acts for. */
export const APPROVAL_EXCLUSIONS = ['owner', 'requester'] as const;
export type ApprovalExclusion = (typeof APPROVAL_EXCLUSIONS)[number];
export const MAX_APPROVERS = 5;

/** An N-person approval (docs/safety.md, Approvals). */
export interface ApprovalRule {
  /** Distinct people who must approve (compared in canonical form). */
  approvers: number;
  distinct_from: ApprovalExclusion[];
  /** The request lapses unless fully approved within this (seconds; default: the gateway's). */
  approve_within_sec?: number;
  /** The grant must be used within this after the last approval (seconds; default: the gateway's). */
  execute_within_sec?: number;
}

/**
 * A change freeze of the plant or of some assets (docs/policy.md, Change freezes): while its window
 * is open, every command of its operations on its assets is denied CHANGE_FREEZE, whatever rule
 * would allow it.
 */
export interface BundleFreeze {
  /** The window (from `windows`) during which the freeze holds; also its id. */
  window: string;
  /** Asset ids, or ['*'] for every asset of the bundle. */
  assets: string[];
  operations: RuleOperation[];
}

export interface BundleIssuer {
  iss: string;
  jwks: JSONWebKeySet;
}

export interface BundlePayload {
  format: typeof BUNDLE_FORMAT;
  name: string;
  revision: number;
  /** Seconds since the epoch. */
  issued_at: number;
  not_before: number;
  expires_at: number;
  /** The token `aud` this gateway accepts. */
  audience: string;
  limits: {
    max_token_ttl_sec: number;
    /** The oldest PLC value max_step may measure from (default DEFAULT_STEP_BASE_MAX_AGE_MS). */
    step_base_max_age_ms?: number;
    /** How often the gateway reads the points a max_step names (default DEFAULT_STEP_BASE_POLL_MS). */
    step_base_poll_ms?: number;
  };
  issuers: BundleIssuer[];
  assets: BundleAsset[];
  rules: BundleRule[];
  /** `monitor`: the whole bundle is a trial: every deny but BUNDLE_UNAVAILABLE is reported, not enforced. */
  mode?: Mode;
  windows?: WindowSpec[];
  /** Plant- or asset-wide change freezes. */
  freezes?: BundleFreeze[];
  /** Safety interlocks (src/interlocks): evaluated on live process values by the gateway. */
  interlocks?: InterlockDef[];
  /**
   * Token revocations shipped with the policy (by jti, sub or owner), applied on activation through
   * RevocationStore.setBundleRevocations; `revoked_at` (seconds) defaults to the bundle's issued_at.
   */
  revocations?: BundleRevocation[];
}

const u16 = z.number().int().min(0).max(65535);
const finite = z.number().refine(Number.isFinite, 'must be finite');

export const pointDefSchema = z.strictObject({
  table: z.enum(MODBUS_TABLES),
  address: u16,
  type: z.enum(POINT_TYPES),
  length: z.number().int().min(1).max(246).optional(),
  word_order: z.enum(['big', 'little']).optional(),
  scale: finite.optional(),
  offset: finite.optional(),
  unit: z.string().optional(),
  node_id: z.string().min(1).optional(),
});

const argumentSchema = z.strictObject({ name: z.string().min(1), type: z.enum(ARGUMENT_TYPES), min: finite.optional(), max: finite.optional() });
const methodSchema = z.strictObject({ node_id: z.string().min(1), inputs: z.array(argumentSchema), outputs: z.array(argumentSchema) });

const valueBoundsSchema = z.strictObject({
  min: finite.optional(),
  max: finite.optional(),
  max_step: finite.refine((v) => v >= 0, 'must be >= 0').optional(),
  enum: z.array(z.union([z.string(), finite, z.boolean()])).min(1).optional(),
  pattern: z.string().refine((p) => {
    try {
      new RegExp(p, 'u');
      return true;
    } catch {
      return false;
    }
  }, 'must be a valid regular expression').optional(),
  max_length: z.number().int().min(0).optional(),
  min_items: z.number().int().min(0).optional(),
  max_items: z.number().int().min(0).optional(),
});
const nodeSelectorSchema = z
  .strictObject({
    node: z.string().min(1).optional(),
    path: z.string().startsWith('/').optional(),
    attributes: z.array(z.enum(OPCUA_ATTRIBUTES)).min(1).optional(),
    bounds: valueBoundsSchema.optional(),
    arguments: z.record(z.string(), valueBoundsSchema.refine((b) => b.max_step === undefined, 'max_step applies to node values, not arguments')).optional(),
  })
  .refine((n) => n.node !== undefined || n.path !== undefined, 'give node, path, or both');

const rateSchema = z.strictObject({ count: z.number().int().min(1), per_sec: z.number().int().min(1) });
const keyedRateSchema = z.strictObject({ count: z.number().int().min(1), per_sec: z.number().int().min(1), per: z.array(z.enum(RATE_KEYS)) });
const approvalSchema = z.union([
  z.literal('required'),
  z.strictObject({
    approvers: z.number().int().min(1).max(MAX_APPROVERS),
    distinct_from: z.array(z.enum(APPROVAL_EXCLUSIONS)),
    approve_within_sec: z.number().int().min(1).optional(),
    execute_within_sec: z.number().int().min(1).optional(),
  }),
]);
const windowSchema = z.strictObject({
  id: z.string().min(1),
  time_zone: z.string().min(1),
  days: z.array(z.enum(WEEKDAYS)).optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  start: z.string().optional(),
  end: z.string().optional(),
});

const jwkSchema = z.looseObject({ kty: z.string().min(1) });

const ruleSchema = z.strictObject({
  id: z.string().min(1),
  description: z.string(),
  subject: z.strictObject({
    workload: z.string().min(1),
    owner: z.string().min(1).optional(),
    roles: z.array(z.string().min(1)),
    scopes: z.array(z.string().min(1)).optional(),
    act: z.string().min(1).optional(),
    assurance: z.enum(ASSURANCES).optional(),
  }),
  assets: z.array(z.string().min(1)).min(1),
  operations: z.array(z.enum(RULE_OPERATIONS)).min(1),
  points: z.array(z.string().min(1)),
  nodes: z.array(nodeSelectorSchema).optional(),
  ranges: z.array(
    z.strictObject({ table: z.enum(MODBUS_TABLES), from: u16, to: u16 }).refine((r) => r.from <= r.to, 'from > to'),
  ),
  function_codes: z.array(z.number().int().min(1).max(127)).optional(),
  sub_functions: z.array(u16).optional(),
  mei_types: z.array(z.number().int().min(0).max(255)).optional(),
  object_ids: z.array(z.strictObject({ from: z.number().int().min(0).max(255), to: z.number().int().min(0).max(255) }).refine((r) => r.from <= r.to, 'from > to')).optional(),
  require_scope: z.string().min(1).optional(),
  bounds: z.record(z.string(), z.strictObject({ min: finite.optional(), max: finite.optional() })),
  mode: z.enum(MODES).optional(),
  windows: z.array(z.string().min(1)).optional(),
  freezes: z.array(z.string().min(1)).optional(),
  max_step: z.record(z.string(), finite.refine((v) => v >= 0, 'must be >= 0')).optional(),
  rate_limits: z.array(keyedRateSchema).optional(),
  rate_limit: z.strictObject({ per_subject: rateSchema.optional(), per_asset: rateSchema.optional() }).optional(),
  cross_zone: z.array(z.string().min(1)).optional(),
  approval: approvalSchema.optional(),
});

const secs = z.number().int().min(0);

const revocationSchema = z
  .strictObject({
    jti: z.string().min(1).max(2048).optional(),
    sub: z.string().regex(/^(spiffe:\/\/|user:.)/i, 'must be a SPIFFE ID or user:<name>').max(2048).optional(),
    owner: z.string().min(1).max(2048).optional(),
    reason: z.string().min(1).max(512),
    revoked_at: secs.optional(),
  })
  .refine((r) => [r.jti, r.sub, r.owner].filter((v) => v !== undefined).length === 1, 'name exactly one of jti, sub, owner');

export const bundlePayloadSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  name: z.string().min(1),
  revision: z.number().int().min(1),
  issued_at: secs,
  not_before: secs,
  expires_at: secs,
  audience: z.string().min(1),
  limits: z.strictObject({
    max_token_ttl_sec: z.number().int().min(1),
    step_base_max_age_ms: z.number().int().min(1).optional(),
    step_base_poll_ms: z.number().int().min(1).optional(),
  }),
  issuers: z.array(
    z.strictObject({ iss: z.string().min(1), jwks: z.strictObject({ keys: z.array(jwkSchema) }) }),
  ),
  assets: z.array(
    z.strictObject({
      id: z.string().min(1),
      zone: z.string().min(1),
      criticality: z.enum(CRITICALITIES),
      protocol: z.enum(['modbus', 'opcua']),
      unit_id: z.number().int().min(0).max(255),
      namespace: z.string().min(1).optional(),
      points: z.record(z.string(), pointDefSchema),
      object_node: z.string().min(1).optional(),
      methods: z.record(z.string(), methodSchema).optional(),
      read_only: z.array(z.strictObject({ table: z.enum(MODBUS_TABLES), from: u16, to: u16 }).refine((r) => r.from <= r.to, 'from > to')).optional(),
    }),
  ),
  rules: z.array(ruleSchema),
  mode: z.enum(MODES).optional(),
  windows: z.array(windowSchema).optional(),
  freezes: z.array(z.strictObject({ window: z.string().min(1), assets: z.array(z.string().min(1)).min(1), operations: z.array(z.enum(RULE_OPERATIONS)).min(1) })).optional(),
  interlocks: interlocksSchema.optional(),
  revocations: z.array(revocationSchema).optional(),
});

/** Checks an untrusted value against the payload schema; returns the first problems as text, or null. */
export function payloadProblems(value: unknown): string | null {
  const r = bundlePayloadSchema.safeParse(value);
  if (!r.success) {
    return r.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
  }
  // References the schema cannot express: the engine relies on them being consistent.
  const p = r.data;
  const assetIds = new Set<string>();
  for (const a of p.assets) {
    if (assetIds.has(a.id)) return `assets: duplicate asset id '${a.id}'`;
    assetIds.add(a.id);
  }
  const windowIds = new Set<string>();
  for (const w of p.windows ?? []) {
    if (windowIds.has(w.id)) return `windows: duplicate window id '${w.id}'`;
    windowIds.add(w.id);
    const problem = windowProblem(w);
    if (problem) return `windows.${w.id}: ${problem}`;
  }
  const ruleIds = new Set<string>();
  for (const rule of p.rules) {
    if (ruleIds.has(rule.id)) return `rules: duplicate rule id '${rule.id}'`;
    ruleIds.add(rule.id);
    for (const a of rule.assets) if (!assetIds.has(a)) return `rules.${rule.id}: unknown asset '${a}'`;
    for (const w of [...(rule.windows ?? []), ...(rule.freezes ?? [])]) {
      if (!windowIds.has(w)) return `rules.${rule.id}: unknown window '${w}'`;
    }
  }
  for (const fz of p.freezes ?? []) {
    if (!windowIds.has(fz.window)) return `freezes.${fz.window}: unknown window '${fz.window}'`;
    for (const a of fz.assets) if (a !== '*' && !assetIds.has(a)) return `freezes.${fz.window}: unknown asset '${a}'`;
  }
  const { step_base_max_age_ms: age, step_base_poll_ms: poll } = p.limits;
  if (age !== undefined && poll !== undefined && !(age > poll)) return 'limits: step_base_max_age_ms must be longer than step_base_poll_ms';
  if (p.expires_at < p.not_before) return 'expires_at: before not_before';
  return null;
}


export type { Operation };
