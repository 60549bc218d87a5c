import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { ManualClock } from '../../../src/core/clock.js';
import { FrameDecoder, decodeResponse, encodeFrame, encodeRequest, type Frame, type Request, type Response } from '../../../protocols/modbus/codec.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';

// modbus-serial is CommonJS: under NodeNext its class is the namespace's `default` (it sets
// module.exports.default = module.exports, so this is the class at runtime too).
const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

const FIXTURE = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');

/** A raw Modbus/TCP client on our own codec, for function codes modbus-serial lacks. */
class RawClient {
  private readonly waiting: ((f: Frame) => void)[] = [];
  private readonly frames: Frame[] = [];
  private nextTid = 1;
  constructor(readonly socket: net.Socket) {
    const decoder = new FrameDecoder(
      (f) => {
        const copy = { ...f, pdu: Buffer.from(f.pdu) };
        const w = this.waiting.shift();
        if (w) w(copy);
        else this.frames.push(copy);
      },
      (e) => socket.destroy(e),
    );
    socket.on('data', (c: Buffer) => decoder.push(c));
  }
  static async connect(port: number): Promise<RawClient> {
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    return new RawClient(s);
  }
  frame(): Promise<Frame> {
    const f = this.frames.shift();
    return f ? Promise.resolve(f) : new Promise((r) => this.waiting.push(r));
  }
  async request(req: Request, unitId = 1): Promise<Response> {
    this.socket.write(encodeFrame(this.nextTid++ & 0xffff, unitId, encodeRequest(req)));
    return decodeResponse(req, (await this.frame()).pdu);
  }
  close(): void {
    this.socket.destroy();
  }
}

