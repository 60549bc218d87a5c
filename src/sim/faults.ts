// Fault injection: what a harness, the HTTP API, the CLI or a scenario asks the simulated plant to
// get wrong. Owns the fault spec (one zod schema, so every surface validates the same way and
// names the bad field), the set of active faults, and the per-request verdict the Modbus server
// applies. Sensor and actuator faults are handed to the runtime. Never touches sockets.
import { z } from 'zod';
import type { ModbusTable } from '../core/command.js';
import { PlantgateError } from '../core/errors.js';
import type { Request } from '../../protocols/modbus/codec.js';
import { deriveSeed, Rng } from './random.js';
import { UnknownPointError, type PlantRuntime } from './runtime.js';

const unit = z.number().int().min(0).max(255);
const selector = {
  /** Only requests to this unit id (or to this PLC's unit id). */
  unit: unit.optional(),
  plc: z.string().min(1).optional(),
  /** Only these function codes. */
  fc: z.array(z.number().int().min(1).max(127)).min(1).optional(),
  /** Only requests touching one of these points ("name" or "plcId/name"). */
  points: z.array(z.string().min(1)).min(1).optional(),
  /** Expires after this many matching requests. */
  count: z.number().int().min(1).optional(),
  /** Applies to each matching request with this probability (seeded). */
  probability: z.number().min(0).max(1).optional(),
};
/** Every fault may end by itself after this much plant time (ms), like a count ends it after N requests. */
const lasting = { duration_ms: z.number().int().min(1).max(365 * 24 * 3_600_000).optional() };
const ms = z.number().min(0).max(600_000);

export const MALFORMATIONS = ['protocol-id', 'length', 'transaction-id', 'unit-id', 'function-code', 'byte-count', 'truncated', 'garbage'] as const;
export type Malformation = (typeof MALFORMATIONS)[number];

export const FaultSpecSchema = z.discriminatedUnion('kind', [
  /** Close the connection instead of answering (the answers before it are sent first). */
  z.strictObject({ kind: z.literal('disconnect'), ...selector, ...lasting }),
  /** Receive, never answer (the client times out). Nothing is executed. */
  z.strictObject({ kind: z.literal('timeout'), ...selector, ...lasting }),
  /**
   * Execute the request, then lose the answer: no answer (then: silence) or the connection closes
   * (then: disconnect). The write happened; the client cannot know it did.
   */
  z.strictObject({ kind: z.literal('lost-answer'), ...selector, ...lasting, then: z.enum(['silence', 'disconnect']).default('silence') }),
  /** Answer late: fixed ms, uniform min_ms..max_ms, normal mean_ms ± stddev_ms, or exponential mean_ms. */
  z
    .strictObject({
      kind: z.literal('latency'),
      ...selector,
      ...lasting,
      distribution: z.enum(['fixed', 'uniform', 'normal', 'exponential']).default('fixed'),
      ms: ms.optional(),
      min_ms: ms.optional(),
      max_ms: ms.optional(),
      mean_ms: ms.optional(),
      stddev_ms: ms.optional(),
    })
    .superRefine((f, ctx) => {
      const need: Record<string, readonly (keyof typeof f)[]> = {
        fixed: ['ms'],
        uniform: ['min_ms', 'max_ms'],
        normal: ['mean_ms', 'stddev_ms'],
        exponential: ['mean_ms'],
      };
      for (const k of need[f.distribution]) {
        if (f[k] === undefined) ctx.addIssue({ code: 'custom', path: [k], message: `is required for a ${f.distribution} latency` });
      }
      if (f.min_ms !== undefined && f.max_ms !== undefined && f.min_ms > f.max_ms) {
        ctx.addIssue({ code: 'custom', path: ['min_ms'], message: 'must not exceed max_ms' });
      }
    }),
  /** Answer with this exception code instead of executing (nothing is written). */
  z.strictObject({ kind: z.literal('exception'), ...selector, ...lasting, code: z.number().int().min(1).max(255) }),
  /** The unit does not answer at all (answer: none), or its gateway answers 0x0B (answer: exception). */
  z.strictObject({ kind: z.literal('offline'), ...lasting, unit: unit.optional(), plc: z.string().min(1).optional(), answer: z.enum(['none', 'exception']).default('none') }),
  /** Send a broken response frame instead of the real answer (the request is executed). */
  z.strictObject({ kind: z.literal('malformed'), ...selector, ...lasting, corruption: z.enum(MALFORMATIONS) }),
  /** The sensor reads a frozen value (given, or the current one) while the process goes on. */
  z.strictObject({ kind: z.literal('stuck'), ...lasting, point: z.string().min(1), value: z.number().finite().optional() }),
  /** The sensor reads truth + rate_per_s × seconds since the fault started. */
  z.strictObject({ kind: z.literal('drift'), ...lasting, point: z.string().min(1), rate_per_s: z.number().finite() }),
  /** The valve does not move, whatever it is commanded (point: its command or position). */
  z.strictObject({ kind: z.literal('valve-stuck'), ...lasting, point: z.string().min(1) }),
]);

