// Policy test cases (`plantgate policy test`): YAML files that state, for a subject, a command and
// a time, the decision the rules must give, like `opa test`. Owns the test-file format and running
// cases against the real compiled engine; never signs and never touches a gateway.
//
// Cases of one file run in order against one engine and one PolicyMemory, so state carries over:
// rate-limit budgets and the PLC values max_step measures from (docs/policy.md, "Policy tests").
// An allowed command counts as forwarded and acknowledged by the PLC: its tokens are spent and
// what it wrote is the point's value from then on.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Command, ModbusTable, Operation, Subject, Target, TypedValue } from '../core/command.js';
import { nodeIdProblem } from '../assets/node-id.js';
import { SourceError, SourceErrors } from '../core/errors.js';
import { REASONS, type Reason } from '../core/reasons.js';
import { parseYamlWith } from '../core/yaml.js';
import { PolicyEngine, type PolicyDecision } from './engine.js';
import { PolicyMemory } from './memory.js';
import { ASSURANCES, MODBUS_TABLES, RULE_OPERATIONS, pointWidth, type BundleAsset } from './payload.js';
import { compileSources } from './sources.js';
import { bundleResolver, type CommandResolver, type ResolverFactories } from '../assets/resolver.js';

const isoTime = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 instant with a zone, e.g. 2026-01-15T12:00:00Z');

const subjectSchema = z.strictObject({
  workload: z.string().min(1),
  owner: z.string().min(1).optional(),
  roles: z.array(z.string().min(1)).optional(),
  scopes: z.array(z.string().min(1)).optional(),
  act: z.array(z.string().min(1)).optional(),
  zone: z.string().min(1).optional(),
  assurance: z.enum(ASSURANCES).optional(),
});

type TestValue = string | number | boolean | TestValue[];
const typedValueSchema: z.ZodType<TestValue> = z.lazy(() => z.union([z.string(), z.number(), z.boolean(), z.array(typedValueSchema)]));

const commandSchema = z.strictObject({
  asset: z.string().min(1).optional(),
  unit_id: z.number().int().min(0).max(255).optional(),
  operation: z.enum(RULE_OPERATIONS),
  /** Points by name: a list (reads) or name → engineering value (writes). */
  points: z.union([z.array(z.string().min(1)).min(1), z.record(z.string(), z.number())]).optional(),
  /** Raw Modbus: resolved through the point map exactly as the gateway does. */
  function_code: z.number().int().min(1).max(127).optional(),
  table: z.enum(MODBUS_TABLES).optional(),
  address: z.number().int().min(0).max(65535).optional(),
  count: z.number().int().min(1).max(2000).optional(),
  values: z.array(z.number().int().min(0).max(65535)).optional(),
  /** Modbus without addresses: FC 8's sub-function; FC 43's MEI type and, for MEI 14, the objects read [first, last]. */
  sub_function: z.number().int().min(0).max(65535).optional(),
  mei_type: z.number().int().min(0).max(255).optional(),
  objects: z.tuple([z.number().int().min(0).max(255), z.number().int().min(0).max(255)]).optional(),
  /** OPC UA: a node by NodeId (nsu=<uri>;<identifier>, or bare in the asset's namespace) and/or browse path. */
  node: z.string().min(1).optional(),
  path: z.string().startsWith('/').optional(),
  /** OPC UA: the attribute read or written (default Value). */
  attribute: z.string().min(1).optional(),
  /** OPC UA write: the value as the agent sends it (string, number, boolean, or a list of them). */
  value: typedValueSchema.optional(),
  /** OPC UA call: input arguments by name. */
  arguments: z.record(z.string(), typedValueSchema).optional(),
});

const expectSchema = z.strictObject({
  effect: z.enum(['allow', 'deny']),
  reason: z.enum(REASONS).optional(),
  rule: z.string().optional(),
  /** The first would-deny reason shadow mode reported, or 'none'. */
  shadow: z.union([z.enum(REASONS), z.literal('none')]).optional(),
  /** Every shadow finding's reason, in order (ALLOWED: a monitor rule would allow what is denied). */
  shadows: z.array(z.enum(REASONS)).optional(),
});

