// The simulator's OPC UA face (docs/opcua.md, "The simulator's OPC UA face"): serves a running plant's points as OPC UA
// variables, values live from the same PlantRuntime the Modbus face serves, so a write over either
// protocol is seen by both. It plays an OPC UA PLC: it never decides policy and accepts any client
// certificate and anonymous sessions (the gateway's upstream session is one of them).
//
// Address space, one namespace per PLC (each PLC is its own device; policy assets are PLCs):
//   namespace URI  urn:plantgate:sim:<plant>:<plc id>        (override with `namespaces`)
//   Objects/<plc id>            object  s=<plc id>
//     <point name>              variable s=<point name>     Boolean for bool points, Double in
//                                                            engineering units for scaled points,
//                                                            else the register's type (UInt16, Int32,
//                                                            Float...: protocols/opcua/data-type.ts);
//                                                            holding registers and coils writable
//     <equipment>.start(speed?) method  s=<equipment>.start  for each coil point `<equipment>.run`
//     <equipment>.stop()        method  s=<equipment>.stop   (speed: when `<equipment>.speed` exists)
//     alarms.acknowledge()      method  s=alarms.acknowledge when the PLC has `*alarm*` points;
//                                                            returns how many were active
// The plant file has no node_id field; NodeIds are derived as above by src/assets/opcua-face.ts, which
// the policy compiler shares (an OPC UA asset with `points_from` gets the same map).
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  DataType,
  DataValue,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  Variant,
  type StatusCode,
  type UAObject,
} from 'node-opcua';
import { systemClock, type Clock } from '../core/clock.js';
import { PlantgateError } from '../core/errors.js';
import type { FrontAsset, FrontMethod } from '../../protocols/opcua/front.js';
import { createAppCert, writeAppCert } from '../../protocols/opcua/app-cert.js';
import { loadPlant, type Plant, type PlcDef, type PointDef } from '../assets/plant.js';
import { PlantRuntime } from './runtime.js';
import type { FaultSet } from './faults.js';
import { describeOpcua, writable } from '../assets/opcua-face.js';

export { defaultNamespace, describeOpcua } from '../assets/opcua-face.js';

export type SimSecurity = 'none' | 'secure' | 'both';

export interface OpcuaSimulatorOptions {
  /** A running plant (shared with the Modbus face), or a plant to run here. */
  runtime?: PlantRuntime;
  plant?: Plant | string;
  clock?: Clock;
  host?: string;
  /** 0 = ephemeral. */
  port?: number;
  /** `secure`: Basic256Sha256 and Aes256_Sha256_RsaPss, Sign and SignAndEncrypt; `none`: None only; default both. */
  security?: SimSecurity;
  /** Application certificate and key (PEM); default: a fresh RSA one under pkiDir. */
  certificateFile?: string;
  privateKeyFile?: string;
  /** Certificate store folder; default a new temp dir. Unknown client certificates are accepted. */
  pkiDir?: string;
  /** Namespace URI per PLC id (default urn:plantgate:sim:<plant>:<plc>). */
  namespaces?: Record<string, string>;
  /**
   * The Modbus face's faults (a simulator running both faces): a PLC held by an `offline` fault
   * answers reads of its variables with BadNoCommunication, as an OPC UA server in front of a
   * device that stopped answering does.
   */
  faults?: Pick<FaultSet, 'offline'>;
}

/** One request that reached the simulated PLC (writes and calls), for harnesses to assert on. */
export interface OpcuaServed {
  service: 'Write' | 'Call';
  /** `nsu=<uri>;<identifier>` */
  nodeId: string;
  values: number[];
  status: string;
}

export interface OpcuaSimHandle {
  runtime: PlantRuntime;
  server: OPCUAServer;
  host: string;
  port: number;
  endpointUrl: string;
  /** The OPC UA map of each PLC (namespace, NodeIds, types, methods): what a gateway front exposes. */
  assets: FrontAsset[];
  /** Milliseconds from call to listening (node-opcua's initialize dominates). */
  startMs: number;
  /** Writes and calls served so far (most recent SERVED_CAPACITY). */
  served(): OpcuaServed[];
  /** Stops the OPC UA server; a runtime passed in keeps running (one created here stops). */
  close(): Promise<void>;
}

const SERVED_CAPACITY = 1000;

