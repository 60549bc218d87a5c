// A third-party OPC UA server for the issue 21 tests, written with node-opcua's server API (not the
// project's simulator): packaging line 1 of "ACME", namespace urn:acme:plc:line1. It knows nothing
// of plantgate; the gateway must learn its model by browsing it.
//
//   Objects/Line1                     object    s=Line1 (a Folder-typed object would do too)
//     Recipe        String   rw       s=Line1.Recipe
//     Speed         Double   rw       s=Line1.Speed     AnalogItem: EURange 0..2000, EngineeringUnits m/min
//     BatchCount    Int32    rw       s=Line1.BatchCount
//     Running       Boolean  rw       s=Line1.Running
//     LastCleaned   DateTime rw       s=Line1.LastCleaned
//     Setpoints     Double[] rw       s=Line1.Setpoints  (ValueRank 1)
//     Mode          String   rw       s=Line1.Mode
//     SerialNumber  String   ro       s=Line1.SerialNumber
//     Start(speed: Double, recipe: String) -> (accepted: Boolean)   s=Line1.Start
//     Stop()                                                          s=Line1.Stop
//     Types/                          object    s=Line1.Types: one rw variable per built-in scalar type
//   Objects/Line2 (only when asked)   added later to prove model-change following
import path from 'node:path';
import {
  DataType,
  LocalizedText,
  MessageSecurityMode,
  NodeId,
  OPCUACertificateManager,
  OPCUAServer,
  QualifiedName,
  SecurityPolicy,
  StatusCodes,
  Variant,
  VariantArrayType,
  coerceNodeId,
  makeEUInformation,
  type ISessionContext,
  type Namespace,
  type UAObject,
  type WriteValue,
} from 'node-opcua';
import { createAppCert, writeAppCert } from '../../../protocols/opcua/app-cert.js';

export const ACME_NS = 'urn:acme:plc:line1';
export const ACME_APP_URI = 'urn:acme:plc:line1:server';

/** One initial value per built-in scalar type the Types folder serves. */
export const ACME_TYPES: { name: string; dataType: DataType; value: unknown }[] = [
  { name: 'Boolean', dataType: DataType.Boolean, value: true },
  { name: 'SByte', dataType: DataType.SByte, value: -5 },
  { name: 'Byte', dataType: DataType.Byte, value: 200 },
  { name: 'Int16', dataType: DataType.Int16, value: -300 },
  { name: 'UInt16', dataType: DataType.UInt16, value: 60000 },
  { name: 'Int32', dataType: DataType.Int32, value: -70000 },
  { name: 'UInt32', dataType: DataType.UInt32, value: 4000000000 },
  { name: 'Int64', dataType: DataType.Int64, value: [0xffffffff, 0xfffffffb] },
  { name: 'UInt64', dataType: DataType.UInt64, value: [1, 7] },
  { name: 'Float', dataType: DataType.Float, value: 1.5 },
  { name: 'Double', dataType: DataType.Double, value: 2.25 },
  { name: 'String', dataType: DataType.String, value: 'hello' },
  { name: 'DateTime', dataType: DataType.DateTime, value: new Date(Date.UTC(2026, 0, 1)) },
  { name: 'Guid', dataType: DataType.Guid, value: '72962B91-FA75-4AE6-8D28-B404DC7DAF63' },
  { name: 'ByteString', dataType: DataType.ByteString, value: Buffer.from([1, 2, 3]) },
  { name: 'XmlElement', dataType: DataType.XmlElement, value: '<a>1</a>' },
  { name: 'NodeId', dataType: DataType.NodeId, value: coerceNodeId('ns=1;s=x') },
  { name: 'QualifiedName', dataType: DataType.QualifiedName, value: new QualifiedName({ namespaceIndex: 0, name: 'q' }) },
  { name: 'LocalizedText', dataType: DataType.LocalizedText, value: new LocalizedText({ locale: 'en', text: 'ready' }) },
  { name: 'StatusCode', dataType: DataType.StatusCode, value: StatusCodes.Good },
];

export interface AcmePlc {
  server: OPCUAServer;
  endpointUrl: string;
  certFile: string;
  /** Writes and calls that reached this server (node, or method and its argument values). */
  served: string[];
  /** Reads a variable's current value on the server itself. */
  value(identifier: string): unknown;
  /** Adds Objects/Line2 with one variable and raises a GeneralModelChangeEvent, as a server whose model changed would. */
  addLine2(): void;
  close(): Promise<void>;
}