const caseSchema = z.strictObject({
  name: z.string().min(1),
  at: isoTime.optional(),
  subject: subjectSchema,
  command: commandSchema,
  /** Process values known before the command: asset → point → engineering value. */
  values: z.record(z.string(), z.record(z.string(), z.number())).optional(),
  repeat: z.number().int().min(1).max(10_000).optional(),
  expect: expectSchema,
});

const fileSchema = z.strictObject({
  bundle: z.string().min(1),
  at: isoTime.optional(),
  cases: z.array(caseSchema).min(1),
});

type TestCase = z.output<typeof caseSchema>;

export interface CaseResult {
  file: string;
  name: string;
  passed: boolean;
  /** What was expected and what the engine said, one line each, for the report. */
  expected: string;
  actual: string;
}

export interface TestRun {
  results: CaseResult[];
  /** Problems in test files or the sources they compile (each file:line:col: field: problem). */
  errors: SourceError[];
}

const DEFAULT_AT = '2026-01-15T12:00:00Z';

/** Test files below `target`: YAML files inside any directory named `tests`, or `target` itself. */
export async function findTestFiles(target: string): Promise<string[]> {
  const st = await stat(target);
  if (st.isFile()) return [target];
  const out: string[] = [];
  async function walk(dir: string, inTests: boolean): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && e.name !== 'node_modules' && !e.name.startsWith('.')) await walk(p, inTests || e.name === 'tests');
      else if (e.isFile() && inTests && /\.ya?ml$/.test(e.name)) out.push(p);
    }
  }
  await walk(target, path.basename(path.resolve(target)) === 'tests');
  return out;
}

/** `resolvers`: how each protocol's addresses resolve to points (protocols/resolvers.ts), as the gateway does. */
export async function runPolicyTests(files: readonly string[], resolvers: ResolverFactories): Promise<TestRun> {
  const run: TestRun = { results: [], errors: [] };
  for (const file of files) {
    try {
      run.results.push(...(await runFile(file, resolvers)));
    } catch (err) {
      if (err instanceof SourceErrors) run.errors.push(...err.errors);
      else throw err;
    }
  }
  return run;
}

async function runFile(file: string, resolvers: ResolverFactories): Promise<CaseResult[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 1, 1, 'file', `cannot read test file (${(err as NodeJS.ErrnoException).code ?? 'error'})`)]);
  }
  const spec = parseYamlWith(fileSchema, text, file);
  const times = spec.cases.map((c) => Date.parse(c.at ?? spec.at ?? DEFAULT_AT));
  const payload = await compileSources(path.resolve(path.dirname(file), spec.bundle), { now: Math.min(...times), revision: 1 });
  // Cases test the rules at their own times; the validity period is a deployment matter (verify).
  payload.expires_at = Math.max(payload.expires_at, Math.ceil(Math.max(...times) / 1000) + 1);
  const engine = PolicyEngine.fromPayload(payload);
  const resolver = bundleResolver(resolvers, payload.assets);
  const memory = new PolicyMemory();
  const decide = (cmd: Command, subj: Subject, at: number): PolicyDecision => {
    const d = engine.decide(cmd, subj, at, memory);
    if (d.effect === 'allow' && d.forward !== undefined) {
      memory.forwarded(d.forward, at);
      memory.settled(d.forward, 'acknowledged', at);
    }
    return d;
  };
  const results: CaseResult[] = [];
  const problems: SourceError[] = [];
  spec.cases.forEach((c, i) => {
    const where = (field: string, problem: string) => problems.push(caseError(text, file, i, field, problem));
    for (const [assetId, points] of Object.entries(c.values ?? {})) {
      for (const [point, v] of Object.entries(points)) {
        const a = engine.asset(assetId);
        // OPC UA nodes outside the point map are given by canonical NodeId (nsu=<uri>;<identifier>).
        if (a?.points[point] === undefined && !(a?.protocol === 'opcua' && point.startsWith('nsu='))) {
          where(`cases[${i}].values.${assetId}.${point}`, `no point '${point}' on asset '${assetId}'`);
        }
        memory.observe(assetId, point, v, times[i]!);
      }
    }
    const built = buildCommand(engine, resolver, c);
    if (typeof built === 'string') return where(`cases[${i}].command`, built);
    const subj = buildSubject(c, built.operation, times[i]!);
    let d = decide(structuredClone(built), subj, times[i]!);
    for (let k = 1; k < (c.repeat ?? 1); k++) d = decide(structuredClone(built), subj, times[i]!);
    results.push(judge(file, c, d));
  });
  if (problems.length > 0) throw new SourceErrors(problems);
  return results;
}

