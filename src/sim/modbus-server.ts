// Serves a simulated plant over Modbus/TCP (plain TCP on node:net), on the project's own codec.
// It is the baseline the gateway is benchmarked against, so per request it allocates only what
// the codec needs and writes all answers of one read burst in one corked flush, in request order.
// A framing error closes that connection only. Never decides policy: every request is answered
// as a real PLC with a fixed memory map would — unless a fault (faults.ts) says otherwise — and
// recorded in the served-request log (request-log.ts).
import net from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/log.js';
import { ModbusException } from '../core/reasons.js';
import {
  FrameDecoder,
  ModbusFrameError,
  decodeRequest,
  encodeFrame,
  encodeResponse,
  exceptionPdu,
  type Frame,
  type Request,
} from '../../protocols/modbus/codec.js';
import { corruptFrame, FaultSet, requestRanges, type ActiveFault, type FaultSpec } from './faults.js';
import { DiagnosticCounters, handleRequest } from './modbus-handler.js';
import { loadPlant, type Plant, type PointDef } from '../assets/plant.js';
import { deriveSeed, Rng } from './random.js';
import { DEFAULT_LOG_CAPACITY, RequestLog, type ServedRequest } from './request-log.js';
import { PlantRuntime, type PlantSnapshot } from './runtime.js';
import type { PlcTables } from './tables.js';

export interface PointValue {
  /** "plcId/name" */
  id: string;
  plc: string;
  unitId: number;
  name: string;
  table: PointDef['table'];
  address: number;
  type: PointDef['type'];
  /** Engineering unit, null when the point has none (the key is always there in JSON). */
  unit: string | null;
  /** As a client reads it: a number, or the text of a string point. */
  value: number | string;
  /** The process's own value when a sensor fault or noise differs from it. */
  trueValue: number | string;
  /** A holding register or coil clients may read but not write. */
  readOnly: boolean;
}

export interface PlcEndpoint {
  plc: string;
  unitId: number;
  host: string;
  port: number;
  /** modbus+tcp://host:port/unitId */
  url: string;
}

export interface SimHandle {
  port: number;
  host: string;
  plant: Plant;
  clock: Clock;
  /** The running plant (tables, process, sensors), for harnesses that need more than this handle. */
  runtime: PlantRuntime;
  /** One per PLC: where a client reaches it. */
  endpoints: PlcEndpoint[];
  /** Engineering value of a point ("name" or "plcId/name"), as a client reads it. */
  read(pointName: string): number;
  /** The process's value behind a sensor fault or noise. */
  readTrue(pointName: string): number;
  /** Sets a point in engineering units, or the text of a string point (any table, so a harness can force inputs). */
  write(pointName: string, value: number | string): void;
  /** Every point with its value. */
  points(): PointValue[];
  /** Advances a ManualClock by ms and runs the process model up to it. */
  step(ms: number): void;
  /** Activates a fault (see FaultSpecSchema); throws FaultSpecError naming the bad field. */
  inject(spec: FaultSpec): ActiveFault;
  clearFault(id: string): boolean;
  /** Removes every fault; returns how many. */
  clearFaults(): number;
  faults(): ActiveFault[];
  /** The active faults themselves (the OPC UA face of the same PLCs consults them). */
  faultSet: FaultSet;
  /** Closes every client connection now (the listener stays up); returns how many. */
  dropConnections(): number;
  /** The served-request log: what actually reached the PLC, oldest first. */
  served(afterSeq?: number): ServedRequest[];
  /** Called with each request as it is served; returns the unsubscribe function. */
  onServed(listener: (r: ServedRequest) => void): () => void;
  /** Forgets the served-request log so far (sequence numbers keep counting). */
  clearServed(): void;
  /** Closes the listener and every connection (the PLC becomes unreachable); the model keeps state. */
  stopModbus(): Promise<void>;
  /**
   * Listens again on the same host and port after stopModbus (a PLC back from a reboot: FC 8's
   * counters start from 0, the process keeps its state). Rejects if the port was taken meanwhile.
   */
  startModbus(): Promise<void>;
  /** Connections open now, refused at the connection limit, and closed for idleness since start. */
  connections(): ConnectionStats;
  /** The last n entries of the served-request log, oldest first. */
  tail(n: number): ServedRequest[];
  /** The process's state now (memory, models, blocks, noise), to restore between test cases. */
  snapshot(): PlantSnapshot;
  /** Puts the process back to a snapshot; time goes on from now. Faults and logs are left alone. */
  restore(snapshot: PlantSnapshot): void;
  /** Back to the state the plant started in (restore of the snapshot taken at start). */
  reset(): void;
  close(): Promise<void>;
  /** Modbus requests received since start (exceptions and unanswered included, framing errors not). */
  requestCount(): number;
}

