import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { ManualClock } from '../../../src/core/clock.js';
import { ModbusFrameError, validateResponse } from '../../../protocols/modbus/codec.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import type { ServedRequest } from '../../../src/sim/request-log.js';
import { RawClient } from './raw-client.js';

const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

const HEAT_LOOP = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');
const UNIT = 2;

describe('fault injection over Modbus/TCP', () => {
  let sim: SimHandle;
  const clients: ModbusRTU[] = [];
  const raws: RawClient[] = [];

  async function client(): Promise<ModbusRTU> {
    const c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port: sim.port });
    c.setID(UNIT);
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
    sim = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock(), seed: 9 });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await new Promise<void>((r) => c.close(() => r()));
    for (const r of raws.splice(0)) r.close();
    await sim.close();
  });

  it('answers exception 0x06 (busy) on the chosen point only, writes nothing, then recovers after count', async () => {
    const c = await client();
    sim.inject({ kind: 'exception', code: 6, points: ['temp.setpoint'], count: 2 });
    await expect(c.writeRegister(0, 700)).rejects.toMatchObject({ modbusCode: 6 });
    // A multi-write that includes the busy point is refused whole: valve.command is untouched too.
    await expect(c.writeRegisters(0, [700, 500])).rejects.toMatchObject({ modbusCode: 6 });
    expect(sim.read('temp.setpoint')).toBe(60);
    expect(sim.read('valve.command')).toBe(0);
    expect((await c.readHoldingRegisters(1, 1)).data).toEqual([0]); // other points answer
    await c.writeRegister(0, 700); // count spent
    expect(sim.read('temp.setpoint')).toBe(70);
    const writes = sim.served().filter((r) => r.isWrite);
    expect(writes.map((r) => [r.fc, r.outcome, r.exception, r.wrote])).toEqual([
      [6, 'exception', 6, false],
      [16, 'exception', 6, false],
      [6, 'ok', undefined, true],
    ]);
    expect(writes[1].points).toEqual(['hx1/temp.setpoint', 'hx1/valve.command']);
  });

  it('stops answering on a timeout fault while later requests on the same connection are still answered', async () => {
    const r = await raw();
    sim.inject({ kind: 'timeout', fc: [3] });
    r.send({ fc: 3, address: 0, quantity: 1 }, UNIT, 100);
    r.send({ fc: 4, address: 0, quantity: 1 }, UNIT, 101);
    const f = await r.frame();
    // Answers go out in request order, so the first frame back being 101 proves 100 got none.
    expect(f?.transactionId).toBe(101);
    expect(sim.served().map((e) => [e.transactionId, e.outcome])).toEqual([
      [100, 'no-answer'],
      [101, 'ok'],
    ]);
  });

  it('closes the connection instead of answering on a disconnect fault, and drops all connections on demand', async () => {
    const a = await raw();
    sim.inject({ kind: 'disconnect', fc: [6], count: 1 });
    a.send({ fc: 6, address: 0, value: 650 }, UNIT);
    expect(await a.frame()).toBeUndefined();
    expect(sim.read('temp.setpoint')).toBe(60); // dropped before executing
    const b = await raw();
    const c = await raw();
    expect(await b.request({ fc: 3, address: 0, quantity: 1 }, UNIT)).toEqual({ fc: 3, values: [600] });
    expect(sim.dropConnections()).toBe(2);
    expect(await b.frame()).toBeUndefined();
    expect(await c.frame()).toBeUndefined();
  });

  it('delays answers by the latency fault and keeps them in request order', async () => {
    const r = await raw();
    sim.inject({ kind: 'latency', ms: 80, fc: [3] });
    // Both requests served (the simulator runs in this process): when that is known, no answer can
    // have left yet, since the delayed one is held on a timer and the undelayed one queues behind it.
    let served = 0;
    const bothServed = new Promise<void>((resolve) => {
      const off = sim.onServed(() => {
        if (++served === 2) (off(), resolve());
      });
    });
    r.send({ fc: 3, address: 0, quantity: 1 }, UNIT, 1);
    r.send({ fc: 4, address: 0, quantity: 1 }, UNIT, 2);
    await bothServed;
    expect(r.received).toEqual([]);
    expect((await r.frame())?.transactionId).toBe(1);
    expect((await r.frame())?.transactionId).toBe(2);
  });

  it('leaves a unit that went offline unanswered while the connection stays open', async () => {
    const r = await raw();
    sim.inject({ kind: 'offline', plc: 'hx1' });
    const served = new Promise<ServedRequest>((res) => {
      const off = sim.onServed((e) => {
        off();
        res(e);
      });
    });
    r.send({ fc: 3, address: 0, quantity: 1 }, UNIT, 5);
    expect((await served).outcome).toBe('no-answer');
    sim.clearFaults();
    r.send({ fc: 3, address: 0, quantity: 1 }, UNIT, 6);
    expect((await r.frame())?.transactionId).toBe(6);
    sim.inject({ kind: 'offline', unit: UNIT, answer: 'exception' });
    expect(await r.request({ fc: 3, address: 0, quantity: 1 }, UNIT)).toEqual({ fc: 3, exception: 0x0b });
  });

  it('sends malformed response frames that a strict client refuses', async () => {
    const r = await raw();
    sim.inject({ kind: 'malformed', corruption: 'byte-count', count: 1 });
    const req = { fc: 3 as const, address: 0, quantity: 2 };
    r.send(req, UNIT, 9);
    const f = await r.frame();
    expect(f?.transactionId).toBe(9);
    expect(() => validateResponse(req, f!.pdu)).toThrow(ModbusFrameError);
    sim.inject({ kind: 'malformed', corruption: 'protocol-id', count: 1 });
    r.send(req, UNIT, 10);
    await once(r.socket, 'data');
    expect(r.received.at(-1)!.readUInt16BE(2)).toBe(1);
    expect(sim.served().map((e) => e.outcome)).toEqual(['malformed', 'malformed']);
  });

  it('shows a stuck sensor to Modbus clients while the process moves on', async () => {
    const c = await client();
    await c.writeRegister(1, 1000); // valve command 100 %
    sim.inject({ kind: 'stuck', point: 'valve.position' });
    sim.step(5000);
    expect((await c.readInputRegisters(1, 1)).data).toEqual([0]);
    expect(sim.readTrue('valve.position')).toBeCloseTo(50, 5);
  });

  it('tells a subscriber about every request as it is served', async () => {
    const seen: ServedRequest[] = [];
    const off = sim.onServed((e) => seen.push(e));
    const c = await client();
    await c.readCoils(0, 3);
    await c.writeCoil(1, true);
    off();
    await c.readCoils(0, 1);
    expect(seen.map((e) => [e.fc, e.points, e.wrote])).toEqual([
      [1, ['hx1/loop.auto', 'hx1/pump.run', 'hx1/pump.starts_reset'], false],
      [5, ['hx1/pump.run'], true],
    ]);
    expect(sim.served().length).toBe(3);
    sim.clearServed();
    expect(sim.served()).toEqual([]);
    await c.readCoils(0, 1);
    expect(sim.served()[0].seq).toBe(4);
  });
});
