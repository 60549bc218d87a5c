// The emergency freeze through the real gateway: Modbus/TCP Security connections (modbus-serial over
// mutual TLS), OPC UA sessions (node-opcua, SignAndEncrypt, JWT) and MCP sessions (the MCP SDK's
// client) that are already open when an operator freezes on the operator API. The bound is proved as "the very next command after the
// freeze call returns is refused" (no wall clock): each test awaits the API answer, then sends.
// The collector's copy of the audit stream is what the assertions read.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AttributeIds, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes, type ClientSession } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callOperatorApi, type ApiAnswer } from '../../../src/cli/commands/approvals.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { DEMO_AGENTS, DEMO_OPERATOR, startLab, type DemoAgent, type Lab } from '../../../src/cli/demo/lab.js';
import { createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import { connectMcpAgent } from '../../../src/cli/demo/mcp-agent.js';
import { modbusError } from '../safety/gateway-harness.js';

const SETPOINT = 0; // holding register of tank1.setpoint (x10)
const VALVE = 1; // coil of valve1.open

interface Seen {
  kind: 'decision' | 'freeze';
  effect?: 'allow' | 'deny';
  reason: string;
  freezeId?: string;
  approvalId?: string;
  protocol?: string;
  points?: string[];
  freeze?: Record<string, unknown>;
}

describe('emergency freeze through the real gateway (Modbus, OPC UA and MCP)', () => {
  let dir: string;
  let lab: Lab;
  let optimizer: ModbusAgent;
  let planner: ModbusAgent;
  let ua: { client: OPCUAClient; session: ClientSession; node(p: string): string };
  const seen: Seen[] = [];
  const waiters: Array<() => void> = [];

  /** The next record matching `pred` that the collector stores (an event, not a sleep). */
  const next = async (pred: (s: Seen) => boolean): Promise<Seen> => {
    for (;;) {
      const i = seen.findIndex(pred);
      if (i !== -1) return seen.splice(0, i + 1)[i]!;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no matching audit record within 10 s')), 10_000);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };
  const nextDecision = (protocol: 'modbus' | 'opcua', point?: string) => next((s) => s.kind === 'decision' && s.protocol === protocol && (point === undefined || s.points!.includes(point)));
  const operator = async (method: 'GET' | 'POST', p: string, body?: unknown, sub?: string, roles?: string[]): Promise<ApiAnswer> => {
    const api = lab.gateway.operatorApi!;
    return callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ sub, roles }), ca: (await lab.credentials('optimizer')).ca }, method, p, body);
  };
  const freeze = async (body: Record<string, unknown>, sub?: string): Promise<string> => {
    const a = await operator('POST', 'v1/freezes', body, sub);
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    return (a.body.freeze as { id: string }).id;
  };
  const unfreeze = async (id: string): Promise<void> => {
    const a = await operator('POST', `v1/freezes/${id}/unfreeze`, { reason: 'leak fixed, checked on site' });
    expect(a.status, JSON.stringify(a.body)).toBe(200);
  };
  const uaWrite = async (point: string, value: number): Promise<number> =>
    (await ua.session.write({ nodeId: ua.node(point), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value } } })).value;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-gw-freeze-'));
    lab = await startLab({ stateDir: dir, opcua: true });
    lab.collector.on('record', (_g: string, r: { decision?: { command?: { protocol?: string; points?: string[] }; decision?: { effect?: unknown; reason?: string; freezeId?: string; approvalId?: string } }; freeze?: Record<string, unknown> }) => {
      const d = r.decision?.decision;
      if (d) {
        seen.push({
          kind: 'decision', effect: d.effect === 1 || d.effect === 'ALLOW' ? 'allow' : 'deny', reason: d.reason ?? '', freezeId: d.freezeId ?? '', approvalId: d.approvalId ?? '',
          protocol: r.decision?.command?.protocol ?? '', points: r.decision?.command?.points ?? [],
        });
      } else if (r.freeze) seen.push({ kind: 'freeze', reason: String(r.freeze.reason ?? ''), freeze: r.freeze });
      else return;
      for (const w of waiters.splice(0)) w();
    });
    const api = lab.gateway.agentApi;
    for (const agent of ['optimizer', 'planner'] as DemoAgent[]) {
      expect((await putToken(api.host, api.port, await lab.credentials(agent), await lab.token(agent))).status).toBe(200);
    }
    const { host, port } = lab.gateway.modbus;
    optimizer = await connectModbusAgent(host, port, await lab.credentials('optimizer'));
    planner = await connectModbusAgent(host, port, await lab.credentials('planner'));

    const files = lab.opcua!;
    const client = OPCUAClient.create({
      applicationUri: DEMO_AGENTS.optimizer,
      securityMode: MessageSecurityMode.SignAndEncrypt,
      securityPolicy: SecurityPolicy.Basic256Sha256,
      certificateFile: files.agentFiles.optimizer.cert,
      privateKeyFile: files.agentFiles.optimizer.key,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'pki-ua-agent'), automaticallyAcceptUnknownCertificate: true }),
    });
    await client.connect(files.endpointUrl);
    const session = await createJwtSession(client, await files.token('optimizer', { scope: ['read', 'write', 'call', 'browse', 'subscribe'] }));
    const ns = ((await session.readNamespaceArray()) as string[]).indexOf(files.namespace);
    ua = { client, session, node: (p) => `ns=${ns};s=${p}` };
  }, 90_000);

  afterAll(async () => {
    await ua?.session.close().catch(() => undefined);
    await ua?.client.disconnect().catch(() => undefined);
    await optimizer?.close();
    await planner?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses the very next Modbus write on an open connection once the freeze call returns (0x01, EMERGENCY_FREEZE), reads go on, and the PLC never sees it', async () => {
    await optimizer.client.writeRegister(SETPOINT, 550);
    expect((await nextDecision('modbus')).reason).toBe('ALLOWED');

    const id = await freeze({ asset: 'plc1', reason: 'leak on tank 1', expires_in_sec: 3600 });
    expect(await modbusError(optimizer.client.writeRegister(SETPOINT, 600))).toBe(0x01);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(55);
    expect(await nextDecision('modbus')).toMatchObject({ effect: 'deny', reason: 'EMERGENCY_FREEZE', freezeId: id });
    expect((await optimizer.client.readHoldingRegisters(SETPOINT, 1)).data[0]).toBe(550);
    expect((await nextDecision('modbus')).reason).toBe('ALLOWED');

    await unfreeze(id);
    await optimizer.client.writeRegister(SETPOINT, 600);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(60);
    expect((await nextDecision('modbus')).reason).toBe('ALLOWED');
  });

  it('records every freeze and unfreeze in the audit stream with who, scope, reason and expiry, and counts them in the metrics', async () => {
    const id = await freeze({ asset: 'plc1', reason: 'valve inspection', expires_in_sec: 600 });
    const frozen = (await next((s) => s.kind === 'freeze' && s.freeze!.freezeId === id)).freeze!;
    expect(frozen).toMatchObject({ kind: 'frozen', scope: 'asset', value: 'plc1', mode: 'writes', reason: 'valve inspection', by: DEMO_OPERATOR, frozenBy: DEMO_OPERATOR, unfreezeNeeded: 1 });
    expect(Number(frozen.expiresAtUnixMs) - Number(frozen.frozenAtUnixMs)).toBe(600_000);
    await unfreeze(id);
    expect((await next((s) => s.kind === 'freeze' && s.freeze!.freezeId === id)).freeze).toMatchObject({ kind: 'unfrozen', by: DEMO_OPERATOR, reason: 'leak fixed, checked on site' });
    const metrics = await lab.gateway.metrics.text();
    expect(metrics).toMatch(/plantgate_freeze_changes_total\{kind="frozen"\} [1-9]/);
    expect(metrics).toMatch(/plantgate_freeze_changes_total\{kind="unfrozen"\} [1-9]/);
    expect(metrics).toContain('plantgate_freezes_active 0');
  });

  it('refuses the very next OPC UA write and method call in an open session (BadUserAccessDenied, EMERGENCY_FREEZE); reads go on', async () => {
    expect(await uaWrite('tank1.setpoint', 45)).toBe(StatusCodes.Good.value);
    expect((await nextDecision('opcua', 'tank1.setpoint')).reason).toBe('ALLOWED');

    const id = await freeze({ asset: 'plc1-ua', reason: 'OPC UA side under test' });
    expect(await uaWrite('tank1.setpoint', 50)).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(await nextDecision('opcua', 'tank1.setpoint')).toMatchObject({ effect: 'deny', reason: 'EMERGENCY_FREEZE', freezeId: id });
    const call = await ua.session.call({ objectId: ua.node('plc1'), methodId: ua.node('pump1.stop'), inputArguments: [] });
    expect(call.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(await nextDecision('opcua', 'pump1.stop')).toMatchObject({ reason: 'EMERGENCY_FREEZE', freezeId: id });
    const read = await ua.session.read({ nodeId: ua.node('tank1.setpoint'), attributeId: AttributeIds.Value });
    expect(read.statusCode.value).toBe(StatusCodes.Good.value);

    await unfreeze(id);
    expect(await uaWrite('tank1.setpoint', 50)).toBe(StatusCodes.Good.value);
    expect((await nextDecision('opcua', 'tank1.setpoint')).reason).toBe('ALLOWED');
  });

  it('refuses the very next MCP tool call in an open MCP session (isError, EMERGENCY_FREEZE), the PLC never sees it', async () => {
    const mcp = await connectMcpAgent({ url: lab.gateway.mcp!.resource, ca: (await lab.credentials('optimizer')).ca, token: await lab.mcpToken('optimizer'), era: 'legacy', name: 'freeze-test-llm', version: '1' });
    try {
      const write = async (value: number) => (await mcp.client.callTool({ name: 'write_plc1_tank1_setpoint', arguments: { value } })) as { isError?: boolean; content: { text: string }[] };
      expect((await write(58)).isError).toBeFalsy();
      expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(58);
      const id = await freeze({ asset: 'plc1', reason: 'agents over MCP too' });
      const refused = await write(62);
      expect(refused.isError).toBe(true);
      expect(refused.content[0]!.text).toMatch(/^EMERGENCY_FREEZE/);
      expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(58);
      expect(await next((s) => s.kind === 'decision' && s.reason === 'EMERGENCY_FREEZE')).toMatchObject({ freezeId: id, points: ['tank1.setpoint'] });
      await unfreeze(id);
      expect((await write(62)).isError).toBeFalsy();
      // MCP tool calls run as Modbus commands upstream: take this one's record off the queue.
      expect((await next((s) => s.kind === 'decision' && s.protocol === 'modbus')).reason).toBe('ALLOWED');
    } finally {
      await mcp.close();
    }
  });

  it('is not overridden by an approval granted for the exact command, nor by a token carrying every scope and role', async () => {
    lab.sim.write('valve1.open', 0);
    expect(await modbusError(planner.client.writeCoil(VALVE, true))).toBe(0x01);
    const asked = await nextDecision('modbus');
    expect(asked.reason).toBe('APPROVAL_REQUIRED');
    expect((await operator('POST', `v1/approvals/${asked.approvalId}/approve`, { reason: 'drain for inspection' })).status).toBe(200);

    const id = await freeze({ site: true, reason: 'site-wide stop' });
    expect(await modbusError(planner.client.writeCoil(VALVE, true))).toBe(0x01);
    expect(await nextDecision('modbus')).toMatchObject({ reason: 'EMERGENCY_FREEZE', freezeId: id, approvalId: '' });
    expect(lab.sim.read('valve1.open')).toBe(0);

    const api = lab.gateway.agentApi;
    const everything = await lab.token('optimizer', { scope: ['read', 'write', 'call', 'diagnostic', 'admin', '*'] });
    expect((await putToken(api.host, api.port, await lab.credentials('optimizer'), everything)).status).toBe(200);
    expect(await modbusError(optimizer.client.writeRegister(SETPOINT, 650))).toBe(0x01);
    expect((await nextDecision('modbus')).reason).toBe('EMERGENCY_FREEZE');

    // The grant was not spent by the frozen attempt: after the freeze it still opens the valve once.
    await unfreeze(id);
    await planner.client.writeCoil(VALVE, true);
    expect(lab.sim.read('valve1.open')).toBe(1);
    expect(await nextDecision('modbus')).toMatchObject({ effect: 'allow', approvalId: asked.approvalId });
  });

  it("freezes one owner's agents under another spelling of the owner, and with mode all their reads too", async () => {
    const id = await freeze({ owner: 'ALICE@Plant.Example', mode: 'all', reason: "owner's agents misbehave" });
    expect(await modbusError(optimizer.client.readHoldingRegisters(SETPOINT, 1))).toBe(0x01);
    expect(await nextDecision('modbus')).toMatchObject({ reason: 'EMERGENCY_FREEZE', freezeId: id });
    await unfreeze(id);
  });

  it('freezes workloads by SPIFFE pattern: the planner is held, the optimizer is not', async () => {
    const id = await freeze({ workload: 'spiffe://plant.example/agent/plan*', reason: 'planner loops' });
    lab.sim.write('valve1.open', 0);
    expect(await modbusError(planner.client.writeCoil(VALVE, true))).toBe(0x01);
    expect((await nextDecision('modbus')).reason).toBe('EMERGENCY_FREEZE');
    await optimizer.client.writeRegister(SETPOINT, 600);
    expect((await nextDecision('modbus')).reason).toBe('ALLOWED');
    await unfreeze(id);
  });

  it('refuses a freeze without a reason or of an unknown asset (400, naming the field), an owner-role freeze of others (403), and an owner-role unfreeze (403)', async () => {
    let a = await operator('POST', 'v1/freezes', { asset: 'plc1' });
    expect(a.status).toBe(400);
    expect(String(a.body.message)).toContain('"reason" is required');
    a = await operator('POST', 'v1/freezes', { asset: 'plc9', reason: 'x' });
    expect(a.status).toBe(400);
    expect(String(a.body.message)).toContain("no asset 'plc9'");
    a = await operator('POST', 'v1/freezes', { asset: 'plc1', reason: 'x' }, 'carol@plant.example', ['owner']);
    expect(a.status).toBe(403);
    // The owner role may stop its own agents, but only an operator lifts the freeze.
    a = await operator('POST', 'v1/freezes', { owner: 'alice@plant.example', reason: 'stopping my agents' }, 'alice@plant.example', ['owner']);
    expect(a.status).toBe(201);
    const id = (a.body.freeze as { id: string }).id;
    a = await operator('POST', `v1/freezes/${id}/unfreeze`, { reason: 'done' }, 'alice@plant.example', ['owner']);
    expect(a.status).toBe(403);
    expect(await modbusError(optimizer.client.writeRegister(SETPOINT, 600))).toBe(0x01);
    expect((await nextDecision('modbus')).reason).toBe('EMERGENCY_FREEZE');
    await unfreeze(id);
    const list = await operator('GET', 'v1/freezes');
    expect(list.body.freezes).toEqual([]);
    expect((list.body.recently_lifted as Array<{ id: string }>)[0]!.id).toBe(id);
  });
});