export interface SimulatorOptions {
  plant: Plant | string;
  host?: string;
  /** 0 = ephemeral */
  port?: number;
  clock?: Clock;
  /** Timer period when the clock is not manual; the model itself steps in 100 ms of clock time. */
  tickMs?: number;
  /** Seed for noise, fault probabilities and latency draws (default 1). */
  seed?: number;
  /** Served-request log size (entries kept); 0 keeps none (subscribers still see every entry). */
  logCapacity?: number;
  /** Connections the PLC accepts at once (real ones take 4..16); beyond it a new one is closed at once. Default unbounded. */
  maxConnections?: number;
  /** A connection without a request for this long (wall ms) is closed, as PLCs do. Default never. */
  idleTimeoutMs?: number;
  logger?: Logger;
}

export interface ConnectionStats {
  open: number;
  /** Refused because maxConnections were open. */
  refused: number;
  /** Closed after idleTimeoutMs without a request. */
  idleClosed: number;
}

/** One client connection: answers leave in request order even when a fault delays some. */
interface Conn {
  socket: net.Socket;
  peer: string;
  /** Answers held back by a latency fault, in request order, each with the time it is due. */
  delayed: Array<{ adu: Buffer; due: number }>;
  timer: NodeJS.Timeout | undefined;
  /** No further request is read or answered; the connection ends once its answers have left. */
  closing: boolean;
}

/** How long a closing connection may take to hand its last answers to a peer that does not read. */
const FLUSH_BEFORE_CLOSE_MS = 5000;

export class ModbusServer {
  /** The listener; a new one each listen(), so a stopped PLC comes back on the same port. */
  private server: net.Server | undefined;
  private readonly conns = new Set<Conn>();
  private requests = 0;
  private readonly stats: ConnectionStats = { open: 0, refused: 0, idleClosed: 0 };
  private readonly garbage: Rng;
  /** FC 8 counters by unit id (only units a PLC answers). */
  private diag: (DiagnosticCounters | undefined)[] = [];

  constructor(
    private readonly runtime: PlantRuntime,
    private readonly logger: Logger,
    readonly faults: FaultSet = new FaultSet(runtime),
    readonly log: RequestLog = new RequestLog(runtime),
    private readonly limits: { maxConnections?: number; idleTimeoutMs?: number } = {},
  ) {
    this.garbage = new Rng(deriveSeed(runtime.seed, 2));
    this.resetCounters();
  }

  /** FC 8's counters back to 0, as after a device restart. */
  resetCounters(): void {
    this.diag = this.runtime.byUnit.map((t) => (t === undefined ? undefined : new DiagnosticCounters()));
    // A single-PLC plant answers 0xFF as itself: same device, same counters.
    this.runtime.byUnit.forEach((t, unit) => {
      if (t !== undefined) this.diag[unit] = this.diag[t.plc.unitId];
    });
  }

  listen(host: string, port: number): Promise<number> {
    if (this.server?.listening === true) return Promise.reject(new Error('the Modbus listener is already running'));
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.logger.error({ err: err.message }, 'modbus listener error'));
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  get listening(): boolean {
    return this.server?.listening === true;
  }

  requestCount(): number {
    return this.requests;
  }

  connectionStats(): ConnectionStats {
    return { ...this.stats, open: this.conns.size };
  }

  dropConnections(): number {
    const n = this.conns.size;
    for (const c of [...this.conns]) this.destroy(c);
    return n;
  }

