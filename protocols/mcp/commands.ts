// Tool calls as Commands (docs/mcp.md, The path of a tool call): each point read, point write or
// method call becomes the Command the asset's own front would build (a Modbus request through
// commandFromRequest, or an OPC UA node target), is decided by the one enforcement pipeline, and
// only on an allow goes to the asset's existing upstream session. Never a side path: no PLC is
// touched without an allow Decision, and a write only after its decision record is durable (the
// pipeline resolves authorize() only then).
// Owns the calls' arguments, Commands, upstream exchange and the results the agent reads.
import { performance } from 'node:perf_hooks';
import type { Command, Decision } from '../../src/core/command.js';
import type { CommandPipeline, McpCallInfo, Outcome, Session, WireInfo } from '../../src/core/pipeline.js';
import type { Reason } from '../../src/core/reasons.js';
import { pointWidth, type ArgumentType, type BundleAsset, type MethodDef, type PointDef } from '../../src/assets/bundle-asset.js';
import type { Grant } from '../../src/policy/reach.js';
import { commandFromRequest, readAnswerValues } from '../modbus/command.js';
import { decodeResponse, encodeRequest, isExceptionResponse, type Request } from '../modbus/codec.js';
import type { UpstreamRoute } from '../modbus/listener.js';
import type { UpstreamResult } from '../modbus/upstream.js';
import type { ToolTarget } from './catalog.js';
import { explainDenial, type DenialContext } from './explain.js';
import { readRequest, valueFromResponse, writeFunctionCode, writeRequest } from './modbus-points.js';

/** An OPC UA asset's upstream session as the MCP front uses it (opcua-access.ts adapts OpcuaUpstream). */
export interface OpcuaAccess {
  /** Engineering values of the nodes, NaN where unreadable; a word when nothing could be read. */
  read(nodeIds: readonly string[]): Promise<Float64Array | string>;
  /** Writes a point's value typed as the PLC declares the point (its type, scale and offset). */
  write(nodeId: string, value: number, def: PointDef): Promise<UpstreamAnswer>;
  /** Calls a method of the asset's object (the adapter knows the object node). */
  call(methodNode: string, args: { value: number; type: ArgumentType }[]): Promise<UpstreamAnswer & { outputs: number[] }>;
}

/** What an upstream said to one allowed command. */
export interface UpstreamAnswer {
  status: Outcome['status'];
  /** The PLC's refusal (Modbus exception code, OPC UA status code) when status is 'exception'. */
  code?: number;
  /** The PLC's refusal in words ("Modbus exception 0x02", "BadOutOfRange"). */
  text?: string;
}

export interface McpUpstreams {
  modbus(assetId: string): UpstreamRoute | undefined;
  opcua(assetId: string): OpcuaAccess | undefined;
}

export interface CallDeps {
  pipeline: CommandPipeline;
  upstreams: McpUpstreams;
  /** The interlock's account of a command it refused (condition and live inputs), if one did. */
  interlockDetail?(cmd: Command): string | undefined;
  /** Minutes an approved grant waits for the retry (told to the agent). */
  grantTtlMin?: number;
}

/** One MCP request's caller and call, as the pipeline and the audit see them. */
export interface CallContext {
  session: Session;
  mcp: McpCallInfo;
}

/** The MCP `CallToolResult` shape this front answers. */
export interface ToolResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

export type PointValue = { ok: true; value: number } | { ok: false; reason: Reason | 'PLC_EXCEPTION'; text: string };

const OPCUA_SERVICE = { Read: 631, Write: 673, Call: 712 } as const;
const MODBUS_EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  6: 'server device busy',
  10: 'gateway path unavailable',
  11: 'gateway target failed to respond',
};

function showValue(def: PointDef | undefined, v: number): string {
  return `${def?.type === 'bool' ? (v !== 0 ? 'true' : 'false') : String(v)}${def?.unit ? ` ${def.unit}` : ''}`;
}

function text(t: string, structured?: Record<string, unknown>, isError = false): ToolResult {
  return { content: [{ type: 'text', text: t }], ...(structured !== undefined ? { structuredContent: structured } : {}), ...(isError ? { isError: true } : {}) };
}

