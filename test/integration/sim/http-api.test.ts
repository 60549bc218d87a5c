import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import ModbusSerial from 'modbus-serial';
import { ManualClock } from '../../../src/core/clock.js';
import { startSimApi, type SimApiHandle } from '../../../src/sim/http-api.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';

const ModbusRTU = ModbusSerial.default;
const HEAT_LOOP = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');

describe('simulator HTTP API', () => {
  let sim: SimHandle;
  let api: SimApiHandle;

  async function call(method: string, path: string, body?: unknown, type = 'application/json'): Promise<{ status: number; json: any }> {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': type },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  }

  beforeEach(async () => {
    sim = await startSimulator({ plant: HEAT_LOOP, clock: new ManualClock() });
    api = await startSimApi(sim);
  });

  afterEach(async () => {
    await api.close();
    await sim.close();
  });

  it('lists the plant, its endpoints and every point with its value and unit', async () => {
    const plant = await call('GET', '/api/plant');
    expect(plant.json).toMatchObject({ plant: 'heat-loop', endpoints: [{ plc: 'hx1', unitId: 2, port: sim.port }], clock: { manual: true }, seed: 1 });
    const points = await call('GET', '/api/points');
    expect(points.json.points).toHaveLength(12);
    expect(points.json.points.find((p: { name: string }) => p.name === 'temp.setpoint')).toMatchObject({ id: 'hx1/temp.setpoint', value: 60, unit: '°C', table: 'holding', address: 0 });
  });

  it('sets a point, steps the clock, and reads the result', async () => {
    expect(await call('PUT', '/api/points/hx1%2Fvalve.command', { value: 100 })).toEqual({ status: 200, json: { id: 'hx1/valve.command', value: 100 } });
    expect((await call('POST', '/api/clock/step', { ms: 2000 })).status).toBe(200);
    expect((await call('GET', '/api/points/valve.position')).json).toMatchObject({ value: 20 });
  });

  it('injects, lists and clears faults, and reports what reached the PLC', async () => {
    const added = await call('POST', '/api/faults', { kind: 'exception', code: 6, points: ['temp.setpoint'] });
    expect(added.status).toBe(201);
    expect(added.json.fault).toMatchObject({ id: 'f1', spec: { kind: 'exception', code: 6 } });
    const c = new ModbusRTU();
    await c.connectTCP('127.0.0.1', { port: sim.port });
    c.setID(2);
    await expect(c.writeRegister(0, 1)).rejects.toMatchObject({ modbusCode: 6 });
    await new Promise<void>((r) => c.close(() => r()));
    expect((await call('GET', '/api/faults')).json.faults).toMatchObject([{ id: 'f1', hits: 1 }]);
    const log = await call('GET', '/api/requests');
    expect(log.json.total).toBe(1);
    expect(log.json.entries[0]).toMatchObject({ seq: 1, unitId: 2, fc: 6, request: { fc: 6, address: 0, value: 1 }, points: ['hx1/temp.setpoint'], outcome: 'exception', exception: 6, faultId: 'f1', wrote: false });
    expect((await call('GET', '/api/requests?after=1')).json.entries).toEqual([]);
    expect(await call('DELETE', '/api/faults/f1')).toEqual({ status: 200, json: { cleared: 1 } });
    expect(await call('POST', '/api/connections/drop')).toEqual({ status: 200, json: { dropped: 0 } });
  });

  it('answers 4xx with a JSON error naming the field', async () => {
    const err = async (method: string, path: string, body?: unknown, type?: string) => {
      const r = await call(method, path, body, type);
      return [r.status, r.json.error.code, r.json.error.field];
    };
    expect(await err('POST', '/api/faults', { kind: 'latency', distribution: 'normal', mean_ms: 5 })).toEqual([400, 'INVALID_FIELD', 'stddev_ms']);
    expect(await err('POST', '/api/faults', { kind: 'stuck', point: 'nope' })).toEqual([400, 'INVALID_FIELD', 'point']);
    expect(await err('PUT', '/api/points/temp.setpoint', { value: 'hot' })).toEqual([400, 'TYPE_MISMATCH', 'value']);
    expect(await err('PUT', '/api/points/temp.setpoint', { value: 1, extra: 1 })).toEqual([400, 'INVALID_FIELD', 'extra']);
    expect(await err('PUT', '/api/points/valve.command', { value: -5 })).toEqual([400, 'VALUE_OUT_OF_BOUNDS', 'value']);
    expect(await err('PUT', '/api/points/nope', { value: 1 })).toEqual([404, 'NO_SUCH_POINT', 'point']);
    expect(await err('POST', '/api/faults', '{not json')).toEqual([400, 'INVALID_JSON', '(body)']);
    expect(await err('POST', '/api/faults', 'x', 'text/plain')).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type']);
    expect(await err('GET', '/api/requests?limit=lots')).toEqual([400, 'INVALID_FIELD', 'limit']);
    expect(await err('DELETE', '/api/faults/f9')).toEqual([404, 'NO_SUCH_FAULT', 'id']);
    expect(await err('POST', '/api/clock/step', { ms: 0 })).toEqual([400, 'INVALID_FIELD', 'ms']);
    expect(await err('PATCH', '/api/points')).toEqual([405, 'METHOD_NOT_ALLOWED', 'method']);
    expect(await err('GET', '/api/nothing')).toEqual([404, 'NOT_FOUND', 'path']);
  });

  it('steps the plant by the whole time asked for, and refuses a step over an hour naming ms', async () => {
    const before = sim.clock.now();
    expect(await call('PUT', '/api/points/valve.command', { value: 100 })).toMatchObject({ status: 200 });
    expect(await call('POST', '/api/clock/step', { ms: 30 * 60_000 })).toEqual({ status: 200, json: { now: before + 30 * 60_000 } });
    // 30 minutes on a 30 s lag: the outlet is at 0.6 × 100 + 20 = 80 °C (± noise).
    expect(sim.readTrue('temp.pv')).toBeCloseTo(80, 0);
    const tooLong = await call('POST', '/api/clock/step', { ms: 24 * 3_600_000 });
    expect([tooLong.status, tooLong.json.error.code, tooLong.json.error.field]).toEqual([400, 'INVALID_FIELD', 'ms']);
    expect(tooLong.json.error.message).toMatch(/3600000/);
    expect(sim.clock.now()).toBe(before + 30 * 60_000);
  });

  it('refuses to step a plant that runs on a real clock', async () => {
    const live = await startSimulator({ plant: HEAT_LOOP });
    const liveApi = await startSimApi(live);
    try {
      const res = await fetch(`${liveApi.url}/api/clock/step`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":100}' });
      expect(res.status).toBe(409);
      expect(((await res.json()) as any).error).toMatchObject({ code: 'CLOCK_NOT_MANUAL', field: 'ms' });
    } finally {
      await liveApi.close();
      await live.close();
    }
  });
});