  close(): Promise<void> {
    this.dropConnections();
    const server = this.server;
    if (server === undefined || !server.listening) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  /**
   * Ends a connection the way a PLC does: every answer already produced (delayed ones included)
   * leaves first, then FIN. The stream cannot be trusted past this point, so nothing more is read.
   */
  private finish(c: Conn): void {
    if (c.closing) return;
    c.closing = true;
    c.socket.pause();
    if (c.delayed.length === 0) this.endAfterFlush(c);
  }

  private endAfterFlush(c: Conn): void {
    const timer = setTimeout(() => this.destroy(c), FLUSH_BEFORE_CLOSE_MS);
    timer.unref();
    // end() uncorks: the answers of the burst in progress leave before the FIN.
    c.socket.end(() => {
      clearTimeout(timer);
      this.destroy(c);
    });
  }

  private destroy(c: Conn): void {
    if (c.timer !== undefined) clearTimeout(c.timer);
    c.timer = undefined;
    c.delayed.length = 0;
    c.socket.destroy();
    this.conns.delete(c);
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const max = this.limits.maxConnections;
    if (max !== undefined && this.conns.size >= max) {
      // Like a PLC whose connection slots are taken: the TCP connection opens and is closed at once.
      this.stats.refused++;
      this.logger.debug({ peer, max }, 'connection limit reached; closing the new connection');
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const c: Conn = { socket, peer, delayed: [], timer: undefined, closing: false };
    this.conns.add(c);
    this.logger.debug({ peer: c.peer }, 'modbus client connected');
    if (this.limits.idleTimeoutMs !== undefined) {
      socket.setTimeout(this.limits.idleTimeoutMs, () => {
        this.stats.idleClosed++;
        this.logger.debug({ peer: c.peer }, 'idle connection closed');
        this.finish(c);
      });
    }
    const decoder = new FrameDecoder(
      (frame) => this.answer(c, frame),
      (err: ModbusFrameError) => {
        this.logger.debug({ peer: c.peer, code: err.code, err: err.message }, 'malformed frame; closing connection');
        this.log.record(c.peer, 0, 0, 0, undefined, 'framing-error', undefined, undefined, { error: { code: err.code, message: err.message } });
        this.finish(c);
      },
    );
    socket.on('data', (chunk: Buffer) => {
      socket.cork();
      decoder.push(chunk);
      socket.uncork();
      // A client that pipelines without reading answers must not grow our write buffer forever.
      if (socket.writableNeedDrain && !socket.isPaused()) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
    });
    socket.on('error', (err) => this.logger.debug({ peer: c.peer, err: err.message }, 'modbus socket error'));
    socket.on('close', () => {
      this.destroy(c);
      this.logger.debug({ peer: c.peer }, 'modbus client disconnected');
    });
  }

  private answer(c: Conn, frame: Frame): void {
    if (c.closing || c.socket.destroyed) return;
    const fc = frame.functionCode;
    // Function codes 0 and >= 0x80 cannot be answered with an exception (the exception bit is
    // the high bit): no PLC can make sense of them, so treat them like a framing error.
    if (fc === 0 || fc >= 0x80) {
      this.logger.debug({ fc }, 'request with an impossible function code; closing connection');
      const message = `function code ${fc} (0x${fc.toString(16).padStart(2, '0')}) is not a request`;
      this.log.record(c.peer, frame.transactionId, frame.unitId, fc, undefined, 'framing-error', undefined, undefined, { error: { code: 'BAD_PDU', message } });
      this.finish(c);
      return;
    }
    this.requests++;
    const unitId = frame.unitId;
    let req: Request | undefined;
    let refused = 0;
    try {
      req = decodeRequest(frame.pdu);
    } catch (err) {
      // A well-framed request with a bad PDU: a PLC answers it with the exception the spec
      // prescribes (0x01 unknown function, 0x02 range past 65535, 0x03 bad quantity or value)
      // and keeps the connection.
      refused = err instanceof ModbusFrameError ? err.exceptionCode : ModbusException.SERVER_DEVICE_FAILURE;
    }
    const v = this.faults.empty ? undefined : this.faults.match(unitId, fc, req);
    const tables = this.runtime.byUnit[unitId];
    const diag = this.diag[unitId];
    if (diag !== undefined) diag.server++;
    const log = this.log;
    const tid = frame.transactionId;
    if (v !== undefined && (v.action === 'disconnect' || v.action === 'no-answer')) {
      if (diag !== undefined) diag.noResponse++;
      log.record(c.peer, tid, unitId, fc, req, v.action === 'disconnect' ? 'disconnected' : 'no-answer', undefined, v.faultId);
      if (v.action === 'disconnect') this.finish(c);
      return;
    }
    let pdu: Buffer;
    let exception: number | undefined;
    let changed = false;
    if (v !== undefined && v.action === 'exception') {
      exception = v.code;
      pdu = exceptionPdu(fc, exception);
    } else if (tables === undefined) {
      if (this.runtime.plant.unknownUnits === 'ignore') {
        log.record(c.peer, tid, unitId, fc, req, 'no-answer', undefined, undefined);
        return;
      }
      exception = ModbusException.GATEWAY_TARGET_FAILED_TO_RESPOND;
      pdu = exceptionPdu(fc, exception);
    } else if (req === undefined) {
      exception = refused;
      pdu = exceptionPdu(fc, exception);
    } else {
      try {
        const before = req.fc in WRITTEN ? writtenWords(tables, req) : undefined;
        const res = handleRequest(tables, req, diag, this.requests);
        if ('exception' in res) exception = res.exception;
        else if (before !== undefined) changed = !sameWords(before, writtenWords(tables, req));
        pdu = encodeResponse(res);
      } catch (err) {
        this.logger.error({ err: (err as Error).message, fc }, 'simulator failed a request');
        exception = ModbusException.SERVER_DEVICE_FAILURE;
        pdu = exceptionPdu(fc, exception);
      }
    }
    let adu: Buffer;
    try {
      adu = encodeFrame(tid, unitId, pdu);
    } catch (err) {
      // Never let one request take the process down; this connection is no longer trustworthy.
      this.logger.error({ err: (err as Error).message, fc }, 'simulator could not answer; closing connection');
      log.record(c.peer, tid, unitId, fc, req, 'disconnected', undefined, undefined);
      this.finish(c);
      return;
    }
    if (exception !== undefined && diag !== undefined) {
      diag.exceptions++;
      if (exception === ModbusException.SERVER_DEVICE_BUSY) diag.busy++;
    }
    if (v !== undefined && (v.action === 'lost-silence' || v.action === 'lost-disconnect')) {
      // Executed above; the answer never leaves (silence), or the connection goes instead of it.
      if (diag !== undefined) diag.noResponse++;
      log.record(c.peer, tid, unitId, fc, req, exception !== undefined ? 'exception' : 'answer-lost', exception, v.faultId, { changed });
      if (v.action === 'lost-disconnect') this.finish(c);
      return;
    }
    const malformed = v !== undefined && v.action === 'malformed' && v.corruption !== undefined;
    if (malformed) adu = corruptFrame(adu, v.corruption!, () => this.garbage.next());
    log.record(c.peer, tid, unitId, fc, req, malformed ? 'malformed' : exception !== undefined ? 'exception' : 'ok', exception, v?.faultId, changed ? { changed } : undefined);
    this.send(c, adu, v?.delayMs ?? 0);
  }

  private send(c: Conn, adu: Buffer, delayMs: number): void {
    if (delayMs <= 0 && c.delayed.length === 0) {
      c.socket.write(adu);
      return;
    }
    // Latency is network/PLC time, so it runs on the wall clock, not the plant clock. One queue and
    // one timer per connection: answers leave in request order, never overtaking a delayed one.
    const now = Date.now();
    const last = c.delayed.length > 0 ? c.delayed[c.delayed.length - 1].due : 0;
    c.delayed.push({ adu, due: Math.max(now + delayMs, last) });
    if (c.timer === undefined) this.armDelayed(c);
  }

  private armDelayed(c: Conn): void {
    const head = c.delayed[0];
    if (head === undefined) return;
    c.timer = setTimeout(() => {
      c.timer = undefined;
      const now = Date.now();
      while (c.delayed.length > 0 && c.delayed[0].due <= now) {
        const { adu } = c.delayed.shift()!;
        if (!c.socket.destroyed) c.socket.write(adu);
      }
      if (c.closing && c.delayed.length === 0) this.endAfterFlush(c);
      else this.armDelayed(c);
    }, Math.max(0, head.due - Date.now()));
  }
}

/** Function codes that write, and the table they write. */
const WRITTEN: Record<number, 'coil' | 'holding'> = { 5: 'coil', 15: 'coil', 6: 'holding', 16: 'holding', 22: 'holding', 23: 'holding' };

/** A copy of what a write request addresses (its written range), to tell whether it changed anything. */
function writtenWords(t: PlcTables, req: Request): Uint16Array | Uint8Array {
  const ranges = requestRanges(req);
  const r = ranges[ranges.length - 1]!;
  const start = Math.min(r.start, 0xffff);
  const end = Math.min(r.end, 0x10000);
  return r.table === 'coil' ? t.coils.slice(start, end) : t.holding.slice(start, end);
}

function sameWords(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function pointValues(runtime: PlantRuntime): PointValue[] {
  const out: PointValue[] = [];
  runtime.plant.plcs.forEach((plc, i) => {
    const t = runtime.tables[i];
    for (const p of plc.points) {
      const value = p.type === 'string' ? t.readText(p) : t.read(p);
      out.push({
        id: `${plc.id}/${p.name}`,
        plc: plc.id,
        unitId: plc.unitId,
        name: p.name,
        table: p.table,
        address: p.address,
        type: p.type,
        unit: p.unit ?? null,
        value,
        trueValue: runtime.sensors.truth(p) ?? value,
        readOnly: p.readOnly === true,
      });
    }
  });
  return out;
}

/** Loads (if given a path) and runs a plant, serving it over Modbus/TCP. */
export async function startSimulator(opts: SimulatorOptions): Promise<SimHandle> {
  const plant = typeof opts.plant === 'string' ? await loadPlant(opts.plant) : opts.plant;
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? silentLogger;
  const host = opts.host ?? '127.0.0.1';
  const runtime = new PlantRuntime(plant, clock, { tickMs: opts.tickMs, seed: opts.seed });
  const faults = new FaultSet(runtime);
  const log = new RequestLog(runtime, opts.logCapacity ?? DEFAULT_LOG_CAPACITY);
  for (const [name, v] of [['maxConnections', opts.maxConnections], ['idleTimeoutMs', opts.idleTimeoutMs]] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) {
      runtime.stop();
      throw new RangeError(`${name} must be an integer of at least 1, not ${v}`);
    }
  }
  const server = new ModbusServer(runtime, logger, faults, log, { maxConnections: opts.maxConnections, idleTimeoutMs: opts.idleTimeoutMs });
  let port: number;
  try {
    port = await server.listen(host, opts.port ?? 0);
  } catch (err) {
    runtime.stop();
    throw err;
  }
  logger.debug({ plant: plant.name, host, port }, 'simulator serving Modbus/TCP');
  const endpoints = plant.plcs.map((plc) => ({ plc: plc.id, unitId: plc.unitId, host, port, url: `modbus+tcp://${host}:${port}/${plc.unitId}` }));
  return {
    port,
    host,
    plant,
    clock,
    runtime,
    endpoints,
    read: (name) => runtime.read(name),
    readTrue: (name) => runtime.readTrue(name),
    write: (name, value) => runtime.write(name, value),
    points: () => pointValues(runtime),
    step: (ms) => runtime.step(ms),
    inject: (spec) => {
      const f = faults.add(spec);
      logger.info({ fault: f.id, spec: f.spec }, 'fault injected');
      return f;
    },
    clearFault: (id) => faults.remove(id),
    clearFaults: () => faults.clear(),
    faults: () => faults.list(),
    faultSet: faults,
    dropConnections: () => server.dropConnections(),
    served: (afterSeq) => log.entries(afterSeq),
    onServed: (listener) => log.subscribe(listener),
    clearServed: () => log.clear(),
    stopModbus: () => server.close(),
    startModbus: async () => {
      await server.listen(host, port);
      server.resetCounters();
      logger.info({ host, port }, 'simulator serving Modbus/TCP again');
    },
    connections: () => server.connectionStats(),
    tail: (n) => log.tail(n),
    snapshot: () => runtime.snapshot(),
    restore: (s) => runtime.restore(s),
    reset: () => runtime.reset(),
    close: async () => {
      runtime.stop();
      await server.close();
    },
    requestCount: () => server.requestCount(),
  };
}