function modbusAnswer(r: UpstreamResult): UpstreamAnswer & { pdu?: Buffer } {
  switch (r.kind) {
    case 'response': {
      if ((r.pdu[0]! & 0x80) !== 0) {
        const code = r.pdu[1]!;
        return { status: 'exception', code, text: `Modbus exception 0x${code.toString(16).padStart(2, '0')} (${MODBUS_EXCEPTION_NAMES[code] ?? 'unknown'})` };
      }
      return { status: 'ok', pdu: r.pdu };
    }
    case 'timeout':
      return { status: 'upstream_timeout' };
    default:
      return { status: 'upstream_unavailable' };
  }
}

export class ToolCalls {
  constructor(private readonly deps: CallDeps) {}

  // ------------------------------------------------------------ the gate

  /** Decides one Command; every refusal comes back as the sentence the agent reads. */
  private async decide(ctx: CallContext, cmd: Command): Promise<Decision> {
    // A Modbus command's answer always comes back (the pool answers every send) and reaches
    // outcome(): a read is then recorded once, with its answer.
    const wire: WireInfo = { unitId: cmd.unitId, mcp: ctx.mcp, outcomeFollows: cmd.protocol === 'modbus' };
    try {
      const d = this.deps.pipeline.authorize(ctx.session, cmd, wire);
      return d instanceof Promise ? await d : d;
    } catch {
      // authorize never throws; if it did, the command does not run.
      return this.deps.pipeline.refuse(ctx.session, cmd, 'PROTOCOL_VIOLATION', wire);
    }
  }

  private refuse(ctx: CallContext, cmd: Command, reason: Reason): Decision {
    return this.deps.pipeline.refuse(ctx.session, cmd, reason, { unitId: cmd.unitId, mcp: ctx.mcp });
  }

  /** `readValue`: an allowed read's answer, for policy's max_step bases (Outcome.readValue). */
  private outcome(ctx: CallContext, cmd: Command, d: Decision, a: UpstreamAnswer, t0: number, readValue?: (i: number) => number): void {
    this.deps.pipeline.outcome(ctx.session, cmd, d, {
      status: a.status,
      ...(a.code !== undefined ? { exceptionCode: a.code } : {}),
      latencyUs: Math.round((performance.now() - t0) * 1000),
      ...(readValue !== undefined && a.status === 'ok' ? { readValue } : {}),
    });
  }

  private denial(d: Decision, cmd: Command, c: DenialContext): string {
    // The interlock's own line starts with its id, which the sentence already names.
    const interlock = d.interlockId !== undefined ? this.deps.interlockDetail?.(cmd)?.replace(/^interlock [^:]*: /, '') : undefined;
    return explainDenial(d, { ...c, ...(interlock !== undefined ? { interlock } : {}), ...(this.deps.grantTtlMin !== undefined ? { grantTtlMin: this.deps.grantTtlMin } : {}) });
  }

  private static failed(a: UpstreamAnswer, action: string): PointValue {
    if (a.status === 'exception') return { ok: false, reason: 'PLC_EXCEPTION', text: `PLC_EXCEPTION: the PLC refused to ${action}: ${a.text ?? 'exception'}.` };
    const reason: Reason = a.status === 'upstream_timeout' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNAVAILABLE';
    return { ok: false, reason, text: explainDenial({ reason, ruleId: '' }, { action, tool: '' }) };
  }

  // ------------------------------------------------------------ commands per protocol

  private modbusCommand(ctx: CallContext, asset: BundleAsset, req: Request): Command {
    return commandFromRequest(ctx.session.id, asset.unit_id, req);
  }

  private opcuaCommand(ctx: CallContext, asset: BundleAsset, service: keyof typeof OPCUA_SERVICE, nodeId: string): Command {
    return { sessionId: ctx.session.id, protocol: 'opcua', assetId: asset.id, operation: service === 'Read' ? 'read' : service === 'Write' ? 'write' : 'call', functionCode: OPCUA_SERVICE[service], service, targets: [{ nodeId }], points: [] };
  }