export type FaultSpec = z.input<typeof FaultSpecSchema>;
type ParsedSpec = z.output<typeof FaultSpecSchema>;

/** A fault spec that cannot be applied: `field` names the offending field (e.g. "points[1]"). */
export class FaultSpecError extends PlantgateError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('PROTOCOL_VIOLATION', `${field}: ${message}`);
    this.field = field;
  }
}

export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out === '' ? '(body)' : out;
}

/** Validates a fault spec from any surface; throws FaultSpecError naming the first bad field. */
export function parseFaultSpec(input: unknown): ParsedSpec {
  const r = FaultSpecSchema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === 'unrecognized_keys') throw new FaultSpecError(fieldPath([...issue.path, issue.keys[0]]), 'unknown field');
  return (() => {
    throw new FaultSpecError(fieldPath(issue.path), issue.message);
  })();
}

interface Range {
  unitId: number;
  table: ModbusTable;
  start: number;
  end: number; // exclusive
}

export interface ActiveFault {
  id: string;
  spec: ParsedSpec;
  /** Requests it has been applied to. */
  hits: number;
  remaining: number | undefined;
  sinceMs: number;
  /** Plant time it ends by itself (duration_ms), if it does. */
  untilMs: number | undefined;
}

/** What the server does with one request. */
export interface Verdict {
  /** lost-silence / lost-disconnect: execute, then send nothing / close the connection. */
  action: 'answer' | 'exception' | 'no-answer' | 'disconnect' | 'malformed' | 'lost-silence' | 'lost-disconnect';
  code: number;
  corruption: Malformation | undefined;
  delayMs: number;
  faultId: string | undefined;
}

const REQUEST_KINDS = new Set(['disconnect', 'timeout', 'lost-answer', 'latency', 'exception', 'offline', 'malformed']);

interface Compiled {
  fault: ActiveFault;
  unitId: number | undefined;
  fcs: ReadonlySet<number> | undefined;
  ranges: Range[] | undefined;
}

/** Table ranges a request touches (both for FC 23); none for diagnostics and identification. */
export function requestRanges(req: Request): { table: ModbusTable; start: number; end: number }[] {
  switch (req.fc) {
    case 1:
      return [{ table: 'coil', start: req.address, end: req.address + req.quantity }];
    case 2:
      return [{ table: 'discrete', start: req.address, end: req.address + req.quantity }];
    case 3:
      return [{ table: 'holding', start: req.address, end: req.address + req.quantity }];
    case 4:
      return [{ table: 'input', start: req.address, end: req.address + req.quantity }];
    case 5:
      return [{ table: 'coil', start: req.address, end: req.address + 1 }];
    case 15:
      return [{ table: 'coil', start: req.address, end: req.address + req.quantity }];
    case 6:
    case 22:
      return [{ table: 'holding', start: req.address, end: req.address + 1 }];
    case 16:
      return [{ table: 'holding', start: req.address, end: req.address + req.quantity }];
    case 23:
      return [
        { table: 'holding', start: req.readAddress, end: req.readAddress + req.readQuantity },
        { table: 'holding', start: req.writeAddress, end: req.writeAddress + req.writeQuantity },
      ];
    default:
      return [];
  }
}

export class FaultSet {
  private readonly active = new Map<string, Compiled>();
  private compiled: Compiled[] = [];
  private nextId = 1;
  private readonly rng: Rng;
  private readonly listeners = new Set<(event: 'added' | 'removed', fault: ActiveFault) => void>();

  /** Faults with a duration still active: the tick listener looks only while there are some. */
  private timed = 0;

  constructor(private readonly runtime: PlantRuntime) {
    this.rng = new Rng(deriveSeed(runtime.seed, 1));
    runtime.onTick((now) => {
      if (this.timed > 0) this.expire(now);
    });
  }

  /** Removes every fault whose duration has run out by plant time `nowMs`. */
  expire(nowMs: number): void {
    if (this.timed === 0) return;
    for (const c of [...this.active.values()]) {
      if (c.fault.untilMs !== undefined && c.fault.untilMs <= nowMs) this.remove(c.fault.id);
    }
  }

  /** No request-level fault is active: the server's fast path. */
  get empty(): boolean {
    return this.compiled.length === 0;
  }

  on(listener: (event: 'added' | 'removed', fault: ActiveFault) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): ActiveFault[] {
    this.expire(this.runtime.now());
    return [...this.active.values()].map((c) => c.fault);
  }

