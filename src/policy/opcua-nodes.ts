// OPC UA node selectors of rules (docs/policy.md, "OPC UA nodes"): a rule's `nodes:` names the
// nodes it covers by canonical NodeId (`nsu=<uri>;<identifier>`) or by browse path, with globs, per
// attribute, each with typed bounds for what may be written (numbers, strings, booleans, byte
// strings, arrays) and for a method's input arguments. Compiled once per rule and asset; matching
// and checking are pure and allocation-light. Must never build a RegExp per command, and must
// never let a value through that it cannot check: a bound that does not apply to a value's type
// fails (fail closed).
import type { Target, TypedValue } from '../core/command.js';
import { pathGlob, pointGlob } from '../core/glob.js';

/** OPC UA attribute names (OPC 10000-6 Annex A.1) a selector may name; default `Value`. */
export const OPCUA_ATTRIBUTES = [
  'NodeId', 'NodeClass', 'BrowseName', 'DisplayName', 'Description', 'WriteMask', 'UserWriteMask', 'IsAbstract', 'Symmetric',
  'InverseName', 'ContainsNoLoops', 'EventNotifier', 'Value', 'DataType', 'ValueRank', 'ArrayDimensions', 'AccessLevel',
  'UserAccessLevel', 'MinimumSamplingInterval', 'Historizing', 'Executable', 'UserExecutable', 'DataTypeDefinition',
  'RolePermissions', 'UserRolePermissions', 'AccessRestrictions', 'AccessLevelEx',
] as const;

/** What a written value (or each element of a written array) must satisfy. */
export interface ValueBounds {
  /** Numbers (and booleans as 0/1): inclusive range. */
  min?: number;
  max?: number;
  /** Scalar numbers: largest change from the node's last known value (STEP_TOO_LARGE). */
  max_step?: number;
  /** Allowed values: strings, numbers or booleans (`enum: [true]` allows only true). */
  enum?: (string | number | boolean)[];
  /** Strings: a regular expression the whole string must match. */
  pattern?: string;
  /** Strings (characters) and byte strings (bytes). */
  max_length?: number;
  /** Arrays: number of elements. */
  min_items?: number;
  max_items?: number;
}

export interface NodeSelectorDef {
  /** Canonical NodeId glob (`nsu=urn:acme:plc:line1;s=Line1.*`) or a bare identifier glob read in the asset's namespace. */
  node?: string;
  /** Browse path glob from the Objects folder (`/Line1/*`, `/Line1/**`). */
  path?: string;
  /** Attributes read or written (default Value); browse and call ignore it. */
  attributes?: string[];
  /** Bounds on every value this selector lets be written. */
  bounds?: ValueBounds;
  /** Bounds per input argument name of a method this selector lets be called; a bounded argument must be present. */
  arguments?: Record<string, ValueBounds>;
}

interface CompiledBounds {
  min: number;
  max: number;
  hasRange: boolean;
  maxStep: number | undefined;
  /** `n:<number>`, `s:<string>`, `b:<boolean>`; null = no enum. */
  allowed: ReadonlySet<string> | null;
  pattern: RegExp | null;
  maxLength: number | undefined;
  minItems: number | undefined;
  maxItems: number | undefined;
}

export interface CompiledSelector {
  matchNode: ((nodeId: string) => boolean) | null;
  matchPath: ((path: string) => boolean) | null;
  attributes: ReadonlySet<string>;
  bounds: CompiledBounds | null;
  args: { name: string; bounds: CompiledBounds }[] | null;
}

export type BoundsVerdict = 'VALUE_OUT_OF_BOUNDS' | 'STEP_TOO_LARGE' | null;

const VALUE_ONLY: ReadonlySet<string> = new Set(['Value']);

function matcher(re: RegExp | null, exact: string | null): ((s: string) => boolean) | null {
  if (exact !== null) return (s) => s === exact;
  return re === null ? null : (s) => re.test(s);
}

/** The NodeId glob in canonical form: a bare identifier is read in the asset's namespace. */
export function canonicalNodeGlob(namespace: string | undefined, text: string): string {
  return text.startsWith('nsu=') || namespace === undefined ? text : `nsu=${namespace};${text}`;
}

function compileBounds(b: ValueBounds): CompiledBounds {
  const allowed = b.enum === undefined ? null : new Set(b.enum.map(enumKey));
  return {
    min: b.min ?? -Infinity,
    max: b.max ?? Infinity,
    hasRange: b.min !== undefined || b.max !== undefined,
    maxStep: b.max_step,
    allowed,
    // Anchored: a pattern describes the whole value, never a substring of it.
    pattern: b.pattern === undefined ? null : new RegExp(`^(?:${b.pattern})$`, 'u'),
    maxLength: b.max_length,
    minItems: b.min_items,
    maxItems: b.max_items,
  };
}

function enumKey(v: string | number | boolean | bigint): string {
  return typeof v === 'string' ? `s:${v}` : typeof v === 'boolean' ? `b:${v}` : `n:${String(v)}`;
}