function statusName(s: StatusCode): string {
  return s.name;
}

/** Runs a plant (or serves a running one) over OPC UA. */
export async function startOpcuaSimulator(opts: OpcuaSimulatorOptions): Promise<OpcuaSimHandle> {
  const t0 = performance.now();
  let runtime = opts.runtime;
  const ownRuntime = runtime === undefined;
  if (runtime === undefined) {
    if (opts.plant === undefined) throw new PlantgateError('PROTOCOL_VIOLATION', 'startOpcuaSimulator needs a runtime or a plant');
    const plant = typeof opts.plant === 'string' ? await loadPlant(opts.plant) : opts.plant;
    runtime = new PlantRuntime(plant, opts.clock ?? systemClock);
  }
  const rt = runtime;
  const host = opts.host ?? '127.0.0.1';
  const security = opts.security ?? 'both';
  const pkiDir = opts.pkiDir ?? (await mkdtemp(path.join(os.tmpdir(), 'plantgate-sim-opcua-')));
  let certificateFile = opts.certificateFile;
  let privateKeyFile = opts.privateKeyFile;
  if (certificateFile === undefined || privateKeyFile === undefined) {
    const cert = await createAppCert({ applicationUri: `urn:plantgate:sim:${rt.plant.name}`, commonName: `plantgate sim ${rt.plant.name}`, hosts: [host, 'localhost'] });
    const files = await writeAppCert(pkiDir, 'sim', cert);
    certificateFile = files.cert;
    privateKeyFile = files.key;
  }
  const serverCertificateManager = new OPCUACertificateManager({ rootFolder: path.join(pkiDir, 'pki'), automaticallyAcceptUnknownCertificate: true });
  const secure = security !== 'none';
  const server = new OPCUAServer({
    port: opts.port ?? 0,
    host,
    hostname: host,
    certificateFile,
    privateKeyFile,
    serverCertificateManager,
    serverInfo: { applicationUri: `urn:plantgate:sim:${rt.plant.name}`, productUri: 'urn:plantgate:sim', applicationName: { text: `plantgate sim ${rt.plant.name}` } },
    securityPolicies: [
      ...(security !== 'secure' ? [SecurityPolicy.None] : []),
      ...(secure ? [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes256_Sha256_RsaPss] : []),
    ],
    securityModes: [
      ...(security !== 'secure' ? [MessageSecurityMode.None] : []),
      ...(secure ? [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt] : []),
    ],
    allowAnonymous: true,
    maxConnectionsPerEndpoint: 100,
  });
  const assets = describeOpcua(rt.plant, opts.namespaces);
  const served: OpcuaServed[] = [];
  const record = (s: OpcuaServed): void => {
    if (served.length >= SERVED_CAPACITY) served.shift();
    served.push(s);
  };
  try {
    await server.initialize();
    buildAddressSpace(server, rt, assets, record, opts.faults);
    await server.start();
  } catch (err) {
    if (ownRuntime) rt.stop();
    throw err;
  }
  const port = server.endpoints[0]!.port;
  return {
    runtime: rt,
    server,
    host,
    port,
    endpointUrl: `opc.tcp://${host}:${port}`,
    assets,
    startMs: performance.now() - t0,
    served: () => served.slice(),
    close: async () => {
      await server.shutdown(0);
      if (ownRuntime) rt.stop();
    },
  };
}

