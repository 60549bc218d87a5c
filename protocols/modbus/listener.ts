// Agent-facing Modbus/TCP Security listener (Modbus over TLS with mutual authentication).
// Owns the TLS server, each connection's frame reassembly, transaction-id bookkeeping toward the
// agent and the order of answers. Identity is settled once, at the handshake; every request becomes
// a Command that the pipeline decides. Only an allow Decision reaches the upstream pool.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { PlantgateError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/log.js';
import { silentLogger } from '../../src/core/log.js';
import type { CommandPipeline, Session } from '../../src/core/pipeline.js';
import { modbusExceptionFor, ModbusException, type Reason } from '../../src/core/reasons.js';
import type { Command, Decision } from '../../src/core/command.js';
import { identityFromTlsSocket } from '../../src/identity/cert.js';
import { DEFAULT_CONNECTION_LIMITS, guardHandshakes, type ConnectionLimits } from '../../src/identity/handshakes.js';
import type { ConnectionLimiter } from '../../src/identity/limits.js';
import type { StaticIdentityMap } from '../../src/identity/static-ip.js';
import { commandFromRequest, readAnswerValues } from './command.js';
import {
  FrameDecoder,
  ModbusFrameError,
  classifyFunctionCode,
  decodeRequest,
  encodeFrame,
  exceptionPdu,
  type Frame,
  type Request,
} from './codec.js';
import type { UpstreamPool, UpstreamResult } from './upstream.js';

export interface UpstreamRoute {
  pool: UpstreamPool;
  /** Unit id on the PLC side (the agent-facing one comes from the bundle's asset). */
  unitId: number;
}

export interface ModbusListenerOptions {
  host: string;
  port: number;
  tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer };
  pipeline: CommandPipeline;
  route(assetId: string): UpstreamRoute | undefined;
  /** Requests in flight per agent connection before the gateway stops reading from it. */
  maxInFlightPerConnection?: number;
  /** Handshake deadline and caps (TLS listener), idle timeout (both): docs/configuration.md, Hostile connections. */
  limits?: ConnectionLimits;
  /** Bound on connections per workload identity. */
  limiter?: ConnectionLimiter;
  /**
   * A frame whose first bytes arrived must be complete within this time, or the connection is
   * closed as a violation (slowloris: a half frame held open ties up a connection slot forever).
   * Idle connections between frames are not affected. Default 10 s.
   */
  frameTimeoutMs?: number;
  logger?: Logger;
}

/** One answer slot per request, so answers leave in request order whatever finishes first. */
interface Slot {
  transactionId: number;
  unitId: number;
  answer: Buffer | undefined;
  /**
   * The allowed command, waiting for its turn to reach the PLC (set once decided), and whether it
   * may run beside other reads (a read) or must run alone (anything that can change the PLC).
   */
  forward: (() => void) | undefined;
  alone: boolean;
  /** Sent to the PLC, answer not back yet. */
  running: boolean;
}

