// The emergency freeze as an operator uses it on a real `plantgate serve` process: `plantgate
// freeze` returns, the gateway is killed with SIGKILL at once, and after a restart the freeze still
// refuses the agent's next write. With the two-person rule configured, one operator's `plantgate
// unfreeze` (under any spelling of their name) does not lift it; a second operator's does.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSpool } from '../../src/audit/offline.js';
import { decodeRecord } from '../../src/audit/schema.js';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { prepareLabFiles, PACKAGE_ROOT, type LabFiles } from '../../src/cli/demo/lab.js';
import { startSimulator, type SimHandle } from '../../src/sim/modbus-server.js';
import { freePort } from '../bench/processes.js';
import { modbusError } from '../integration/safety/gateway-harness.js';
import { assertBuilt, CLI, run, waitReady } from './cli.js';


// Steps of one operator's story, in order (make test-shuffle keeps it): freeze, kill -9 and restart,
// two unfreezes, then what the spool holds.
describe('emergency freeze across kill -9 and restart, lifted by two operators', { shuffle: false }, () => {
  let dir: string;
  let files: LabFiles;
  let sim: SimHandle;
  let gateway: ChildProcess | undefined;
  let agent: ModbusAgent | undefined;
  const ports = { modbus: 0, api: 0, ops: 0, operator: 0 };
  const tokenFile = (name: string) => path.join(dir, `${name}.jwt`);
  let common: string[];

  const startGateway = async (): Promise<void> => {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', path.join(dir, 'gateway.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    gateway = child;
    await waitReady(ports.ops);
    const creds = await files.credentials('optimizer');
    expect((await putToken('127.0.0.1', ports.api, creds, await files.token('optimizer'))).status).toBe(200);
    agent = await connectModbusAgent('127.0.0.1', ports.modbus, creds);
  };
  const killGateway = async (signal: NodeJS.Signals): Promise<void> => {
    const child = gateway!;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
    await agent?.close();
  };

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-freeze-e2e-'));
    files = await prepareLabFiles({ stateDir: dir });
    sim = await startSimulator({ plant: path.join(PACKAGE_ROOT, 'fixtures/plants/water-treatment.yaml'), port: 0 });
    [ports.modbus, ports.api, ports.ops, ports.operator] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const yaml = files
      .gatewayYaml({ simPort: sim.port, collectorPort: 1, modbusPort: ports.modbus, agentApiPort: ports.api, opsPort: ports.ops })
      .replace(/ {2}collector:.*\n/, '')
      .replace('operator_api: { host: 127.0.0.1, port: 0 }', `operator_api: { host: 127.0.0.1, port: ${ports.operator} }`);
    await writeFile(path.join(dir, 'gateway.yaml'), `${yaml}emergency_freeze: { unfreeze_quorum: 2 }\n`);
    await writeFile(tokenFile('bob'), await files.operatorToken({ sub: 'bob@plant.example' }));
    await writeFile(tokenFile('bob-again'), await files.operatorToken({ sub: 'BOB@Plant.Example' }));
    await writeFile(tokenFile('carol'), await files.operatorToken({ sub: 'carol@plant.example' }));
    common = ['--api', `https://127.0.0.1:${ports.operator}`, '--ca', files.pki.ca.cert];
    await startGateway();
  }, 60_000);

  afterAll(async () => {
    if (gateway !== undefined && gateway.exitCode === null) gateway.kill('SIGKILL');
    await agent?.close();
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  let freezeId = '';

  it('`plantgate freeze` refuses the next write; the freeze outlives a SIGKILL sent right after it returned', async () => {
    await agent!.client.writeRegister(0, 500);
    expect(sim.read('tank1.setpoint')).toBeCloseTo(50);

    const r = await run(['freeze', ...common, '--token', tokenFile('bob'), '--asset', 'plc1', '--reason', 'leak on tank 1']);
    expect(r.code, r.stderr).toBe(0);
    freezeId = /frozen: (frz-[A-Za-z0-9_-]+)/.exec(r.stdout)![1]!;
    expect(r.stdout).toContain('asset plc1');
    await killGateway('SIGKILL');

    await startGateway();
    expect(await modbusError(agent!.client.writeRegister(0, 600))).toBe(0x01);
    expect(sim.read('tank1.setpoint')).toBeCloseTo(50);
    const list = await run(['freeze', ...common, '--token', tokenFile('carol'), '--list']);
    expect(list.stdout).toContain(freezeId);
    expect(list.stdout).toContain('two-person rule: 0 of 2 operators');
  });

  it("one operator's unfreeze, under any spelling of their name, does not lift it; a second operator's does", async () => {
    let r = await run(['unfreeze', freezeId, ...common, '--token', tokenFile('bob'), '--reason', 'leak fixed']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('still frozen');
    expect(await modbusError(agent!.client.writeRegister(0, 600))).toBe(0x01);

    r = await run(['unfreeze', freezeId, ...common, '--token', tokenFile('bob-again'), '--reason', 'really fixed']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ALREADY_VOTED');

    r = await run(['unfreeze', freezeId, ...common, '--token', tokenFile('carol'), '--reason', 'confirmed on site']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('unfrozen');
    await agent!.client.writeRegister(0, 600);
    expect(sim.read('tank1.setpoint')).toBeCloseTo(60);
  });

  it('answers bad usage with exit 2 and a message naming the option', async () => {
    const r = await run(['freeze', ...common, '--token', tokenFile('bob'), '--asset', 'plc1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--reason is required');
    const r2 = await run(['freeze', ...common, '--token', tokenFile('bob'), '--asset', 'plc1', '--reason', 'x', '--expires-in', 'soon']);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('--expires-in soon');
  });

  it('the spool holds the freeze, both unfreeze requests and the lift, and the frozen write refused EMERGENCY_FREEZE', async () => {
    await killGateway('SIGTERM');
    const { records, problems } = await readSpool(path.join(dir, 'spool'));
    expect(problems).toEqual([]);
    const decoded = records.map((r) => decodeRecord(r.bytes));
    expect(decoded.filter((d) => d.freeze).map((d) => [d.freeze!.kind, d.freeze!.by])).toEqual([
      ['frozen', 'bob@plant.example'],
      ['unfreeze_requested', 'bob@plant.example'],
      ['unfrozen', 'carol@plant.example'],
    ]);
    const frozenWrites = decoded.filter((d) => d.decision?.decision?.reason === 'EMERGENCY_FREEZE');
    expect(frozenWrites.length).toBe(2);
    expect(frozenWrites.every((d) => d.decision!.decision!.freezeId === freezeId)).toBe(true);
  });
});
