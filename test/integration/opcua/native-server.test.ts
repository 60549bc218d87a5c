// Fronting a third-party OPC UA server natively (issue 21), through the real gateway: the server is
// written here with node-opcua's server API (acme-plc.ts: namespace urn:acme:plc:line1, String,
// Double, Int32, Boolean, DateTime and array variables, a read-only node, two methods, one variable
// per built-in scalar type), the gateway is `startGateway` from a YAML config (dev PKI, the signed
// bundle of rules/examples/opcua-line1: an OPC UA asset with no point map, rules by browse path and
// NodeId with typed bounds), audit shipped to a real collector; node-opcua clients play the agents.
// The gateway learns the server's model by browsing it: nothing here tells it the nodes.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  AttributeIds,
  BrowseDirection,
  CallRequest,
  type CallResponse,
  DataType,
  LocalizedText,
  MessageSecurityMode,
  NodeClass,
  NumericRange,
  OPCUACertificateManager,
  OPCUAClient,
  QualifiedName,
  ReadRequest,
  type ReadResponse,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserNameIdentityToken,
  UserTokenType,
  Variant,
  VariantArrayType,
  WriteRequest,
  type WriteResponse,
  coerceNodeId,
  type ClientSession,
  type StatusCode,
} from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { startCollector } from '../../../src/collector/server.js';
import { DEMO_AGENTS, prepareLabFiles, type DemoAgent, type LabFiles } from '../../../src/cli/demo/lab.js';
import { loadGatewayConfig } from '../../../src/gateway/config.js';
import { startGateway, type GatewayHandle } from '../../../src/gateway/gateway.js';
import { certificateThumbprint } from '../../../src/identity/cert.js';
import { createAppCert, issueOpcuaCerts, writeAppCert } from '../../../protocols/opcua/app-cert.js';
import { JWT_PASSWORD_POLICY_ID, createJwtSession } from '../../../protocols/opcua/jwt-token.js';
import { ACME_NS, ACME_TYPES, startAcmePlc, type AcmePlc } from './acme-plc.js';

const READ_SCOPES = ['read', 'browse', 'subscribe'];
const ALL_SCOPES = [...READ_SCOPES, 'write', 'call'];

interface Record_ {
  violation?: { protocol?: string; remoteAddress?: string; detail?: string };
  decision?: { command?: { operation?: string; points?: string[]; targets?: { nodeId?: string; browsePath?: string }[]; typedValues?: Record<string, string> }; decision?: { reason?: string } };
}

