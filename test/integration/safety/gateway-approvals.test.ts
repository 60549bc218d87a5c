// Human approval through the real gateway over Modbus/TCP Security: the planner agent (modbus-serial
// through mutual TLS) opens the drain valve, which rule planner-drain allows only with an
// operator's approval; operators decide on the gateway's operator API (HTTPS, operator JWTs from
// the trusted development issuer). The gateway runs on a ManualClock, so grants and requests expire
// without sleeping. Every case makes the requests and grants it needs: before each, the gateway clock
// steps past every earlier request, grant and token, and the planner puts a fresh token. The restart
// case restarts the gateway on the same state directory; later cases use the restarted one.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callOperatorApi, type ApiAnswer, type ApiTarget } from '../../../src/cli/commands/approvals.js';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, putToken, type AgentCredentials, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { DEMO_AGENTS, DEMO_OPERATOR, DEV_ISSUER, PACKAGE_ROOT, startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { loadGatewayConfig } from '../../../src/gateway/config.js';
import { startGateway, type GatewayHandle } from '../../../src/gateway/gateway.js';
import { silentLogger } from '../../../src/core/log.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { mintToken } from '../../../src/identity/dev/mint.js';
import { decisionRecords, modbusError, type SeenDecision } from './gateway-harness.js';

const VALVE = 1; // coil address of valve1.open
const AGENT_OWNER = 'alice@plant.example';

interface ApprovalView {
  id: string;
  status: string;
  digest: string;
  rule: string;
  asset: string;
  operation: string;
  targets: string[];
  points: string[];
  values?: Record<string, number>;
  workload: string;
  owner: string;
  task: { id: string; purpose: string };
  requested_at: string;
  expires_at: string;
  decided_by?: string;
  reason?: string;
  grant_expires_at?: string;
  consumed_at?: string;
}