  /** Validates and activates a fault; throws FaultSpecError naming the bad field. */
  add(input: unknown): ActiveFault {
    const spec = parseFaultSpec(input);
    const fault: ActiveFault = {
      id: `f${this.nextId}`,
      spec,
      hits: 0,
      remaining: 'count' in spec ? spec.count : undefined,
      sinceMs: this.runtime.now(),
      untilMs: spec.duration_ms === undefined ? undefined : this.runtime.now() + spec.duration_ms,
    };
    const c: Compiled = { fault, unitId: this.unitOf(spec), fcs: undefined, ranges: undefined };
    if ('fc' in spec && spec.fc !== undefined) c.fcs = new Set(spec.fc);
    if ('points' in spec && spec.points !== undefined) c.ranges = this.ranges(spec.points, c.unitId);
    if (spec.kind === 'offline' && c.unitId === undefined) throw new FaultSpecError('unit', 'offline needs unit or plc');
    this.applyToProcess(spec, fault.sinceMs);
    this.nextId++;
    this.active.set(fault.id, c);
    if (fault.untilMs !== undefined) this.timed++;
    if (REQUEST_KINDS.has(spec.kind)) this.compiled = [...this.compiled, c];
    for (const l of this.listeners) l('added', fault);
    return fault;
  }

  remove(id: string): boolean {
    const c = this.active.get(id);
    if (c === undefined) return false;
    this.active.delete(id);
    if (c.fault.untilMs !== undefined) this.timed--;
    this.compiled = this.compiled.filter((x) => x !== c);
    const spec = c.fault.spec;
    if (spec.kind === 'stuck' || spec.kind === 'drift') this.runtime.clearSensor(spec.point, spec.kind);
    else if (spec.kind === 'valve-stuck') {
      const v = this.runtime.valve(spec.point);
      if (v !== undefined) v.stuck = false;
    }
    for (const l of this.listeners) l('removed', c.fault);
    return true;
  }

  clear(): number {
    const ids = [...this.active.keys()];
    for (const id of ids) this.remove(id);
    return ids.length;
  }

  /**
   * The verdict for one request: the first matching fault that replaces the answer (offline,
   * disconnect, timeout, exception, malformed, in the order they were added), plus the delay of
   * every matching latency fault. `req` is undefined for a request the codec refused.
   */
  match(unitId: number, fc: number, req: Request | undefined): Verdict {
    const v: Verdict = { action: 'answer', code: 0, corruption: undefined, delayMs: 0, faultId: undefined };
    this.expire(this.runtime.now());
    let expired: string[] | undefined;
    for (const c of this.compiled) {
      if (!this.matches(c, unitId, fc, req)) continue;
      const spec = c.fault.spec;
      if (spec.kind === 'latency') {
        if (!this.chance(spec)) continue;
        v.delayMs += this.drawLatency(spec);
      } else if (v.action === 'answer') {
        if (!this.chance(spec)) continue;
        v.faultId = c.fault.id;
        switch (spec.kind) {
          case 'offline':
            if (spec.answer === 'exception') {
              v.action = 'exception';
              v.code = 0x0b;
            } else v.action = 'no-answer';
            break;
          case 'disconnect':
            v.action = 'disconnect';
            break;
          case 'timeout':
            v.action = 'no-answer';
            break;
          case 'lost-answer':
            v.action = spec.then === 'disconnect' ? 'lost-disconnect' : 'lost-silence';
            break;
          case 'exception':
            v.action = 'exception';
            v.code = spec.code;
            break;
          case 'malformed':
            v.action = 'malformed';
            v.corruption = spec.corruption;
            break;
        }
      } else continue;
      c.fault.hits++;
      if (c.fault.remaining !== undefined && --c.fault.remaining === 0) (expired ??= []).push(c.fault.id);
    }
    if (expired !== undefined) for (const id of expired) this.remove(id);
    return v;
  }

  /**
   * Whether an offline fault holds this unit now. The OPC UA face asks it per read, so a PLC taken
   * offline stops answering on both of its faces (counts and probabilities are Modbus request
   * semantics and are not consumed here).
   */
  offline(unitId: number): boolean {
    this.expire(this.runtime.now());
    for (const c of this.compiled) if (c.fault.spec.kind === 'offline' && c.unitId === unitId) return true;
    return false;
  }

  private matches(c: Compiled, unitId: number, fc: number, req: Request | undefined): boolean {
    if (c.unitId !== undefined && c.unitId !== unitId) return false;
    if (c.fcs !== undefined && !c.fcs.has(fc)) return false;
    if (c.ranges === undefined) return true;
    if (req === undefined) return false;
    for (const r of requestRanges(req)) {
      for (const p of c.ranges) {
        if (p.unitId === unitId && p.table === r.table && r.start < p.end && p.start < r.end) return true;
      }
    }
    return false;
  }