export async function startAcmePlc(dir: string): Promise<AcmePlc> {
  const cert = await createAppCert({ applicationUri: ACME_APP_URI, commonName: 'ACME line 1 PLC', hosts: ['127.0.0.1', 'localhost'] });
  const files = await writeAppCert(dir, 'acme-plc', cert);
  const server = new OPCUAServer({
    port: 0,
    host: '127.0.0.1',
    hostname: '127.0.0.1',
    certificateFile: files.cert,
    privateKeyFile: files.key,
    // A vendor PLC that trusts whoever connects (the gateway pins it, not the other way round).
    serverCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'acme-pki'), automaticallyAcceptUnknownCertificate: true }),
    serverInfo: { applicationUri: ACME_APP_URI, productUri: 'urn:acme:plc', applicationName: { text: 'ACME line 1' } },
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
  });
  await server.initialize();
  const as = server.engine.addressSpace!;
  const ns = as.registerNamespace(ACME_NS);
  const id = (s: string) => `ns=${ns.index};s=${s}`;
  const rw = { accessLevel: 'CurrentRead | CurrentWrite', userAccessLevel: 'CurrentRead | CurrentWrite' } as const;
  const line1 = ns.addObject({ nodeId: id('Line1'), browseName: 'Line1', description: 'Packaging line 1', organizedBy: as.rootFolder.objects });
  const variable = (parent: UAObject, name: string, dataType: DataType, value: unknown, extra: Record<string, unknown> = {}) =>
    ns.addVariable({
      componentOf: parent,
      nodeId: id(`${String(parent.nodeId.value)}.${name}`),
      browseName: name,
      dataType,
      ...rw,
      // 64-bit integers are [high, low] pairs in node-opcua: the array type cannot be guessed.
      value: { dataType, value, arrayType: Array.isArray(value) && dataType !== DataType.Int64 && dataType !== DataType.UInt64 ? VariantArrayType.Array : VariantArrayType.Scalar },
      ...extra,
    } as never);
  variable(line1, 'Recipe', DataType.String, 'A-100', { description: 'active recipe' });
  ns.addAnalogDataItem({
    componentOf: line1,
    nodeId: id('Line1.Speed'),
    browseName: 'Speed',
    dataType: 'Double',
    ...rw,
    engineeringUnitsRange: { low: 0, high: 2000 },
    engineeringUnits: makeEUInformation('MMI', 'm/min', 'metre per minute'),
    value: new Variant({ dataType: DataType.Double, value: 0 }),
  } as never);
  variable(line1, 'BatchCount', DataType.Int32, 0);
  variable(line1, 'Running', DataType.Boolean, false);
  variable(line1, 'LastCleaned', DataType.DateTime, new Date(Date.UTC(2026, 0, 1)));
  variable(line1, 'Setpoints', DataType.Double, [10, 20, 30], { valueRank: 1, arrayDimensions: [0] });
  variable(line1, 'Mode', DataType.String, 'auto');
  ns.addVariable({
    componentOf: line1,
    nodeId: id('Line1.SerialNumber'),
    browseName: 'SerialNumber',
    dataType: DataType.String,
    accessLevel: 'CurrentRead',
    userAccessLevel: 'CurrentRead',
    value: { dataType: DataType.String, value: 'ACME-0042' },
  });
  const types = ns.addObject({ nodeId: id('Line1.Types'), browseName: 'Types', componentOf: line1 });
  for (const t of ACME_TYPES) variable(types, t.name, t.dataType, t.value);

  const served: string[] = [];
  const start = ns.addMethod(line1, {
    nodeId: id('Line1.Start'),
    browseName: 'Start',
    inputArguments: [
      { name: 'speed', dataType: DataType.Double, description: { text: 'm/min' } },
      { name: 'recipe', dataType: DataType.String },
    ],
    outputArguments: [{ name: 'accepted', dataType: DataType.Boolean }],
  });
  start.bindMethod(async (inputs: Variant[], _context: unknown) => {
    served.push(`call Start(${inputs.map((v) => JSON.stringify(v.value)).join(', ')})`);
    set('Line1.Speed', DataType.Double, inputs[0]!.value);
    set('Line1.Recipe', DataType.String, inputs[1]!.value);
    set('Line1.Running', DataType.Boolean, true);
    return { statusCode: StatusCodes.Good, outputArguments: [new Variant({ dataType: DataType.Boolean, value: true })] };
  });
  const stop = ns.addMethod(line1, { nodeId: id('Line1.Stop'), browseName: 'Stop', inputArguments: [], outputArguments: [] });
  stop.bindMethod(async (_inputs: Variant[], _context: unknown) => {
    served.push('call Stop()');
    set('Line1.Running', DataType.Boolean, false);
    return { statusCode: StatusCodes.Good };
  });

  function node(identifier: string) {
    return as.findNode(coerceNodeId(id(identifier)));
  }
  function set(identifier: string, dataType: DataType, value: unknown): void {
    (node(identifier) as unknown as { setValueFromSource(v: Variant): void }).setValueFromSource(new Variant({ dataType, value }));
  }
  // Records what reached the server (the tests prove refused writes never did).
  const engine = server.engine;
  const write = engine.write.bind(engine);
  engine.write = async (context: ISessionContext, nodesToWrite: WriteValue[]) => {
    for (const w of nodesToWrite) {
      const nodeId = w.nodeId as NodeId;
      if (nodeId.namespace === ns.index) served.push(`write ${String(nodeId.value)}`);
    }
    return write(context, nodesToWrite);
  };

  await server.start();
  return {
    server,
    endpointUrl: `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`,
    certFile: files.cert,
    served,
    value: (identifier) => (node(identifier) as unknown as { readValue(): { value: Variant } }).readValue().value.value,
    addLine2: () => {
      const line2 = (ns as Namespace).addObject({ nodeId: id('Line2'), browseName: 'Line2', organizedBy: as.rootFolder.objects });
      variable(line2, 'Speed', DataType.Double, 7);
      as.rootFolder.objects.server.raiseEvent('GeneralModelChangeEventType', {
        changes: { dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Array, value: [] },
      } as never);
    },
    close: () => server.shutdown(0),
  };
}