describe('approvals over Modbus through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let creds: AgentCredentials;
  let planner: ModbusAgent;
  let decisions: { next(): Promise<SeenDecision>; drain(): SeenDecision[] };
  let restarted: GatewayHandle | undefined;
  let gateway: () => GatewayHandle;

  const operatorApi = async (o: { sub?: string; roles?: string[] } = {}): Promise<ApiTarget> => {
    const api = gateway().operatorApi!;
    return { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ ...o, now: clock.now() }), ca: creds.ca };
  };
  const list = async (status = 'pending'): Promise<ApprovalView[]> => {
    const answer = await callOperatorApi(await operatorApi(), 'GET', `v1/approvals?status=${status}`);
    expect(answer.status).toBe(200);
    return answer.body.approvals as ApprovalView[];
  };
  const decide = async (id: string, verb: 'approve' | 'reject', o: { sub?: string; roles?: string[] } = {}, reason = 'drain for inspection, checked on site'): Promise<ApiAnswer> =>
    callOperatorApi(await operatorApi(o), 'POST', `v1/approvals/${id}/${verb}`, { reason });
  /** The planner asks to open the drain valve and is refused APPROVAL_REQUIRED; resolves with the request id. */
  const refusedForApproval = async (agent: ModbusAgent = planner, open = true): Promise<string> => {
    expect(await modbusError(agent.client.writeCoil(VALVE, open))).toBe(0x01);
    const d = await decisions.next();
    expect(d).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', ruleId: 'planner-drain' });
    expect(d.approvalId).toMatch(/^apr-/);
    return d.approvalId;
  };
  const opensOnGrant = async (grantId: string): Promise<void> => {
    lab.sim.write('valve1.open', 0);
    await planner.client.writeCoil(VALVE, true);
    expect(lab.sim.read('valve1.open')).toBe(1);
    expect(await decisions.next()).toMatchObject({ effect: 'allow', reason: 'ALLOWED', ruleId: 'planner-drain', approvalId: grantId });
  };
  /** A request for opening the drain valve that an operator has approved; resolves with its id. */
  const granted = async (): Promise<string> => {
    const id = await refusedForApproval();
    expect((await decide(id, 'approve')).status).toBe(200);
    return id;
  };
  const putPlannerToken = async (token?: string) => {
    const api = gateway().agentApi;
    const put = await putToken(api.host, api.port, creds, token ?? (await lab.token('planner', { now: clock.now() })));
    expect(put.status).toBe(200);
  };
  /** A planner token for another task (or owner): the same workload, another subject. */
  const plannerTokenFor = async (o: { taskId?: string; owner?: string }) =>
    mintToken({
      privateJwk: JSON.parse(await readFile(path.join(PACKAGE_ROOT, 'fixtures/keys/dev-issuer.private.jwk.json'), 'utf8')) as JWK,
      iss: DEV_ISSUER,
      sub: DEMO_AGENTS.planner,
      aud: lab.audience,
      owner: o.owner ?? AGENT_OWNER,
      task: { id: o.taskId ?? 'demo-planner', purpose: 'plan a tank drain' },
      scope: ['read', 'write'],
      certThumbprint: certificateThumbprint(new X509Certificate(creds.cert)),
      now: clock.now(),
    });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-gw-approvals-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()) });
    gateway = () => restarted ?? lab.gateway;
    decisions = decisionRecords(lab);
    creds = await lab.credentials('planner');
    await putPlannerToken();
    planner = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  }, 30_000);

  // Past the request lifetime (15 min), so every earlier request, grant, rejection and token has
  // lapsed; then a fresh planner token, the valve closed, the process image read at the new time.
  beforeEach(async () => {
    clock.advance(15 * 60_000 + 1);
    await putPlannerToken();
    lab.sim.write('valve1.open', 0);
    await gateway().processImage()?.pollNow();
    decisions.drain();
  });

  afterAll(async () => {
    await planner?.close();
    if (restarted !== undefined) {
      await restarted.close();
      // The lab's own gateway was closed by the restart case; close the rest of the lab.
      await lab.close().catch(() => undefined);
    } else {
      await lab?.close();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses the first attempt with APPROVAL_REQUIRED and shows operators who asks, for what, and until when', async () => {
    const requestId = await refusedForApproval();
    expect(lab.sim.read('valve1.open')).toBe(0);
    const pending = await list();
    expect(pending).toHaveLength(1);
    const r = pending[0]!;
    expect(r).toMatchObject({
      id: requestId,
      status: 'pending',
      rule: 'planner-drain',
      asset: 'plc1',
      operation: 'write',
      points: ['valve1.open'],
      values: { 'valve1.open': 1 },
      workload: DEMO_AGENTS.planner,
      owner: AGENT_OWNER,
      task: { id: 'demo-planner', purpose: 'plan a tank drain' },
    });
    expect(r.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(r.targets).toEqual(['coil 1 x1']);
    expect(Date.parse(r.requested_at)).toBe(clock.now());
    expect(Date.parse(r.expires_at) - Date.parse(r.requested_at)).toBe(15 * 60_000);
  });

  it('gives the identical command sent again while waiting the same request, not a new one', async () => {
    const requestId = await refusedForApproval();
    expect(await refusedForApproval()).toBe(requestId);
    expect((await list()).map((r) => r.id)).toEqual([requestId]);
  });

  it("refuses the agent's owner as approver (two-person rule): 403 APPROVAL_INVALID / SAME_PERSON", async () => {
    const requestId = await refusedForApproval();
    const answer = await decide(requestId, 'approve', { sub: AGENT_OWNER });
    expect(answer.status).toBe(403);
    expect(answer.body).toMatchObject({ reason: 'APPROVAL_INVALID', detail: 'SAME_PERSON' });
    expect((await list())[0]).toMatchObject({ id: requestId, status: 'pending' });
  });

  it('refuses an owner-role token as approver: 403, the request stays pending', async () => {
    const requestId = await refusedForApproval();
    const answer = await decide(requestId, 'approve', { sub: 'carol@plant.example', roles: ['owner'] });
    expect(answer.status).toBe(403);
    expect(answer.body.detail).toBe('NOT_OPERATOR');
    expect((await list())[0]).toMatchObject({ id: requestId, status: 'pending' });
  });

  it('refuses a bearer token that is not a valid operator token with 401', async () => {
    const requestId = await refusedForApproval();
    const api = gateway().operatorApi!;
    const answer = await callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: await lab.token('planner', { now: clock.now() }), ca: creds.ca }, 'POST', `v1/approvals/${requestId}/approve`, { reason: 'self-approval' });
    expect(answer.status).toBeGreaterThanOrEqual(401);
    expect(answer.status).toBeLessThan(404);
    expect((await list())[0]).toMatchObject({ id: requestId, status: 'pending' });
  });

  it('an operator approves with a reason: the grant is short-lived (2 min)', async () => {
    const requestId = await refusedForApproval();
    const answer = await decide(requestId, 'approve');
    expect(answer.status).toBe(200);
    const a = answer.body.approval as ApprovalView;
    expect(a).toMatchObject({ id: requestId, status: 'approved', decided_by: DEMO_OPERATOR, reason: 'drain for inspection, checked on site' });
    expect(Date.parse(a.grant_expires_at!) - clock.now()).toBe(120_000);
    expect(await list()).toEqual([]);
  });

  it('still refuses a different value or a different target under the grant, without using it up', async () => {
    const requestId = await granted();
    // valve1.open := 0 is another command: it opens its own request.
    const other = await refusedForApproval(planner, false);
    expect(other).not.toBe(requestId);
    // pump1.run and valve1.open in one request: not what was approved (and not the planner's to write).
    expect(await modbusError(planner.client.writeCoils(0, [false, true]))).toBe(0x02);
    expect(await decisions.next()).toMatchObject({ effect: 'deny', approvalId: '' });
    expect(lab.sim.read('valve1.open')).toBe(0);
    expect((await list('approved')).map((r) => r.id)).toEqual([requestId]);
  });

  it('refuses the same agent under another task or another owner: the grant is bound to the subject', async () => {
    const requestId = await granted();
    await putPlannerToken(await plannerTokenFor({ taskId: 'another-task' }));
    expect(await refusedForApproval()).not.toBe(requestId);
    await putPlannerToken(await plannerTokenFor({ owner: 'dave@plant.example' }));
    expect(await refusedForApproval()).not.toBe(requestId);
    expect(lab.sim.read('valve1.open')).toBe(0);
    expect((await list('approved')).map((r) => r.id)).toEqual([requestId]);
    await putPlannerToken();
  });

  it('allows the identical retry once: the valve opens and the grant is used up', async () => {
    const requestId = await granted();
    await opensOnGrant(requestId);
    const consumed = await list('consumed');
    expect(consumed.find((r) => r.id === requestId)?.consumed_at).toBeDefined();
  });

  it('refuses a second retry and opens a new request', async () => {
    const requestId = await granted();
    await opensOnGrant(requestId);
    lab.sim.write('valve1.open', 0);
    const again = await refusedForApproval();
    expect(again).not.toBe(requestId);
    expect(lab.sim.read('valve1.open')).toBe(0);
    expect((await list()).map((r) => r.id)).toContain(again);
    expect((await decide(requestId, 'approve')).status).toBe(409);
  });

  it('refuses the retry once the grant has expired (2 min on the gateway clock)', async () => {
    const id = await granted();
    clock.advance(120_001);
    const next = await refusedForApproval();
    expect(next).not.toBe(id);
    expect(lab.sim.read('valve1.open')).toBe(0);
    expect((await list('expired')).map((r) => r.id)).toContain(id);
  });

  it('after a rejection keeps refusing the identical command under the same request', async () => {
    const id = await refusedForApproval();
    const answer = await decide(id, 'reject', {}, 'not during backwash');
    expect(answer.status).toBe(200);
    expect((answer.body.approval as ApprovalView).status).toBe('rejected');
    expect(await refusedForApproval()).toBe(id);
    expect(lab.sim.read('valve1.open')).toBe(0);
    expect((await decide(id, 'approve')).status).toBe(409);
  });

  it('keeps an approved grant across a gateway restart, and never revives a used one', async () => {
    // A grant used before the restart, and one approved but not yet used.
    const used = await granted();
    await opensOnGrant(used);
    lab.sim.write('valve1.open', 0);
    const id = await granted();

    await planner.close();
    await gateway().close();
    restarted = await startGateway(await loadGatewayConfig(lab.configFile), { clock, logger: silentLogger });
    await restarted.upstreamsReady();
    await putPlannerToken();
    planner = await connectModbusAgent(restarted.modbus.host, restarted.modbus.port, creds);

    expect((await list('approved')).map((r) => r.id)).toEqual([id]);
    await opensOnGrant(id);
    expect((await list('consumed')).map((r) => r.id)).toContain(used);

    // Used before a second restart: it stays used.
    await planner.close();
    await restarted.close();
    restarted = await startGateway(await loadGatewayConfig(lab.configFile), { clock, logger: silentLogger });
    await restarted.upstreamsReady();
    await putPlannerToken();
    planner = await connectModbusAgent(restarted.modbus.host, restarted.modbus.port, creds);
    expect((await list('consumed')).map((r) => r.id)).toContain(id);
    lab.sim.write('valve1.open', 0);
    expect(await refusedForApproval()).not.toBe(id);
    expect(lab.sim.read('valve1.open')).toBe(0);
  });
});
