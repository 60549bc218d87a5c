// What an engineer building a test harness needs from the simulator (docs/simulator.md): a PLC that
// reboots on its port, a connection limit and an idle timeout like real PLCs, faults that end by
// themselves, answers lost after the write ran, framing errors and `changed` in the served log,
// snapshots between test cases, PLC logic, and third-party maps (ranges, identity, strings,
// read-only registers, open maps). The client is a third-party one (modbus-serial) wherever it can
// send the request; raw frames otherwise.
import { once } from 'node:events';
import net from 'node:net';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { startSimApi } from '../../../src/sim/http-api.js';
import { startSimulator, type SimHandle, type SimulatorOptions } from '../../../src/sim/modbus-server.js';
import { RawClient } from './raw-client.js';

const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

const WATER = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');
const REFERENCE = resolve(import.meta.dirname, '../../../fixtures/plants/reference-plc.yaml');

/** The Modbus exception code a modbus-serial call failed with (undefined: it did not fail). */
async function exceptionOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const code = (err as { modbusCode?: number }).modbusCode;
    if (code === undefined) throw err;
    return code;
  }
}

describe('simulator features for test harnesses', () => {
  let sim: SimHandle | undefined;
  const cleanups: (() => unknown)[] = [];

  async function start(opts: Omit<SimulatorOptions, 'clock'> & { clock?: ManualClock }): Promise<SimHandle> {
    sim = await startSimulator({ clock: new ManualClock(Date.now()), ...opts });
    return sim;
  }

  async function client(port: number): Promise<ModbusRTU> {
    const c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port });
    c.setID(1);
    c.setTimeout(5000);
    cleanups.push(() => new Promise<void>((r) => (c.isOpen ? c.close(() => r()) : r())));
    return c;
  }

  async function raw(port: number): Promise<RawClient> {
    const r = await RawClient.connect(port);
    cleanups.push(() => r.close());
    return r;
  }

  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
    await sim?.close();
    sim = undefined;
  });

  it('comes back on the same port after a reboot, with the process state kept', async () => {
    const s = await start({ plant: WATER });
    await (await client(s.port)).writeRegister(0, 555);
    await s.stopModbus();
    const refused = net.connect(s.port, '127.0.0.1');
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
    await s.startModbus();
    const { data } = await (await client(s.port)).readHoldingRegisters(0, 1);
    expect(data).toEqual([555]);
  });

  it('closes a connection beyond its limit at once, and takes a new one when a slot frees', async () => {
    const s = await start({ plant: WATER, maxConnections: 2 });
    const a = await raw(s.port);
    await raw(s.port);
    const third = await raw(s.port);
    expect(await third.frame()).toBeUndefined(); // closed without a word, like a PLC with its slots taken
    expect(s.connections()).toMatchObject({ open: 2, refused: 1 });
    a.close();
    await once(a.socket, 'close');
    // The server sees the close a moment later: retry until a slot is free (no timing assumed).
    let answered = false;
    for (let i = 0; i < 50 && !answered; i++) {
      const c = await raw(s.port);
      c.send({ fc: 3, address: 0, quantity: 1 });
      answered = (await c.frame()) !== undefined;
    }
    expect(answered).toBe(true);
  });

  it('closes a connection that sends no request for the idle timeout, and counts it', async () => {
    const s = await start({ plant: WATER, idleTimeoutMs: 200 });
    const c = await raw(s.port);
    expect((await c.request({ fc: 3, address: 0, quantity: 1 })).fc).toBe(3);
    expect(await c.frame()).toBeUndefined(); // the server closed it
    expect(s.connections()).toMatchObject({ open: 0, idleClosed: 1 });
  });

  it('refuses a connection limit or idle timeout below 1', async () => {
    await expect(startSimulator({ plant: WATER, maxConnections: 0 })).rejects.toThrow(/maxConnections must be an integer of at least 1/);
    await expect(startSimulator({ plant: WATER, idleTimeoutMs: 1.5 })).rejects.toThrow(/idleTimeoutMs/);
  });

  it('a lost answer: the write runs, its answer never comes, later requests are answered', async () => {
    const s = await start({ plant: WATER });
    s.inject({ kind: 'lost-answer', fc: [6], count: 1 } as never);
    const c = await raw(s.port);
    const lostTid = c.send({ fc: 6, address: 0, value: 612 });
    const readTid = c.send({ fc: 3, address: 0, quantity: 1 });
    const f = await c.frame();
    expect([f?.transactionId, f?.pdu.toString('hex')]).toEqual([readTid, '03020264']);
    expect(s.read('tank1.setpoint')).toBeCloseTo(61.2, 5);
    const [lost] = s.served().filter((r) => r.transactionId === lostTid);
    expect(lost?.toJSON()).toMatchObject({ outcome: 'answer-lost', wrote: true, changed: true });
  });

  it('a lost answer with disconnect: the write runs and the connection closes instead of answering', async () => {
    const s = await start({ plant: WATER });
    s.inject({ kind: 'lost-answer', fc: [5], then: 'disconnect' } as never);
    const c = await raw(s.port);
    c.send({ fc: 5, address: 0, value: true });
    expect(await c.frame()).toBeUndefined();
    expect(s.read('pump1.run')).toBe(1);
  });

  it('a fault with a duration ends by itself after that much plant time', async () => {
    const clock = new ManualClock(Date.now());
    const s = await start({ plant: WATER, clock });
    s.inject({ kind: 'exception', code: 6, duration_ms: 5000 } as never);
    const c = await client(s.port);
    expect(await exceptionOf(c.readHoldingRegisters(0, 1))).toBe(6);
    s.step(4900);
    expect(await exceptionOf(c.readHoldingRegisters(0, 1))).toBe(6);
    s.step(100);
    expect(await exceptionOf(c.readHoldingRegisters(0, 1))).toBeUndefined();
    expect(s.faults()).toEqual([]);
  });

  it('records a framing error in the served-request log with its code, after answering what came before', async () => {
    const s = await start({ plant: WATER });
    const c = await raw(s.port);
    const tid = c.send({ fc: 3, address: 0, quantity: 1 });
    c.socket.write(Buffer.from([0, 9, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1])); // protocol id 7
    expect((await c.frame())?.transactionId).toBe(tid);
    expect(await c.frame()).toBeUndefined();
    const last = s.tail(1)[0]!.toJSON();
    expect(last).toMatchObject({ outcome: 'framing-error', error: { code: 'BAD_PROTOCOL_ID' } });
  });

  it('tells a write that changed memory from one that wrote what was there', async () => {
    const s = await start({ plant: WATER });
    const c = await client(s.port);
    await c.writeRegister(1, 1200);
    await c.writeRegister(1, 1200);
    await c.writeCoils(0, [true, false]);
    expect(s.tail(3).map((r) => [r.fc, r.toJSON().wrote, r.toJSON().changed])).toEqual([
      [6, true, true],
      [6, true, false],
      [15, true, true],
    ]);
  });

  it('a stuck valve on the water-tank model: the drain commanded open does not move, so the level holds', async () => {
    const drain = async (stuck: boolean): Promise<[number, number]> => {
      const s = await startSimulator({ plant: WATER, clock: new ManualClock(0) });
      try {
        if (stuck) s.inject({ kind: 'valve-stuck', point: 'valve1.open' } as never);
        const before = s.read('tank1.level');
        await (await client(s.port)).writeCoil(1, true); // a client opens the drain
        s.step(60_000);
        return [before, s.read('tank1.level')];
      } finally {
        await s.close();
      }
    };
    const [before, drained] = await drain(false);
    expect(drained).toBeLessThan(before);
    const [held, after] = await drain(true);
    expect(after).toBe(held);
  });

  it('restores a snapshot and resets to the start between test cases', async () => {
    const s = await start({ plant: WATER });
    const start0 = s.read('tank1.level');
    const setpoint0 = s.read('tank1.setpoint');
    s.write('tank1.setpoint', 30);
    const snap = s.snapshot();
    s.write('tank1.setpoint', 70);
    s.write('pump1.run', 1);
    s.step(60_000);
    expect(s.read('tank1.level')).not.toBe(start0);
    s.restore(snap);
    expect([s.read('tank1.setpoint'), s.read('pump1.run'), s.read('tank1.level')]).toEqual([30, 0, start0]);
    s.reset();
    expect([s.read('tank1.setpoint'), s.read('tank1.level')]).toEqual([setpoint0, start0]);
  });

  it('runs the plant\'s own logic: the pump stops at the high alarm instead of the tank overfilling', async () => {
    const text = (logic: string): string =>
      `plant: tripping\nplcs:\n  - id: plc1\n    unit_id: 1\n    model: water-tank\n    points:\n` +
      `      tank1.level: { table: input, address: 0, type: uint16, scale: 0.1 }\n` +
      `      tank1.setpoint: { table: holding, address: 0, type: uint16, scale: 0.1 }\n` +
      `      pump1.speed: { table: holding, address: 1, type: uint16, initial: 1500 }\n` +
      `      pump1.run: { table: coil, address: 0, type: bool }\n` +
      `      valve1.open: { table: coil, address: 1, type: bool }\n` +
      `      control.auto: { table: coil, address: 2, type: bool }\n` +
      `      pump1.running: { table: discrete, address: 0, type: bool }\n` +
      `      tank1.high_alarm: { table: discrete, address: 1, type: bool }\n` +
      `      tank1.low_alarm: { table: discrete, address: 2, type: bool }\n` +
      logic;
    const run = async (logic: string): Promise<[number, number]> => {
      const s = await startSimulator({ plant: parsePlant(text(logic), 'tripping.yaml'), clock: new ManualClock(0) });
      try {
        s.write('pump1.run', 1);
        for (let i = 0; i < 24; i++) s.step(600_000); // four hours
        return [s.read('tank1.level'), s.read('pump1.run')];
      } finally {
        await s.close();
      }
    };
    const [overfilled] = await run('');
    expect(overfilled).toBe(100); // without logic the model clamps a full tank at 100 %
    const [level, pump] = await run('    logic:\n      - { when: tank1.high_alarm == 1, set: { pump1.run: 0 } }\n');
    expect(pump).toBe(0);
    expect(level).toBeGreaterThanOrEqual(88);
    expect(level).toBeLessThan(95);
  });

  it('serves the 100/100/32/32 reference map with its identity, and 0x02 past it', async () => {
    const s = await start({ plant: REFERENCE });
    const c = await client(s.port);
    expect((await c.readCoils(0, 100)).data).toHaveLength(104); // modbus-serial pads to the byte
    expect((await c.readDiscreteInputs(0, 100)).data.slice(0, 100)).toEqual(new Array(100).fill(false));
    expect((await c.readHoldingRegisters(0, 32)).data).toEqual(new Array(32).fill(0));
    expect((await c.readInputRegisters(0, 32)).data).toEqual(new Array(32).fill(0));
    expect(await exceptionOf(c.readHoldingRegisters(31, 2))).toBe(2);
    expect(await exceptionOf(c.readCoils(100, 1))).toBe(2);
    await c.writeRegisters(30, [7, 8]);
    expect((await c.readHoldingRegisters(30, 2)).data).toEqual([7, 8]);
    const id = await c.readDeviceIdentification(2, 0);
    expect([id.data[0], id.data[1], id.data[2], id.data[3], id.data[4]]).toEqual(['Acme Controls', 'RC-100', '2.1', undefined, 'Reference PLC']);
  });

  it('says how to write ranges when a [ ] list holds them bare', () => {
    expect(() => parsePlant('plant: x\nplcs:\n  - id: a\n    unit_id: 1\n    registers: [holding[0..9]]\n', 'x.yaml')).toThrow(/must be quoted: \["holding\[0\.\.99\]"\]/);
  });

  it('serves strings, refuses writes to read-only registers with 0x02, and answers every address of an open map', async () => {
    const plant = parsePlant(
      `plant: odd\nplcs:\n  - id: a\n    unit_id: 1\n    registers: ["holding[0..9]", "holding[10..19] read-only", "coil[0..7] read-only"]\n` +
        `    points:\n      tag: { table: holding, address: 0, type: string, length: 6, initial: PUMP-1 }\n` +
        `      limit: { table: holding, address: 10, type: uint16, initial: 42 }\n` +
        `  - id: b\n    unit_id: 2\n    open_map: true\n`,
      'odd.yaml',
    );
    const s = await start({ plant });
    const c = await client(s.port);
    const { buffer } = await c.readHoldingRegisters(0, 3);
    expect(buffer.toString('latin1')).toBe('PUMP-1');
    expect((await c.readHoldingRegisters(10, 1)).data).toEqual([42]);
    expect(await exceptionOf(c.writeRegister(10, 1))).toBe(2);
    expect(await exceptionOf(c.writeCoil(0, true))).toBe(2);
    expect(s.read('a/limit')).toBe(42);
    await c.writeRegister(9, 1); // writable beside the read-only range
    c.setID(2);
    expect((await c.readHoldingRegisters(65_500, 10)).data).toEqual(new Array(10).fill(0));
    await c.writeRegister(40_000, 9);
    expect((await c.readHoldingRegisters(40_000, 1)).data).toEqual([9]);
    expect(s.points().find((p) => p.id === 'a/tag')).toMatchObject({ value: 'PUMP-1', unit: null, readOnly: false, type: 'string' });
  });

  it('HTTP API: tail of the log, connections, snapshots, reset, a PLC reboot and string points', async () => {
    const s = await start({ plant: WATER });
    const api = await startSimApi(s);
    cleanups.push(() => api.close());
    const call = async (method: string, p: string, body?: unknown): Promise<[number, any]> => {
      const r = await fetch(api.url + p, { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) });
      return [r.status, await r.json()];
    };
    const c = await client(s.port);
    for (const [address, quantity] of [[0, 1], [0, 2], [0, 1], [0, 2], [1, 1]] as const) await c.readHoldingRegisters(address, quantity);
    const [, tail] = await call('GET', '/api/requests?tail=2');
    expect(tail.entries.map((e: { request: { address: number; quantity: number } }) => [e.request.address, e.request.quantity])).toEqual([[0, 2], [1, 1]]);
    expect((await call('GET', '/api/requests?tail=2&after=1'))[0]).toBe(400);
    expect((await call('GET', '/api/connections'))[1]).toMatchObject({ open: 1, refused: 0 });
    const [created, { id }] = await call('POST', '/api/snapshots');
    expect(created).toBe(201);
    await call('PUT', '/api/points/tank1.setpoint', { value: 77 });
    expect((await call('POST', `/api/snapshots/${id}/restore`))[0]).toBe(200);
    expect(s.read('tank1.setpoint')).not.toBe(77);
    expect((await call('POST', '/api/snapshots/nope/restore'))[1].error.code).toBe('NO_SUCH_SNAPSHOT');
    await call('PUT', '/api/points/tank1.setpoint', { value: 77 });
    await call('POST', '/api/reset');
    expect(s.read('tank1.setpoint')).not.toBe(77);
    expect((await call('PUT', '/api/points/tank1.setpoint', { value: 'abc' }))[1].error.code).toBe('TYPE_MISMATCH');
    expect((await call('POST', '/api/modbus/stop'))[1]).toEqual({ listening: false });
    expect((await call('POST', '/api/modbus/start'))[1]).toEqual({ listening: true, port: s.port });
    expect((await (await client(s.port)).readHoldingRegisters(0, 1)).data).toHaveLength(1);
  });
});