class AgentConnection {
  private readonly decoder: FrameDecoder;
  private readonly slots: Slot[] = [];
  private inFlight = 0;
  private paused = false;
  private corked = false;
  private closed = false;
  private violated = false;
  /** Frames completed on this connection (tells a new incomplete frame from the same one). */
  private frames = 0;
  /** When the incomplete frame now buffered started arriving (0: none). */
  partialSinceMs = 0;
  private idleWaiter: (() => void) | undefined;
  private pumping = false;
  private pumpAgain = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly session: Session,
    private readonly opts: ListenerSettings,
  ) {
    this.decoder = new FrameDecoder(
      (frame) => this.onFrame(frame),
      (err) => this.onViolation(err),
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        const framesBefore = this.frames;
        this.decoder.push(chunk);
        // Stamped when a new frame is left incomplete, kept while that same frame stays so: a
        // trickle of bytes does not extend its deadline, but a busy agent whose chunks keep ending
        // mid-frame (a new frame each time) is never mistaken for a stalled one.
        if (this.decoder.pendingBytes === 0) this.partialSinceMs = 0;
        else if (this.partialSinceMs === 0 || this.frames !== framesBefore) this.partialSinceMs = Date.now();
      } catch (err) {
        // A bug on this connection's path must not take the gateway (and every other agent) down:
        // the stream is out of step, so it ends like any other violation. Fail closed.
        opts.logger.error({ session: session.id, err: (err as Error).message }, 'request handling failed; closing connection');
        this.onViolation(new ModbusFrameError('BAD_PDU', `request could not be handled: ${(err as Error).message}`));
      }
    });
    let why = 'closed';
    // An agent that holds a connection and sends nothing holds a slot of its workload's limit and
    // a socket: after the idle timeout it is closed (it reconnects when it has work).
    if (opts.limits.idleTimeoutMs > 0) {
      socket.setTimeout(opts.limits.idleTimeoutMs, () => {
        if (this.inFlight > 0) return; // waiting on the PLC is not idleness; the upstream timeout bounds it
        why = 'idle';
        socket.destroy();
      });
    }
    socket.on('close', () => {
      this.closed = true;
      this.idleWaiter?.();
      opts.pipeline.sessionClosed(session, why);
    });
    socket.on('error', (err) => opts.logger.debug({ session: session.id, err: err.message }, 'agent socket error'));
  }

  /**
   * Graceful stop: reads no further requests, resolves once every request already read has been
   * answered (so no agent is left without an answer to a command that may have run).
   */
  drain(): Promise<void> {
    this.socket.pause();
    this.paused = true;
    if (this.inFlight === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.idleWaiter = resolve));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Closes the connection if a frame has been left incomplete since before `deadlineMs`. */
  expireStalledFrame(deadlineMs: number): void {
    if (this.partialSinceMs === 0 || this.partialSinceMs > deadlineMs || this.closed) return;
    this.closeForViolation('PROTOCOL_VIOLATION', 'FRAME_TIMEOUT', `incomplete frame (${this.decoder.pendingBytes} bytes) not finished within ${this.opts.frameTimeoutMs} ms`);
  }

  private onViolation(err: ModbusFrameError): void {
    this.closeForViolation(err.reason, err.code, err.message);
  }

  private closeForViolation(reason: Reason, code: string, message: string): void {
    // Once per connection: later frames of a chunk already being decoded are not new violations.
    if (this.violated) return;
    this.violated = true;
    this.opts.pipeline.violation(this.session, reason, code, message);
    this.opts.logger.warn({ session: this.session.id, workload: this.session.workloadId, code }, 'protocol violation; closing');
    // The requests before the bad bytes were read, decided and may have run on the PLC: their
    // answers leave first (a write that happened is never left unanswered), then the connection
    // ends. Nothing after the violation is read. Bounded: upstream requests time out.
    void this.drain().then(() => this.endAfterFlush());
  }

  private endAfterFlush(): void {
    if (this.closed) return;
    const timer = setTimeout(() => this.socket.destroy(), this.opts.frameTimeoutMs);
    timer.unref();
    // end() uncorks, so answers written in this turn leave before the close.
    this.socket.end(() => {
      clearTimeout(timer);
      this.socket.destroy();
    });
  }

  private onFrame(frame: Frame): void {
    this.frames++;
    if (this.violated || this.closed || this.socket.destroyed) return;
    // Function code 0 does not exist and one with the high bit set is an exception answer: neither
    // can be answered with an exception (fc | 0x80 would be ambiguous or impossible), so the agent
    // is not speaking Modbus: a violation, not a deny.
    if (frame.functionCode === 0 || frame.functionCode >= 0x80) {
      this.onViolation(
        new ModbusFrameError('BAD_PDU', `function code ${frame.functionCode} (0x${frame.functionCode.toString(16).padStart(2, '0')}) is not a request`, {
          functionCode: frame.functionCode,
        }),
      );
      return;
    }
    let request: Request;
    try {
      request = decodeRequest(frame.pdu);
    } catch (err) {
      if (!(err instanceof ModbusFrameError)) {
        this.onViolation(new ModbusFrameError('BAD_PDU', String(err)));
        return;
      }
      // A well-framed request the spec refuses is answered like a PLC answers it, on the same
      // connection: an unknown function code 0x01 (UNSUPPORTED_FUNCTION), a bad quantity, byte
      // count or value 0x03 and a range past 65535 0x02 (PROTOCOL_VIOLATION). Only framing closes.
      const slot = this.open(frame);
      const cmd: Command = {
        sessionId: this.session.id, protocol: 'modbus', unitId: frame.unitId, assetId: '',
        operation: classifyFunctionCode(frame.functionCode) ?? 'admin', functionCode: frame.functionCode, targets: [], points: [],
      };
      this.opts.logger.debug({ session: this.session.id, code: err.code, err: err.message }, 'request refused by the codec');
      this.opts.pipeline.refuse(this.session, cmd, err.reason, { unitId: frame.unitId, transactionId: frame.transactionId });
      this.finish(slot, exceptionPdu(frame.functionCode, err.exceptionCode));
      return;
    }
    const slot = this.open(frame);
    const cmd = commandFromRequest(this.session.id, frame.unitId, request);
    // Every allowed command's answer (or its failure) reaches pipeline.outcome in execute(), even
    // on a closed connection: a read is recorded once, with its answer.
    const wire = { unitId: frame.unitId, transactionId: frame.transactionId, outcomeFollows: true };
    const decided = this.opts.pipeline.authorize(this.session, cmd, wire);
    if (decided instanceof Promise) {
      // Durable path: the frame's bytes may be reused by the decoder before the fsync completes.
      const pdu = Buffer.from(frame.pdu);
      decided.then((d) => this.execute(slot, cmd, request, pdu, d)).catch((err: unknown) => {
        // authorize never rejects; this is a bug after it. An unhandled rejection would end the
        // process, so the connection ends instead and the command is not answered as allowed.
        this.opts.logger.error({ session: this.session.id, err: (err as Error).message }, 'command handling failed; closing connection');
        this.socket.destroy();
      });
    } else {
      this.execute(slot, cmd, request, frame.pdu, decided);
    }
  }

  private execute(slot: Slot, cmd: Command, request: Request, pdu: Buffer, decision: Decision): void {
    if (decision.effect !== 'allow') {
      this.finish(slot, exceptionPdu(cmd.functionCode, modbusExceptionFor(decision.reason)));
      return;
    }
    const route = this.opts.route(cmd.assetId);
    if (route === undefined) {
      this.opts.pipeline.outcome(this.session, cmd, decision, { status: 'upstream_unavailable', latencyUs: 0 });
      this.finish(slot, exceptionPdu(cmd.functionCode, ModbusException.GATEWAY_PATH_UNAVAILABLE));
      return;
    }
    slot.alone = cmd.operation !== 'read';
    slot.forward = () => route.pool.send(route.unitId, pdu, request, (result: UpstreamResult) => {
      let answer: Buffer;
      switch (result.kind) {
        case 'response': {
          const isException = (result.pdu[0] & 0x80) !== 0;
          this.opts.pipeline.outcome(this.session, cmd, decision, isException
            ? { status: 'exception', exceptionCode: result.pdu[1], latencyUs: result.latencyUs }
            : { status: 'ok', latencyUs: result.latencyUs, readValue: readAnswerValues(cmd.functionCode, result.pdu) });
          answer = result.pdu;
          break;
        }
        case 'timeout':
          this.opts.pipeline.outcome(this.session, cmd, decision, { status: 'upstream_timeout', latencyUs: result.latencyUs });
          answer = exceptionPdu(cmd.functionCode, ModbusException.GATEWAY_TARGET_FAILED_TO_RESPOND);
          break;
        case 'unavailable':
          this.opts.pipeline.outcome(this.session, cmd, decision, { status: 'upstream_unavailable', latencyUs: result.latencyUs });
          answer = exceptionPdu(cmd.functionCode, ModbusException.GATEWAY_PATH_UNAVAILABLE);
          break;
      }
      this.finish(slot, answer);
    });
    this.pump();
  }

  /**
   * Sends allowed commands to the PLC in the order the agent sent them, as a PLC executes one
   * connection's requests: reads in a row may run together, but a write (or any command that can
   * change the PLC) waits for everything before it to be answered, and everything after it waits
   * for it. Without this a read pipelined behind a write (still waiting for its durable audit
   * record) would overtake it and return the value from before the write. A slot still being
   * decided holds back everything after it; a denied or refused one never reaches the PLC.
   * Runs for a closed connection too: an allowed command whose decision is recorded is forwarded.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    do {
      this.pumpAgain = false;
      let running = false;
      for (const slot of this.slots) {
        if (slot.answer !== undefined) continue;
        if (slot.running) {
          if (slot.alone) break;
          running = true;
          continue;
        }
        if (slot.forward === undefined || (slot.alone && running)) break;
        const forward = slot.forward;
        slot.forward = undefined;
        slot.running = true;
        forward();
        if (slot.alone) break;
        running = true;
      }
    } while (this.pumpAgain);
    this.pumping = false;
  }

  private open(frame: Frame): Slot {
    const slot: Slot = { transactionId: frame.transactionId, unitId: frame.unitId, answer: undefined, forward: undefined, alone: false, running: false };
    this.slots.push(slot);
    this.inFlight++;
    if (this.inFlight >= this.opts.maxInFlightPerConnection && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    return slot;
  }

  private finish(slot: Slot, answer: Buffer): void {
    slot.answer = answer;
    slot.running = false;
    this.inFlight--;
    // The next commands may go to the PLC now (also when the agent is gone: see pump).
    if (this.slots.length > 1) this.pump();
    if (this.closed) return;
    // Answers written in one event-loop turn leave in one TLS record batch. The lone answer of a
    // connection with nothing else in flight (the common case: one request at a time) is written
    // at once; corking it would only add a tick and a pass through the stream's buffer.
    if (!this.corked && (this.inFlight > 0 || this.slots.length > 1)) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    let head = 0;
    while (head < this.slots.length && this.slots[head].answer !== undefined) {
      const s = this.slots[head];
      this.socket.write(encodeFrame(s.transactionId, s.unitId, s.answer as Buffer));
      head++;
    }
    if (head > 0) this.slots.splice(0, head);
    if (this.idleWaiter !== undefined) {
      if (this.inFlight === 0) {
        const w = this.idleWaiter;
        this.idleWaiter = undefined;
        w();
      }
      return;
    }
    if (this.paused && this.inFlight < this.opts.maxInFlightPerConnection / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

type ListenerSettings = ModbusListenerOptions & { maxInFlightPerConnection: number; frameTimeoutMs: number; logger: Logger; limits: ConnectionLimits };

/**
 * What both agent-facing Modbus listeners share once a connection has an identity: the
 * per-workload connection bound, the session, the stalled-frame sweep and graceful close.
 */
