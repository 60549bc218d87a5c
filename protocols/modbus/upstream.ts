// Connections from the gateway to one PLC endpoint: a small pool, transaction-id remapping,
// per-request timeouts, reconnect with backoff. It owns sockets and timers; it never decides
// anything. A response is only handed back after the codec validated it against the request, so
// a malformed or mismatched PLC answer never reaches an agent.
import net from 'node:net';
import type { Logger } from '../../src/core/log.js';
import { silentLogger } from '../../src/core/log.js';
import { FrameDecoder, encodeFrame, validateResponse, type Frame, type Request } from './codec.js';

/**
 * - response: a PLC answer validated against its request (possibly a Modbus exception);
 * - timeout: the request reached the PLC but no valid answer came back in time (no answer, or a
 *   malformed or mismatched one): the agent gets 0x0B;
 * - unavailable: the request could not be sent (no connection, pool saturated) or its connection
 *   dropped: the agent gets 0x0A.
 */
export type UpstreamResult =
  | { kind: 'response'; pdu: Buffer; latencyUs: number }
  | { kind: 'timeout'; latencyUs: number }
  | { kind: 'unavailable'; latencyUs: number };

export type UpstreamCallback = (result: UpstreamResult) => void;

export interface UpstreamOptions {
  host: string;
  port: number;
  /** Connections kept open to the PLC; many agents share them. PLCs accept few (often 4–16). */
  connections?: number;
  timeoutMs?: number;
  /** Bound on requests in flight per connection; beyond it the request fails as unavailable. */
  maxInFlight?: number;
  reconnect?: { minMs: number; maxMs: number };
  logger?: Logger;
}

interface Pending {
  tid: number;
  request: Request;
  callback: UpstreamCallback;
  startedMs: number;
  deadlineMs: number;
}

const MAX_TID = 0xffff;

