// A gateway as a real `plantgate serve` process in front of an in-process simulator and collector,
// for the audit fault tests: kill it, starve it, tamper with its files, and look at what the PLC
// received and what the SOC stored. Built from the lab's files (PKI, signed bundle, audit key).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cosigner, cosignerVerifierKey } from '../../src/audit/checkpoint.js';
import { readSpool } from '../../src/audit/offline.js';
import type { DecodedRecord } from '../../src/audit/schema.js';
import { startCollector, type Collector } from '../../src/collector/server.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { LAB_GATEWAY_ID, PACKAGE_ROOT, prepareLabFiles, type LabFiles } from '../../src/cli/demo/lab.js';
import { startSimulator, type SimHandle } from '../../src/sim/server.js';
import { freePort, waitForReady } from '../bench/processes.js';
import { CLI } from './cli.js';
import { untilEvent } from '../events.js';

export interface AuditRig {
  files: LabFiles;
  sim: SimHandle;
  collector: Collector | undefined;
  collectorPort: number;
  collectorDir: string;
  configFile: string;
  spoolDir: string;
  ports: { modbus: number; agentApi: number; ops: number };
  witnessVerifierKey: string;
  startCollector(): Promise<Collector>;
  stopCollector(): Promise<void>;
  startGateway(): Promise<GatewayProcess>;
  agent(): Promise<ModbusAgent>;
  /** Every record on the gateway's disk (spool segments not yet deleted). */
  spoolRecords(): Promise<DecodedRecord[]>;
  close(): Promise<void>;
}

export interface GatewayProcess {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export async function auditRig(stateDir: string, opts: { maxBytes?: number } = {}): Promise<AuditRig> {
  const files = await prepareLabFiles({ stateDir });
  const sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, 'fixtures/plants/water-treatment.yaml'), host: '127.0.0.1', port: 0 });
  const [collectorPort, modbus, agentApi, ops] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const collectorDir = path.join(stateDir, 'collector');
  const configFile = path.join(stateDir, 'gateway.yaml');
  let yaml = files.gatewayYaml({ simPort: sim.port, collectorPort, modbusPort: modbus, agentApiPort: agentApi, opsPort: ops });
  if (opts.maxBytes !== undefined) yaml = yaml.replace(/^(\s+)spool_dir: (.*)$/m, `$1spool_dir: $2\n$1max_bytes: ${opts.maxBytes}`);
  await writeFile(configFile, yaml);
  const spoolDir = /spool_dir: (".*")/.exec(yaml)![1];
  const witnessKey = generateKeyPairSync('ed25519').privateKey;
  const [ca, cert, key] = await Promise.all([readFile(files.pki.ca.cert), readFile(files.pki.collector.cert), readFile(files.pki.collector.key)]);
  const gateways: GatewayProcess[] = [];

  const rig: AuditRig = {
    files,
    sim,
    collector: undefined,
    collectorPort,
    collectorDir,
    configFile,
    spoolDir: JSON.parse(spoolDir) as string,
    ports: { modbus, agentApi, ops },
    witnessVerifierKey: cosignerVerifierKey('soc.example/witness', witnessKey),
    async startCollector() {
      const c = await startCollector({
        host: '127.0.0.1',
        port: collectorPort,
        tls: { ca, cert, key },
        outDir: collectorDir,
        output: { layout: 'single', ocsf: true },
        gateways: [{ id: LAB_GATEWAY_ID, verifierKey: files.auditVerifierKey, identity: files.pki.gateway.spiffeId }],
        witness: cosigner('soc.example/witness', witnessKey),
      });
      rig.collector = c;
      return c;
    },
    async stopCollector() {
      await rig.collector?.close();
      rig.collector = undefined;
    },
    async startGateway() {
      const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
        cwd: PACKAGE_ROOT,
        env: { ...process.env, PLANTGATE_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-20_000)));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
      const gw: GatewayProcess = {
        child,
        stderr: () => err,
        exited,
        kill9: async () => {
          child.kill('SIGKILL');
          await exited;
        },
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
      gateways.push(gw);
      try {
        await Promise.race([
          waitForReady(ops, 20_000),
          exited.then((r) => {
            throw new Error(`gateway exited (${r.code ?? r.signal}) before it was ready:\n${err}`);
          }),
        ]);
      } catch (e) {
        await gw.kill9();
        throw e;
      }
      return gw;
    },
    async agent() {
      const creds = await files.credentials('optimizer');
      const answer = await putToken('127.0.0.1', agentApi, creds, await files.token('optimizer'));
      if (answer.status !== 200) throw new Error(`token refused: ${JSON.stringify(answer.body)}`);
      return connectModbusAgent('127.0.0.1', modbus, creds);
    },
    async spoolRecords() {
      const { records } = await readSpool(rig.spoolDir);
      return records.flatMap((r) => (r.record ? [r.record] : []));
    },
    async close() {
      for (const g of gateways) if (g.child.exitCode === null && g.child.signalCode === null) await g.kill9();
      await rig.stopCollector();
      await sim.close();
    },
  };
  return rig;
}