function caseError(text: string, file: string, index: number, field: string, problem: string): SourceError {
  // Point at the case's `- name:` line: good enough to find it, and needs no second parse.
  let seen = -1;
  const lines = text.split('\n');
  for (let l = 0; l < lines.length; l++) {
    if (/^\s*-\s+name:/.test(lines[l]!) && ++seen === index) return new SourceError(file, l + 1, lines[l]!.indexOf('-') + 1, field, problem);
  }
  return new SourceError(file, 1, 1, field, problem);
}

function buildSubject(c: TestCase, op: Operation, at: number): Subject {
  const s: Subject = {
    workloadId: c.subject.workload,
    owner: c.subject.owner ?? 'test-owner',
    taskId: 'policy-test',
    taskPurpose: c.name,
    jti: 'policy-test',
    roles: c.subject.roles ?? [],
    // A token scoped for exactly what it does, unless the case says otherwise.
    scopes: c.subject.scopes ?? [op],
    assurance: c.subject.assurance ?? 'mtls+token',
    issuer: 'policy-test',
    expiresAtMs: at + 300_000,
    issuedAtMs: at,
  };
  if (c.subject.act) s.actSub = c.subject.act;
  if (c.subject.zone) s.zone = c.subject.zone;
  return s;
}

const READ_FC: Record<ModbusTable, number> = { coil: 1, discrete: 2, holding: 3, input: 4 };

/** The Command the gateway would build; a string says why the case's command is unusable. */
function buildCommand(engine: PolicyEngine, resolver: CommandResolver, c: TestCase): Command | string {
  const k = c.command;
  const op = k.operation as Operation;
  const base: Command = { sessionId: 'policy-test', protocol: 'modbus', assetId: '', operation: op, functionCode: 0, targets: [], points: [] };
  if (k.function_code !== undefined && k.table === undefined && k.address === undefined) return unaddressedCommand(engine, resolver, base, k);
  if (k.sub_function !== undefined || k.mei_type !== undefined || k.objects !== undefined) return 'sub_function, mei_type and objects go with a function_code without table and address';
  if (k.table !== undefined || k.function_code !== undefined || k.address !== undefined) {
    if (k.points !== undefined) return 'give either points or function_code/table/address, not both';
    if (k.table === undefined || k.address === undefined || k.function_code === undefined) return 'a raw command needs function_code, table and address';
    const unit = k.unit_id ?? (k.asset !== undefined ? engine.asset(k.asset)?.unit_id : undefined);
    if (unit === undefined) return `give unit_id or a known asset (got '${k.asset ?? ''}')`;
    base.functionCode = k.function_code;
    base.targets = [{ table: k.table, address: k.address, count: k.count ?? k.values?.length ?? 1 }];
    if (k.values) base.rawValues = k.values;
    base.unitId = unit;
    resolver.resolve(base);
    return base;
  }
  if (k.asset === undefined) return 'give asset with points';
  const asset = engine.asset(k.asset);
  if (asset === undefined) return `unknown asset '${k.asset}'`;
  if (k.node !== undefined || k.path !== undefined || k.value !== undefined || k.arguments !== undefined) return opcuaNodeCommand(resolver, asset, base, k);
  if (k.attribute !== undefined) return 'attribute goes with an OPC UA node';
  if (k.points === undefined) return 'give points (a list for reads, name: value for writes) or a raw command';
  const names = Array.isArray(k.points) ? k.points : Object.keys(k.points);
  for (const n of names) if (asset.points[n] === undefined) return `no point '${n}' on asset '${asset.id}'`;
  base.assetId = asset.id;
  base.points = [...names];
  if (!Array.isArray(k.points)) {
    if (op !== 'write') return `points with values are for writes; give a list for ${op}`;
    base.values = { ...k.points };
  } else if (op === 'write') return 'a write gives point: value pairs';
  if (asset.protocol === 'opcua') {
    base.protocol = 'opcua';
    base.service = op === 'write' ? 'Write' : 'Read';
    for (const n of names) {
      const id = asset.points[n]!.node_id;
      if (id === undefined) return `point '${n}' of OPC UA asset '${asset.id}' has no node_id`;
      base.targets.push({ nodeId: id });
    }
    return base;
  }
  base.unitId = asset.unit_id;
  const targets = modbusTargets(asset, names, op === 'write');
  if (typeof targets === 'string') return targets;
  base.targets = targets;
  const t = targets[0]!;
  base.functionCode = op === 'write'
    ? t.table === 'coil' ? (t.count === 1 ? 5 : 15) : t.count === 1 ? 6 : 16
    : op === 'read' ? READ_FC[t.table!] : 0;
  return base;
}