class UpstreamConnection {
  private socket: net.Socket | undefined;
  private connected = false;
  private closed = false;
  private nextTid = 1;
  /**
   * Requests in flight, in the slot `tid & slotMask` of the transaction id they were sent with (an
   * entry keeps its full id, so a late answer to a timed-out request never matches the newer one in
   * its slot). Ids are handed out in send order over the whole 16-bit space, so the timeout sweep
   * walks from the oldest and stops at the first live entry. A small array rather than a Map: a Map
   * that takes and drops an entry per request keeps reallocating its table, the largest source of
   * garbage the old generation saw under load; and not 65,536 slots, which is 512 kB per connection.
   */
  private readonly slots: Array<Pending | undefined>;
  private readonly slotMask: number;
  private inFlightCount = 0;
  /** Where the timeout sweep starts: no live request has an id between it and nextTid's past. */
  private oldestTid = 1;
  private backoffMs: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readyWaiters: Array<() => void> = [];
  private corked = false;
  private readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket?.uncork();
  };
  reconnects = 0;

  constructor(
    private readonly opts: Required<Omit<UpstreamOptions, 'logger'>> & { logger: Logger },
    private readonly index: number,
  ) {
    this.backoffMs = opts.reconnect.minMs;
    // More slots than requests may be in flight, so a free one is always a few ids away.
    let size = 64;
    while (size < 2 * opts.maxInFlight && size < MAX_TID + 1) size *= 2;
    this.slots = new Array<Pending | undefined>(size).fill(undefined);
    this.slotMask = size - 1;
    this.connect();
  }

  get isUp(): boolean {
    return this.connected;
  }

  whenUp(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private connect(): void {
    if (this.closed) return;
    const decoder = new FrameDecoder(
      (frame) => this.onFrame(frame),
      (err) => {
        this.opts.logger.warn({ upstream: this.label(), code: err.code }, 'malformed frame from PLC; reconnecting');
        this.abandon(socket);
      },
    );
    // Answers are read into one buffer per connection (no chunk allocated per read, no stream
    // machinery): the decoder copies any frame that straddles two reads, and onFrame copies each
    // answer's PDU before handing it on, so nothing keeps a view of this buffer past the callback.
    const socket = net.connect({
      host: this.opts.host,
      port: this.opts.port,
      noDelay: true,
      onread: {
        buffer: this.readBuffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          decoder.push((buf as Buffer).subarray(0, n));
          return true;
        },
      },
    });
    this.socket = socket;
    socket.on('connect', () => {
      this.connected = true;
      this.backoffMs = this.opts.reconnect.minMs;
      this.opts.logger.info({ upstream: this.label() }, 'upstream connected');
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w();
    });
    socket.on('error', (err) => {
      this.opts.logger.debug({ upstream: this.label(), err: err.message }, 'upstream socket error');
    });
    socket.on('close', () => this.onClose(socket));
  }

  private onClose(socket: net.Socket): void {
    if (this.socket !== socket) return;
    const wasConnected = this.connected;
    this.connected = false;
    this.socket = undefined;
    this.failAll('unavailable');
    if (this.closed) return;
    if (wasConnected) this.opts.logger.warn({ upstream: this.label() }, 'upstream connection lost');
    this.reconnects++;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.reconnect.maxMs);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer.unref();
  }

  private onFrame(frame: Frame): void {
    const entry = this.pendingFor(frame.transactionId);
    // A late answer to a request that already timed out, or one we never sent: drop it.
    if (entry === undefined) return;
    this.take(frame.transactionId);
    const latencyUs = elapsedUs(entry.startedMs);
    try {
      validateResponse(entry.request, frame.pdu);
    } catch (err) {
      this.opts.logger.warn({ upstream: this.label(), err: (err as Error).message }, 'invalid response from PLC; reconnecting');
      entry.callback({ kind: 'timeout', latencyUs });
      if (this.socket !== undefined) this.abandon(this.socket);
      return;
    }
    // The frame's pdu is a view into the socket buffer: copy so the caller owns its bytes.
    entry.callback({ kind: 'response', pdu: Buffer.from(frame.pdu), latencyUs });
  }

  /**
   * A PLC that sent garbage cannot be trusted to have answered anything else on this stream: every
   * request still in flight failed to get a valid answer (0x0B, not 0x0A: it did reach the PLC),
   * and the connection is replaced.
   */
  private abandon(socket: net.Socket): void {
    const entries = this.takeAll();
    for (const entry of entries) entry.callback({ kind: 'timeout', latencyUs: elapsedUs(entry.startedMs) });
    socket.destroy();
  }

  send(unitId: number, pdu: Buffer, request: Request, callback: UpstreamCallback, nowMs: number): void {
    const socket = this.socket;
    if (!this.connected || socket === undefined || this.inFlightCount >= this.opts.maxInFlight) {
      callback({ kind: 'unavailable', latencyUs: 0 });
      return;
    }
    const tid = this.allocateTid();
    this.slots[tid & this.slotMask] = { tid, request, callback, startedMs: performance.now(), deadlineMs: nowMs + this.opts.timeoutMs };
    this.inFlightCount++;
    // Requests sent in one event-loop turn leave in one write (one syscall, one TCP segment where
    // they fit). setImmediate, not nextTick: a tick ends after each agent socket's data callback,
    // the check phase only after every I/O callback of this turn, so requests from all agents that
    // arrived together share the write. Measured: the per-request write was the gateway's largest
    // cost (docs/performance.md).
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      setImmediate(this.uncork);
    }
    socket.write(encodeFrame(tid, unitId, pdu));
  }

  private allocateTid(): number {
    // Fewer requests are in flight than there are slots, so a free one is found within a few steps.
    let tid = this.nextTid;
    while (this.slots[tid & this.slotMask] !== undefined) tid = tid === MAX_TID ? 1 : tid + 1;
    this.nextTid = tid === MAX_TID ? 1 : tid + 1;
    return tid;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  private pendingFor(tid: number): Pending | undefined {
    const entry = this.slots[tid & this.slotMask];
    return entry !== undefined && entry.tid === tid ? entry : undefined;
  }

  sweep(nowMs: number): void {
    while (this.inFlightCount > 0 && this.oldestTid !== this.nextTid) {
      const tid = this.oldestTid;
      const entry = this.pendingFor(tid);
      if (entry !== undefined) {
        if (entry.deadlineMs > nowMs) break;
        this.take(tid);
        entry.callback({ kind: 'timeout', latencyUs: elapsedUs(entry.startedMs) });
      }
      this.oldestTid = tid === MAX_TID ? 1 : tid + 1;
    }
  }

  private take(tid: number): void {
    this.slots[tid & this.slotMask] = undefined;
    this.inFlightCount--;
  }

  /** Empties every slot; returns the entries in send order. */
  private takeAll(): Pending[] {
    const entries: Pending[] = [];
    if (this.inFlightCount === 0) return entries;
    for (const entry of this.slots) if (entry !== undefined) entries.push(entry);
    this.slots.fill(undefined);
    this.inFlightCount = 0;
    this.oldestTid = this.nextTid;
    return entries.sort((a, b) => a.startedMs - b.startedMs);
  }

  private failAll(kind: 'unavailable'): void {
    const entries = this.takeAll();
    for (const entry of entries) entry.callback({ kind, latencyUs: elapsedUs(entry.startedMs) });
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.destroy();
  }

  private label(): string {
    return `${this.opts.host}:${this.opts.port}#${this.index}`;
  }
}

