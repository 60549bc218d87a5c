// The tools and resources one caller sees (docs/mcp.md, Tools): generated from the active signed
// bundle and what its rules could allow this caller (src/policy/reach.ts), for the assets the
// front can reach. Each tool's input schema carries the bounds, enums and units of those rules and
// its annotations say truthfully what it does. Listing decides nothing: every call is still a
// Command the pipeline decides. Pure: built once per token and bundle, then reused.
import type { JSONObject } from '@modelcontextprotocol/server';
import type { Subject } from '../../src/core/command.js';
import type { BundleAsset, MethodDef, PointDef } from '../../src/assets/bundle-asset.js';
import type { BundlePayload } from '../../src/policy/payload.js';
import { reachOf, type Grant, type ReachOperation } from '../../src/policy/reach.js';
import { readRequest, typeRange, writeFunctionCode } from './modbus-points.js';

/** JSON Schema of a tool's input (MCP `Tool.inputSchema`): always an object. */
export interface InputSchema {
  [key: string]: unknown;
  type: 'object';
  properties: Record<string, JSONObject>;
  required: string[];
  additionalProperties: false;
}

export interface ToolAnnotations {
  title: string;
  readOnlyHint: boolean;
  destructiveHint: boolean;
  idempotentHint: boolean;
  openWorldHint: boolean;
}

export interface McpTool {
  name: string;
  title: string;
  description: string;
  inputSchema: InputSchema;
  annotations: ToolAnnotations;
}

/** What a tool does when called. */
export type ToolTarget =
  | { kind: 'list' }
  | { kind: 'read'; asset: BundleAsset; points: Map<string, PointDef> }
  | { kind: 'write'; asset: BundleAsset; point: string; def: PointDef; grant: Grant }
  | { kind: 'call'; asset: BundleAsset; method: string; def: MethodDef; grant: Grant };

export interface PointResource {
  uri: string;
  name: string;
  title: string;
  description: string;
  mimeType: 'application/json';
  asset: BundleAsset;
  point: string;
  def: PointDef;
}

export interface Catalog {
  tools: McpTool[];
  byName: Map<string, ToolTarget>;
  /** Live point values: one resource per readable point. */
  points: PointResource[];
  pointByUri: Map<string, PointResource>;
  /** What list_assets and the assets resource answer: the caller's assets and what it may do there. */
  summary: AssetSummary[];
}

export interface AssetSummary {
  asset: string;
  zone: string;
  criticality: string;
  protocol: string;
  points: { name: string; unit?: string; type: string; read: boolean; write?: WriteSummary }[];
  methods: { name: string; inputs: { name: string; type: string; min?: number; max?: number }[]; approval: boolean; windows: string[] }[];
}

interface WriteSummary {
  min?: number;
  max?: number;
  approval: boolean;
  windows: string[];
  max_step?: number;
}

export const ASSETS_URI = 'plantgate://assets';
export const LIST_TOOL = 'list_assets';

export function pointUri(asset: string, point: string): string {
  return `${ASSETS_URI}/${encodeURIComponent(asset)}/points/${encodeURIComponent(point)}`;
}

const READ_ONLY: Omit<ToolAnnotations, 'title'> = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
// Writing a value replaces what the PLC had (destructive); writing the same value twice does no more.
const WRITE: Omit<ToolAnnotations, 'title'> = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };
// A method may start or stop equipment: nothing says calling it twice is the same as once.
const CALL: Omit<ToolAnnotations, 'title'> = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false };

