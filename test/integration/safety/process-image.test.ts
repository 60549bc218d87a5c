// The process image polls a real simulated PLC over Modbus/TCP on loopback, on its own connection.
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { ProcessImage } from '../../../src/interlocks/process-image.js';
import { startSimulator, type SimHandle } from '../../../src/sim/modbus-server.js';
import { PLC1 } from '../../unit/interlocks/fixtures.js';
import { ModbusRegisterReader } from '../../../protocols/modbus/register-reader.js';
import { silentLogger } from '../../../src/core/log.js';

interface ImageLab {
  sim: SimHandle;
  clock: ManualClock;
  image: ProcessImage;
}

/** A simulated PLC of its own and a process image polling it. */
async function startImageLab(): Promise<ImageLab> {
  const sim = await startSimulator({ plant: resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml'), port: 0, clock: new ManualClock() });
  const clock = new ManualClock();
  const image = new ProcessImage({
    inputs: [
      { asset: 'plc1', point: 'tank1.level', def: PLC1.points['tank1.level']!, pollMs: 500, maxAgeMs: 2000 },
      { asset: 'plc1', point: 'tank1.low_alarm', def: PLC1.points['tank1.low_alarm']!, pollMs: 500, maxAgeMs: 2000 },
      { asset: 'plc1', point: 'pump1.running', def: PLC1.points['pump1.running']!, pollMs: 500, maxAgeMs: 2000 },
      // The same point named by a second interlock: the stricter bound wins.
      { asset: 'plc1', point: 'tank1.level', def: PLC1.points['tank1.level']!, pollMs: 250, maxAgeMs: 1000 },
    ],
    modbus: { endpoint: (asset) => (asset === 'plc1' ? { host: '127.0.0.1', port: sim.port, unitId: 1 } : undefined), connect: (ep) => new ModbusRegisterReader(ep, { timeoutMs: 500, logger: silentLogger }) },
    clock,
  });
  await image.ready();
  return { sim, clock, image };
}

async function closeImageLab(t: ImageLab | undefined): Promise<void> {
  t?.image.close();
  await t?.sim.close();
}

describe('process image against the simulated PLC', () => {
  let t: ImageLab | undefined;
  let sim: SimHandle;
  let clock: ManualClock;
  let image: ProcessImage;

  beforeAll(async () => {
    t = await startImageLab();
    ({ sim, clock, image } = t);
  });
  afterAll(async () => {
    await closeImageLab(t);
  });

  it('reads the inputs in engineering units, stamped with the gateway clock, in one request per table', async () => {
    sim.write('tank1.level', 7.3);
    sim.write('tank1.low_alarm', 1);
    const before = sim.requestCount();
    await image.pollNow();
    expect(sim.requestCount() - before).toBe(2);
    const s = image.slot('plc1', 'tank1.level');
    expect(image.values[s]).toBeCloseTo(7.3, 5);
    expect(image.readAtMs[s]).toBe(clock.now());
    expect(image.maxAgeMs[s]).toBe(1000);
    expect(image.values[image.slot('plc1', 'tank1.low_alarm')]).toBe(1);
    expect(image.status().every((g) => g.last === 'ok')).toBe(true);
  });

  it('polls only what is due on the clock', async () => {
    await image.pollNow();
    const before = sim.requestCount();
    clock.advance(100);
    await image.pollDue();
    expect(sim.requestCount() - before).toBe(0);
    clock.advance(200);
    await image.pollDue();
    expect(sim.requestCount() - before).toBe(1); // the 250 ms input group only
  });

});

// The PLC stops for good here, so this case has a PLC and process image of its own.
describe('process image against a simulated PLC that stops answering', () => {
  let t: ImageLab | undefined;

  beforeAll(async () => {
    t = await startImageLab();
  });
  afterAll(async () => {
    await closeImageLab(t);
  });

  it('keeps the old time when the PLC stops answering, so values go stale', async () => {
    const { sim, clock, image } = t!;
    await image.pollNow();
    const s = image.slot('plc1', 'tank1.level');
    const readAt = image.readAtMs[s];
    await sim.stopModbus();
    clock.advance(5000);
    await image.pollNow();
    expect(image.readAtMs[s]).toBe(readAt);
    expect(image.ageMs(s, clock.now())).toBe(5000);
    expect(image.status()[0]!.last).toMatch(/unavailable|timeout/);
  });
});
