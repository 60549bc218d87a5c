import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { ManualClock } from '../../../src/core/clock.js';
import { encodeFrame } from '../../../protocols/modbus/codec.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { RawClient } from './raw-client.js';

const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;
const HEAT_LOOP = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');

// Modbus Application Protocol v1.1b3 §6: each function's state diagram checks the function code
// (0x01), then the quantity and byte count (0x03), then the address range (0x02), and only then
// executes — so a refused request never writes anything.
describe('Modbus function-code semantics (checked with modbus-serial)', () => {
  let sim: SimHandle;
  let c: ModbusRTU;
  const raws: RawClient[] = [];

  beforeEach(async () => {
    sim = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock() });
    c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port: sim.port });
    c.setID(2);
    c.setTimeout(2000);
  });
  afterEach(async () => {
    for (const r of raws.splice(0)) r.close();
    await new Promise<void>((r) => c.close(() => r()));
    await sim.close();
  });

  async function raw(): Promise<RawClient> {
    const r = await RawClient.connect(sim.port);
    raws.push(r);
    return r;
  }

  it('answers 0x03 for a bad quantity before looking at the address, and 0x02 for an unmapped range', async () => {
    const r = await raw();
    // FC3, quantity 126 at an unmapped address: the quantity is checked first.
    r.socket.write(encodeFrame(1, 2, Buffer.from([3, 0x01, 0x00, 0, 126])));
    expect((await r.frame())?.pdu).toEqual(Buffer.from([0x83, 0x03]));
    r.socket.write(encodeFrame(2, 2, Buffer.from([1, 0, 0, 0, 0]))); // FC1 quantity 0
    expect((await r.frame())?.pdu).toEqual(Buffer.from([0x81, 0x03]));
    r.socket.write(encodeFrame(3, 2, Buffer.from([5, 0, 1, 0x12, 0x34]))); // FC5 value not 0xFF00/0x0000
    expect((await r.frame())?.pdu).toEqual(Buffer.from([0x85, 0x03]));
    await expect(c.readHoldingRegisters(0, 5)).rejects.toMatchObject({ modbusCode: 2 }); // holding 0..3 mapped
    await expect(c.readInputRegisters(3, 1)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(c.readDiscreteInputs(0, 4)).rejects.toMatchObject({ modbusCode: 2 });
    expect((await c.readDiscreteInputs(0, 3)).data.slice(0, 3)).toEqual([false, false, false]);
  });

  it('writes nothing at all when a multi-write runs past the point map', async () => {
    await expect(c.writeRegisters(1, [100, 1, 2, 3])).rejects.toMatchObject({ modbusCode: 2 }); // 1..4, 4 unmapped
    await expect(c.writeCoils(1, [true, true, true])).rejects.toMatchObject({ modbusCode: 2 }); // 1..3, 3 unmapped
    expect(sim.read('valve.command')).toBe(0);
    expect(sim.read('pump.run')).toBe(0);
    expect(sim.read('pump.starts_reset')).toBe(0);
    expect(sim.served().every((e) => !e.wrote)).toBe(true);
  });

  it('serves a little-endian float32 point as two registers, low word first', async () => {
    const { data } = await c.readHoldingRegisters(2, 2);
    const b = Buffer.alloc(4);
    b.writeUInt16BE(data[1], 0);
    b.writeUInt16BE(data[0], 2);
    expect(b.readFloatBE(0)).toBeCloseTo(1234.5, 3);
  });

  it('leaves requests for a unit id it does not serve unanswered, as the plant configures', async () => {
    const r = await raw();
    r.send({ fc: 3, address: 0, quantity: 1 }, 9, 40);
    r.send({ fc: 3, address: 0, quantity: 1 }, 2, 41);
    expect((await r.frame())?.transactionId).toBe(41);
    expect(sim.served().map((e) => [e.unitId, e.outcome])).toEqual([
      [9, 'no-answer'],
      [2, 'ok'],
    ]);
    // 0xFF addresses the device itself (Modbus Messaging on TCP/IP §4.4.2).
    expect(await r.request({ fc: 3, address: 0, quantity: 1 }, 0xff)).toEqual({ fc: 3, values: [600] });
  });

  it('applies FC 5, 6, 15, 16, 22 and 23 to exactly the addressed points', async () => {
    await c.writeCoil(1, true);
    await c.writeRegister(0, 555);
    await c.writeCoils(0, [true, false]);
    await c.writeRegisters(0, [600, 250]);
    const r = await raw();
    expect(await r.request({ fc: 22, address: 1, andMask: 0xff00, orMask: 0x0001 }, 2)).toMatchObject({ fc: 22 });
    expect(await r.request({ fc: 23, readAddress: 0, readQuantity: 2, writeAddress: 0, writeQuantity: 1, values: [650] }, 2)).toEqual({
      fc: 23,
      values: [650, (250 & 0xff00) | (0x0001 & ~0xff00)],
    });
    expect([sim.read('loop.auto'), sim.read('pump.run'), sim.read('temp.setpoint')]).toEqual([1, 0, 65]);
    expect(sim.served().map((e) => e.fc)).toEqual([5, 6, 15, 16, 22, 23]);
  });

  it('reports its counters on the read-only diagnostics sub-functions and refuses the ones that change it', async () => {
    const r = await raw();
    sim.inject({ kind: 'exception', code: 6, fc: [3], count: 1 });
    expect(await r.request({ fc: 3, address: 0, quantity: 1 }, 2)).toEqual({ fc: 3, exception: 6 });
    expect(await r.request({ fc: 3, address: 0, quantity: 1 }, 2)).toEqual({ fc: 3, values: [600] });
    const diag = async (sub: number): Promise<number | undefined> => {
      const res = await r.request({ fc: 8, subFunction: sub, data: Buffer.from([0, 0]) }, 2);
      return 'raw' in res ? res.raw.readUInt16BE(3) : undefined;
    };
    expect(await diag(0x0b)).toBe(3); // bus messages, this one included
    expect(await diag(0x0d)).toBe(1); // exception responses
    expect(await diag(0x11)).toBe(1); // busy
    expect(await diag(0x0e)).toBe(6); // messages to this unit
    expect(await diag(0x0f)).toBe(0);
    expect(await diag(0x02)).toBe(0);
    for (const sub of [0x01, 0x04, 0x0a, 0x14]) {
      expect(await r.request({ fc: 8, subFunction: sub, data: Buffer.from([0, 0]) }, 2), `sub-function ${sub}`).toEqual({ fc: 8, exception: 1 });
    }
    expect(sim.read('temp.setpoint')).toBe(60);
  });
});
