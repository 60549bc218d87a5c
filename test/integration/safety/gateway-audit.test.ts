// What the SOC receives about safety: an interlock trip names the interlock and every input with
// its value and age; an approval's life (requested, approved by whom, consumed) is on record.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { callOperatorApi } from '../../../src/cli/commands/approvals.js';
import { modbusError } from './gateway-harness.js';

type Line = Record<string, unknown> & {
  interlockTrip?: { interlockId: string; reason: string; inputs: { point: string; value: number; ageMs: number | string }[] };
  approval?: { kind: string; approvalId: string; by: string; reason: string; workloadId: string };
};

describe('safety events in the SOC stream', () => {
  let dir: string;
  let lab: Lab;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-safety-audit-'));
    lab = await startLab({ stateDir: dir });
  });
  afterAll(async () => {
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function lines(): Promise<Line[]> {
    const shipped = await lab.waitShipped();
    return (await readFile(shipped.file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Line);
  }

  it('records an interlock trip with the input values and their ages', async () => {
    const creds = await lab.credentials('optimizer');
    expect((await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, await lab.token('optimizer'))).status).toBe(200);
    const agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    try {
      lab.sim.write('tank1.level', 92);
      await lab.gateway.processImage()?.pollNow();
      await lab.gateway.processImage()?.pollNow();
      expect(await modbusError(agent.client.writeCoil(0, true))).toBe(0x01);
    } finally {
      await agent.close();
    }
    const trip = (await lines()).find((l) => l.interlockTrip !== undefined)?.interlockTrip;
    expect(trip?.interlockId).toBe('tank1-overfill');
    expect(trip?.reason).toBe('INTERLOCK');
    expect(trip?.inputs).toEqual([expect.objectContaining({ point: 'plc1/tank1.level', value: 92 })]);
    expect(Number(trip?.inputs[0]?.ageMs)).toBeGreaterThanOrEqual(0);
  });

  it('records an approval requested, approved by the operator, and consumed by the retry', async () => {
    lab.sim.write('tank1.level', 50);
    const creds = await lab.credentials('planner');
    expect((await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, await lab.token('planner'))).status).toBe(200);
    const agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    try {
      expect(await modbusError(agent.client.writeCoil(1, true))).toBe(0x01);
      const api = lab.gateway.operatorApi!;
      const target = { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken(), ca: creds.ca };
      const pending = (await callOperatorApi(target, 'GET', 'v1/approvals')).body.approvals as Array<{ id: string }>;
      expect((await callOperatorApi(target, 'POST', `v1/approvals/${pending[0].id}/approve`, { reason: 'drain for inspection' })).status).toBe(200);
      await agent.client.writeCoil(1, true);
    } finally {
      await agent.close();
    }
    const events = (await lines()).flatMap((l) => (l.approval ? [l.approval] : []));
    expect(events.map((e) => e.kind)).toEqual(['requested', 'approved', 'consumed']);
    expect(new Set(events.map((e) => e.approvalId)).size).toBe(1);
    expect(events[1]).toMatchObject({ by: 'bob@plant.example', reason: 'drain for inspection', workloadId: 'spiffe://plant.example/agent/planner' });
  });
});
