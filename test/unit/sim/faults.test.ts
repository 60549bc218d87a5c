import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { FrameDecoder, ModbusFrameError, decodeResponse, encodeFrame, encodeResponse, validateResponse, type Frame } from '../../../protocols/modbus/codec.js';
import { corruptFrame, FaultSet, FaultSpecError, MALFORMATIONS } from '../../../src/sim/faults.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { PlantRuntime } from '../../../src/sim/runtime.js';

const FILE = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');
const PLANT = parsePlant(readFileSync(FILE, 'utf8'), FILE);

function setup(): { rt: PlantRuntime; faults: FaultSet } {
  const rt = new PlantRuntime(PLANT, new ManualClock(), { seed: 3 });
  return { rt, faults: new FaultSet(rt) };
}

function fieldOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FaultSpecError);
    return (e as FaultSpecError).field;
  }
  throw new Error('expected a FaultSpecError');
}

describe('fault specs', () => {
  it('names the bad field of a fault spec', () => {
    const { faults } = setup();
    expect(fieldOf(() => faults.add({ kind: 'exception' }))).toBe('code');
    expect(fieldOf(() => faults.add({ kind: 'exception', code: 6, points: ['temp.setpoint', 'nope'] }))).toBe('points[1]');
    expect(fieldOf(() => faults.add({ kind: 'latency', distribution: 'uniform', min_ms: 5 }))).toBe('max_ms');
    expect(fieldOf(() => faults.add({ kind: 'latency', ms: 5, colour: 'red' }))).toBe('colour');
    expect(fieldOf(() => faults.add({ kind: 'explode' }))).toBe('kind');
    expect(fieldOf(() => faults.add({ kind: 'offline' }))).toBe('unit');
    expect(fieldOf(() => faults.add({ kind: 'offline', plc: 'hx9' }))).toBe('plc');
    expect(fieldOf(() => faults.add({ kind: 'valve-stuck', point: 'temp.pv' }))).toBe('point');
    expect(fieldOf(() => faults.add({ kind: 'malformed', corruption: 'bitrot' }))).toBe('corruption');
    expect(faults.list()).toEqual([]);
  });
});

describe('fault matching', () => {
  it('answers an exception only for requests that touch the chosen points, and expires after count', () => {
    const { faults } = setup();
    const f = faults.add({ kind: 'exception', code: 6, points: ['temp.setpoint'], count: 2 });
    // holding 0 = temp.setpoint, holding 1 = valve.command
    expect(faults.match(2, 3, { fc: 3, address: 1, quantity: 1 }).action).toBe('answer');
    expect(faults.match(2, 3, { fc: 3, address: 0, quantity: 2 })).toMatchObject({ action: 'exception', code: 6, faultId: f.id });
    expect(faults.match(2, 16, { fc: 16, address: 0, quantity: 1, values: [1] })).toMatchObject({ action: 'exception', code: 6 });
    expect(faults.empty).toBe(true);
    expect(faults.match(2, 3, { fc: 3, address: 0, quantity: 1 }).action).toBe('answer');
  });

  it('matches FC 23 on either its read or its write range, and never on another unit', () => {
    const { faults } = setup();
    faults.add({ kind: 'timeout', points: ['valve.command'] });
    const rw = { fc: 23 as const, readAddress: 0, readQuantity: 1, writeAddress: 1, writeQuantity: 1, values: [5] };
    expect(faults.match(2, 23, rw).action).toBe('no-answer');
    expect(faults.match(7, 23, rw).action).toBe('answer');
  });

  it('adds the delays of every matching latency fault and keeps the first replacing fault', () => {
    const { faults } = setup();
    faults.add({ kind: 'latency', ms: 30 });
    faults.add({ kind: 'latency', ms: 20, fc: [3] });
    faults.add({ kind: 'disconnect', unit: 2, fc: [6] });
    faults.add({ kind: 'timeout', unit: 2, fc: [6] });
    expect(faults.match(2, 3, { fc: 3, address: 0, quantity: 1 })).toMatchObject({ action: 'answer', delayMs: 50 });
    expect(faults.match(2, 6, { fc: 6, address: 0, value: 1 })).toMatchObject({ action: 'disconnect', delayMs: 30 });
  });

  it('draws latencies from the chosen distribution, reproducibly for a seed', () => {
    const draw = (): number[] => {
      const { faults } = setup();
      faults.add({ kind: 'latency', distribution: 'uniform', min_ms: 10, max_ms: 20 });
      return Array.from({ length: 500 }, () => faults.match(2, 3, undefined).delayMs);
    };
    const a = draw();
    expect(draw()).toEqual(a);
    expect(Math.min(...a)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...a)).toBeLessThan(20);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean).toBeGreaterThan(14);
    expect(mean).toBeLessThan(16);
  });

  it('applies a fault with probability p to about p of the requests', () => {
    const { faults } = setup();
    faults.add({ kind: 'timeout', probability: 0.25 });
    let hits = 0;
    for (let i = 0; i < 2000; i++) if (faults.match(2, 3, undefined).action === 'no-answer') hits++;
    expect(hits).toBeGreaterThan(400);
    expect(hits).toBeLessThan(600);
  });
});

