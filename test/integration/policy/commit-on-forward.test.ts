// Decide, then commit, through the real gateway (docs/policy.md): a command spends rate budget and
// moves a max_step base only when it is forwarded, and the base is the PLC's own value, read by
// the gateway. The lab (dev PKI, a signed bundle from fixtures/rules/semantics, the simulated plant,
// the SOC collector) with modbus-serial as the agents; the plant runs on its own ManualClock.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { connectMcpAgent } from '../../../src/cli/demo/mcp-agent.js';
import { decisionRecords, modbusError, setTankLevel, type SeenDecision } from '../safety/gateway-harness.js';

const PUMP_RUN = 0; // coil
const SETPOINT = 0; // holding register, 0.1 %

describe('decide, then commit, through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let gatewayClock: ManualClock;
  let optimizer: ModbusAgent;
  let decisions: { next(): Promise<SeenDecision> };

  /** The PLC's setpoint changes (an operator at the HMI) and the gateway reads it. */
  const plcSetpoint = async (percent: number) => {
    lab.sim.write('tank1.setpoint', percent);
    await lab.gateway.processImage()!.pollNow();
    await lab.gateway.processImage()!.pollNow();
  };
  const auto = async (on: boolean) => {
    lab.sim.write('control.auto', on ? 1 : 0);
    await lab.gateway.processImage()!.pollNow();
    await lab.gateway.processImage()!.pollNow();
  };
  const writeSetpoint = (percent: number) => optimizer.client.writeRegister(SETPOINT, Math.round(percent * 10));

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-commit-'));
    gatewayClock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock, clock: new ManualClock(Date.now()), rules: 'fixtures/rules/semantics/bundle.yaml' });
    decisions = decisionRecords(lab);
    const api = lab.gateway.agentApi;
    const creds = await lab.credentials('optimizer');
    expect((await putToken(api.host, api.port, creds, await lab.token('optimizer', { now: gatewayClock.now() }))).status).toBe(200);
    optimizer = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  }, 30_000);

  // Every case starts from the same plant (setpoint and tank at 50 % as the simulator starts them,
  // auto on, pump stopped), read by the gateway, so none depends on where an earlier case left the plant.
  beforeEach(async () => {
    lab.sim.write('tank1.setpoint', 50);
    lab.sim.write('tank1.level', 50);
    lab.sim.write('pump1.run', 0);
    await auto(true);
  });

  afterAll(async () => {
    await optimizer?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('measures the first stepped write after the start from the PLC value the gateway read itself', async () => {
    // The base is what the PLC holds (50 %), whatever the gateway forwarded before.
    await writeSetpoint(53);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint' });
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(53, 5);
    // From the acknowledged 53: 57 is a step of 4, 63 one of 6.
    await writeSetpoint(57);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    expect(await modbusError(writeSetpoint(63))).toBe(0x03);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'STEP_TOO_LARGE', ruleId: 'optimizer-setpoint' });
  });

  it('measures from the value the PLC holds now, also when someone else changed it', async () => {
    await plcSetpoint(70);
    expect(await modbusError(writeSetpoint(61))).toBe(0x03);
    expect((await decisions.next()).reason).toBe('STEP_TOO_LARGE');
    await writeSetpoint(74);
    expect((await decisions.next()).reason).toBe('ALLOWED');
  });

  it('denies STEP_BASE_STALE when the gateway has not read the point for longer than the step base age', async () => {
    await plcSetpoint(74);
    gatewayClock.advance(5_001);
    expect(await modbusError(writeSetpoint(75))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'STEP_BASE_STALE', ruleId: 'optimizer-setpoint' });
    await lab.gateway.processImage()!.pollNow();
    await writeSetpoint(75);
    expect((await decisions.next()).reason).toBe('ALLOWED');
  });

  it("measures the next stepped write from the value an agent's read just relayed, not an older base the gateway read itself", async () => {
    await plcSetpoint(50);
    // A moment later the operator moves the setpoint to 30 %; the gateway's own base (50 %) is
    // still young (its next poll is due in a second).
    gatewayClock.advance(100);
    lab.sim.write('tank1.setpoint', 30);
    expect((await optimizer.client.readHoldingRegisters(SETPOINT, 2)).data[0]).toBe(300);
    expect((await decisions.next()).effect).toBe('allow');
    // 33 is a step of 3 from the 30 just read (17 from the gateway's older 50).
    await writeSetpoint(33);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED' });
    // And a step of 8 from the PLC's 33 is still too large.
    expect(await modbusError(writeSetpoint(41))).toBe(0x03);
    expect((await decisions.next()).reason).toBe('STEP_TOO_LARGE');
  });

  it("measures the next stepped write from the value an MCP agent's read tool just returned", async () => {
    await plcSetpoint(50);
    gatewayClock.advance(100);
    lab.sim.write('tank1.setpoint', 70);
    const creds = await lab.credentials('optimizer');
    const mcp = await connectMcpAgent({ url: lab.gateway.mcp!.resource, ca: creds.ca, token: await lab.mcpToken('optimizer', { now: gatewayClock.now() }) });
    try {
      const r = (await mcp.client.callTool({ name: 'read_plc1', arguments: { points: ['tank1.setpoint'] } })) as { isError?: boolean; content: { text: string }[] };
      expect(r.isError ?? false, r.content[0]?.text).toBe(false);
      expect(await decisions.next()).toMatchObject({ effect: 'allow', ruleId: 'agents-read-plant' });
    } finally {
      await mcp.close();
    }
    // 73 is a step of 3 from the 70 the tool returned (23 from the gateway's older 50).
    await writeSetpoint(73);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED' });
  });

  it('leaves the base where the PLC is when an interlock refuses a write policy allowed', async () => {
    await plcSetpoint(40);
    await auto(false);
    // Policy allows 44 (a step of 4 from 40); the interlock refuses it: the PLC keeps 40.
    expect(await modbusError(writeSetpoint(44))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'setpoint-needs-auto' });
    await auto(true);
    // 36 is a step of 4 from the PLC's 40 (it would be 8 from the refused 44).
    await writeSetpoint(36);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED' });
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(36, 5);
  });

  it('spends no rate budget on starts an interlock refused', async () => {
    await setTankLevel(lab, 90);
    for (let i = 0; i < 3; i++) {
      expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
      expect((await decisions.next()).reason).toBe('INTERLOCK');
    }
    await setTankLevel(lab, 50);
    // The budget (2 a minute) is whole: a start and a stop go through, the third command is limited.
    await optimizer.client.writeCoil(PUMP_RUN, true);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', ruleId: 'optimizer-pump' });
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, true))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'RATE_LIMITED', ruleId: 'optimizer-pump' });
    expect(lab.sim.read('pump1.run')).toBe(0);
  });
});