function elapsedUs(startMs: number): number {
  return Math.round((performance.now() - startMs) * 1000);
}

export class UpstreamPool {
  private readonly connections: UpstreamConnection[];
  private readonly sweepTimer: NodeJS.Timeout;
  private cursor = 0;
  readonly endpoint: string;

  constructor(options: UpstreamOptions) {
    const opts = {
      connections: 2,
      timeoutMs: 1000,
      maxInFlight: 256,
      reconnect: { minMs: 100, maxMs: 5000 },
      logger: silentLogger,
      ...options,
    };
    this.endpoint = `${opts.host}:${opts.port}`;
    this.connections = Array.from({ length: opts.connections }, (_, i) => new UpstreamConnection(opts, i));
    // One coarse timer per pool instead of one timer per request: timeouts are checked a few times
    // per timeout period, so a request times out between timeoutMs and 1.25 × timeoutMs.
    const period = Math.max(5, Math.floor(opts.timeoutMs / 4));
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const c of this.connections) c.sweep(now);
    }, period);
    this.sweepTimer.unref();
  }

  /** Resolves once at least one connection is up. */
  ready(): Promise<void> {
    return Promise.race(this.connections.map((c) => c.whenUp()));
  }

  get isUp(): boolean {
    return this.connections.some((c) => c.isUp);
  }

  reconnects(): number {
    let n = 0;
    for (const c of this.connections) n += c.reconnects;
    return n;
  }

  /**
   * Sends one request to the PLC on the least-loaded live connection. The callback runs exactly
   * once: with the validated response, a timeout, or unavailable.
   */
  send(unitId: number, pdu: Buffer, request: Request, callback: UpstreamCallback): void {
    let best: UpstreamConnection | undefined;
    const n = this.connections.length;
    for (let i = 0; i < n; i++) {
      const c = this.connections[(this.cursor + i) % n];
      if (!c.isUp) continue;
      if (best === undefined || c.inFlight < best.inFlight) best = c;
    }
    this.cursor = (this.cursor + 1) % n;
    if (best === undefined) {
      callback({ kind: 'unavailable', latencyUs: 0 });
      return;
    }
    best.send(unitId, pdu, request, callback, Date.now());
  }

  close(): void {
    clearInterval(this.sweepTimer);
    for (const c of this.connections) c.close();
  }
}
