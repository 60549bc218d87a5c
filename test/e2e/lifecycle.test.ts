// `plantgate serve` as systemd runs it: SIGHUP reloads the bundle without dropping the agent's
// session, SIGTERM lets an in-flight write finish and flushes the spool, and the process exits 0.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { prepareLabFiles, PACKAGE_ROOT, type LabFiles } from '../../src/cli/demo/lab.js';
import { readSpool } from '../../src/audit/offline.js';
import { decodeRecord } from '../../src/audit/schema.js';
import { signBundle, writeBundleFile } from '../../src/policy/bundle.js';
import { compileSources } from '../../src/policy/sources.js';
import { startSimulator, type SimHandle } from '../../src/sim/modbus-server.js';
import { freePort } from '../bench/processes.js';
import { PlcDouble } from '../integration/gateway/harness.js';
import { assertBuilt, CLI, waitReady } from './cli.js';


async function metric(opsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ')[1]);
}

// Steps of one process's life, in order (make test-shuffle keeps it): SIGHUP, then SIGTERM ends it.
describe('plantgate serve lifecycle', { shuffle: false }, () => {
  let dir: string;
  let files: LabFiles;
  let sim: SimHandle;
  let plc: PlcDouble;
  let gateway: ChildProcess;
  let exited: Promise<number | null>;
  let stderr = '';
  let stdout = '';
  let agent: ModbusAgent;
  const ports = { modbus: 0, api: 0, ops: 0 };

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-life-'));
    files = await prepareLabFiles({ stateDir: dir });
    sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, 'fixtures/plants/water-treatment.yaml'), port: 0 });
    // A PLC double in front of the simulator tells the test the moment a request reaches the PLC.
    plc = await PlcDouble.start({ host: '127.0.0.1', port: sim.port });
    [ports.modbus, ports.api, ports.ops] = await Promise.all([freePort(), freePort(), freePort()]);
    const yaml = files
      .gatewayYaml({ simPort: plc.port, collectorPort: 1, modbusPort: ports.modbus, agentApiPort: ports.api, opsPort: ports.ops })
      .replace(/ {2}collector:.*\n/, '');
    await writeFile(path.join(dir, 'gateway.yaml'), yaml);
    gateway = spawn(process.execPath, [CLI, 'serve', '--config', path.join(dir, 'gateway.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    gateway.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    gateway.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    exited = new Promise((resolve) => gateway.once('exit', (code) => resolve(code)));
    await waitReady(ports.ops);
    const creds = await files.credentials('optimizer');
    expect((await putToken('127.0.0.1', ports.api, creds, await files.token('optimizer'))).status).toBe(200);
    agent = await connectModbusAgent('127.0.0.1', ports.modbus, creds);
  });

  afterAll(async () => {
    if (gateway.exitCode === null) gateway.kill('SIGKILL');
    await agent?.close();
    await plc?.close();
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('SIGHUP loads a new bundle revision without dropping the agent connection', async () => {
    expect(await metric(ports.ops, 'plantgate_bundle_revision')).toBe(1);
    const key = JSON.parse(await readFile(path.join(dir, 'keys/policy.private.jwk.json'), 'utf8'));
    const payload = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: Date.now(), revision: 2 });
    await writeBundleFile(files.bundleFile, await signBundle(payload, key, key.kid));
    gateway.kill('SIGHUP');
    for (let i = 0; i < 200 && (await metric(ports.ops, 'plantgate_bundle_revision')) !== 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await metric(ports.ops, 'plantgate_bundle_revision')).toBe(2);
    const r = await agent.client.readInputRegisters(0, 1);
    expect(r.data.length).toBe(1);
  });

  it('SIGTERM answers the write in flight, then exits 0 with the spool flushed', async () => {
    // SIGTERM arrives while the write is at the PLC: the gateway must still answer it.
    plc.onRequest = (frame) => {
      if (frame.functionCode === 6) gateway.kill('SIGTERM');
    };
    await agent.client.writeRegister(0, 555);
    // The gateway's own log says which shutdown step did not finish, if one did not.
    expect(await exited, stdout.split('\n').filter((l) => l.includes('"level":50')).join('\n')).toBe(0);
    expect(stderr).toBe('');
    expect(sim.read('tank1.setpoint')).toBeCloseTo(55.5, 5);
    // The spool on disk holds the write's allowed decision and its outcome, and verifies.
    const { records, problems } = await readSpool(path.join(dir, 'spool'));
    expect(problems).toEqual([]);
    const decisions = records.map((r) => decodeRecord(r.bytes).decision).filter((d) => d?.command?.rawValues?.[0] === 555);
    expect(decisions.map((d) => d?.decision?.reason)).toEqual(['ALLOWED']);
    expect(records.some((r) => decodeRecord(r.bytes).outcome?.status === 'ok')).toBe(true);
  });
});
