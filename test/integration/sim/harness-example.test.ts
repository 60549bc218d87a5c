// The harness docs/simulator.md shows a plant engineer: a simulated plant behind the real gateway,
// an agent over mutual TLS, and assertions on what actually reached the PLC. Keep the two in step.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';

async function exceptionOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return exceptionCodeOf(err);
  }
  return undefined;
}

describe('optimizer agent against the water-treatment plant, through the gateway', () => {
  let dir: string;
  let lab: Lab;
  const plantClock = new ManualClock(); // the process moves only when the test steps it
  const gatewayClock = new ManualClock(Date.now()); // token expiry, bundle validity
  let agent: ModbusAgent;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plant-harness-'));
    lab = await startLab({ stateDir: dir, clock: plantClock, gatewayClock });
    const creds = await lab.credentials('optimizer');
    agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    const { host, port } = lab.gateway.agentApi;
    const answer = await putToken(host, port, creds, await lab.token('optimizer', { now: gatewayClock.now() }));
    expect(answer.status).toBe(200);
  });

  afterAll(async () => {
    await agent?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    lab.sim.clearFaults();
    lab.sim.clearServed(); // each test asserts on its own traffic only
  });

  it('forwards the in-bounds setpoint and nothing of the out-of-bounds one', async () => {
    await agent.client.writeRegister(0, 600); // 60.0 %
    expect(await exceptionOf(agent.client.writeRegister(0, 950))).toBe(0x03); // denied by policy
    const writes = lab.sim.served().filter((r) => r.isWrite);
    expect(writes).toHaveLength(1);
    expect(writes[0].points).toEqual(['plc1/tank1.setpoint']);
    expect(writes[0].request).toMatchObject({ fc: 6, address: 0, value: 600 });
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(60, 5);
  });

  it('sees the level rise once the pump has run for ten seconds of plant time', async () => {
    await agent.client.writeCoil(0, true); // pump1.run
    lab.sim.step(10_000);
    const level = (await agent.client.readInputRegisters(0, 1)).data[0] / 10;
    expect(level).toBeCloseTo(lab.sim.read('tank1.level'), 1);
    expect(level).toBeGreaterThan(65);
    await agent.client.writeCoil(0, false);
  });

  it('passes the PLC’s busy answer (0x06) back to the agent, and the write did not happen', async () => {
    const before = lab.sim.read('tank1.setpoint');
    lab.sim.inject({ kind: 'exception', code: 6, points: ['tank1.setpoint'], count: 1 });
    expect(await exceptionOf(agent.client.writeRegister(0, 550))).toBe(0x06);
    expect(lab.sim.served().map((r) => [r.fc, r.outcome, r.wrote])).toEqual([[6, 'exception', false]]);
    expect(lab.sim.read('tank1.setpoint')).toBe(before);
  });

  it('answers 0x0B when the PLC does not answer a read, and the PLC saw the read once', async () => {
    lab.sim.inject({ kind: 'timeout', fc: [4], count: 1 });
    expect(await exceptionOf(agent.client.readInputRegisters(0, 1))).toBe(0x0b);
    expect(lab.sim.served().map((r) => [r.fc, r.outcome])).toEqual([[4, 'no-answer']]);
  });
});
