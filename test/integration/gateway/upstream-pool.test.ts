// The upstream pool against real TCP "PLCs" on 127.0.0.1 that misbehave the way field devices do:
// accept and never answer, refuse connections, come back after a reboot, answer late, answer out
// of order, answer garbage. Each test awaits the pool's callback or the server's observation;
// nothing sleeps.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameDecoder, decodeRequest, encodeFrame, type Frame, type Request } from '../../../protocols/modbus/codec.js';
import { UpstreamPool, type UpstreamResult } from '../../../protocols/modbus/upstream.js';
import { within } from './harness.js';

/** A TCP server that hands each request frame to `handler` with a way to answer it. */
class FakePlc {
  readonly frames: Frame[] = [];
  accepted = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private waiters: Array<() => void> = [];
  port = 0;

  constructor(private readonly handler: (frame: Frame, socket: net.Socket) => void = () => undefined) {
    this.server = net.createServer((socket) => {
      this.accepted++;
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        this.wake();
      });
      const decoder = new FrameDecoder(
        (f) => {
          const frame = { ...f, pdu: Buffer.from(f.pdu) };
          this.frames.push(frame);
          this.handler(frame, socket);
          this.wake();
        },
        () => socket.destroy(),
      );
      socket.on('data', (c: Buffer) => decoder.push(c));
      this.wake();
    });
  }

  async listen(port = 0): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** The PLC reboots: every connection drops, the port keeps listening. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  until(predicate: () => boolean, what: string): Promise<void> {
    return within(
      new Promise<void>((resolve) => {
        const check = (): void => (predicate() ? resolve() : void this.waiters.push(check));
        check();
      }),
      5000,
      what,
    );
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** FC3 answer carrying one register per requested address: the value is address * 10 + 7. */
function registersAnswer(frame: Frame): Buffer {
  const req = decodeRequest(frame.pdu) as { fc: 3; address: number; quantity: number };
  const pdu = Buffer.alloc(2 + req.quantity * 2);
  pdu[0] = 3;
  pdu[1] = req.quantity * 2;
  for (let i = 0; i < req.quantity; i++) pdu.writeUInt16BE((req.address + i) * 10 + 7, 2 + i * 2);
  return encodeFrame(frame.transactionId, frame.unitId, pdu);
}

function readHolding(address: number, quantity = 1): { pdu: Buffer; request: Request } {
  const pdu = Buffer.from([3, address >> 8, address & 0xff, 0, quantity]);
  return { pdu, request: decodeRequest(pdu) };
}

function send(pool: UpstreamPool, address: number): Promise<UpstreamResult> {
  const { pdu, request } = readHolding(address);
  return new Promise((resolve) => pool.send(1, pdu, request, resolve));
}

function firstRegister(result: UpstreamResult): number {
  if (result.kind !== 'response') throw new Error(`expected a response, got ${result.kind}`);
  return result.pdu.readUInt16BE(2);
}

/** A port nothing listens on (bound, read, released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function track<T extends { close(): unknown }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

describe('upstream pool toward a PLC', () => {
  it('times out a request to a PLC that accepts and never answers (the sweep answers it, the request is not left waiting)', async () => {
    const plc = track(await new FakePlc().listen());
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 100 }));
    await pool.ready();
    // How soon is the bench's business (make bench); here: it ends, as a timeout, after reaching the PLC.
    const result = await send(pool, 0);
    expect(result.kind).toBe('timeout');
    expect(plc.frames).toHaveLength(1);
  });

  it('answers unavailable at once when the PLC port is closed, and never queues the request', async () => {
    const port = await freePort();
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port, connections: 2, timeoutMs: 100, reconnect: { minMs: 10, maxMs: 40 } }));
    const result = await send(pool, 0);
    expect(result).toEqual({ kind: 'unavailable', latencyUs: 0 });
    expect(pool.isUp).toBe(false);
  });

  it('reconnects with backoff once the PLC comes back on the same port', async () => {
    const port = await freePort();
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port, connections: 1, timeoutMs: 200, reconnect: { minMs: 10, maxMs: 40 } }));
    // Let it fail at least twice before the PLC appears: the backoff path, not the first connect.
    await within(
      (async () => {
        while (pool.reconnects() < 2) await new Promise<void>((r) => setImmediate(r));
      })(),
      5000,
      'two failed connection attempts',
    );
    expect((await send(pool, 0)).kind).toBe('unavailable');
    const plc = track(await new FakePlc((f, s) => s.write(registersAnswer(f))).listen(port));
    await within(pool.ready(), 5000, 'the pool to reconnect');
    expect(firstRegister(await send(pool, 4))).toBe(47);
    expect(plc.accepted).toBe(1);
  });

  it('fails requests in flight as unavailable when the PLC drops the connection, then reconnects', async () => {
    const plc: FakePlc = track(
      await new FakePlc((f, s) => {
        if (plc.frames.length > 1) s.write(registersAnswer(f));
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 5000, reconnect: { minMs: 10, maxMs: 40 } }));
    await pool.ready();
    const inFlight = send(pool, 0);
    await plc.until(() => plc.frames.length === 1, 'the request at the PLC');
    plc.dropConnections();
    expect((await inFlight).kind).toBe('unavailable');
    await plc.until(() => plc.accepted === 2, 'the pool to reconnect');
    await pool.ready();
    expect(firstRegister(await send(pool, 2))).toBe(27);
  });

  it('drops an answer that arrives after its timeout; the next request gets its own answer', async () => {
    const held: Frame[] = [];
    let socket: net.Socket | undefined;
    const plc = track(
      await new FakePlc((f, s) => {
        socket = s;
        held.push(f);
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 60 }));
    await pool.ready();
    expect((await send(pool, 1)).kind).toBe('timeout');
    const next = send(pool, 2);
    await plc.until(() => held.length === 2, 'both requests at the PLC');
    expect(held[0].transactionId).not.toBe(held[1].transactionId);
    // The late answer to the first request comes first, in the same segment as the real one: a
    // pool that matched answers by arrival order would hand 17 to the second request.
    socket?.write(Buffer.concat([registersAnswer(held[0]), registersAnswer(held[1])]));
    expect(firstRegister(await next)).toBe(27);
  });

  it('never hands a late answer to the newer request that took its slot', async () => {
    // Requests in flight live in a small ring indexed by transaction id. After 64 more requests,
    // a new one lands in the slot of the first, which timed out; the first's late answer (same
    // function code and length, so it would pass validation) must not be taken for the new one's.
    let late: Buffer | undefined;
    const plc = track(
      await new FakePlc((f, s) => {
        const address = (decodeRequest(f.pdu) as { address: number }).address;
        if (address === 1) {
          late = registersAnswer(f);
          return;
        }
        if (address === 999 && late !== undefined) s.write(late);
        s.write(registersAnswer(f));
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 60, maxInFlight: 1 }));
    await pool.ready();
    expect((await send(pool, 1)).kind).toBe('timeout');
    for (let i = 0; i < 63; i++) expect(firstRegister(await send(pool, 100 + i))).toBe((100 + i) * 10 + 7);
    expect(plc.frames.at(-1)!.transactionId % 64).toBe(0);
    expect(firstRegister(await send(pool, 999))).toBe(9997);
    expect(plc.frames.at(-1)!.transactionId % 64).toBe(plc.frames[0].transactionId % 64);
  });

  it('remaps transaction ids so answers coming back out of order reach the right requester', async () => {
    const batch: Array<{ f: Frame; s: net.Socket }> = [];
    const plc = track(
      await new FakePlc((f, s) => {
        batch.push({ f, s });
        // Answer the whole burst in reverse order once it is complete.
        if (batch.length === 6) for (const b of batch.reverse()) b.s.write(registersAnswer(b.f));
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 2000 }));
    await pool.ready();
    const addresses = [5, 9, 5, 1, 9, 3];
    const results = await Promise.all(addresses.map((a) => send(pool, a)));
    expect(results.map(firstRegister)).toEqual(addresses.map((a) => a * 10 + 7));
    expect(new Set(plc.frames.map((f) => f.transactionId)).size).toBe(6);
  });

  it('hands each requester bytes of its own that later answers on the same connection never overwrite', async () => {
    // Answers are read into one reused buffer per connection; an answer held by a caller (an agent
    // connection waiting for an earlier answer to go first) must keep its bytes.
    let n = 0;
    let tail = Promise.resolve();
    const plc = track(
      await new FakePlc((f, s) => {
        const answer = registersAnswer(f);
        const split = n++ % 2 === 1;
        // Every other answer trickles in two pieces (in order), so frames straddle reads too.
        tail = tail.then(async () => {
          if (!split) return void s.write(answer);
          s.write(answer.subarray(0, 5));
          await new Promise((r) => setImmediate(r));
          s.write(answer.subarray(5));
        });
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 2000 }));
    await pool.ready();
    const held: UpstreamResult[] = [];
    for (const address of [11, 22, 33, 44, 55, 66, 77, 88]) held.push(await send(pool, address));
    const more = await Promise.all(Array.from({ length: 50 }, (_, i) => send(pool, 100 + i)));
    expect(held.map(firstRegister)).toEqual([11, 22, 33, 44, 55, 66, 77, 88].map((a) => a * 10 + 7));
    expect(more.map(firstRegister)).toEqual(Array.from({ length: 50 }, (_, i) => (100 + i) * 10 + 7));
  });

  it('answers a mismatched PLC response as a timeout (0x0B upstream) and reconnects', async () => {
    const plc = track(
      await new FakePlc((f, s) => {
        // FC4 answer to an FC3 request: well framed, wrong function.
        s.write(encodeFrame(f.transactionId, f.unitId, Buffer.from([4, 2, 0, 1])));
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 2000, reconnect: { minMs: 10, maxMs: 40 } }));
    await pool.ready();
    const result = await send(pool, 0);
    expect(result.kind).toBe('timeout');
    await plc.until(() => plc.accepted === 2, 'the pool to open a fresh connection');
  });

  it('answers a response with a wrong byte count as a timeout and reconnects', async () => {
    const plc = track(
      await new FakePlc((f, s) => s.write(encodeFrame(f.transactionId, f.unitId, Buffer.from([3, 4, 0, 1, 0, 2])))).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 2000, reconnect: { minMs: 10, maxMs: 40 } }));
    await pool.ready();
    expect((await send(pool, 0)).kind).toBe('timeout');
    await plc.until(() => plc.accepted === 2, 'the pool to open a fresh connection');
  });

  it('fails every request in flight as a timeout when the PLC breaks framing, then reconnects', async () => {
    const plc = track(
      await new FakePlc((f, s) => {
        if (plc.frames.length === 3) s.write(Buffer.from([0, 1, 0x12, 0x34, 0, 3, 1, 3, 0])); // protocol id 0x1234
      }).listen(),
    );
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 5000, reconnect: { minMs: 10, maxMs: 40 } }));
    await pool.ready();
    const results = await within(Promise.all([send(pool, 0), send(pool, 1), send(pool, 2)]), 10_000, 'all three callbacks');
    expect(results.map((r) => r.kind)).toEqual(['timeout', 'timeout', 'timeout']);
    await plc.until(() => plc.accepted === 2, 'the pool to open a fresh connection');
  });

  it('bounds requests in flight: beyond maxInFlight a request fails as unavailable and never reaches the PLC', async () => {
    const plc = track(await new FakePlc().listen());
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 1, timeoutMs: 150, maxInFlight: 2 }));
    await pool.ready();
    const first = send(pool, 0);
    const second = send(pool, 1);
    let thirdResult: UpstreamResult | undefined;
    const { pdu, request } = readHolding(2);
    pool.send(1, pdu, request, (r) => (thirdResult = r));
    // Refused synchronously: nothing was queued to be sent later.
    expect(thirdResult).toEqual({ kind: 'unavailable', latencyUs: 0 });
    expect((await first).kind).toBe('timeout');
    expect((await second).kind).toBe('timeout');
    expect(plc.frames.map((f) => f.pdu.readUInt16BE(1))).toEqual([0, 1]);
    // Timed-out requests free their slots.
    expect((await send(pool, 3)).kind).toBe('timeout');
  });

  it('spreads requests over its connections and runs each callback exactly once', async () => {
    const plc = track(await new FakePlc((f, s) => s.write(registersAnswer(f))).listen());
    const pool = track(new UpstreamPool({ host: '127.0.0.1', port: plc.port, connections: 3, timeoutMs: 2000 }));
    await plc.until(() => plc.accepted === 3, 'three connections');
    await pool.ready();
    let calls = 0;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => {
        const { pdu, request } = readHolding(i);
        return new Promise<UpstreamResult>((resolve) =>
          pool.send(1, pdu, request, (r) => {
            calls++;
            resolve(r);
          }),
        );
      }),
    );
    expect(results.map(firstRegister)).toEqual(Array.from({ length: 30 }, (_, i) => i * 10 + 7));
    expect(calls).toBe(30);
  });
});