/**
 * A Modbus command without register addresses (diagnostics, device identification), as the
 * gateway's adapter builds it: FC 8 carries its sub-function, FC 43 its MEI type and the objects read.
 */
function unaddressedCommand(engine: PolicyEngine, resolver: CommandResolver, base: Command, k: TestCase['command']): Command | string {
  const fc = k.function_code!;
  const unit = k.unit_id ?? (k.asset !== undefined ? engine.asset(k.asset)?.unit_id : undefined);
  if (unit === undefined) return `give unit_id or a known asset (got '${k.asset ?? ''}')`;
  if (k.points !== undefined) return 'give either points or a function_code, not both';
  if ((k.sub_function !== undefined) !== (fc === 8)) return fc === 8 ? 'FC 8 gives its sub_function' : 'sub_function goes with function_code 8';
  if ((k.mei_type !== undefined) !== (fc === 43)) return fc === 43 ? 'FC 43 gives its mei_type' : 'mei_type goes with function_code 43';
  if (k.objects !== undefined && k.mei_type !== 14) return 'objects go with mei_type 14 (Read Device Identification)';
  base.functionCode = fc;
  if (k.sub_function !== undefined) base.targets = [{ subFunction: k.sub_function }];
  if (k.mei_type !== undefined) {
    const t: Target = { meiType: k.mei_type };
    if (k.objects !== undefined) {
      t.objectFrom = k.objects[0];
      t.objectTo = k.objects[1];
    }
    base.targets = [t];
  }
  base.unitId = unit;
  resolver.resolve(base);
  return base;
}

/**
 * An OPC UA command on one node, as the gateway's front builds it: target NodeId (canonical),
 * browse path and attribute; the point is the map's name for the node, else its browse path (else
 * its NodeId); a write's value and a call's arguments typed as given.
 */