  private async sendModbus(asset: BundleAsset, req: Request): Promise<UpstreamAnswer & { pdu?: Buffer }> {
    const route = this.deps.upstreams.modbus(asset.id);
    if (route === undefined) return { status: 'upstream_unavailable' };
    const pdu = encodeRequest(req);
    const r = await new Promise<UpstreamResult>((resolve) => route.pool.send(route.unitId, pdu, req, resolve));
    return modbusAnswer(r);
  }

  /** Reads one point: a read Command, decided, then the asset's upstream. */
  async readPoint(ctx: CallContext, asset: BundleAsset, point: string): Promise<PointValue> {
    const def = asset.points[point];
    const action = `read ${point} on ${asset.id}`;
    if (def === undefined) return { ok: false, reason: 'PROTOCOL_VIOLATION', text: `PROTOCOL_VIOLATION: ${asset.id} has no point ${point}.` };
    if (asset.protocol === 'modbus') {
      const req = readRequest(def);
      const cmd = this.modbusCommand(ctx, asset, req);
      const d = await this.decide(ctx, cmd);
      if (d.effect !== 'allow') return { ok: false, reason: d.reason, text: this.denial(d, cmd, { action, tool: ctx.mcp.tool }) };
      const t0 = performance.now();
      const a = await this.sendModbus(asset, req);
      this.outcome(ctx, cmd, d, a, t0, a.pdu === undefined ? undefined : readAnswerValues(req.fc, a.pdu));
      if (a.status !== 'ok' || a.pdu === undefined) return ToolCalls.failed(a, action);
      const v = valueFromResponse(def, decodeResponse(req, a.pdu));
      return Number.isNaN(v) ? { ok: false, reason: 'PLC_EXCEPTION', text: `PLC_EXCEPTION: the PLC's answer for ${point} could not be decoded.` } : { ok: true, value: v };
    }
    const nodeId = def.node_id;
    const access = this.deps.upstreams.opcua(asset.id);
    const cmd = this.opcuaCommand(ctx, asset, 'Read', nodeId ?? '');
    if (nodeId === undefined) {
      this.refuse(ctx, cmd, 'UNSUPPORTED_FUNCTION');
      return { ok: false, reason: 'UNSUPPORTED_FUNCTION', text: `UNSUPPORTED_FUNCTION: ${point} has no OPC UA node on ${asset.id}.` };
    }
    const d = await this.decide(ctx, cmd);
    if (d.effect !== 'allow') return { ok: false, reason: d.reason, text: this.denial(d, cmd, { action, tool: ctx.mcp.tool }) };
    const t0 = performance.now();
    const r = access === undefined ? 'unavailable' : await access.read([nodeId]);
    const a: UpstreamAnswer = typeof r === 'string' ? { status: r === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable' } : Number.isNaN(r[0]!) ? { status: 'exception', text: 'no good value' } : { status: 'ok' };
    this.outcome(ctx, cmd, d, a, t0, typeof r === 'string' ? undefined : (i) => r[i] ?? NaN);
    if (a.status !== 'ok' || typeof r === 'string') return ToolCalls.failed(a, action);
    return { ok: true, value: r[0]! };
  }

  // ------------------------------------------------------------ tools

  async call(ctx: CallContext, target: ToolTarget, args: Record<string, unknown>, listAssets: () => ToolResult): Promise<ToolResult> {
    switch (target.kind) {
      case 'list':
        return listAssets();
      case 'read':
        return this.read(ctx, target.asset, target.points, args);
      case 'write':
        return this.write(ctx, target.asset, target.point, target.def, target.grant, args);
      case 'call':
        return this.callMethod(ctx, target.asset, target.method, target.def, target.grant, args);
    }
  }

  private async read(ctx: CallContext, asset: BundleAsset, listed: Map<string, PointDef>, args: Record<string, unknown>): Promise<ToolResult> {
    const points = args.points;
    if (!Array.isArray(points) || points.length === 0 || points.length > 64 || !points.every((p) => typeof p === 'string')) {
      return text(`PROTOCOL_VIOLATION: "points" must be a list of 1 to 64 point names of ${asset.id}: ${[...listed.keys()].join(', ')}.`, { reason: 'PROTOCOL_VIOLATION' }, true);
    }
    // A point not listed for this caller still goes to the pipeline (the policy decides, not the list).
    const names = [...new Set(points as string[])];
    const results = await Promise.all(names.map((p) => this.readPoint(ctx, asset, p)));
    const values: Record<string, { value: number | boolean; unit?: string }> = {};
    const refused: Record<string, string> = {};
    const lines: string[] = [];
    names.forEach((p, i) => {
      const r = results[i]!;
      const def = asset.points[p];
      if (r.ok) {
        values[p] = { value: def?.type === 'bool' ? r.value !== 0 : r.value, ...(def?.unit ? { unit: def.unit } : {}) };
        lines.push(`${p} = ${showValue(def, r.value)}`);
      } else {
        refused[p] = r.text;
        lines.push(`${p}: ${r.text}`);
      }
    });
    const anyRefused = Object.keys(refused).length > 0;
    return text(lines.join('\n'), { asset: asset.id, values, ...(anyRefused ? { refused } : {}) }, anyRefused);
  }

  private async write(ctx: CallContext, asset: BundleAsset, point: string, def: PointDef, grant: Grant, args: Record<string, unknown>): Promise<ToolResult> {
    const raw = args.value;
    const value = typeof raw === 'boolean' ? (raw ? 1 : 0) : typeof raw === 'number' ? raw : NaN;
    const action = `write ${point} := ${Number.isNaN(value) ? JSON.stringify(raw) ?? 'nothing' : showValue(def, value)} on ${asset.id}`;
    const dctx: DenialContext = { action, tool: ctx.mcp.tool, grant, ...(def.unit ? { unit: def.unit } : {}) };
    const refusal = (cmd: Command, reason: Reason, detail: string): ToolResult => {
      const d = this.refuse(ctx, cmd, reason);
      return text(explainDenial(d, { ...dctx, detail }), { reason, asset: asset.id, point }, true);
    };
    if (asset.protocol === 'modbus') {
      const req = Number.isNaN(value) ? undefined : writeRequest(def, value);
      if (req === undefined || 'refused' in req) {
        // Not a request a Modbus agent could send: recorded as the write it tried to be.
        const cmd: Command = {
          sessionId: ctx.session.id, protocol: 'modbus', unitId: asset.unit_id, assetId: asset.id, operation: 'write', functionCode: writeFunctionCode(def),
          targets: [{ table: def.table, address: def.address, count: pointWidth(def) }], points: [point], ...(Number.isNaN(value) ? {} : { values: { [point]: value } }),
        };
        return req === undefined
          ? refusal(cmd, 'PROTOCOL_VIOLATION', `"value" must be ${def.type === 'bool' ? 'true or false' : 'a finite number'}`)
          : refusal(cmd, req.refused, req.why);
      }
      const cmd = this.modbusCommand(ctx, asset, req);
      const d = await this.decide(ctx, cmd);
      if (d.effect !== 'allow') return this.refused(d, cmd, dctx, asset.id, point);
      const t0 = performance.now();
      const a = await this.sendModbus(asset, req);
      this.outcome(ctx, cmd, d, a, t0);
      return this.written(a, d, asset.id, point, def, value, action);
    }
    const cmd = this.opcuaCommand(ctx, asset, 'Write', def.node_id ?? '');
    cmd.points = [point];
    if (Number.isNaN(value) || def.node_id === undefined) return refusal(cmd, 'PROTOCOL_VIOLATION', def.node_id === undefined ? 'the point has no OPC UA node' : '"value" must be a finite number');
    cmd.rawValues = [value];
    cmd.values = { [point]: value };
    const d = await this.decide(ctx, cmd);
    if (d.effect !== 'allow') return this.refused(d, cmd, dctx, asset.id, point);
    const access = this.deps.upstreams.opcua(asset.id);
    const t0 = performance.now();
    const a: UpstreamAnswer = access === undefined ? { status: 'upstream_unavailable' } : await access.write(def.node_id, value, def);
    this.outcome(ctx, cmd, d, a, t0);
    return this.written(a, d, asset.id, point, def, value, action);
  }

  private refused(d: Decision, cmd: Command, c: DenialContext, asset: string, point: string): ToolResult {
    const structured: Record<string, unknown> = { reason: d.reason, asset, point, ...(d.ruleId ? { rule: d.ruleId } : {}) };
    if (d.interlockId !== undefined) structured.interlock = d.interlockId;
    if (d.approvalId !== undefined) structured.approval = { id: d.approvalId, status: 'pending', retry: 'call this tool again with the same arguments once an operator has approved it' };
    return text(this.denial(d, cmd, c), structured, true);
  }

  private written(a: UpstreamAnswer, d: Decision, asset: string, point: string, def: PointDef, value: number, action: string): ToolResult {
    if (a.status !== 'ok') {
      const f = ToolCalls.failed(a, action) as { reason: string; text: string };
      return text(f.text, { reason: f.reason, asset, point }, true);
    }
    return text(`${point} on ${asset} := ${showValue(def, value)}: the PLC confirmed the write (rule ${d.ruleId}${d.approvalId ? `, approval ${d.approvalId}` : ''}).`, {
      asset, point, value: def.type === 'bool' ? value !== 0 : value, ...(def.unit ? { unit: def.unit } : {}), rule: d.ruleId, ...(d.approvalId ? { approval: d.approvalId } : {}),
    });
  }

  private async callMethod(ctx: CallContext, asset: BundleAsset, method: string, def: MethodDef, grant: Grant, args: Record<string, unknown>): Promise<ToolResult> {
    const values = def.inputs.map((x) => {
      const v = args[x.name];
      return typeof v === 'boolean' ? (v ? 1 : 0) : typeof v === 'number' && Number.isFinite(v) ? v : NaN;
    });
    const action = `call ${method}(${def.inputs.map((x, i) => `${x.name}=${values[i]}`).join(', ')}) on ${asset.id}`;
    const cmd = this.opcuaCommand(ctx, asset, 'Call', def.node_id);
    cmd.points = [method];
    const dctx: DenialContext = { action, tool: ctx.mcp.tool, grant };
    if (values.some(Number.isNaN) || Object.keys(args).some((k) => !def.inputs.some((x) => x.name === k))) {
      const d = this.refuse(ctx, cmd, 'PROTOCOL_VIOLATION');
      return text(explainDenial(d, { ...dctx, detail: `arguments must be ${def.inputs.map((x) => `${x.name} (${x.type})`).join(', ') || 'none'}` }), { reason: 'PROTOCOL_VIOLATION' }, true);
    }
    cmd.rawValues = values;
    cmd.values = Object.fromEntries(def.inputs.map((x, i) => [x.name, values[i]!]));
    const d = await this.decide(ctx, cmd);
    if (d.effect !== 'allow') return this.refused(d, cmd, dctx, asset.id, method);
    const access = this.deps.upstreams.opcua(asset.id);
    const t0 = performance.now();
    const a = access === undefined ? { status: 'upstream_unavailable' as const, outputs: [] } : await access.call(def.node_id, def.inputs.map((x, i) => ({ value: values[i]!, type: x.type })));
    this.outcome(ctx, cmd, d, a, t0);
    if (a.status !== 'ok') {
      const f = ToolCalls.failed(a, action) as { reason: string; text: string };
      return text(f.text, { reason: f.reason, asset: asset.id, method }, true);
    }
    const outputs = Object.fromEntries(def.outputs.map((x, i) => [x.name, a.outputs[i] ?? null]));
    return text(`${method} on ${asset.id} done (rule ${d.ruleId})${def.outputs.length > 0 ? `: ${JSON.stringify(outputs)}` : ''}.`, { asset: asset.id, method, outputs, rule: d.ruleId });
  }
}