describe('PLC simulator over Modbus/TCP', () => {
  let sim: SimHandle;
  let clock: ManualClock;
  const clients: ModbusRTU[] = [];
  const raws: RawClient[] = [];

  async function client(): Promise<ModbusRTU> {
    const c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port: sim.port });
    c.setID(1);
    c.setTimeout(2000);
    clients.push(c);
    return c;
  }
  async function raw(): Promise<RawClient> {
    const r = await RawClient.connect(sim.port);
    raws.push(r);
    return r;
  }

  beforeEach(async () => {
    clock = new ManualClock();
    sim = await startSimulator({ plant: FIXTURE, clock });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await new Promise<void>((r) => c.close(() => r()));
    for (const r of raws.splice(0)) r.close();
    await sim.close();
  });

  it('serves the tank level as an input register at 0.1 % resolution', async () => {
    const c = await client();
    expect((await c.readInputRegisters(0, 1)).data).toEqual([500]);
    sim.write('tank1.level', 42.5);
    expect((await c.readInputRegisters(0, 1)).data).toEqual([425]);
  });

  it('starts the pump from a coil write and the level rises once the clock moves', async () => {
    const c = await client();
    await c.writeCoil(0, true);
    expect(sim.read('pump1.run')).toBe(1);
    expect((await c.readDiscreteInputs(0, 3)).data.slice(0, 3)).toEqual([false, false, false]);
    sim.step(1000);
    expect((await c.readDiscreteInputs(0, 1)).data[0]).toBe(true);
    sim.step(5000);
    const level = (await c.readInputRegisters(0, 1)).data[0];
    expect(level).toBeGreaterThan(590);
    expect(level).toBeLessThan(610);
  });

  it('reads and writes holding registers and multiple coils', async () => {
    const c = await client();
    expect((await c.readHoldingRegisters(0, 2)).data).toEqual([500, 1500]);
    await c.writeRegisters(0, [600, 1200]);
    expect(sim.read('tank1.setpoint')).toBeCloseTo(60);
    expect(sim.read('pump1.speed')).toBe(1200);
    await c.writeRegister(1, 900);
    expect(sim.read('pump1.speed')).toBe(900);
    await c.writeCoils(0, [false, true, true]);
    expect((await c.readCoils(0, 3)).data.slice(0, 3)).toEqual([false, true, true]);
    expect(sim.read('valve1.open')).toBe(1);
    expect(sim.read('control.auto')).toBe(1);
    expect(sim.requestCount()).toBe(5);
  });

  it('answers exception 2 for an address no point occupies, like a PLC with a fixed map', async () => {
    const c = await client();
    await expect(c.readHoldingRegisters(2, 1)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.readHoldingRegisters(0, 3)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.readInputRegisters(100, 1)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.writeCoil(3, true)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.writeRegisters(1, [1, 2])).rejects.toMatchObject({ modbusCode: 2 });
    // The refused multi-write changed nothing.
    expect(sim.read('pump1.speed')).toBe(1500);
    // The connection is still good.
    expect((await c.readHoldingRegisters(1, 1)).data).toEqual([1500]);
  });

  it('answers exception 1 for a function it does not implement and 3 for a bad quantity', async () => {
    const r = await raw();
    expect(await r.request({ fc: 24, address: 0 })).toEqual({ fc: 24, exception: 1 });
    expect(await r.request({ fc: 17 })).toEqual({ fc: 17, exception: 1 });
    r.socket.write(encodeFrame(9, 1, Buffer.from([3, 0, 0, 0, 200]))); // 200 registers > 125
    expect((await r.frame()).pdu).toEqual(Buffer.from([0x83, 0x03]));
    r.socket.write(encodeFrame(10, 1, Buffer.from([0x41]))); // no such function code
    expect((await r.frame()).pdu).toEqual(Buffer.from([0xc1, 0x01]));
  });

  it('applies a mask write (FC 22) to a holding register', async () => {
    const r = await raw();
    sim.write('pump1.speed', 0x1234);
    const res = await r.request({ fc: 22, address: 1, andMask: 0x00f2, orMask: 0x0025 });
    expect(res).toEqual({ fc: 22, address: 1, andMask: 0x00f2, orMask: 0x0025 });
    // (0x1234 AND 0x00F2) OR (0x0025 AND NOT 0x00F2) = 0x0030 | 0x0005
    expect(sim.read('pump1.speed')).toBe(0x0035);
    expect(await r.request({ fc: 22, address: 7, andMask: 0, orMask: 0 })).toEqual({ fc: 22, exception: 2 });
  });

  it('writes then reads in one request (FC 23)', async () => {
    const r = await raw();
    const res = await r.request({ fc: 23, readAddress: 0, readQuantity: 2, writeAddress: 1, writeQuantity: 1, values: [2000] });
    expect(res).toEqual({ fc: 23, values: [500, 2000] });
    expect(sim.read('pump1.speed')).toBe(2000);
    // A read range that leaves the map refuses the whole request, write included.
    expect(
      await r.request({ fc: 23, readAddress: 0, readQuantity: 5, writeAddress: 1, writeQuantity: 1, values: [7] }),
    ).toEqual({ fc: 23, exception: 2 });
    expect(sim.read('pump1.speed')).toBe(2000);
  });

  it('echoes diagnostics return-query-data (FC 8/0) and identifies itself (FC 43/14)', async () => {
    const r = await raw();
    const echo = await r.request({ fc: 8, subFunction: 0, data: Buffer.from([0xa5, 0x37, 0x12, 0x34]) });
    expect(echo).toEqual({ fc: 8, raw: Buffer.from([8, 0, 0, 0xa5, 0x37, 0x12, 0x34]) });
    expect(await r.request({ fc: 8, subFunction: 1, data: Buffer.from([0, 0]) })).toEqual({ fc: 8, exception: 1 });

    const c = await client();
    const id = await c.readDeviceIdentification(1, 0);
    // modbus-serial returns the objects keyed by object id.
    expect(id.data).toEqual({ 0: 'plantgate', 1: 'plantgate-sim', 2: '0.1.0' });
    expect(id.conformityLevel).toBe(0x81);
    const one = await r.request({ fc: 43, meiType: 14, data: Buffer.from([4, 1]) });
    expect(one).toMatchObject({ fc: 43 });
    expect((one as { raw: Buffer }).raw.subarray(7).toString('latin1')).toBe('\u0001\u000dplantgate-sim');
    expect(await r.request({ fc: 43, meiType: 14, data: Buffer.from([4, 9]) })).toEqual({ fc: 43, exception: 2 });
  });

  it('answers pipelined requests in order, with their transaction ids, in one burst', async () => {
    const r = await raw();
    const burst = Buffer.concat(
      Array.from({ length: 50 }, (_, i) =>
        encodeFrame(1000 + i, 1, encodeRequest(i % 2 === 0 ? { fc: 4, address: 0, quantity: 1 } : { fc: 3, address: 7, quantity: 1 })),
      ),
    );
    r.socket.write(burst);
    for (let i = 0; i < 50; i++) {
      const f = await r.frame();
      expect(f.transactionId).toBe(1000 + i);
      expect(f.pdu[0]).toBe(i % 2 === 0 ? 4 : 0x83);
    }
  });

  it('answers an unknown unit id with exception 0x0B and unit 0xFF as the only PLC', async () => {
    const r = await raw();
    expect(await r.request({ fc: 4, address: 0, quantity: 1 }, 9)).toEqual({ fc: 4, exception: 0x0b });
    expect(await r.request({ fc: 4, address: 0, quantity: 1 }, 0xff)).toEqual({ fc: 4, values: [500] });
  });

  it('closes only the connection that sent a malformed frame; other clients keep working', async () => {
    const good = await client();
    const bad = await raw();
    const closed = once(bad.socket, 'close');
    bad.socket.write(Buffer.from([0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1])); // protocol id 7
    await closed;
    expect((await good.readInputRegisters(0, 1)).data).toEqual([500]);
    const again = await raw();
    expect(await again.request({ fc: 1, address: 0, quantity: 3 })).toEqual({ fc: 1, values: [false, false, false] });
  });

  it('answers every good request of a segment before closing on the bad frame that follows them', async () => {
    const r = await raw();
    const closed = once(r.socket, 'close');
    const received: Buffer[] = [];
    r.socket.on('data', (c: Buffer) => received.push(Buffer.from(c)));
    r.socket.write(
      Buffer.concat([
        encodeFrame(1, 1, encodeRequest({ fc: 6, address: 0, value: 600 })),
        encodeFrame(2, 1, encodeRequest({ fc: 4, address: 0, quantity: 1 })),
        Buffer.from([0, 3, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1]), // protocol id 7: the stream is broken here
      ]),
    );
    await closed;
    const frames: Frame[] = [];
    const d = new FrameDecoder((f) => frames.push({ ...f, pdu: Buffer.from(f.pdu) }), () => undefined);
    d.push(Buffer.concat(received));
    expect(frames.map((f) => [f.transactionId, f.pdu.toString('hex')])).toEqual([
      [1, '0600000258'],
      [2, '040201f4'],
    ]);
    expect(sim.read('tank1.setpoint')).toBe(60);
  });

  it('closes a connection that sends a function code with the exception bit set', async () => {
    const bad = await raw();
    const closed = once(bad.socket, 'close');
    bad.socket.write(encodeFrame(1, 1, Buffer.from([0x83, 0, 0, 0, 1])));
    await closed;
    expect(sim.requestCount()).toBe(0);
  });

  it('becomes unreachable after stopModbus while the plant keeps its state', async () => {
    const c = await client();
    await c.writeCoil(1, true);
    await sim.stopModbus();
    const s = net.connect(sim.port, '127.0.0.1');
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
    expect(sim.read('valve1.open')).toBe(1);
  });
});

describe('PLC simulator on the system clock', () => {
  it('runs the model on its own timer', async () => {
    const sim = await startSimulator({ plant: FIXTURE, tickMs: 10 });
    try {
      sim.write('valve1.open', 1);
      const start = sim.read('tank1.level');
      await new Promise((r) => setTimeout(r, 300));
      expect(sim.read('tank1.level')).toBeLessThan(start);
    } finally {
      await sim.close();
    }
  });
});