/** The setpoint values (raw) of every write the PLC executed. */
export function servedWrites(sim: SimHandle): number[] {
  return sim.served().flatMap((r) => (r.fc === 6 && r.outcome === 'ok' && r.request?.fc === 6 ? [r.request.value] : []));
}

/** The raw values of the allowed write decisions in these records. */
export function allowedWriteValues(records: DecodedRecord[]): number[] {
  return records.flatMap((r) => {
    const d = r.decision;
    if (!d?.decision || d.decision.effect !== 1 || d.command?.operation !== 'write') return [];
    return (d.command.rawValues ?? []) as number[];
  });
}

/** The collector's NDJSON lines of the lab gateway (single layout), parsed. */
export async function socLines(rig: AuditRig): Promise<Record<string, any>[]> {
  const text = await readFile(path.join(rig.collectorDir, `${LAB_GATEWAY_ID}.ndjson`), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
}

/** The collector's alerts, parsed. */
export async function socAlerts(rig: AuditRig): Promise<Record<string, any>[]> {
  const text = await readFile(path.join(rig.collectorDir, 'alerts.ndjson'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
}

/** Resolves once the collector has stored seq `seq` (or later). */
export async function collectedThrough(rig: AuditRig, seq: number): Promise<void> {
  if (!rig.collector) throw new Error('no collector running');
  await untilEvent(rig.collector, 'record', async () => {
    const lines = await socLines(rig);
    return lines.length > 0 && lines[lines.length - 1].seq >= seq;
  });
}

/**
 * The invariant of docs/audit.md: every write the PLC executed is in the SOC's record (an allowed
 * decision with its value) or its decision seq lies inside a range an alert declared lost. `truth`
 * maps each written value to its decision seq, from copies of the gateway's spool taken before any
 * damage. Returns the writes found in each way.
 */
export function assertNoSilentLoss(
  served: number[],
  truth: Map<number, number>,
  soc: Record<string, any>[],
  alerts: Record<string, any>[],
): { inSoc: number; inGap: number } {
  const socValues = new Set<number>();
  for (const l of soc) {
    const d = l.decision;
    if (d?.decision?.effect === 'ALLOW' && d.command?.operation === 'write') for (const v of d.command.rawValues ?? []) socValues.add(v);
  }
  const lost = alerts.filter((a) => a.kind === 'audit_gap' || a.kind === 'records_lost').map((a) => [a.first as number, a.last as number]);
  let inSoc = 0;
  let inGap = 0;
  for (const v of served) {
    if (socValues.has(v)) {
      inSoc++;
      continue;
    }
    const seq = truth.get(v);
    if (seq === undefined) throw new Error(`write of ${v} reached the PLC and no decision record of it was ever on the gateway's disk`);
    if (!lost.some(([a, b]) => a <= seq && seq <= b)) throw new Error(`write of ${v} (decision seq ${seq}) reached the PLC, is not in the SOC's record and no alert declares it lost`);
    inGap++;
  }
  return { inSoc, inGap };
}

/** value -> decision seq of every allowed write in these records. */
export function writeSeqs(records: DecodedRecord[], into = new Map<number, number>()): Map<number, number> {
  for (const r of records) {
    const d = r.decision;
    if (d?.decision?.effect === 1 && d.command?.operation === 'write') for (const v of (d.command.rawValues ?? []) as number[]) into.set(v, r.seq as number);
  }
  return into;
}

/** Writes distinct in-bounds setpoints from `loops` connections until stop() is called or the gateway dies. */
export function writeLoad(agents: Awaited<ReturnType<AuditRig['agent']>>[], firstValue: number) {
  let next = firstValue;
  let answered = 0;
  let stopped = false;
  const confirmed: number[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const loops = agents.map(async (a) => {
    while (!stopped) {
      const v = next++;
      try {
        await a.client.writeRegister(0, v);
        confirmed.push(v);
      } catch {
        // the gateway went away mid-command, or denied it: not confirmed to the agent
      }
      answered++;
      for (const w of waiters.splice(0)) if (answered >= w.n) w.resolve();
      else waiters.push(w);
    }
  });
  return {
    confirmed,
    reached: (n: number) => new Promise<void>((resolve) => (answered >= n ? resolve() : waiters.push({ n, resolve }))),
    stop: async () => {
      stopped = true;
      await Promise.allSettled(loops);
    },
  };
}

