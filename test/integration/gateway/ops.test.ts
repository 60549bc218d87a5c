// What a plant's monitoring sees: /healthz, /readyz (bundle, audit, listeners) and Prometheus
// metrics that count each command by asset, effect and reason.
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type ModbusAgent } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';

async function get(lab: Lab, urlPath: string): Promise<{ status: number; body: string }> {
  const ops = lab.gateway.ops;
  if (!ops) throw new Error('the lab gateway has no ops listener');
  const res = await fetch(`http://${ops.host}:${ops.port}${urlPath}`);
  return { status: res.status, body: await res.text() };
}

describe('operations endpoints', () => {
  let dir: string;
  let lab: Lab;
  let agent: ModbusAgent;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-ops-'));
    lab = await startLab({ stateDir: dir, gatewayClock: clock });
    const creds = await lab.credentials('optimizer');
    agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, creds);
  });
  afterAll(async () => {
    await agent?.close();
    await lab?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /healthz and reports ready with a valid bundle, a writable spool and listeners up', async () => {
    expect((await get(lab, '/healthz')).status).toBe(200);
    const ready = await get(lab, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready', checks: { bundle: true, audit: true, audit_sink: true, listeners: true } });
  });

  it('counts commands by asset, effect and reason in Prometheus metrics', async () => {
    await agent.client.readInputRegisters(0, 1).catch(() => undefined); // NO_TOKEN
    const api = lab.gateway.agentApi;
    const token = await lab.token('optimizer', { now: clock.now() });
    expect((await putToken(api.host, api.port, await lab.credentials('optimizer'), token)).status).toBe(200);
    // The agent retries the same token: answered from the verified-token cache.
    expect((await putToken(api.host, api.port, await lab.credentials('optimizer'), token)).status).toBe(200);
    await agent.client.readInputRegisters(0, 1);
    await agent.client.readInputRegisters(0, 1);
    expect(exceptionCodeOf(await agent.client.writeRegister(0, 990).catch((e: unknown) => e))).toBe(0x03);

    const metrics = (await get(lab, '/metrics')).body;
    expect(metrics).toContain('plantgate_commands_total{protocol="modbus",asset="plc1",effect="deny",reason="NO_TOKEN"} 1');
    expect(metrics).toContain('plantgate_commands_total{protocol="modbus",asset="plc1",effect="allow",reason="ALLOWED"} 2');
    expect(metrics).toContain('plantgate_commands_total{protocol="modbus",asset="plc1",effect="deny",reason="VALUE_OUT_OF_BOUNDS"} 1');
    expect(metrics).toContain('plantgate_command_outcomes_total{protocol="modbus",asset="plc1",status="ok"} 2');
    expect(metrics).toMatch(/plantgate_decision_seconds_count\{protocol="modbus"\} 4/);
    expect(metrics).toContain('plantgate_bundle_revision 1');
    expect(metrics).toContain('plantgate_upstream_up{asset="plc1",endpoint="127.0.0.1:');
    expect(metrics).toMatch(/plantgate_spool_records \d+/);
    expect(metrics).toContain('plantgate_token_cache_hit_ratio 0.5');
  });

  it('keeps serving the active bundle and stays ready when a tampered bundle is offered', async () => {
    const jws = await readFile(lab.bundleFile, 'utf8');
    const [h, p, s] = jws.trim().split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as { revision: number };
    payload.revision = 99;
    await writeFile(lab.bundleFile, `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}\n`);
    expect(await lab.gateway.reloadBundle()).toBe(false);
    expect(lab.gateway.policy.engine?.revision).toBe(1);
    expect((await get(lab, '/readyz')).status).toBe(200);
    const r = await agent.client.readInputRegisters(0, 1);
    expect(r.data.length).toBe(1);
  });

  it('reports not ready once the bundle has expired', async () => {
    clock.advance(31 * 24 * 3600 * 1000);
    const ready = await get(lab, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body).checks.bundle).toBe(false);
  });
});
