// Interlocks through the real gateway over Modbus/TCP Security: the lab (dev PKI, signed demo
// bundle with interlock tank1-overfill "pump1.run := 1 denied when tank1.level > 85", simulated
// plant, SOC collector, gateway from its YAML config) and modbus-serial as the optimizer agent.
// The plant runs on its own ManualClock so the tank holds the level a test forces; the gateway's
// ManualClock ages the process image's values without any sleep.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { decisionRecords, modbusError, setTankLevel, type SeenDecision } from './gateway-harness.js';

const PUMP_RUN = 0; // coil address of pump1.run
const SETPOINT = 0; // holding register of tank1.setpoint (0.1 %)

interface InterlockLab {
  dir: string;
  lab: Lab;
  gatewayClock: ManualClock;
  optimizer: ModbusAgent;
  decisions: { next(): Promise<SeenDecision> };
}

/** A lab of its own, with the optimizer's token put and its Modbus connection open. */
async function startInterlockLab(): Promise<InterlockLab> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-gw-interlocks-'));
  const gatewayClock = new ManualClock(Date.now());
  const lab = await startLab({ stateDir: dir, gatewayClock, clock: new ManualClock(Date.now()) });
  const decisions = decisionRecords(lab);
  const api = lab.gateway.agentApi;
  const creds = await lab.credentials('optimizer');
  const put = await putToken(api.host, api.port, creds, await lab.token('optimizer', { now: gatewayClock.now() }));
  expect(put.status).toBe(200);
  const optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  return { dir, lab, gatewayClock, optimizer, decisions };
}

async function closeInterlockLab(t: InterlockLab | undefined): Promise<void> {
  if (t === undefined) return;
  await t.optimizer.close();
  await t.lab.close();
  await rm(t.dir, { recursive: true, force: true });
}

