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

async function startOpsLab(prefix: string, clock: ManualClock): Promise<{ dir: string; lab: Lab; agent: ModbusAgent }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const lab = await startLab({ stateDir: dir, gatewayClock: clock });
  const agent = await connectModbusAgent(lab.gateway.modbus.host, lab.gateway.modbus.port, await lab.credentials('optimizer'));
  return { dir, lab, agent };
}

async function closeOpsLab(o: { dir: string; lab: Lab; agent: ModbusAgent } | undefined): Promise<void> {
  await o?.agent.close();
  await o?.lab.close();
  if (o) await rm(o.dir, { recursive: true, force: true });
}

// The metrics case counts every command and token presentation of its lab: no other case may add to them.
describe('operations endpoints', () => {
  let o: Awaited<ReturnType<typeof startOpsLab>> | undefined;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    o = await startOpsLab('plantgate-ops-', clock);
  });
  afterAll(() => closeOpsLab(o));

  it('answers /healthz and reports ready with a valid bundle, a writable spool and listeners up', async () => {
    const { lab } = o!;
    expect((await get(lab, '/healthz')).status).toBe(200);
    const ready = await get(lab, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready', checks: { bundle: true, audit: true, audit_sink: true, listeners: true } });
  });

  it('counts commands by asset, effect and reason in Prometheus metrics', async () => {
    const { lab, agent } = o!;
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
});

// A bundle that cannot be trusted (tampered, expired) changes what the gateway serves: a lab of its own.
describe('operations endpoints with a bad bundle', () => {
  let o: Awaited<ReturnType<typeof startOpsLab>> | undefined;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    o = await startOpsLab('plantgate-ops-bundle-', clock);
    const api = o.lab.gateway.agentApi;
    const token = await o.lab.token('optimizer', { now: clock.now() });
    expect((await putToken(api.host, api.port, await o.lab.credentials('optimizer'), token)).status).toBe(200);
  });
  afterAll(() => closeOpsLab(o));

  it('keeps serving the active bundle and stays ready when a tampered bundle is offered', async () => {
    const { lab, agent } = o!;
    const jws = await readFile(lab.bundleFile, 'utf8');
    const [h, p, s] = jws.trim().split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as { revision: number };
    payload.revision = 99;
    await writeFile(lab.bundleFile, `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}\n`);
    try {
      expect(await lab.gateway.reloadBundle()).toBe(false);
    } finally {
      await writeFile(lab.bundleFile, jws);
    }
    expect(lab.gateway.policy.engine?.revision).toBe(1);
    expect((await get(lab, '/readyz')).status).toBe(200);
    const r = await agent.client.readInputRegisters(0, 1);
    expect(r.data.length).toBe(1);
  });

  it('reports not ready once the bundle has expired', async () => {
    const { lab } = o!;
    const start = clock.now();
    clock.advance(31 * 24 * 3600 * 1000);
    try {
      const ready = await get(lab, '/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body).checks.bundle).toBe(false);
    } finally {
      clock.set(start);
    }
  });
});
