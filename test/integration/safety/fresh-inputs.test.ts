// Fresh and plausible interlock inputs through the real gateway (docs/safety.md): the lab with the
// bundle of fixtures/rules/semantics, whose interlock tank1-overfill (start refused above 85 %)
// reads the level again before each start (confirm: 300ms) and treats a level that does not move
// for 5 s while the pump runs as a stuck sensor. The simulated plant is the ground truth; its faults
// make the level read slow or stuck. Both clocks are ManualClocks: the gateway's polls happen when
// the test asks (pollNow), so a value read "just now" can be out of date by the test's choice.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { decisionRecords, modbusError, setTankLevel, type SeenDecision } from './gateway-harness.js';

const PUMP_RUN = 0;

interface FreshLab {
  dir: string;
  lab: Lab;
  clock: ManualClock;
  optimizer: ModbusAgent;
  decisions: { next(): Promise<SeenDecision> };
}

/** A lab of its own, with the optimizer's token put and its Modbus connection open. */
async function startFreshLab(): Promise<FreshLab> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-fresh-inputs-'));
  const clock = new ManualClock(Date.now());
  const lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()), rules: 'fixtures/rules/semantics/bundle.yaml' });
  const decisions = decisionRecords(lab);
  const api = lab.gateway.agentApi;
  const creds = await lab.credentials('optimizer');
  expect((await putToken(api.host, api.port, creds, await lab.token('optimizer', { now: clock.now(), ttlSec: 900 }))).status).toBe(200);
  const optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  return { dir, lab, clock, optimizer, decisions };
}

async function closeFreshLab(t: FreshLab | undefined): Promise<void> {
  if (t === undefined) return;
  await t.optimizer.close();
  await t.lab.close();
  await rm(t.dir, { recursive: true, force: true });
}

describe('interlock inputs read fresh and checked for plausibility, through the real gateway', () => {
  let t: FreshLab | undefined;
  let lab: Lab;
  let optimizer: ModbusAgent;
  let decisions: { next(): Promise<SeenDecision> };

  beforeAll(async () => {
    t = await startFreshLab();
    ({ lab, optimizer, decisions } = t);
  }, 30_000);

  afterAll(async () => {
    await closeFreshLab(t);
  });

  // Every case starts from the same plant, read by the gateway: no faults, pump stopped (its
  // feedback too), tank at 50 %.
  beforeEach(async () => {
    lab.sim.clearFaults();
    lab.sim.write('pump1.run', 0);
    lab.sim.step(1500);
    await setTankLevel(lab, 50);
  });

  it('reads the level again before a start: a level that crossed 85 % since the last poll refuses it', async () => {
    await setTankLevel(lab, 50);
    // The level rises after the gateway's last poll; that poll's 50 % is still "fresh" (0 ms old).
    lab.sim.write('tank1.level', 90);
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'tank1-overfill' });
    expect(lab.sim.read('pump1.run')).toBe(0);
  });

  it('refuses INTERLOCK_INPUT_STALE when the confirming read does not answer within 300 ms', async () => {
    await setTankLevel(lab, 50);
    const slow = lab.sim.inject({ kind: 'timeout', fc: [4] });
    try {
      expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
      expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill' });
      expect(lab.sim.read('pump1.run')).toBe(0);
    } finally {
      lab.sim.clearFault(slow.id);
    }
    await setTankLevel(lab, 50);
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', ruleId: 'optimizer-pump' });
    expect(lab.sim.read('pump1.run')).toBe(1);
  });

});

// The gateway keeps what it learned about a stuck sensor, so this case has a lab of its own.
describe('a stuck interlock input, through the real gateway', () => {
  let t: FreshLab | undefined;

  beforeAll(async () => {
    t = await startFreshLab();
  }, 30_000);

  afterAll(async () => {
    await closeFreshLab(t);
  });

  it('refuses a start on a stuck level sensor (50 % read, 92 % true) even after the pump stopped', async () => {
    const { lab, clock, optimizer, decisions } = t!;
    // The pump runs (its feedback follows after 1 s of plant time); the level sensor sticks at 50 %.
    lab.sim.write('pump1.run', 1);
    lab.sim.step(1500);
    lab.sim.inject({ kind: 'stuck', point: 'tank1.level', value: 50 });
    const image = lab.gateway.processImage()!;
    for (let i = 0; i < 4; i++) {
      await image.pollNow();
      clock.advance(2000);
    }
    await image.pollNow(); // 8 s of running with a level that never moved
    lab.sim.write('tank1.level', 92); // the truth behind the stuck sensor
    lab.sim.write('pump1.run', 0);
    lab.sim.step(1500);
    await image.pollNow();
    expect(lab.sim.read('tank1.level')).toBe(50);
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK_INPUT_IMPLAUSIBLE', interlockId: 'tank1-overfill' });
    expect(lab.sim.read('pump1.run')).toBe(0);
  });
});