  private chance(spec: ParsedSpec): boolean {
    const p = 'probability' in spec ? spec.probability : undefined;
    return p === undefined || this.rng.next() < p;
  }

  private drawLatency(spec: Extract<ParsedSpec, { kind: 'latency' }>): number {
    switch (spec.distribution) {
      case 'fixed':
        return spec.ms ?? 0;
      case 'uniform':
        return (spec.min_ms ?? 0) + this.rng.next() * ((spec.max_ms ?? 0) - (spec.min_ms ?? 0));
      case 'normal':
        return Math.max(0, (spec.mean_ms ?? 0) + this.rng.gaussian() * (spec.stddev_ms ?? 0));
      case 'exponential':
        return -Math.log(1 - this.rng.next()) * (spec.mean_ms ?? 0);
    }
  }

  private unitOf(spec: ParsedSpec): number | undefined {
    const s = spec as { unit?: number; plc?: string };
    if (s.plc !== undefined) {
      const plc = this.runtime.plant.plcs.find((p) => p.id === s.plc);
      if (plc === undefined) throw new FaultSpecError('plc', `plant ${this.runtime.plant.name} has no PLC ${s.plc}`);
      if (s.unit !== undefined && s.unit !== plc.unitId) throw new FaultSpecError('unit', `PLC ${plc.id} is unit ${plc.unitId}, not ${s.unit}`);
      return plc.unitId;
    }
    return s.unit;
  }

  private ranges(points: readonly string[], unitId: number | undefined): Range[] {
    return points.map((name, i) => {
      const r = this.resolve(name, `points[${i}]`);
      if (unitId !== undefined && r.plc.unitId !== unitId) {
        throw new FaultSpecError(`points[${i}]`, `${name} belongs to PLC ${r.plc.id} (unit ${r.plc.unitId}), not unit ${unitId}`);
      }
      return { unitId: r.plc.unitId, table: r.point.table, start: r.point.address, end: r.point.address + r.point.words };
    });
  }

  private resolve(name: string, field: string): ReturnType<PlantRuntime['resolve']> {
    try {
      return this.runtime.resolve(name);
    } catch (err) {
      if (err instanceof UnknownPointError) throw new FaultSpecError(field, err.message);
      throw err;
    }
  }

  private applyToProcess(spec: ParsedSpec, nowMs: number): void {
    switch (spec.kind) {
      case 'stuck': {
        const r = this.resolve(spec.point, 'point');
        const value = spec.value ?? r.tables.read(r.point);
        this.runtime.setSensor(spec.point, { stuck: value });
        return;
      }
      case 'drift':
        this.resolve(spec.point, 'point');
        this.runtime.setSensor(spec.point, { drift: { ratePerS: spec.rate_per_s, sinceMs: nowMs } });
        return;
      case 'valve-stuck': {
        this.resolve(spec.point, 'point');
        const v = this.runtime.valve(spec.point);
        if (v === undefined) throw new FaultSpecError('point', `${spec.point} is not the command or position of a valve (a valve block, or the water-tank model's valve1.open)`);
        v.stuck = true;
        return;
      }
      default:
    }
  }
}

/** Breaks an encoded response ADU the way `corruption` says (a fresh buffer). */
export function corruptFrame(adu: Buffer, corruption: Malformation, rng: () => number = Math.random): Buffer {
  const out = Buffer.from(adu);
  switch (corruption) {
    case 'protocol-id':
      out.writeUInt16BE(0x0001, 2);
      return out;
    case 'length':
      // Declares one byte fewer than sent: the client misreads the stream from here on.
      out.writeUInt16BE(out.readUInt16BE(4) - 1, 4);
      return out;
    case 'transaction-id':
      out.writeUInt16BE(out.readUInt16BE(0) ^ 0x5a5a, 0);
      return out;
    case 'unit-id':
      out[6] = (out[6] + 1) & 0xff;
      return out;
    case 'function-code':
      // Another valid public function code than the one asked, exception bit kept.
      out[7] = (out[7] & 0x80) | ((out[7] & 0x7f) === 3 ? 4 : 3);
      return out;
    case 'byte-count':
      if (out.length > 8) out[8] = (out[8] + 2) & 0xff;
      return out;
    case 'truncated': {
      // A consistent MBAP header around a PDU one byte short of what it announces.
      const short = out.subarray(0, out.length - 1);
      short.writeUInt16BE(short.length - 6, 4);
      return short;
    }
    case 'garbage': {
      const g = Buffer.allocUnsafe(9);
      for (let i = 0; i < g.length; i++) g[i] = Math.floor(rng() * 256);
      return g;
    }
  }
}