function buildAddressSpace(server: OPCUAServer, rt: PlantRuntime, assets: FrontAsset[], record: (s: OpcuaServed) => void, faults: OpcuaSimulatorOptions['faults']): void {
  const addressSpace = server.engine.addressSpace!;
  for (const asset of assets) {
    const plc = rt.plant.plcs.find((p) => p.id === asset.assetId)!;
    const ns = addressSpace.registerNamespace(asset.namespaceUri);
    const folder: UAObject = ns.addObject({ nodeId: `ns=${ns.index};${asset.folderIdentifier}`, browseName: asset.folder, organizedBy: addressSpace.rootFolder.objects });
    const q = (name: string) => `${plc.id}/${name}`;
    for (const p of asset.points) {
      const def = plc.points.find((d) => d.name === p.name)!;
      const dataType = DataType[p.dataType];
      const target = `nsu=${asset.namespaceUri};${p.identifier}`;
      const v = ns.addVariable({
        componentOf: folder,
        nodeId: `ns=${ns.index};${p.identifier}`,
        browseName: p.name,
        description: def.description,
        dataType,
        accessLevel: p.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
        userAccessLevel: p.writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
        // The process steps every 100 ms: sampling faster only repeats values.
        minimumSamplingInterval: 100,
      });
      v.bindVariable(
        {
          timestamped_get: () => {
            if (faults?.offline(plc.unitId)) return new DataValue({ statusCode: StatusCodes.BadNoCommunication });
            const v = rt.read(q(p.name));
            return new DataValue({
              // 444 × 0.1 is 44.400000000000006 in binary; a PLC shows its resolution, 44.4.
              value: new Variant({ dataType, value: dataType === DataType.Boolean ? v !== 0 : dataType === DataType.Double || dataType === DataType.Float ? Number(v.toPrecision(15)) : Math.round(v) }),
              statusCode: StatusCodes.Good,
              sourceTimestamp: new Date(rt.lastTick),
            });
          },
          set: p.writable
            ? (variant: Variant): StatusCode => {
                // A PLC declares its variable's type and refuses a value of another one.
                const status = variant.dataType === dataType ? writePoint(rt, q(p.name), variant) : StatusCodes.BadTypeMismatch;
                record({ service: 'Write', nodeId: target, values: [Number(variant.value)], status: statusName(status) });
                return status;
              }
            : undefined,
        } as never,
        true,
      );
    }
    for (const m of asset.methods) {
      const method = ns.addMethod(folder, {
        nodeId: `ns=${ns.index};${m.identifier}`,
        browseName: m.name,
        inputArguments: m.inputs.map((a) => ({ name: a.name, dataType: DataType[a.dataType] })),
        outputArguments: m.outputs.map((a) => ({ name: a.name, dataType: DataType[a.dataType] })),
      });
      const target = `nsu=${asset.namespaceUri};${m.identifier}`;
      // node-opcua tells the async form from the callback one by arity: keep two parameters.
      method.bindMethod(async (inputs: Variant[], _context: unknown) => {
        const r = runMethod(rt, plc, m, inputs);
        record({ service: 'Call', nodeId: target, values: inputs.map((v) => Number(v.value)), status: statusName(r.statusCode) });
        return r;
      });
    }
  }
}

/** A write as the PLC takes it: engineering units, refused (never wrapped) when the type cannot hold it. */
function writePoint(rt: PlantRuntime, name: string, variant: Variant): StatusCode {
  const value = typeof variant.value === 'boolean' ? (variant.value ? 1 : 0) : variant.value;
  if (typeof value !== 'number' || !Number.isFinite(value)) return StatusCodes.BadTypeMismatch;
  try {
    rt.write(name, value);
    return StatusCodes.Good;
  } catch (err) {
    return err instanceof PlantgateError && err.reason === 'VALUE_OUT_OF_BOUNDS' ? StatusCodes.BadOutOfRange : StatusCodes.BadInternalError;
  }
}

function runMethod(rt: PlantRuntime, plc: PlcDef, m: FrontMethod, inputs: Variant[]): { statusCode: StatusCode; outputArguments?: Variant[] } {
  const q = (name: string) => `${plc.id}/${name}`;
  if (m.name === 'alarms.acknowledge') {
    // The model's alarms follow the level with hysteresis and clear themselves; acknowledging
    // records that an operator saw them and reports how many were active.
    const active = plc.points.filter((p) => p.type === 'bool' && p.name.includes('alarm') && rt.read(q(p.name)) !== 0).length;
    return { statusCode: StatusCodes.Good, outputArguments: [new Variant({ dataType: DataType.UInt32, value: active })] };
  }
  const equipment = m.name.slice(0, m.name.lastIndexOf('.'));
  if (m.name.endsWith('.start')) {
    if (m.inputs.length === 1) {
      const status = writePoint(rt, q(`${equipment}.speed`), inputs[0] ?? new Variant({}));
      if (!status.isGood()) return { statusCode: status === StatusCodes.BadOutOfRange ? StatusCodes.BadOutOfRange : StatusCodes.BadInvalidArgument };
    }
    rt.write(q(`${equipment}.run`), 1);
    return { statusCode: StatusCodes.Good };
  }
  rt.write(q(`${equipment}.run`), 0);
  return { statusCode: StatusCodes.Good };
}
