// Approvals that cannot be bypassed, through the real gateway (docs/safety.md, Approvals): the lab
// with the bundle of fixtures/rules/semantics, whose planner-drain rule needs two approvers, neither
// the owner nor the requester, within 10 minutes, and the grant used within 2. Operators use the
// operator API with real JWTs; the planner is a modbus-serial agent; the SOC collector shows the
// approval records.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callOperatorApi, type ApiAnswer, type ApiTarget } from '../../../src/cli/commands/approvals.js';
import { connectModbusAgent, putToken, type AgentCredentials, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { decisionRecords, modbusError, type SeenDecision } from './gateway-harness.js';

const VALVE = 1; // coil valve1.open

describe('N-person approvals through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let creds: AgentCredentials;
  let planner: ModbusAgent;
  let decisions: { next(): Promise<SeenDecision> };
  const approvalRecords: { kind?: string; by?: string; approvalId?: string }[] = [];

  const operator = async (sub: string): Promise<ApiTarget> => {
    const api = lab.gateway.operatorApi!;
    return { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ sub, now: clock.now() }), ca: creds.ca };
  };
  const approve = async (id: string, sub: string): Promise<ApiAnswer> => callOperatorApi(await operator(sub), 'POST', `v1/approvals/${id}/approve`, { reason: `checked by ${sub}` });
  const refusedForApproval = async (): Promise<string> => {
    expect(await modbusError(planner.client.writeCoil(VALVE, true))).toBe(0x01);
    const d = await decisions.next();
    expect(d).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', ruleId: 'planner-drain' });
    return d.approvalId;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-n-person-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()), rules: 'fixtures/rules/semantics/bundle.yaml' });
    decisions = decisionRecords(lab);
    lab.collector.on('record', (_gw: string, r: { approval?: { kind?: string; by?: string; approvalId?: string } | null }) => {
      if (r.approval) approvalRecords.push(r.approval);
    });
    creds = await lab.credentials('planner');
    const api = lab.gateway.agentApi;
    // The demo's planner token: owner alice@plant.example.
    expect((await putToken(api.host, api.port, creds, await lab.token('planner', { now: clock.now(), ttlSec: 900 }))).status).toBe(200);
    planner = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  }, 30_000);

  // Each case starts with the valve closed and the rule's rate budget (one drain a minute) whole,
  // whatever an earlier case drained.
  beforeEach(() => {
    lab.sim.write('valve1.open', 0);
    clock.advance(60_000);
  });

  afterAll(async () => {
    await planner?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses the owner approving their own agent’s command under a differently cased name', async () => {
    const id = await refusedForApproval();
    for (const spelling of ['ALICE@Plant.Example', 'user:alice@plant.example']) {
      const answer = await approve(id, spelling);
      expect(answer.status).toBe(403);
      expect(answer.body).toMatchObject({ reason: 'APPROVAL_INVALID', detail: 'SAME_PERSON' });
    }
    expect(lab.sim.read('valve1.open')).toBe(0);
  });

  it('needs two distinct approvers: one is not enough, the same one twice is not two', async () => {
    const id = await refusedForApproval(); // the same pending request
    const first = await approve(id, 'bob@plant.example');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ status: 'pending', approval: { approvers_required: 2, approvals: [{ by: 'bob@plant.example' }] } });
    expect(await refusedForApproval()).toBe(id);
    expect(lab.sim.read('valve1.open')).toBe(0);
    const again = await approve(id, 'Bob@Plant.Example');
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ reason: 'APPROVAL_INVALID', detail: 'ALREADY_APPROVED' });
    const second = await approve(id, 'dana@plant.example');
    expect(second.body).toMatchObject({ status: 'approved' });
    await planner.client.writeCoil(VALVE, true);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', approvalId: id });
    expect(lab.sim.read('valve1.open')).toBe(1);
    await lab.waitShipped();
    // Every approval is in the audit with who gave it (repeated attempts may repeat 'requested').
    const mine = approvalRecords.filter((r) => r.approvalId === id && r.kind !== 'requested').map((r) => [r.kind, r.by]);
    expect(mine).toEqual([
      ['endorsed', 'bob@plant.example'],
      ['approved', 'dana@plant.example'],
      ['consumed', 'dana@plant.example'],
    ]);
  });

  it('refuses a grant used after its execute-by deadline (2 minutes after the last approval)', async () => {
    const id = await refusedForApproval();
    expect((await approve(id, 'bob@plant.example')).status).toBe(200);
    expect((await approve(id, 'dana@plant.example')).body).toMatchObject({ status: 'approved' });
    clock.advance(120_001);
    expect(await refusedForApproval()).not.toBe(id);
    expect(lab.sim.read('valve1.open')).toBe(0);
  });
});