abstract class AgentListenerBase {
  protected server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly connections = new Set<AgentConnection>();
  protected readonly opts: ListenerSettings;
  private sweepTimer: NodeJS.Timeout | undefined;

  protected constructor(options: Omit<ModbusListenerOptions, 'tls'>) {
    this.opts = { maxInFlightPerConnection: 64, frameTimeoutMs: 10_000, logger: silentLogger, limits: DEFAULT_CONNECTION_LIMITS, ...options } as ListenerSettings;
  }

  protected async bind(server: net.Server): Promise<{ host: string; port: number }> {
    const { opts } = this;
    // One coarse timer for all connections rather than a timer per frame: a stalled frame is
    // closed between frameTimeoutMs and 1.25 × frameTimeoutMs after it started.
    const period = Math.max(5, Math.floor(opts.frameTimeoutMs / 4));
    this.sweepTimer = setInterval(() => {
      const deadline = Date.now() - opts.frameTimeoutMs;
      for (const c of this.connections) c.expireStalledFrame(deadline);
    }, period);
    this.sweepTimer.unref();
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as { address: string; port: number };
    return { host: addr.address, port: addr.port };
  }

  /** Admits a connection whose identity is settled (or refuses it: limiter), then serves it. */
  protected admit(socket: net.Socket, session: Session): void {
    // Per-workload connection bound: one agent cannot exhaust the gateway for the others.
    const lease = this.opts.limiter?.acquire(session.workloadId);
    if (this.opts.limiter !== undefined && lease === undefined) {
      this.opts.pipeline.violation(
        { remoteAddress: session.remoteAddress, workloadId: session.workloadId, protocol: 'modbus' },
        'RATE_LIMITED',
        'TOO_MANY_CONNECTIONS',
        `more than ${this.opts.limiter.maxPerWorkload} connections for ${session.workloadId}`,
      );
      socket.destroy();
      return;
    }
    socket.once('close', () => lease?.release());
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    this.opts.pipeline.sessionOpened(session);
    const connection = new AgentConnection(socket, session, this.opts);
    this.connections.add(connection);
    socket.on('close', () => this.connections.delete(connection));
  }