describe('interlocks over Modbus through the real gateway', () => {
  let t: InterlockLab | undefined;
  let lab: Lab;
  let gatewayClock: ManualClock;
  let optimizer: ModbusAgent;
  let decisions: { next(): Promise<SeenDecision> };

  beforeAll(async () => {
    t = await startInterlockLab();
    ({ lab, gatewayClock, optimizer, decisions } = t);
  }, 30_000);

  // Every case starts from the same plant, read by the gateway: tank at 50 %, pump and valve off.
  beforeEach(async () => {
    lab.sim.write('pump1.run', 0);
    lab.sim.write('valve1.open', 0);
    await setTankLevel(lab, 50);
  });

  afterAll(async () => {
    await closeInterlockLab(t);
  });

  it('refuses to start the pump on a 90 % tank with INTERLOCK and exception 0x01; the pump stays off', async () => {
    await setTankLevel(lab, 90);
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect(lab.sim.read('pump1.run')).toBe(0);
    const d = await decisions.next();
    expect(d).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'tank1-overfill', ruleId: 'optimizer-pump', points: ['pump1.run'] });
  });

  it('refuses starting the pump through write-multiple-coils (FC15) too, also together with another coil', async () => {
    await setTankLevel(lab, 90);
    expect(await modbusError(optimizer.client.writeCoils(PUMP_RUN, [true]))).toBe(0x01);
    expect((await decisions.next()).reason).toBe('INTERLOCK');
    // pump1.run and valve1.open in one request: the guarded write inside it still trips.
    expect(await modbusError(optimizer.client.writeCoils(PUMP_RUN, [true, false]))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ reason: 'INTERLOCK', interlockId: 'tank1-overfill' });
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect(lab.sim.read('valve1.open')).toBe(0);
  });

  it('never blocks stopping the pump, even on a nearly full tank', async () => {
    lab.sim.write('pump1.run', 1);
    await setTankLevel(lab, 95);
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', interlockId: '' });
  });

  it('allows starting the pump once the tank has drained below the limit', async () => {
    await setTankLevel(lab, 50);
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect(lab.sim.read('pump1.run')).toBe(1);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-pump', interlockId: '' });
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
  });

  it('trips at the limit as written: 85.0 % is allowed, 85.1 % refused', async () => {
    await setTankLevel(lab, 85);
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    await setTankLevel(lab, 85.1);
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect((await decisions.next()).reason).toBe('INTERLOCK');
    expect(lab.sim.read('pump1.run')).toBe(0);
  });

  it('fails closed with INTERLOCK_INPUT_STALE once the level is older than max_age (2 s) while the gateway cannot read it; unguarded writes still run', async () => {
    await setTankLevel(lab, 50);
    // The PLC answers the gateway's polls of tank1.level with an exception from now on: the last
    // good value stays, with the time it was read, and ages on the gateway's clock.
    const fault = lab.sim.inject({ kind: 'exception', points: ['tank1.level'], fc: [4], code: 0x04 });
    try {
      gatewayClock.advance(1500);
      await lab.gateway.processImage()!.pollNow();
      // Still within max_age: one lost poll is ridden out on the last good value.
      await optimizer.client.writeCoil(PUMP_RUN, true);
      expect((await decisions.next()).reason).toBe('ALLOWED');
      await optimizer.client.writeCoil(PUMP_RUN, false);
      expect((await decisions.next()).reason).toBe('ALLOWED');

      gatewayClock.advance(1000);
      await lab.gateway.processImage()!.pollNow();
      expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
      expect(lab.sim.read('pump1.run')).toBe(0);
      expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill' });
      // Nothing guards the setpoint or stopping the pump: they go through to the PLC.
      await optimizer.client.writeRegister(SETPOINT, 550);
      expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(55, 5);
      expect((await decisions.next()).reason).toBe('ALLOWED');
      await optimizer.client.writeCoil(PUMP_RUN, false);
      expect((await decisions.next()).reason).toBe('ALLOWED');
      expect(lab.gateway.processImage()!.status().find((s) => s.table === 'input')?.last).toBe('exception 0x04');
    } finally {
      lab.sim.clearFault(fault.id);
    }
    // The PLC answers again: one good read and the pump may start.
    await lab.gateway.processImage()!.pollNow();
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect(await decisions.next()).toMatchObject({ reason: 'ALLOWED', interlockId: '' });
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
  });

  it('fails closed with INTERLOCK_INPUT_STALE when the inputs simply age past max_age on the gateway clock', async () => {
    await setTankLevel(lab, 50);
    // A timeout fault keeps every poll after this point from landing, so the only thing that
    // changes between the two commands is the gateway's clock.
    const fault = lab.sim.inject({ kind: 'timeout', points: ['tank1.level'], fc: [4] });
    try {
      gatewayClock.advance(2001);
      expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
      expect(await decisions.next()).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill' });
    } finally {
      lab.sim.clearFault(fault.id);
    }
    await setTankLevel(lab, 50);
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
  });
});

// The PLC stops for good here, so this case has a lab of its own.
describe('interlocks over Modbus through the real gateway, with the PLC gone', () => {
  let t: InterlockLab | undefined;

  beforeAll(async () => {
    t = await startInterlockLab();
  }, 30_000);

  afterAll(async () => {
    await closeInterlockLab(t);
  });

  it('fails closed with INTERLOCK_INPUT_STALE when the PLC is gone; an unguarded write is still allowed and answered 0x0A', async () => {
    const { lab, gatewayClock, optimizer, decisions } = t!;
    await setTankLevel(lab, 50);
    await lab.sim.stopModbus();
    gatewayClock.advance(2500);
    await lab.gateway.processImage()!.pollNow();
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill' });
    // The interlock does not hold up what it does not guard: policy allows it, only the PLC is gone.
    const code = await modbusError(optimizer.client.writeCoil(PUMP_RUN, false));
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', interlockId: '' });
    expect([0x0a, 0x0b]).toContain(code);
  });
});
