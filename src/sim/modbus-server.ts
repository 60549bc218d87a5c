// Serves a simulated plant over Modbus/TCP (plain TCP on node:net), on the project's own codec.
// It is the baseline the gateway is benchmarked against, so per request it allocates only what
// the codec needs and writes all answers of one read burst in one corked flush, in request order.
// A framing error closes that connection only. Never decides policy: every request is answered
// as a real PLC with a fixed memory map would.
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
} from '../../protocols/modbus/codec.js';
import { handleRequest } from './modbus-handler.js';
import { loadPlant, type Plant } from './plant.js';
import { PlantRuntime } from './runtime.js';

export interface SimHandle {
  port: number;
  host: string;
  plant: Plant;
  clock: Clock;
  /** Engineering value of a point ("name" or "plcId/name"). */
  read(pointName: string): number;
  /** Sets a point in engineering units (any table, so a harness can force inputs). */
  write(pointName: string, value: number): void;
  /** Advances a ManualClock by ms and runs the process model up to it. */
  step(ms: number): void;
  /** Closes the listener and every connection (the PLC becomes unreachable); the model keeps state. */
  stopModbus(): Promise<void>;
  close(): Promise<void>;
  /** Modbus requests answered since start (exceptions included, framing errors not). */
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
  logger?: Logger;
}

export class ModbusServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private requests = 0;

  constructor(
    private readonly runtime: PlantRuntime,
    private readonly logger: Logger,
  ) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.logger.error({ err: err.message }, 'modbus listener error'));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  requestCount(): number {
    return this.requests;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.logger.debug({ peer }, 'modbus client connected');
    const decoder = new FrameDecoder(
      (frame) => this.answer(socket, frame),
      (err: ModbusFrameError) => {
        this.logger.debug({ peer, code: err.code, err: err.message }, 'malformed frame; closing connection');
        socket.destroy();
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
    socket.on('error', (err) => this.logger.debug({ peer, err: err.message }, 'modbus socket error'));
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.logger.debug({ peer }, 'modbus client disconnected');
    });
  }

  private answer(socket: net.Socket, frame: Frame): void {
    if (socket.destroyed) return;
    // Function codes 0 and >= 0x80 cannot be answered with an exception (the exception bit is
    // the high bit): no PLC can make sense of them, so treat them like a framing error.
    if (frame.functionCode === 0 || frame.functionCode >= 0x80) {
      this.logger.debug({ fc: frame.functionCode }, 'request with an impossible function code; closing connection');
      socket.destroy();
      return;
    }
    this.requests++;
    try {
      socket.write(encodeFrame(frame.transactionId, frame.unitId, this.respond(frame)));
    } catch (err) {
      // Never let one request take the process down; this connection is no longer trustworthy.
      this.logger.error({ err: (err as Error).message, fc: frame.functionCode }, 'simulator could not answer; closing connection');
      socket.destroy();
    }
  }

  private respond(frame: Frame): Buffer {
    const tables = this.runtime.byUnit[frame.unitId];
    if (tables === undefined) return exceptionPdu(frame.functionCode, ModbusException.GATEWAY_TARGET_FAILED_TO_RESPOND);
    try {
      return encodeResponse(handleRequest(tables, decodeRequest(frame.pdu)));
    } catch (err) {
      if (err instanceof ModbusFrameError) {
        // A well-framed request with a bad PDU: a PLC answers it with the exception the spec
        // prescribes (0x01 unknown function, 0x02 range past 65535, 0x03 bad quantity or value)
        // and keeps the connection.
        return exceptionPdu(frame.functionCode, err.exceptionCode);
      }
      this.logger.error({ err: (err as Error).message, fc: frame.functionCode }, 'simulator failed a request');
      return exceptionPdu(frame.functionCode, ModbusException.SERVER_DEVICE_FAILURE);
    }
  }
}

/** Loads (if given a path) and runs a plant, serving it over Modbus/TCP. */
export async function startSimulator(opts: SimulatorOptions): Promise<SimHandle> {
  const plant = typeof opts.plant === 'string' ? await loadPlant(opts.plant) : opts.plant;
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? silentLogger;
  const host = opts.host ?? '127.0.0.1';
  const runtime = new PlantRuntime(plant, clock, opts.tickMs);
  const server = new ModbusServer(runtime, logger);
  let port: number;
  try {
    port = await server.listen(host, opts.port ?? 0);
  } catch (err) {
    runtime.stop();
    throw err;
  }
  logger.debug({ plant: plant.name, host, port }, 'simulator serving Modbus/TCP');
  return {
    port,
    host,
    plant,
    clock,
    read: (name) => runtime.read(name),
    write: (name, value) => runtime.write(name, value),
    step: (ms) => runtime.step(ms),
    stopModbus: () => server.close(),
    close: async () => {
      runtime.stop();
      await server.close();
    },
    requestCount: () => server.requestCount(),
  };
}