  /**
   * Stops accepting. With `drainMs` > 0, connections first finish the requests they already sent
   * (answered, not cut off), for at most drainMs; then every connection is closed.
   */
  async close(drainMs = 0): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (drainMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...this.connections].map((c) => c.drain())),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs))),
      ]);
      clearTimeout(timer);
    }
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

export class ModbusTlsListener extends AgentListenerBase {
  private readonly tlsFiles: ModbusListenerOptions['tls'];

  constructor(options: ModbusListenerOptions) {
    super(options);
    this.tlsFiles = options.tls;
  }

  async listen(): Promise<{ host: string; port: number }> {
    const { opts } = this;
    const server = tls.createServer({
      ca: this.tlsFiles.ca,
      cert: this.tlsFiles.cert,
      key: this.tlsFiles.key,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    guardHandshakes(server, opts.limits, (r) => opts.pipeline.violation({ remoteAddress: r.remoteAddress }, r.reason, r.code, r.message));
    server.on('secureConnection', (socket) => this.onConnection(socket));
    return this.bind(server);
  }

  private onConnection(socket: tls.TLSSocket): void {
    socket.setNoDelay(true);
    const remoteAddress = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
    let identity;
    try {
      identity = identityFromTlsSocket(socket);
    } catch (err) {
      const reason = err instanceof PlantgateError ? err.reason : 'NO_IDENTITY';
      this.opts.pipeline.violation({ remoteAddress }, reason, 'NO_IDENTITY', (err as Error).message);
      socket.destroy();
      return;
    }
    this.admit(socket, {
      id: randomUUID(),
      protocol: 'modbus',
      workloadId: identity.workloadId,
      certThumbprint: identity.thumbprint,
      remoteAddress,
      assurance: 'mtls+token',
    });
  }
}

export interface ModbusPlainListenerOptions extends Omit<ModbusListenerOptions, 'tls'> {
  /** Source address → workload (listeners.modbus_plain.identities). */
  identities: StaticIdentityMap;
}

/**
 * Plaintext Modbus/TCP for legacy lab devices (docs/identity.md, "Legacy plaintext Modbus"; off unless configured): the identity is
 * the exact source address, looked up in a static map; every session is `static-ip+token`, so
 * every decision and record says so and policy can demand `mtls+token` instead. An unlisted
 * address is a NO_IDENTITY violation and the connection is closed before a byte is read.
 */
export class ModbusPlainListener extends AgentListenerBase {
  private readonly identities: StaticIdentityMap;

  constructor(options: ModbusPlainListenerOptions) {
    super(options);
    this.identities = options.identities;
  }

  async listen(): Promise<{ host: string; port: number }> {
    const server = net.createServer((socket) => this.onConnection(socket));
    return this.bind(server);
  }

  private onConnection(socket: net.Socket): void {
    socket.setNoDelay(true);
    // A peer that reset already has no address: it is treated as unlisted (fail closed).
    const host = socket.remoteAddress ?? '';
    let session: Session;
    try {
      session = this.identities.session(randomUUID(), host, socket.remotePort);
    } catch (err) {
      const reason = err instanceof PlantgateError ? err.reason : 'NO_IDENTITY';
      this.opts.pipeline.violation({ remoteAddress: `${host}:${socket.remotePort ?? ''}` }, reason, 'NO_IDENTITY', (err as Error).message);
      socket.destroy();
      return;
    }
    this.admit(socket, session);
  }
}