/** Compiles a rule's selectors for one asset (its namespace reads bare identifiers). */
export function compileSelectors(defs: readonly NodeSelectorDef[], namespace: string | undefined): CompiledSelector[] {
  return defs.map((d) => {
    const node = d.node === undefined ? null : canonicalNodeGlob(namespace, d.node);
    return {
      matchNode: node === null ? null : matcher(node.includes('*') ? pointGlob(node) : null, node.includes('*') ? null : node),
      matchPath: d.path === undefined ? null : matcher(d.path.includes('*') ? pathGlob(d.path) : null, d.path.includes('*') ? null : d.path),
      attributes: d.attributes === undefined ? VALUE_ONLY : new Set(d.attributes),
      bounds: d.bounds === undefined ? null : compileBounds(d.bounds),
      args: d.arguments === undefined ? null : Object.entries(d.arguments).map(([name, b]) => ({ name, bounds: compileBounds(b) })),
    };
  });
}

/**
 * The first selector that names this target for this operation, or undefined. Browse and call
 * targets have no attribute; the others default to Value.
 */
export function selectorFor(selectors: readonly CompiledSelector[], t: Target, operation: string): CompiledSelector | undefined {
  const nodeId = t.nodeId;
  if (nodeId === undefined) return undefined;
  const path = t.browsePath;
  const attribute = operation === 'browse' || operation === 'call' ? undefined : (t.attribute ?? 'Value');
  for (let i = 0; i < selectors.length; i++) {
    const s = selectors[i]!;
    if (s.matchNode !== null && !s.matchNode(nodeId)) continue;
    // A path selector never matches a target whose path is unknown (fail closed).
    if (s.matchPath !== null && (path === undefined || !s.matchPath(path))) continue;
    if (attribute !== undefined && !s.attributes.has(attribute)) continue;
    return s;
  }
  return undefined;
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** One scalar (or one array element) against the bounds; false when a bound cannot apply to its type. */
function scalarWithin(b: CompiledBounds, v: TypedValue): boolean {
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') {
    if (b.pattern !== null || b.maxLength !== undefined) return false;
    const n = typeof v === 'boolean' ? (v ? 1 : 0) : v;
    // NaN fails every comparison: a NaN never passes a range.
    if (b.hasRange && !(n >= b.min && n <= b.max)) return false;
    return b.allowed === null || b.allowed.has(enumKey(v));
  }
  if (typeof v === 'string') {
    if (b.hasRange) return false;
    if (b.allowed !== null && !b.allowed.has(enumKey(v))) return false;
    if (b.pattern !== null && !b.pattern.test(v)) return false;
    return b.maxLength === undefined || codePoints(v) <= b.maxLength;
  }
  if (v instanceof Uint8Array) {
    if (b.hasRange || b.allowed !== null || b.pattern !== null) return false;
    return b.maxLength === undefined || v.length <= b.maxLength;
  }
  // Times (and anything else): only a selector without value bounds lets them through.
  return !b.hasRange && b.allowed === null && b.pattern === null && b.maxLength === undefined;
}

/**
 * A written value against bounds: the array length, then every element (or the scalar); then the
 * step from `last` (undefined = unknown: a bounded step then fails). Undefined value: out of bounds.
 */
export function checkValue(b: CompiledBounds, v: TypedValue | undefined, last: number | undefined): BoundsVerdict {
  if (v === undefined) return 'VALUE_OUT_OF_BOUNDS';
  if (Array.isArray(v)) {
    if (b.minItems !== undefined && v.length < b.minItems) return 'VALUE_OUT_OF_BOUNDS';
    if (b.maxItems !== undefined && v.length > b.maxItems) return 'VALUE_OUT_OF_BOUNDS';
    for (let i = 0; i < v.length; i++) if (Array.isArray(v[i]) ? checkValue(b, v[i], undefined) !== null : !scalarWithin(b, v[i]!)) return 'VALUE_OUT_OF_BOUNDS';
    // A step is a scalar notion: a stepped node written with an array is refused.
    return b.maxStep === undefined ? null : 'STEP_TOO_LARGE';
  }
  if (b.minItems !== undefined || b.maxItems !== undefined) return 'VALUE_OUT_OF_BOUNDS';
  if (!scalarWithin(b, v as TypedValue)) return 'VALUE_OUT_OF_BOUNDS';
  if (b.maxStep !== undefined) {
    const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : NaN;
    if (last === undefined || !(Math.abs(n - last) <= b.maxStep)) return 'STEP_TOO_LARGE';
  }
  return null;
}

/** Each bounded argument of a call must be present and within its bounds. */
export function checkArguments(s: CompiledSelector, values: Record<string, TypedValue> | undefined, numbers: Record<string, number> | undefined): BoundsVerdict {
  const args = s.args;
  if (args === null) return null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const v = values?.[a.name] ?? numbers?.[a.name];
    const verdict = checkValue(a.bounds, v, undefined);
    if (verdict !== null) return 'VALUE_OUT_OF_BOUNDS';
  }
  return null;
}

/** The value a write carries for its target, if scalar-numeric: what max_step remembers. */
export function numericOf(v: TypedValue | undefined): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}
