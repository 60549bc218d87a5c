// OPC UA through the real gateway: the lab (dev PKI, signed demo bundle with the OPC UA asset
// plc1-ua, simulator serving Modbus and OPC UA from one plant, SOC collector, gateway from its YAML
// config with the OPC UA front) and a node-opcua client agent on SignAndEncrypt that opens its
// session with a JWT (createJwtSession). Every decision comes from the real EnforcementPipeline:
// policy, interlocks, token checks, audit — and shows up in the SOC stream with protocol opcua.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AttributeIds, BrowseDirection, DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes, type ClientSession, type StatusCode } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { createJwtSession, rotateJwt } from '../../../protocols/opcua/jwt-token.js';

const SCOPES = ['read', 'write', 'call', 'browse', 'subscribe'];

// In order (make test-shuffle keeps it): the last case reads, in the SOC's stream, the decisions of every
// case before it.
describe('OPC UA agents through the real gateway (lab with the OPC UA front)', { shuffle: false }, () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let client: OPCUAClient;
  let session: ClientSession;
  let ns: number;
  const node = (point: string) => `ns=${ns};s=${point}`;
  const write = async (point: string, dataType: DataType, value: number | boolean): Promise<StatusCode> =>
    session.write({ nodeId: node(point), attributeId: AttributeIds.Value, value: { value: { dataType, value } } });
  const callMethod = async (method: string, speed?: number) =>
    session.call({ objectId: node('plc1'), methodId: node(method), inputArguments: speed === undefined ? [] : [{ dataType: DataType.Double, value: speed }] });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-opcua-lab-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock, opcua: true });
    const ua = lab.opcua!;
    client = OPCUAClient.create({
      applicationUri: 'spiffe://plant.example/agent/optimizer',
      securityMode: MessageSecurityMode.SignAndEncrypt,
      securityPolicy: SecurityPolicy.Basic256Sha256,
      certificateFile: ua.agentFiles.optimizer.cert,
      privateKeyFile: ua.agentFiles.optimizer.key,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'agent-pki'), automaticallyAcceptUnknownCertificate: true }),
    });
    await client.connect(ua.endpointUrl);
    session = await createJwtSession(client, await ua.token('optimizer', { scope: SCOPES, now: clock.now() }));
    const namespaces = (await session.readNamespaceArray()) as string[];
    ns = namespaces.indexOf(ua.namespace);
  }, 60_000);

  afterAll(async () => {
    await session?.close().catch(() => undefined);
    await client?.disconnect().catch(() => undefined);
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('exposes the PLC under the simulator namespace and reads a live value fed by the upstream session', async () => {
    expect(ns).toBeGreaterThan(0);
    lab.sim.write('tank1.level', 42.5);
    // The front answers from the upstream subscription: wait for the value to arrive (an event).
    let dv = await session.read({ nodeId: node('tank1.level'), attributeId: AttributeIds.Value });
    for (let i = 0; i < 100 && !(dv.statusCode === StatusCodes.Good && Math.abs((dv.value.value as number) - 42.5) < 1); i++) {
      await new Promise((r) => setTimeout(r, 50));
      dv = await session.read({ nodeId: node('tank1.level'), attributeId: AttributeIds.Value });
    }
    expect(dv.statusCode).toBe(StatusCodes.Good);
    expect(dv.value.value as number).toBeCloseTo(42.5, 0);
  });

  it('writes an allowed setpoint to the PLC and refuses one outside the bounds with BadUserAccessDenied', async () => {
    expect(await write('tank1.setpoint', DataType.Double, 45)).toBe(StatusCodes.Good);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(45, 1);
    expect(await write('tank1.setpoint', DataType.Double, 95)).toBe(StatusCodes.BadUserAccessDenied);
    expect(lab.sim.read('tank1.setpoint')).toBeCloseTo(45, 1);
  });

  it('refuses a write to a point no rule lets the optimizer write (control.auto)', async () => {
    expect(await write('control.auto', DataType.Boolean, false)).toBe(StatusCodes.BadUserAccessDenied);
  });

  it('writes pump1.speed as the UInt16 the PLC declares, and answers a Double write BadTypeMismatch without reaching the PLC', async () => {
    const dv = await session.read({ nodeId: node('pump1.speed'), attributeId: AttributeIds.DataType });
    expect(dv.value.value.toString()).toBe('ns=0;i=5'); // UInt16, as on the simulated PLC
    expect(await write('pump1.speed', DataType.UInt16, 1100)).toBe(StatusCodes.Good);
    expect(lab.sim.read('pump1.speed')).toBe(1100);
    const reached = lab.opcua!.served().length;
    expect(await write('pump1.speed', DataType.Double, 1200)).toBe(StatusCodes.BadTypeMismatch);
    expect(lab.opcua!.served().length).toBe(reached);
    expect(lab.sim.read('pump1.speed')).toBe(1100);
    // Bounds still apply to a well-typed value.
    expect(await write('pump1.speed', DataType.UInt16, 2000)).toBe(StatusCodes.BadUserAccessDenied);
  });

  it('browses the PLC object (a browse rule covers the asset object node)', async () => {
    const r = await session.browse({ nodeId: node('plc1'), browseDirection: BrowseDirection.Forward, resultMask: 0x3f });
    expect(r.statusCode).toBe(StatusCodes.Good);
    expect(r.references?.map((x) => x.browseName.name)).toEqual(expect.arrayContaining(['tank1.level', 'pump1.start']));
  });

  it('calls pump1.start with a speed inside the asset bounds, and is refused outside them', async () => {
    expect((await callMethod('pump1.start', 2500)).statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect((await callMethod('pump1.start', 1200)).statusCode).toBe(StatusCodes.Good);
    expect(lab.sim.read('pump1.run')).toBe(1);
    expect((await callMethod('pump1.stop')).statusCode).toBe(StatusCodes.Good);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect((await callMethod('alarms.acknowledge')).statusCode).toBe(StatusCodes.BadUserAccessDenied);
  });

  it('refuses starting the pump over OPC UA while the tank is nearly full (interlock)', async () => {
    lab.sim.write('tank1.level', 90);
    await lab.gateway.processImage()!.pollNow();
    expect(await write('pump1.run', DataType.Boolean, true)).toBe(StatusCodes.BadUserAccessDenied);
    expect(lab.sim.read('pump1.run')).toBe(0);
    lab.sim.write('tank1.level', 50);
    await lab.gateway.processImage()!.pollNow();
  });

  it('a token without the write scope is refused, and re-activation with a full token restores it (rotation)', async () => {
    const ua = lab.opcua!;
    expect(await rotateJwt(session, await ua.token('optimizer', { scope: ['read'], now: clock.now() }))).toBe(StatusCodes.Good);
    expect(await write('tank1.setpoint', DataType.Double, 50)).toBe(StatusCodes.BadUserAccessDenied);
    expect(await rotateJwt(session, await ua.token('optimizer', { scope: SCOPES, now: clock.now() }))).toBe(StatusCodes.Good);
    expect(await write('tank1.setpoint', DataType.Double, 50)).toBe(StatusCodes.Good);
  });

  it('denies every command once the token expires, until a fresh token is presented', async () => {
    clock.advance(301_000);
    const dv = await session.read({ nodeId: node('tank1.setpoint'), attributeId: AttributeIds.Value });
    expect(dv.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(await rotateJwt(session, await lab.opcua!.token('optimizer', { scope: SCOPES, now: clock.now() }))).toBe(StatusCodes.Good);
    expect((await session.read({ nodeId: node('tank1.setpoint'), attributeId: AttributeIds.Value })).statusCode).toBe(StatusCodes.Good);
  });

  it('records every OPC UA decision in the SOC stream with protocol opcua and its reason', async () => {
    const shipped = await lab.waitShipped();
    const lines = (await readFile(shipped.file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { decision?: { command?: { protocol?: string; operation?: string; points?: string[] }; decision?: { reason?: string; interlockId?: string } } });
    const ua = lines.flatMap((l) => (l.decision?.command?.protocol === 'opcua' ? [l.decision] : []));
    const seen = (op: string, point: string) => ua.filter((d) => d.command?.operation === op && d.command.points?.includes(point)).map((d) => d.decision?.reason);
    expect(seen('write', 'tank1.setpoint')).toEqual(expect.arrayContaining(['ALLOWED', 'VALUE_OUT_OF_BOUNDS', 'SCOPE_MISSING']));
    expect(seen('write', 'control.auto')).toContain('NO_MATCHING_RULE');
    expect(seen('call', 'pump1.start')).toEqual(expect.arrayContaining(['ALLOWED', 'VALUE_OUT_OF_BOUNDS']));
    expect(seen('write', 'pump1.run')).toContain('INTERLOCK');
    expect(ua.find((d) => d.decision?.reason === 'INTERLOCK')?.decision?.interlockId).toBe('tank1-overfill-ua');
    // The mistyped write is in the stream as refused TYPE_MISMATCH (the agent got BadTypeMismatch), next to the allowed one.
    expect(seen('write', 'pump1.speed')).toEqual(['ALLOWED', 'TYPE_MISMATCH', 'VALUE_OUT_OF_BOUNDS']);
    expect(seen('read', 'tank1.setpoint')).toContain('TOKEN_EXPIRED');
    expect(ua.some((d) => d.command?.operation === 'browse' && d.decision?.reason === 'ALLOWED')).toBe(true);
  });
});