describe('sensor and actuator faults', () => {
  it('freezes a stuck sensor while the process goes on, and shows truth again once cleared', () => {
    const { rt, faults } = setup();
    rt.write('valve.command', 100);
    const f = faults.add({ kind: 'stuck', point: 'valve.position', value: 12.5 });
    expect(rt.read('valve.position')).toBe(12.5);
    rt.step(5000);
    expect(rt.read('valve.position')).toBe(12.5);
    expect(rt.readTrue('valve.position')).toBeCloseTo(50, 5);
    faults.remove(f.id);
    expect(rt.read('valve.position')).toBeCloseTo(50, 5);
  });

  it('drifts a sensor by its rate per second of plant time', () => {
    const { rt, faults } = setup();
    faults.add({ kind: 'drift', point: 'valve.position', rate_per_s: 0.5 });
    rt.step(10_000);
    expect(rt.read('valve.position')).toBeCloseTo(5, 5);
    expect(rt.readTrue('valve.position')).toBe(0);
  });

  it('keeps a stuck valve where it is whatever it is commanded', () => {
    const { rt, faults } = setup();
    rt.write('valve.command', 100);
    rt.step(2000);
    const f = faults.add({ kind: 'valve-stuck', point: 'valve.position' });
    rt.step(5000);
    expect(rt.read('valve.position')).toBeCloseTo(20, 5);
    faults.remove(f.id);
    rt.step(1000);
    expect(rt.read('valve.position')).toBeCloseTo(30, 5);
  });
});

describe('malformed response frames', () => {
  const request = { fc: 3 as const, address: 0, quantity: 2 };
  const good = encodeFrame(0x1234, 2, encodeResponse({ fc: 3, values: [1, 2] }));

  function decodeOne(adu: Buffer): { frame?: Frame; error?: ModbusFrameError } {
    const out: { frame?: Frame; error?: ModbusFrameError } = {};
    new FrameDecoder(
      (f) => (out.frame ??= f),
      (e) => (out.error = e),
    ).push(adu);
    return out;
  }

  it('breaks each frame in the way a gateway must notice', () => {
    expect(decodeOne(corruptFrame(good, 'protocol-id')).error?.code).toBe('BAD_PROTOCOL_ID');
    expect(decodeOne(corruptFrame(good, 'transaction-id')).frame?.transactionId).not.toBe(0x1234);
    expect(decodeOne(corruptFrame(good, 'unit-id')).frame?.unitId).toBe(3);
    expect(decodeOne(corruptFrame(good, 'function-code')).frame?.functionCode).toBe(4);
    for (const c of ['byte-count', 'truncated', 'length'] as const) {
      const { frame } = decodeOne(corruptFrame(good, c));
      expect(frame, c).toBeDefined();
      expect(() => validateResponse(request, frame!.pdu), c).toThrow(ModbusFrameError);
    }
  });

  it('never produces a frame that decodes to the original answer', () => {
    fc.assert(
      fc.property(fc.constantFrom(...MALFORMATIONS), fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 10 }), (c, values) => {
        const req = { fc: 3 as const, address: 0, quantity: values.length };
        const adu = encodeFrame(7, 2, encodeResponse({ fc: 3, values }));
        const { frame, error } = decodeOne(corruptFrame(adu, c, () => 0.5));
        if (error !== undefined || frame === undefined) return;
        if (frame.transactionId !== 7 || frame.unitId !== 2) return;
        let same = false;
        try {
          same = JSON.stringify(decodeResponse(req, frame.pdu)) === JSON.stringify({ fc: 3, values });
        } catch {
          same = false;
        }
        expect(same).toBe(false);
      }),
    );
  });
});