function opcuaNodeCommand(resolver: CommandResolver, asset: BundleAsset, base: Command, k: TestCase['command']): Command | string {
  if (asset.protocol !== 'opcua') return `asset '${asset.id}' is not an OPC UA asset: node and path are for OPC UA`;
  if (k.points !== undefined) return 'give either points or node/path, not both';
  const op = base.operation;
  if (op === 'write' && k.value === undefined) return 'an OPC UA write gives value';
  if (op !== 'write' && k.value !== undefined) return `value is for writes, not ${op}`;
  if (op !== 'call' && k.arguments !== undefined) return `arguments are for calls, not ${op}`;
  // The gateway always knows both: the NodeId names the node, the path is where it sits.
  if (k.node === undefined) return 'an OPC UA command gives node (and path when rules select by browse path)';
  let nodeId = k.node;
  if (!nodeId.startsWith('nsu=')) {
    const problem = asset.namespace === undefined ? 'the asset has no namespace' : nodeIdProblem(asset.namespace, nodeId);
    if (problem !== null) return problem;
    nodeId = `nsu=${asset.namespace};${nodeId}`;
  }
  const target: Target = { nodeId };
  if (k.path !== undefined) target.browsePath = k.path;
  if (k.attribute !== undefined && k.attribute !== 'Value') target.attribute = k.attribute;
  base.protocol = 'opcua';
  base.assetId = asset.id;
  base.service = ({ read: 'Read', write: 'Write', call: 'Call', browse: 'Browse', subscribe: 'CreateMonitoredItems', diagnostic: 'Read' } as Record<string, string>)[op] ?? op;
  base.targets = [target];
  resolver.resolve(base);
  const name = base.points[0] ?? nodeId;
  const typed = (v: TestValue): TypedValue => (Array.isArray(v) ? v.map(typed) : v);
  if (op === 'write') {
    base.typedValues = { [name]: typed(k.value!) };
    if (typeof k.value === 'number') base.values = { [name]: k.value };
  } else if (op === 'call' && k.arguments !== undefined) {
    base.typedValues = Object.fromEntries(Object.entries(k.arguments).map(([a, v]) => [a, typed(v)]));
    const nums = Object.entries(k.arguments).filter(([, v]) => typeof v === 'number') as [string, number][];
    if (nums.length > 0) base.values = Object.fromEntries(nums);
  }
  return base;
}

/** Contiguous runs of points per table; a write must be one run (one Modbus request). */
function modbusTargets(asset: BundleAsset, names: string[], write: boolean): Target[] | string {
  const defs = names.map((n) => ({ n, d: asset.points[n]! })).sort((a, b) => a.d.table.localeCompare(b.d.table) || a.d.address - b.d.address);
  const targets: Target[] = [];
  for (const { d } of defs) {
    const width = pointWidth(d);
    const last = targets[targets.length - 1];
    if (last && last.table === d.table && last.address! + last.count! === d.address) last.count! += width;
    else targets.push({ table: d.table, address: d.address, count: width });
  }
  if (write && targets.length > 1) return `the points of one write must be contiguous in one table (one Modbus request): ${names.join(', ')}`;
  if (write && (targets[0]!.table === 'input' || targets[0]!.table === 'discrete')) return `${targets[0]!.table} points are read-only in Modbus`;
  return targets;
}

function describe(effect: string, reason: Reason | undefined, rule: string | undefined, shadow: string | undefined, shadows?: string): string {
  let s = effect;
  if (reason !== undefined) s += ` ${reason}`;
  if (rule !== undefined) s += ` (rule ${rule === '' ? 'none' : rule})`;
  if (shadow !== undefined) s += ` shadow ${shadow}`;
  if (shadows !== undefined) s += ` shadows [${shadows}]`;
  return s;
}

function judge(file: string, c: TestCase, d: PolicyDecision): CaseResult {
  const e = c.expect;
  const shadow = d.shadow?.reason ?? 'none';
  const shadows = (d.shadows ?? []).map((f) => f.reason).join(', ');
  const passed =
    d.effect === e.effect &&
    (e.reason === undefined || d.reason === e.reason) &&
    (e.rule === undefined || d.ruleId === e.rule) &&
    (e.shadow === undefined || shadow === e.shadow) &&
    (e.shadows === undefined || shadows === e.shadows.join(', '));
  const shown = (d.shadows ?? []).map((f) => `${f.reason} by ${f.ruleId}${f.principal ? ` for ${f.principal}` : ''}`).join(', ');
  return {
    file,
    name: c.name,
    passed,
    expected: describe(e.effect, e.reason, e.rule, e.shadow, e.shadows?.join(', ')),
    actual: describe(d.effect, d.reason, d.ruleId, d.shadow ? `${d.shadow.reason} by ${d.shadow.ruleId}` : undefined, d.shadows ? shown : undefined) + (d.principal ? ` for ${d.principal}` : ''),
  };
}