const NAME_OK = /[^A-Za-z0-9_-]+/g;
/** Tool names many clients accept: [A-Za-z0-9_-], at most 64 characters. */
function toolName(parts: string[], taken: Set<string>): string {
  const base = parts.join('_').replace(NAME_OK, '_').slice(0, 60);
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

function unitText(def: PointDef): string {
  return def.unit ? ` ${def.unit}` : '';
}

function isInteger(def: PointDef): boolean {
  return def.type !== 'float32' && def.type !== 'bool' && Number.isInteger(def.scale ?? 1) && Number.isInteger(def.offset ?? 0);
}

function range(grant: Grant, lo: number, hi: number): { min: number; max: number } {
  return { min: Math.max(grant.min, lo), max: Math.min(grant.max, hi) };
}

function conditions(grant: Grant, unit: string): string {
  const parts: string[] = [];
  if (grant.maxStep !== undefined) parts.push(`Each write may move it at most ${grant.maxStep}${unit} from its last known value.`);
  if (grant.windows.length > 0) parts.push(`Allowed only inside the maintenance window(s) ${grant.windows.join(', ')}.`);
  if (grant.approval) parts.push('Every call needs a human operator\'s approval: the first call returns an approval id; call again with the same arguments once it is approved.');
  return parts.join(' ');
}

function valueSchema(def: PointDef, grant: Grant): JSONObject {
  if (def.type === 'bool') return { type: 'boolean', description: 'true = on / 1, false = off / 0' };
  const [lo, hi] = typeRange(def);
  const r = range(grant, lo, hi);
  return { type: isInteger(def) ? 'integer' : 'number', minimum: r.min, maximum: r.max, description: `new value${def.unit ? `, in ${def.unit}` : ''}, from ${r.min} to ${r.max}` };
}

const ARG_RANGE: Record<string, [number, number]> = {
  Int16: [-0x8000, 0x7fff],
  UInt16: [0, 0xffff],
  Int32: [-0x80000000, 0x7fffffff],
  UInt32: [0, 0xffffffff],
  Float: [-3.4028234663852886e38, 3.4028234663852886e38],
  Double: [-Number.MAX_VALUE, Number.MAX_VALUE],
};

function argumentSchema(a: MethodDef['inputs'][number]): JSONObject {
  if (a.type === 'Boolean') return { type: 'boolean' };
  const [lo, hi] = ARG_RANGE[a.type]!;
  const min = Math.max(a.min ?? -Infinity, lo);
  const max = Math.min(a.max ?? Infinity, hi);
  return { type: a.type === 'Float' || a.type === 'Double' ? 'number' : 'integer', minimum: min, maximum: max, description: `${a.type}, from ${min} to ${max}` };
}

function finite(n: number): number | undefined {
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The MCP-visible catalog of a caller. `reachable` says whether the front can execute commands on
 * an asset (it has an upstream session for it); an asset it cannot reach gets no tools.
 */
export function buildCatalog(payload: BundlePayload, subject: Subject, reachable: (asset: BundleAsset) => boolean): Catalog {
  const reach = reachOf(payload, subject, {
    // The codes this front sends (modbus-points.ts), so rules limited to function codes cover exactly what it can send.
    functionCode: (asset, def, op: ReachOperation) =>
      asset.protocol !== 'modbus' || def === undefined ? -1 : op === 'read' ? readRequest(def).fc : writeFunctionCode(def),
  }).filter((r) => reachable(r.asset));
  const taken = new Set<string>([LIST_TOOL]);
  const tools: McpTool[] = [];
  const byName = new Map<string, ToolTarget>([[LIST_TOOL, { kind: 'list' }]]);
  const points: PointResource[] = [];
  const summary: AssetSummary[] = [];
  tools.push({
    name: LIST_TOOL,
    title: 'List assets and points',
    description:
      'List the plant assets (PLCs) you may use through this gateway, with their points (units, types), what you may read and write, the value ranges you may write, and which writes need a human approval or a maintenance window.',
    inputSchema: { type: 'object', properties: {}, required: [], additionalProperties: false },
    annotations: { title: 'List assets and points', ...READ_ONLY },
  });

  for (const r of reach) {
    const a = r.asset;
    const where = `${a.id} (zone ${a.zone}, criticality ${a.criticality})`;
    const s: AssetSummary = { asset: a.id, zone: a.zone, criticality: a.criticality, protocol: a.protocol, points: [], methods: [] };
    for (const [name, def] of Object.entries(a.points)) {
      const w = r.write.get(name);
      const read = r.read.has(name);
      // Only coils and holding registers take writes over Modbus.
      const writable = w !== undefined && (a.protocol !== 'modbus' || def.table === 'coil' || def.table === 'holding');
      if (!read && !writable) continue;
      const entry: AssetSummary['points'][number] = { name, type: def.type, read };
      if (def.unit !== undefined) entry.unit = def.unit;
      if (writable) {
        const [lo, hi] = typeRange(def);
        const rr = range(w, lo, hi);
        entry.write = { approval: w.approval, windows: w.windows };
        if (def.type !== 'bool') Object.assign(entry.write, { min: finite(rr.min), max: finite(rr.max) });
        if (w.maxStep !== undefined) entry.write.max_step = w.maxStep;
      }
      s.points.push(entry);
    }
    const readable = new Map<string, PointDef>();
    for (const name of r.read.keys()) {
      const def = a.points[name];
      if (def === undefined) continue;
      readable.set(name, def);
      const uri = pointUri(a.id, name);
      points.push({
        uri,
        name: `${a.id}/${name}`,
        title: `${name} on ${a.id}`,
        description: `Live value of ${name}${def.unit ? ` (${def.unit})` : ''} on ${where}, read through the gateway when requested.`,
        mimeType: 'application/json',
        asset: a,
        point: name,
        def,
      });
    }
    if (readable.size > 0) {
      const name = toolName(['read', a.id], taken);
      const listed = [...readable].map(([n, d]) => `${n}${d.unit ? ` (${d.unit})` : ''}`).join(', ');
      tools.push({
        name,
        title: `Read ${a.id}`,
        description: `Read live values of points of ${where}: ${listed}. Every read is checked against the plant's policy and recorded in the audit log.`,
        inputSchema: {
          type: 'object',
          properties: { points: { type: 'array', items: { type: 'string', enum: [...readable.keys()] }, minItems: 1, uniqueItems: true, description: 'the points to read' } },
          required: ['points'],
          additionalProperties: false,
        },
        annotations: { title: `Read ${a.id}`, ...READ_ONLY },
      });
      byName.set(name, { kind: 'read', asset: a, points: readable });
    }
    for (const entry of s.points) {
      if (entry.write === undefined) continue;
      const def = a.points[entry.name]!;
      const grant = r.write.get(entry.name)!;
      const name = toolName(['write', a.id, entry.name], taken);
      const unit = unitText(def);
      const bounds = def.type === 'bool' ? 'true or false' : `${entry.write.min ?? 'any'} to ${entry.write.max ?? 'any'}${unit}`;
      tools.push({
        name,
        title: `Write ${entry.name} on ${a.id}`,
        description:
          `Write ${entry.name} on ${where}. You may write ${bounds} (rule ${grant.ruleIds.join(', ')}). ${conditions(grant, unit)}`.trim() +
          ' Live safety interlocks are checked before the PLC is touched, and the write is recorded in the audit log before it runs.',
        inputSchema: { type: 'object', properties: { value: valueSchema(def, grant) }, required: ['value'], additionalProperties: false },
        annotations: { title: `Write ${entry.name} on ${a.id}`, ...WRITE },
      });
      byName.set(name, { kind: 'write', asset: a, point: entry.name, def, grant });
    }
    for (const [method, grant] of r.call) {
      const def = a.methods?.[method];
      if (def === undefined) continue;
      const name = toolName(['call', a.id, method], taken);
      const properties = Object.fromEntries(def.inputs.map((x) => [x.name, argumentSchema(x)]));
      tools.push({
        name,
        title: `Call ${method} on ${a.id}`,
        description: `Call the method ${method} on ${where} (rule ${grant.ruleIds.join(', ')}). ${conditions(grant, '')}`.trim() + ' Live safety interlocks are checked first, and the call is recorded in the audit log before it runs.',
        inputSchema: { type: 'object', properties, required: def.inputs.map((x) => x.name), additionalProperties: false },
        annotations: { title: `Call ${method} on ${a.id}`, ...CALL },
      });
      byName.set(name, { kind: 'call', asset: a, method, def, grant });
      s.methods.push({
        name: method,
        inputs: def.inputs.map((x) => ({ name: x.name, type: x.type, ...(x.min !== undefined ? { min: x.min } : {}), ...(x.max !== undefined ? { max: x.max } : {}) })),
        approval: grant.approval,
        windows: grant.windows,
      });
    }
    summary.push(s);
  }
  return { tools, byName, points, pointByUri: new Map(points.map((p) => [p.uri, p])), summary };
}
