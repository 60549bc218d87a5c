// `plantgate revoke` as a real process against the lab gateway's operator API: a revoked agent's
// next command is refused with TOKEN_REVOKED; bad usage exits 2, a refusal exits 1.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken, type ModbusAgent } from '../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../src/cli/demo/lab.js';
import { assertBuilt, run, type Run } from './cli.js';

const revoke = (args: string[]): Promise<Run> => run(['revoke', ...args]);

describe('plantgate revoke', () => {
  let dir: string;
  let lab: Lab;
  let agent: ModbusAgent;
  let conn: string[];

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-revoke-'));
    lab = await startLab({ stateDir: dir });
    const creds = await lab.credentials('optimizer');
    expect((await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, creds, await lab.token('optimizer'))).status).toBe(200);
    agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
    const tokenFile = path.join(dir, 'operator.jwt');
    await writeFile(tokenFile, await lab.operatorToken(), { mode: 0o600 });
    conn = ['--api', `https://localhost:${lab.gateway.operatorApi!.port}`, '--token', tokenFile, '--ca', lab.pki.ca.cert];
  });

  afterAll(async () => {
    await agent?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('revokes a workload by SPIFFE ID: its next command is refused, and --list shows the revocation', async () => {
    await expect(agent.client.readInputRegisters(0, 1)).resolves.toBeDefined();
    const r = await revoke([...conn, '--sub', 'spiffe://plant.example/agent/optimizer', '--reason', 'agent misbehaving']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('revoked: sub spiffe://plant.example/agent/optimizer');
    await expect(agent.client.readInputRegisters(0, 1)).rejects.toMatchObject({ modbusCode: 0x01 });
    const recent = lab.gateway.recentDecisions.list('spiffe://plant.example/agent/optimizer', 1);
    expect(recent[0]?.reason).toBe('TOKEN_REVOKED');

    const l = await revoke([...conn, '--list']);
    expect(l.code).toBe(0);
    expect(l.stdout).toMatch(/sub spiffe:\/\/plant\.example\/agent\/optimizer .* by bob@plant\.example \[operator\]: agent misbehaving/);
  });

  it('exits 2 naming the problem when no target or no reason is given', async () => {
    const none = await revoke([...conn, '--reason', 'x']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('exactly one of --jti, --sub, --owner or --task');
    const noReason = await revoke([...conn, '--jti', 'abc']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason is required');
  });

  it('exits 1 with the reason code when the gateway refuses (a sub that is not a SPIFFE ID)', async () => {
    const r = await revoke([...conn, '--sub', 'optimizer', '--reason', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HTTP 400 PROTOCOL_VIOLATION');
  });

  it('exits 1 with HTTP 401 TOKEN_INVALID when the operator token is not a JWT', async () => {
    const bad = path.join(dir, 'bad.jwt');
    await writeFile(bad, 'not-a-jwt');
    const r = await revoke(['--api', conn[1]!, '--token', bad, '--ca', lab.pki.ca.cert, '--list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 401 TOKEN_INVALID/);
  });

  it('has --help describing every option', async () => {
    const r = await revoke(['--help']);
    expect(r.code).toBe(0);
    for (const o of ['--jti', '--sub', '--owner', '--reason', '--list', '--api', '--token', '--ca']) expect(r.stdout).toContain(o);
  });
});
