// `plantgate demo` as a newcomer runs it: one command, every scripted command answered as
// expected, exit 0; and `--keep-running` leaves a gateway a third-party client can use.
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AttributeIds, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, StatusCodes } from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectModbusAgent, putToken } from '../../src/cli/demo/agent.js';
import { createJwtSession } from '../../protocols/opcua/jwt-token.js';
import { assertBuilt, run, start } from './cli.js';

describe('plantgate demo', () => {
  let dir: string;
  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-demo-e2e-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the scripted agent and exits 0 with every command answered as expected', async () => {
    const r = await run(['demo', '--state-dir', path.join(dir, 'once')], { timeoutMs: 110_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/All \d+ commands answered as expected/);
    for (const reason of ['NO_TOKEN', 'ALLOWED', 'VALUE_OUT_OF_BOUNDS', 'NO_MATCHING_RULE', 'INTERLOCK', 'APPROVAL_REQUIRED', 'APPROVED', 'TOKEN_EXPIRED', 'TOKEN_INVALID', 'FROZEN', 'EMERGENCY_FREEZE', 'UNFROZEN']) {
      expect(r.stdout).toContain(reason);
    }
    expect(r.stdout).toMatch(/optimizer UA Read .*ALLOWED/);
    expect(r.stdout).toMatch(/UA Write .*VALUE_OUT_OF_BOUNDS .*BadUserAccessDenied/);
    // The MCP agent (issue 22): a read, an out-of-bounds write, an interlocked write, an approval round trip.
    expect(r.stdout).toMatch(/optimizer MCP read_plc1 tank1\.level .*ALLOWED/);
    expect(r.stdout).toMatch(/MCP write_plc1_tank1_setpoint 95 .*VALUE_OUT_OF_BOUNDS/);
    expect(r.stdout).toMatch(/MCP write_plc1_pump1_run true .*INTERLOCK/);
    expect(r.stdout).toMatch(/planner +MCP write_plc1_valve1_open true .*APPROVAL_REQUIRED/);
    expect(r.stdout).toMatch(/planner +MCP write_plc1_valve1_open true .*ALLOWED/);
    expect(r.stdout).toMatch(/SOC stream: \d+ records/);
    expect(r.stdout).toMatch(/Audit log verified: tree of \d+ records, \d+ signed checkpoints/);
    // The whole demo (Modbus, OPC UA and MCP) takes ~20 s alone, far more on a loaded 2-core machine.
  }, 120_000);

  it('--keep-running writes demo.json so another Modbus or OPC UA client can use the gateway, and stops on SIGINT', async () => {
    const stateDir = path.join(dir, 'kept');
    const demo = await start(['demo', '--keep-running', '--state-dir', stateDir], 'Running.', 110_000);
    try {
      expect(demo.output()).toMatch(/Operator console: https:\/\/127\.0\.0\.1:\d+\/console\//);
      const info = JSON.parse(await readFile(path.join(stateDir, 'demo.json'), 'utf8')) as {
        gateway: { modbus_tls: { host: string; port: number }; agent_api: { host: string; port: number } };
        ca: string;
        agents: Record<string, { cert: string; key: string }>;
        token: { optimizer: string };
        opcua: { endpoint: string; namespace: string; agent: { application_uri: string; cert: string; key: string }; token: { optimizer: string } };
      };
      const creds = {
        ca: await readFile(info.ca),
        cert: await readFile(info.agents.optimizer.cert),
        key: await readFile(info.agents.optimizer.key),
      };
      const put = await putToken(info.gateway.agent_api.host, info.gateway.agent_api.port, creds, info.token.optimizer);
      expect(put.status).toBe(200);
      const agent = await connectModbusAgent(info.gateway.modbus_tls.host, info.gateway.modbus_tls.port, creds);
      const level = await agent.client.readInputRegisters(0, 1);
      expect(level.data[0]).toBeGreaterThan(0);
      await agent.close();
      // The OPC UA endpoint and the OPC UA agent's token from demo.json open a session and read the tank.
      const ua = OPCUAClient.create({
        applicationUri: info.opcua.agent.application_uri, securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
        certificateFile: info.opcua.agent.cert, privateKeyFile: info.opcua.agent.key, endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
        clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(dir, 'ua-client-pki'), automaticallyAcceptUnknownCertificate: true }),
      });
      await ua.connect(info.opcua.endpoint);
      try {
        const session = await createJwtSession(ua, info.opcua.token.optimizer);
        const ns = ((await session.readNamespaceArray()) as string[]).indexOf(info.opcua.namespace);
        const browsed = await session.browse(`ns=${ns};s=plc1`);
        expect(browsed.statusCode).toBe(StatusCodes.Good);
        expect((await session.read({ nodeId: `ns=${ns};s=tank1.level`, attributeId: AttributeIds.Value })).statusCode.isGood()).toBe(true);
        await session.close();
      } finally {
        await ua.disconnect();
      }
    } finally {
      demo.child.kill('SIGINT');
    }
    const exit = await demo.exited;
    expect(exit.code).toBe(0);
  }, 120_000);
});
