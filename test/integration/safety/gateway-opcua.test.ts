// Interlocks and approvals through the real gateway over OPC UA: one lab with the OPC UA front
// (the simulator's OPC UA face upstream, interlock inputs polled over the PLC's Modbus face) and
// node-opcua clients on SignAndEncrypt that open their sessions with JWTs. The optimizer trips the
// overfill interlock (tank1-overfill-ua); the planner and the optimizer work the drain valve, which
// rule agents-drain-ua allows only with an operator's approval on the operator API.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AttributeIds, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes, type ClientSession } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callOperatorApi, type ApiTarget } from '../../../src/cli/commands/approvals.js';
import { ManualClock } from '../../../src/core/clock.js';
import { DEMO_AGENTS, startLab, type DemoAgent, type Lab } from '../../../src/cli/demo/lab.js';
import { createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import { decisionRecords, setTankLevel, type SeenDecision } from './gateway-harness.js';

const SCOPES = ['read', 'write', 'call', 'browse', 'subscribe'];

interface UaAgent {
  client: OPCUAClient;
  session: ClientSession;
  write(point: string, dataType: DataType, value: number | boolean): Promise<number>;
  call(method: string, speed?: number): Promise<number>;
}

describe('interlocks and approvals over OPC UA through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let decisions: { next(): Promise<SeenDecision> };
  let optimizer: UaAgent;
  let planner: UaAgent;

  const connect = async (agent: DemoAgent): Promise<UaAgent> => {
    const ua = lab.opcua!;
    const client = OPCUAClient.create({
      applicationUri: DEMO_AGENTS[agent],
      securityMode: MessageSecurityMode.SignAndEncrypt,
      securityPolicy: SecurityPolicy.Basic256Sha256,
      certificateFile: ua.agentFiles[agent].cert,
      privateKeyFile: ua.agentFiles[agent].key,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, `pki-${agent}`), automaticallyAcceptUnknownCertificate: true }),
    });
    await client.connect(ua.endpointUrl);
    const session = await createJwtSession(client, await ua.token(agent, { scope: SCOPES, now: clock.now() }));
    const ns = ((await session.readNamespaceArray()) as string[]).indexOf(ua.namespace);
    const node = (p: string) => `ns=${ns};s=${p}`;
    return {
      client,
      session,
      write: async (point, dataType, value) => (await session.write({ nodeId: node(point), attributeId: AttributeIds.Value, value: { value: { dataType, value } } })).value,
      call: async (method, speed) =>
        (await session.call({ objectId: node('plc1'), methodId: node(method), inputArguments: speed === undefined ? [] : [{ dataType: DataType.Double, value: speed }] })).statusCode.value,
    };
  };
  const operatorApi = async (): Promise<ApiTarget> => {
    const api = lab.gateway.operatorApi!;
    return { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ now: clock.now() }), ca: (await lab.credentials('planner')).ca };
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-gw-opcua-safety-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, clock: new ManualClock(Date.now()), opcua: true });
    decisions = decisionRecords(lab);
    [optimizer, planner] = await Promise.all([connect('optimizer'), connect('planner')]);
  }, 60_000);

  afterAll(async () => {
    for (const a of [optimizer, planner]) {
      await a?.session.close().catch(() => undefined);
      await a?.client.disconnect().catch(() => undefined);
    }
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The next decision record of an OPC UA command (session records and reads of the front are skipped). */
  const nextUa = async (point: string): Promise<SeenDecision> => {
    for (;;) {
      const d = await decisions.next();
      if (d.protocol === 'opcua' && d.points.includes(point)) return d;
    }
  };

  it('refuses to start the pump on a 90 % tank with BadUserAccessDenied (INTERLOCK), and allows it once the level recovers', async () => {
    await setTankLevel(lab, 90);
    expect(await optimizer.write('pump1.run', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect(await nextUa('pump1.run')).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'tank1-overfill-ua' });
    // Stopping is never guarded.
    expect(await optimizer.write('pump1.run', DataType.Boolean, false)).toBe(StatusCodes.Good.value);
    expect((await nextUa('pump1.run')).reason).toBe('ALLOWED');

    await setTankLevel(lab, 50);
    expect(await optimizer.write('pump1.run', DataType.Boolean, true)).toBe(StatusCodes.Good.value);
    expect(lab.sim.read('pump1.run')).toBe(1);
    expect(await nextUa('pump1.run')).toMatchObject({ effect: 'allow', reason: 'ALLOWED', interlockId: '' });
    expect(await optimizer.write('pump1.run', DataType.Boolean, false)).toBe(StatusCodes.Good.value);
    expect((await nextUa('pump1.run')).reason).toBe('ALLOWED');
  });

  it('refuses starting the pump through the pump1.start method on a 90 % tank too', async () => {
    await setTankLevel(lab, 90);
    expect(await optimizer.call('pump1.start', 1200)).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect(await nextUa('pump1.start')).toMatchObject({ effect: 'deny', reason: 'INTERLOCK', interlockId: 'tank1-overfill-ua' });
    expect(await optimizer.call('pump1.stop')).toBe(StatusCodes.Good.value);
    expect((await nextUa('pump1.stop')).reason).toBe('ALLOWED');
    await setTankLevel(lab, 50);
  });

  it('fails closed with INTERLOCK_INPUT_STALE once the PLC stops answering the gateway’s polls for longer than max_age', async () => {
    await setTankLevel(lab, 50);
    // The PLC stops answering: its OPC UA face, where the gateway reads the interlock's input, says BadNoCommunication.
    const fault = lab.sim.inject({ kind: 'offline', plc: 'plc1' });
    try {
      clock.advance(2500);
      await lab.gateway.processImage()!.pollNow();
      expect(await optimizer.write('pump1.run', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied.value);
      expect(lab.sim.read('pump1.run')).toBe(0);
      expect(await nextUa('pump1.run')).toMatchObject({ reason: 'INTERLOCK_INPUT_STALE', interlockId: 'tank1-overfill-ua' });
      // The setpoint is not guarded: it still reaches the PLC.
      expect(await optimizer.write('tank1.setpoint', DataType.Double, 55)).toBe(StatusCodes.Good.value);
      expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(55, 1);
    } finally {
      lab.sim.clearFault(fault.id);
    }
    await setTankLevel(lab, 50);
  });

  it('holds opening the drain valve for an operator, allows the identical retry once, and not for another agent', async () => {
    expect(await planner.write('valve1.open', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied.value);
    const first = await nextUa('valve1.open');
    expect(first).toMatchObject({ effect: 'deny', reason: 'APPROVAL_REQUIRED', ruleId: 'agents-drain-ua' });
    const target = await operatorApi();
    const pending = (await callOperatorApi(target, 'GET', 'v1/approvals?status=pending')).body.approvals as Array<{ id: string; asset: string; workload: string; targets: string[] }>;
    const request = pending.find((r) => r.id === first.approvalId)!;
    expect(request).toMatchObject({ asset: 'plc1-ua', workload: DEMO_AGENTS.planner });
    expect(request.targets[0]).toMatch(/^node .*valve1\.open$/);
    expect((await callOperatorApi(target, 'POST', `v1/approvals/${request.id}/approve`, { reason: 'drain for inspection' })).status).toBe(200);

    // Another agent sending the identical command does not get (or use up) the planner's grant.
    expect(await optimizer.write('valve1.open', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied.value);
    const other = await nextUa('valve1.open');
    expect(other).toMatchObject({ reason: 'APPROVAL_REQUIRED' });
    expect(other.approvalId).not.toBe(request.id);
    expect(lab.sim.read('valve1.open')).toBe(0);

    expect(await planner.write('valve1.open', DataType.Boolean, true)).toBe(StatusCodes.Good.value);
    expect(lab.sim.read('valve1.open')).toBe(1);
    expect(await nextUa('valve1.open')).toMatchObject({ effect: 'allow', reason: 'ALLOWED', approvalId: request.id });

    expect(await planner.write('valve1.open', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied.value);
    const again = await nextUa('valve1.open');
    expect(again.reason).toBe('APPROVAL_REQUIRED');
    expect(again.approvalId).not.toBe(request.id);
  });
});
