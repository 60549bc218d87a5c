// Revocation covers the whole chain, and a task can be ended, through the real gateway (docs/identity.md,
// Revocation): the lab (dev PKI, a signed bundle from fixtures/rules/semantics, the simulated plant,
// the SOC collector) with modbus-serial agents on connections that stay open; operators and owners
// use the operator API (the CLI's client, and once the CLI itself); agents the agent API.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callOperatorApi, type ApiTarget } from '../../../src/cli/commands/approvals.js';
import { connectModbusAgent, putToken, type AgentCredentials, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { PACKAGE_ROOT, startLab, type DemoAgent, type Lab, type LabTokenOptions } from '../../../src/cli/demo/lab.js';
import { ManualClock } from '../../../src/core/clock.js';
import { decisionRecords, modbusError, type SeenDecision } from '../safety/gateway-harness.js';

const AUTO = 2; // coil control.auto
const PUMP_RUN = 0;
const run = promisify(execFile);

describe('revocation of a chain and ending a task, through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let decisions: { next(): Promise<SeenDecision> };
  const revocations: Record<string, unknown>[] = [];
  const agents: ModbusAgent[] = [];
  let creds: Record<DemoAgent, AgentCredentials>;

  const operator = async (o: { sub?: string; roles?: string[] } = {}): Promise<ApiTarget> => {
    const api = lab.gateway.operatorApi!;
    return { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ ...o, now: clock.now() }), ca: creds.optimizer.ca };
  };
  /** A fresh token for the agent (issued now on the gateway's clock), put on the agent API. */
  const authenticate = async (agent: DemoAgent, t: LabTokenOptions = {}) => {
    const api = lab.gateway.agentApi;
    return putToken(api.host, api.port, creds[agent], await lab.token(agent, { now: clock.now(), ...t }));
  };
  const connect = async (agent: DemoAgent) => {
    const a = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds[agent]);
    agents.push(a);
    return a;
  };
  const taskComplete = (agent: DemoAgent) =>
    new Promise<number>((resolve, reject) => {
      const api = lab.gateway.agentApi;
      const req = https.request({ host: api.host, port: api.port, method: 'POST', path: '/v1/task-complete', ...creds[agent] }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-revoke-chain-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()), rules: 'fixtures/rules/semantics/bundle.yaml' });
    decisions = decisionRecords(lab);
    lab.collector.on('record', (_gw: string, record: { revocation?: Record<string, unknown> | null }) => {
      if (record.revocation) revocations.push(record.revocation);
    });
    creds = { optimizer: await lab.credentials('optimizer'), reporter: await lab.credentials('reporter'), planner: await lab.credentials('planner') };
  }, 30_000);

  afterAll(async () => {
    for (const a of agents) await a.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  // Each case's tokens are issued past the leeway of every revocation an earlier case made, so the
  // cases hold in any order.
  beforeEach(() => clock.advance(60_000));

  it('revoking the human an agent acts for (as owner) refuses its next command on the open connection', async () => {
    expect((await authenticate('reporter', { owner: 'carol@plant.example', act: ['alice@plant.example'], scope: ['read', 'write'] })).status).toBe(200);
    const reporter = await connect('reporter');
    await reporter.client.writeCoil(AUTO, true);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', ruleId: 'reporter-for-alice' });
    const answer = await callOperatorApi(await operator(), 'POST', 'v1/revocations', { owner: 'alice@plant.example', reason: 'alice left the shift' });
    expect(answer.status).toBe(201);
    expect(await modbusError(reporter.client.writeCoil(AUTO, false))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'TOKEN_REVOKED' });
  });

  it('revokes a human by user:<name> through the CLI, in another spelling, on an open connection', async () => {
    expect((await authenticate('reporter', { owner: 'carol@plant.example', act: ['alice@plant.example'], scope: ['read', 'write'] })).status).toBe(200);
    const reporter = await connect('reporter');
    await reporter.client.writeCoil(AUTO, true);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    const target = await operator();
    const tokenFile = path.join(dir, 'op.jwt');
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(tokenFile, target.token);
    await writeFile(caFile, target.ca!);
    const cli = await run(process.execPath, [path.join(PACKAGE_ROOT, 'dist/src/cli/main.js'), 'revoke', '--sub', 'user:ALICE@Plant.Example', '--reason', 'badge lost', '--api', target.api, '--token', tokenFile, '--ca', caFile]);
    expect(cli.stdout).toContain('revoked: sub user:ALICE@Plant.Example');
    expect(await modbusError(reporter.client.writeCoil(AUTO, false))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'TOKEN_REVOKED' });
  }, 30_000);

  it('refuses a token whose act names the agent itself', async () => {
    const answer = await authenticate('reporter', { act: ['spiffe://plant.example/agent/reporter'] });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ reason: 'TOKEN_INVALID', detail: 'INVALID_CLAIM' });
  });

  it('an agent completing its task ends it for the other agents working on it for the same owner', async () => {
    expect((await authenticate('optimizer', { taskId: 'shared-7' })).status).toBe(200);
    expect((await authenticate('planner', { taskId: 'shared-7' })).status).toBe(200);
    const optimizer = await connect('optimizer');
    await optimizer.client.readInputRegisters(0, 1);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    expect(await taskComplete('planner')).toBe(200);
    expect(await modbusError(optimizer.client.readInputRegisters(0, 1))).toBe(0x01);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', reason: 'TOKEN_REVOKED' });
    expect(revocations.at(-1)).toMatchObject({ kind: 'task', value: 'shared-7', owner: 'alice@plant.example', source: 'agent', by: 'spiffe://plant.example/agent/planner' });
  });

  it('the owner ends a task for every one of their agents; another owner cannot end it', async () => {
    expect((await authenticate('optimizer', { taskId: 'batch-9' })).status).toBe(200);
    const optimizer = await connect('optimizer');
    const mallory = await callOperatorApi(await operator({ sub: 'mallory@plant.example', roles: ['owner'] }), 'POST', 'v1/revocations', { task: 'batch-9', reason: 'mine now' });
    expect(mallory.status).toBe(201); // scoped to mallory's own agents: none of alice's
    await optimizer.client.writeCoil(PUMP_RUN, false);
    expect((await decisions.next()).reason).toBe('ALLOWED');
    const owner = await callOperatorApi(await operator({ sub: 'Alice@Plant.Example', roles: ['owner'] }), 'POST', 'v1/revocations', { task: 'batch-9', reason: 'batch done' });
    expect(owner.status).toBe(201);
    expect(await modbusError(optimizer.client.writeCoil(PUMP_RUN, false))).toBe(0x01);
    expect((await decisions.next()).reason).toBe('TOKEN_REVOKED');
    expect(revocations.at(-1)).toMatchObject({ kind: 'task', value: 'batch-9', owner: 'Alice@Plant.Example', source: 'owner' });
  });

  it('an operator ends a task for every agent, whoever owns it', async () => {
    expect((await authenticate('optimizer', { taskId: 'batch-10', owner: 'dave@plant.example' })).status).toBe(200);
    expect((await authenticate('planner', { taskId: 'batch-10' })).status).toBe(200);
    const optimizer = await connect('optimizer');
    const planner = await connect('planner');
    expect((await callOperatorApi(await operator(), 'POST', 'v1/revocations', { task: 'batch-10', reason: 'stop the batch' })).status).toBe(201);
    for (const a of [optimizer, planner]) {
      expect(await modbusError(a.client.readInputRegisters(0, 1))).toBe(0x01);
      expect((await decisions.next()).reason).toBe('TOKEN_REVOKED');
    }
    // The collector's record leaves empty fields out: no owner, no workload (every agent's tokens).
    expect(revocations.at(-1)).toMatchObject({ kind: 'task', value: 'batch-10', source: 'operator' });
    expect(revocations.at(-1)?.owner ?? '').toBe('');
    expect(revocations.at(-1)?.workloadId ?? '').toBe('');
  });
});