describe('a third-party OPC UA server fronted natively through the real gateway', () => {
  let dir: string;
  let files: LabFiles;
  let plc: AcmePlc;
  let gateway: GatewayHandle;
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let collected = -1;
  let endpointUrl: string;
  let clock: ManualClock;
  const agentCerts = {} as Record<DemoAgent, { cert: string; key: string }>;
  let stranger: { cert: string; key: string };
  /** An HMI's own certificate (applicationUri urn:acme:hmi:panel1, no SPIFFE ID), pinned to the planner workload. */
  let hmi: { cert: string; key: string };
  const clients: OPCUAClient[] = [];
  let session: ClientSession;
  let ns: number;
  const node = (identifier: string) => `ns=${ns};s=${identifier}`;

  async function connect(as: { uri: string; cert: string; key: string }, mode = MessageSecurityMode.SignAndEncrypt, policy = SecurityPolicy.Basic256Sha256): Promise<OPCUAClient> {
    const client = OPCUAClient.create({
      applicationUri: as.uri, securityMode: mode, securityPolicy: policy, certificateFile: as.cert, privateKeyFile: as.key,
      endpointMustExist: false, connectionStrategy: { maxRetry: 0 }, requestedSessionTimeout: 60_000,
      clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, `client-pki-${clients.length}`), automaticallyAcceptUnknownCertificate: true }),
    });
    clients.push(client);
    await client.connect(endpointUrl);
    return client;
  }
  const agent = (name: DemoAgent) => ({ uri: DEMO_AGENTS[name], ...agentCerts[name] });
  const token = async (name: DemoAgent, scope = ALL_SCOPES) => files.mintFor(name, await readFile(agentCerts[name].cert), { scope, now: clock.now() });
  const write = (s: ClientSession, id: string, dataType: DataType, value: unknown, arrayType = VariantArrayType.Scalar): Promise<StatusCode> =>
    s.write({ nodeId: node(id), attributeId: AttributeIds.Value, value: { value: new Variant({ dataType, value, arrayType }) } });
  const read = async (s: ClientSession, id: string) => s.read({ nodeId: node(id), attributeId: AttributeIds.Value });
  const call = (s: ClientSession, method: string, args: Variant[]) => s.call({ objectId: node('Line1'), methodId: node(method), inputArguments: args });

  async function shipped(): Promise<Record_[]> {
    const target = gateway.audit.nextSeq - 1;
    while (collected < target) await new Promise((r) => collector.once('record', r));
    const text = await readFile(path.join(dir, 'collector', 'demo-gateway.ndjson'), 'utf8');
    return text.trim().split('\n').map((l) => JSON.parse(l) as Record_);
  }
  const decisions = async (op: string, pointPath: string) =>
    (await shipped()).flatMap((r) => (r.decision?.command?.operation === op && r.decision.command.points?.includes(pointPath) ? [r.decision] : []));

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-ua-native-'));
    clock = new ManualClock(Date.now());
    files = await prepareLabFiles({ stateDir: dir, rules: 'rules/examples/opcua-line1/bundle.yaml', gatewayClock: clock });
    plc = await startAcmePlc(dir);
    const ua = path.join(dir, 'opcua');
    // The gateway's and the agents' certificates as `plantgate pki opcua` issues them.
    const issued = await issueOpcuaCerts(ua, {
      gatewayUri: 'urn:plantgate:gateway:demo-gateway',
      hosts: ['127.0.0.1', 'localhost'],
      agents: Object.entries(DEMO_AGENTS).map(([name, spiffeId]) => ({ name, spiffeId })),
      servers: [],
    });
    const gw = issued.gateway;
    for (const name of Object.keys(DEMO_AGENTS) as DemoAgent[]) agentCerts[name] = issued.agents[name]!;
    // A well-formed agent certificate nobody put in the gateway's trust list.
    stranger = await writeAppCert(ua, 'stranger', await createAppCert({ applicationUri: 'spiffe://plant.example/agent/stranger', commonName: 'stranger' }));
    hmi = await writeAppCert(ua, 'hmi', await createAppCert({ applicationUri: 'urn:acme:hmi:panel1', commonName: 'ACME HMI panel 1' }));
    const ca = await readFile(files.pki.ca.cert);
    const [cCert, cKey] = await Promise.all([readFile(files.pki.collector.cert), readFile(files.pki.collector.key)]);
    collector = await startCollector({ host: '127.0.0.1', port: 0, tls: { ca, cert: cCert, key: cKey }, outDir: path.join(dir, 'collector') });
    collector.on('record', (_g: string, r: { seq?: number }) => (collected = Number(r.seq ?? -1)));
    const config = path.join(dir, 'gateway.yaml');
    await writeFile(
      config,
      `gateway_id: demo-gateway
state_dir: ${JSON.stringify(path.join(dir, 'gateway-state'))}
tls: { ca: ${JSON.stringify(files.pki.ca.cert)}, cert: ${JSON.stringify(files.pki.gateway.cert)}, key: ${JSON.stringify(files.pki.gateway.key)} }
listeners:
  modbus_tls: { host: 127.0.0.1, port: 0 }
  agent_api: { host: 127.0.0.1, port: 0 }
  opcua: { host: 127.0.0.1, port: 0 }
policy: { bundle_file: ${JSON.stringify(files.bundleFile)}, trusted_keys: [${JSON.stringify(files.policyJwks)}] }
audit:
  spool_dir: ${JSON.stringify(path.join(dir, 'spool'))}
  key_file: ${JSON.stringify(files.auditKeyFile)}
  collector: { host: 127.0.0.1, port: ${collector.port}, server_name: localhost }
opcua:
  application_uri: urn:plantgate:gateway:demo-gateway
  cert: ${JSON.stringify(gw.cert)}
  key: ${JSON.stringify(gw.key)}
  trusted_agent_certs: [${Object.values(agentCerts).map((c) => JSON.stringify(c.cert)).join(', ')}, { cert: ${JSON.stringify(hmi.cert)}, workload: ${DEMO_AGENTS.planner} }]
  jwt_as_password: true
opcua_upstreams:
  - asset: line1
    endpoint_url: ${plc.endpointUrl}
    server_cert: ${JSON.stringify(plc.certFile)}
    browse: [/Line1, /Line2]
`,
    );
    gateway = await startGateway(await loadGatewayConfig(config), { clock });
    await gateway.opcua!.whenReady();
    endpointUrl = gateway.opcua!.endpointUrl;
    session = await createJwtSession(await connect(agent('optimizer')), await token('optimizer'));
    ns = ((await session.readNamespaceArray()) as string[]).indexOf(ACME_NS);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
    await gateway?.close();
    await collector?.close();
    await plc?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("browses the server's own names, namespace and model: objects, variables with their types and access levels, EURange, methods with their arguments", async () => {
    expect(ns).toBeGreaterThan(0);
    const objects = await session.browse('i=85');
    const line1 = objects.references!.find((r) => r.browseName.name === 'Line1')!;
    expect(line1.nodeId.toString()).toBe(`ns=${ns};s=Line1`);
    expect(line1.browseName.namespaceIndex).toBe(ns);
    const children = await session.browse(node('Line1'));
    expect(children.statusCode).toBe(StatusCodes.Good);
    expect(children.references!.map((r) => r.browseName.name).sort()).toEqual(
      ['BatchCount', 'LastCleaned', 'Mode', 'Recipe', 'Running', 'SerialNumber', 'Setpoints', 'Speed', 'Start', 'Stop', 'Types'].sort(),
    );
    expect(children.references!.find((r) => r.browseName.name === 'Start')!.nodeClass).toBe(NodeClass.Method);
    const attrs = await session.read([
      { nodeId: node('Line1'), attributeId: AttributeIds.Description },
      { nodeId: node('Line1.Speed'), attributeId: AttributeIds.DataType },
      { nodeId: node('Line1.Setpoints'), attributeId: AttributeIds.ValueRank },
      { nodeId: node('Line1.SerialNumber'), attributeId: AttributeIds.AccessLevel },
      { nodeId: node('Line1.Recipe'), attributeId: AttributeIds.AccessLevel },
      { nodeId: node('Line1.LastCleaned'), attributeId: AttributeIds.DataType },
    ]);
    expect((attrs[0]!.value.value as LocalizedText).text).toBe('Packaging line 1');
    expect(attrs[1]!.value.value.toString()).toBe('ns=0;i=11'); // Double
    expect(attrs[2]!.value.value).toBe(1);
    expect(attrs[3]!.value.value).toBe(1); // CurrentRead only
    expect(attrs[4]!.value.value).toBe(3);
    expect(attrs[5]!.value.value.toString()).toBe('ns=0;i=13'); // DateTime
    // The AnalogItem's EURange property, mirrored with its value; reading it is a read of /Line1/Speed/EURange.
    const speedProps = await session.browse({ nodeId: node('Line1.Speed'), browseDirection: BrowseDirection.Forward, resultMask: 0x3f });
    const eu = speedProps.references!.find((r) => r.browseName.name === 'EURange')!;
    const range = await session.read({ nodeId: eu.nodeId, attributeId: AttributeIds.Value });
    expect(range.statusCode).toBe(StatusCodes.Good);
    expect(range.value.value).toMatchObject({ low: 0, high: 2000 });
    // The method's argument definitions, as on the server.
    const startArgs = await session.getArgumentDefinition(coerceNodeId(node('Line1.Start')));
    expect(startArgs.inputArguments.map((a) => [a.name, a.dataType.toString()])).toEqual([['speed', 'ns=0;i=11'], ['recipe', 'ns=0;i=12']]);
    expect(startArgs.outputArguments.map((a) => a.name)).toEqual(['accepted']);
    // The decision records name mirrored nodes by browse path.
    expect((await decisions('browse', '/Line1')).at(-1)?.decision?.reason).toBe('ALLOWED');
  });

  it('reads and writes String, Double, Int32, Boolean, DateTime and array variables, and reads each written value back at once', async () => {
    const when = new Date(Date.UTC(2026, 5, 1, 6, 30));
    const cases: [string, DataType, unknown, VariantArrayType?][] = [
      ['Line1.Recipe', DataType.String, 'B-200'],
      ['Line1.Speed', DataType.Double, 1234.5],
      ['Line1.BatchCount', DataType.Int32, 77],
      ['Line1.Running', DataType.Boolean, true],
      ['Line1.LastCleaned', DataType.DateTime, when],
      ['Line1.Setpoints', DataType.Double, [1.5, 2.5, 99], VariantArrayType.Array],
    ];
    for (const [id, dataType, value, arrayType] of cases) {
      expect(await write(session, id, dataType, value, arrayType), id).toBe(StatusCodes.Good);
      // Read your writes: the very next read returns the written value, not the previous copy.
      const dv = await read(session, id);
      expect(dv.statusCode, id).toBe(StatusCodes.Good);
      const got = dv.value.value as unknown;
      expect(got instanceof Float64Array ? Array.from(got) : got, id).toEqual(value);
      const onPlc = plc.value(id);
      expect(onPlc instanceof Float64Array ? Array.from(onPlc) : onPlc, id).toEqual(value);
    }
    const audited = (await decisions('write', '/Line1/Recipe')).at(-1)!;
    expect(audited.decision?.reason).toBe('ALLOWED');
    expect(audited.command?.targets?.[0]).toMatchObject({ nodeId: `nsu=${ACME_NS};s=Line1.Recipe`, browsePath: '/Line1/Recipe' });
    expect(audited.command?.typedValues?.['/Line1/Recipe']).toBe('"B-200"');
  });

  it('answers a read with the timestamps it asked for, and a part of an array for an index range', async () => {
    expect(await write(session, 'Line1.Setpoints', DataType.Double, [10, 20, 30], VariantArrayType.Array)).toBe(StatusCodes.Good);
    const both = await read(session, 'Line1.Setpoints'); // node-opcua's read asks for Both
    expect(both.sourceTimestamp).toBeInstanceOf(Date);
    expect(both.serverTimestamp).toBeInstanceOf(Date);
    const neither = await session.readVariableValue(node('Line1.Setpoints')); // asks for Neither
    expect(neither.statusCode).toBe(StatusCodes.Good);
    expect(neither.sourceTimestamp).toBeNull();
    expect(neither.serverTimestamp).toBeNull();
    const part = await session.read({ nodeId: node('Line1.Setpoints'), attributeId: AttributeIds.Value, indexRange: new NumericRange('1:2') });
    expect(part.statusCode).toBe(StatusCodes.Good);
    expect(Array.from(part.value.value as Float64Array)).toEqual([20, 30]);
    // A read-only node reads like any other; each read is decided and audited.
    expect((await read(session, 'Line1.SerialNumber')).statusCode).toBe(StatusCodes.Good);
    expect((await decisions('read', '/Line1/Setpoints')).at(-1)?.decision?.reason).toBe('ALLOWED');
  });

  it('reads and writes a variable of every built-in scalar type (SByte … UInt64, Float, ByteString, LocalizedText, Guid, …)', async () => {
    const next: Record<string, unknown> = {
      Boolean: false, SByte: 7, Byte: 9, Int16: -12, UInt16: 65000, Int32: 123456, UInt32: 4000000001, Int64: [0, 42], UInt64: [2, 3], Float: 0.25, Double: -1.125,
      String: 'world', DateTime: new Date(Date.UTC(2026, 1, 2)), Guid: '0A64ED5E-6C4E-4D42-9E7C-1A2B3C4D5E6F', ByteString: Buffer.from([9, 8, 7]), XmlElement: '<b>2</b>',
      NodeId: coerceNodeId('ns=1;i=77'), QualifiedName: new QualifiedName({ namespaceIndex: 0, name: 'r' }), LocalizedText: new LocalizedText({ locale: 'de', text: 'bereit' }), StatusCode: StatusCodes.BadTimeout,
    };
    for (const t of ACME_TYPES) {
      const id = `Line1.Types.${t.name}`;
      const before = await read(session, id);
      expect(before.statusCode, t.name).toBe(StatusCodes.Good);
      expect(before.value.dataType, t.name).toBe(t.dataType);
      expect(await write(session, id, t.dataType, next[t.name]), t.name).toBe(StatusCodes.Good);
      const after = await read(session, id);
      expect(after.value.dataType, t.name).toBe(t.dataType);
      expect(String(after.value.value), t.name).toBe(String(next[t.name]));
      expect(String(plc.value(id)), t.name).toBe(String(next[t.name]));
    }
  });

  it('answers what the server itself would refuse with its own status codes, policy denials with BadUserAccessDenied, and audits each with its reason', async () => {
    const served = plc.served.length;
    // Unknown node, read-only node, wrong type.
    expect((await read(session, 'Line1.Nope')).statusCode).toBe(StatusCodes.BadNodeIdUnknown);
    expect(await write(session, 'Line1.SerialNumber', DataType.String, 'X')).toBe(StatusCodes.BadNotWritable);
    expect(await write(session, 'Line1.Speed', DataType.String, '1200')).toBe(StatusCodes.BadTypeMismatch);
    expect(await write(session, 'Line1.Setpoints', DataType.Double, 5)).toBe(StatusCodes.BadTypeMismatch); // a scalar to an array
    // Policy: out of bounds, pattern, the reporter may not write.
    expect(await write(session, 'Line1.Speed', DataType.Double, 1800)).toBe(StatusCodes.BadUserAccessDenied);
    expect(await write(session, 'Line1.Recipe', DataType.String, 'drop table')).toBe(StatusCodes.BadUserAccessDenied);
    const reporter = await createJwtSession(await connect(agent('reporter')), await token('reporter', READ_SCOPES));
    expect((await reporter.read({ nodeId: node('Line1.Speed'), attributeId: AttributeIds.Value })).statusCode).toBe(StatusCodes.Good);
    expect(await reporter.write({ nodeId: node('Line1.Running'), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Boolean, value: false } } })).toBe(StatusCodes.BadUserAccessDenied);
    // Methods: unknown, argument count, argument type, argument bounds.
    expect((await call(session, 'Line1.Nope', [])).statusCode).toBe(StatusCodes.BadMethodInvalid);
    expect((await call(session, 'Line1.Speed', [])).statusCode).toBe(StatusCodes.BadMethodInvalid);
    expect((await call(session, 'Line1.Start', [new Variant({ dataType: DataType.Double, value: 100 })])).statusCode).toBe(StatusCodes.BadArgumentsMissing);
    expect((await call(session, 'Line1.Stop', [new Variant({ dataType: DataType.Double, value: 1 })])).statusCode).toBe(StatusCodes.BadTooManyArguments);
    const mistyped = await call(session, 'Line1.Start', [new Variant({ dataType: DataType.String, value: 'fast' }), new Variant({ dataType: DataType.String, value: 'A-100' })]);
    expect(mistyped.statusCode).toBe(StatusCodes.BadInvalidArgument);
    expect(mistyped.inputArgumentResults).toEqual([StatusCodes.BadTypeMismatch, StatusCodes.Good]);
    expect((await call(session, 'Line1.Start', [new Variant({ dataType: DataType.Double, value: 1700 }), new Variant({ dataType: DataType.String, value: 'A-100' })])).statusCode).toBe(StatusCodes.BadUserAccessDenied);
    // Nothing of that reached the server.
    expect(plc.served.slice(served)).toEqual([]);

    const reasons = async (op: string, p: string) => (await decisions(op, p)).map((d) => d.decision?.reason);
    const records = await shipped();
    const unknown = records.find((r) => r.decision?.command?.targets?.[0]?.nodeId === `nsu=${ACME_NS};s=Line1.Nope` && r.decision.command.operation === 'read');
    expect(unknown?.decision?.decision?.reason).toBe('UNKNOWN_TARGET');
    expect(await reasons('write', '/Line1/SerialNumber')).toContain('NOT_WRITABLE');
    expect(await reasons('write', '/Line1/Speed')).toEqual(expect.arrayContaining(['TYPE_MISMATCH', 'VALUE_OUT_OF_BOUNDS']));
    expect(await reasons('write', '/Line1/Recipe')).toContain('VALUE_OUT_OF_BOUNDS');
    expect(await reasons('write', '/Line1/Running')).toContain('NO_MATCHING_RULE');
    expect(await reasons('call', '/Line1/Start')).toEqual(expect.arrayContaining(['ARGUMENTS_MISSING', 'TYPE_MISMATCH', 'VALUE_OUT_OF_BOUNDS']));
    expect(await reasons('call', '/Line1/Stop')).toContain('TOO_MANY_ARGUMENTS');
  });

  it('tells a client that asks for diagnostics the reason code of each refused item, and one that does not only the status code', async () => {
    const transact = <R>(request: unknown) =>
      new Promise<R>((resolve, reject) =>
        (session as unknown as { performMessageTransaction(r: unknown, cb: (e: Error | null, res?: unknown) => void): void }).performMessageTransaction(request, (e, res) => (e ? reject(e) : resolve(res as R))),
      );
    const returnDiagnostics = 0x20 | 0x80; // operation level: symbolic id and additional info
    const speedTo = (value: number) => ({ nodeId: node('Line1.Speed'), attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.Double, value }) } });

    const read = await transact<ReadResponse>(
      new ReadRequest({
        requestHeader: { returnDiagnostics },
        timestampsToReturn: TimestampsToReturn.Both,
        nodesToRead: [
          { nodeId: node('Line1.Speed'), attributeId: AttributeIds.Value },
          { nodeId: node('Line1.Nope'), attributeId: AttributeIds.Value },
        ],
      }),
    );
    expect(read.results!.map((r) => r.statusCode)).toEqual([StatusCodes.Good, StatusCodes.BadNodeIdUnknown]);
    const table = read.responseHeader.stringTable!;
    const unknown = read.diagnosticInfos![1]!;
    expect(table[unknown.symbolicId]).toBe('UNKNOWN_TARGET');
    expect(table[unknown.namespaceURI]).toBe('urn:plantgate:reason');
    expect(unknown.additionalInfo).toBe('plantgate reason UNKNOWN_TARGET');
    expect(read.diagnosticInfos![0]!.additionalInfo ?? null).toBeNull(); // the allowed read

    const write = await transact<WriteResponse>(
      new WriteRequest({
        requestHeader: { returnDiagnostics },
        nodesToWrite: [speedTo(1800), { nodeId: node('Line1.BatchCount'), attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.Int32, value: 78 }) } }],
      }),
    );
    expect(write.results).toEqual([StatusCodes.BadUserAccessDenied, StatusCodes.Good]);
    expect(write.diagnosticInfos!.map((d) => d?.additionalInfo ?? null)).toEqual(['plantgate reason VALUE_OUT_OF_BOUNDS', null]);

    const call = await transact<CallResponse>(
      new CallRequest({
        requestHeader: { returnDiagnostics },
        methodsToCall: [{ objectId: node('Line1'), methodId: node('Line1.Stop'), inputArguments: [new Variant({ dataType: DataType.Double, value: 1 })] }],
      }),
    );
    expect(call.results![0]!.statusCode).toBe(StatusCodes.BadTooManyArguments);
    expect(call.diagnosticInfos![0]!.additionalInfo).toBe('plantgate reason TOO_MANY_ARGUMENTS');

    // Not asked for: the status code only, as from any OPC UA server.
    const plain = await transact<WriteResponse>(new WriteRequest({ nodesToWrite: [speedTo(1800)] }));
    expect(plain.results).toEqual([StatusCodes.BadUserAccessDenied]);
    expect(plain.diagnosticInfos ?? []).toEqual([]);
  });

  it('runs both methods through the gateway with their arguments and outputs', async () => {
    const started = await call(session, 'Line1.Start', [new Variant({ dataType: DataType.Double, value: 900 }), new Variant({ dataType: DataType.String, value: 'C-300' })]);
    expect(started.statusCode).toBe(StatusCodes.Good);
    expect(started.outputArguments?.[0]?.value).toBe(true);
    expect(plc.served.at(-1)).toBe('call Start(900, "C-300")');
    expect(plc.value('Line1.Running')).toBe(true);
    expect((await call(session, 'Line1.Stop', [])).statusCode).toBe(StatusCodes.Good);
    expect(plc.value('Line1.Running')).toBe(false);
  });

  it('accepts the JWT as an encrypted UserName password from a tool with its own certificate (pinned to a workload), and never one in clear outside SignAndEncrypt', async () => {
    // An HMI that cannot send an IssuedIdentityToken and whose certificate says urn:acme:hmi:panel1:
    // the trust list pins that certificate to the planner, whose token is bound to it.
    const asHmi = { uri: 'urn:acme:hmi:panel1', ...hmi };
    const jwt = await files.mintFor('planner', await readFile(hmi.cert), { scope: READ_SCOPES, now: clock.now() });
    const viaPassword = await (await connect(asHmi)).createSession({ type: UserTokenType.UserName, userName: 'jwt', password: jwt });
    expect((await viaPassword.read({ nodeId: node('Line1.Speed'), attributeId: AttributeIds.Value })).statusCode).toBe(StatusCodes.Good);
    const opened = (await shipped()).filter((r) => (r as { session?: { kind?: string; subject?: { workloadId?: string; certThumbprint?: string } } }).session?.kind === 'open');
    expect(opened.map((r) => (r as { session: { subject: { workloadId: string; certThumbprint: string } } }).session.subject)).toContainEqual(
      expect.objectContaining({ workloadId: DEMO_AGENTS.planner, certThumbprint: certificateThumbprint(new X509Certificate(await readFile(hmi.cert))) }),
    );
    // Same checks as an IssuedIdentityToken: a token bound to another certificate, or of another agent, is refused.
    await expect((await connect(asHmi)).createSession({ type: UserTokenType.UserName, userName: 'jwt', password: await token('planner') })).rejects.toThrow(/BadIdentityTokenRejected/);
    await expect((await connect(asHmi)).createSession({ type: UserTokenType.UserName, userName: 'jwt', password: await files.mintFor('reporter', await readFile(hmi.cert), { now: clock.now() }) })).rejects.toThrow(/BadIdentityTokenRejected/);
    // A client that puts the JWT in clear on a Sign-only channel is refused before verification.
    const plain = await connect(asHmi, MessageSecurityMode.Sign);
    (plain as unknown as { createUserIdentityToken: unknown }).createUserIdentityToken = (_c: unknown, _i: unknown, cb: (e: null, d: unknown) => void) =>
      cb(null, { userIdentityToken: new UserNameIdentityToken({ policyId: JWT_PASSWORD_POLICY_ID, userName: 'jwt', password: Buffer.from(jwt), encryptionAlgorithm: null }), userTokenSignature: {} });
    await expect(plain.createSession()).rejects.toThrow(/BadIdentityToken/);
    const violations = (await shipped()).flatMap((r) => (r.violation ? [r.violation] : []));
    expect(violations.some((v) => v.detail?.includes('neither encrypted to this server') && v.detail.includes("applicationUri 'urn:acme:hmi:panel1'"))).toBe(true);
    expect(violations.some((v) => v.detail?.startsWith('TOKEN_BINDING_MISMATCH ActivateSession'))).toBe(true);
  });

  it('refuses an untrusted application certificate at the secure channel and audits it with thumbprint, subject, applicationUri and peer address', async () => {
    const err = await connect({ uri: 'spiffe://plant.example/agent/stranger', ...stranger }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/BadSecurityChecksFailed|BadCertificateUntrusted/);
    const thumbprint = certificateThumbprint(new X509Certificate(await readFile(stranger.cert)));
    // The refusal is recorded as the channel closes: wait for the collector to receive it.
    let refusal: Record_['violation'];
    for (;;) {
      const next = new Promise((r) => collector.once('record', r));
      refusal = (await shipped()).find((r) => r.violation?.detail?.includes(thumbprint))?.violation;
      if (refusal !== undefined) break;
      await next;
    }
    expect(refusal?.protocol).toBe('opcua');
    expect(refusal?.detail).toMatch(/^NO_IDENTITY OpenSecureChannel: application certificate refused \(BadCertificateUntrusted; the client was answered BadSecurityChecksFailed\)/);
    expect(refusal?.detail).toContain("applicationUri 'spiffe://plant.example/agent/stranger'");
    expect(refusal?.detail).toContain('CN=stranger');
    expect(refusal?.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('refuses a session whose client announces another applicationUri than its certificate and audits it with the certificate and peer address', async () => {
    // A trusted certificate (the optimizer's), presented by a client that calls itself something else
    // in CreateSession (node-opcua's client announces its certificate's URI: made to announce another).
    const spoofer = await connect({ uri: 'urn:acme:spoofed', ...agentCerts.optimizer });
    (spoofer as unknown as { _getApplicationUri(): string })._getApplicationUri = () => 'urn:acme:spoofed';
    await expect(createJwtSession(spoofer, await token('optimizer'))).rejects.toThrow(/BadCertificateUriInvalid/);
    const thumbprint = certificateThumbprint(new X509Certificate(await readFile(agentCerts.optimizer.cert)));
    const refusal = (await shipped()).find((r) => r.violation?.detail?.includes("applicationUri 'urn:acme:spoofed'"))?.violation;
    expect(refusal?.protocol).toBe('opcua');
    expect(refusal?.detail).toMatch(/^NO_IDENTITY CreateSession: session refused \(BadCertificateUriInvalid\)/);
    expect(refusal?.detail).toContain(`thumbprint ${thumbprint}`);
    expect(refusal?.detail).toContain(`applicationUri '${DEMO_AGENTS.optimizer}'`);
    expect(refusal?.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('follows a model change of the server: a new object appears on the front without a restart', async () => {
    const objects = async () => (await session.browse('i=85')).references!.map((r) => r.browseName.name);
    expect(await objects()).not.toContain('Line2');
    plc.addLine2();
    for (let i = 0; i < 100 && !(await objects()).includes('Line2'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await objects()).toContain('Line2');
    // Mirrored, and still default-deny: no rule names /Line2.
    expect((await read(session, 'Line2.Speed')).statusCode).toBe(StatusCodes.BadUserAccessDenied);
  });
});
