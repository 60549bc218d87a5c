// The MCP front's bounds on callers, through the real gateway with a configured listener: requests
// per token (a ManualClock gateway, so the bucket refills only when the test moves time), request
// body size, and the browser Origins a plant allows.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { tlsFetch } from '../../../src/cli/demo/mcp-agent.js';

const INITIALIZE = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } });

describe('bounds the MCP front puts on callers', () => {
  let dir: string;
  let lab: Lab;
  let ca: Buffer;
  let clock: ManualClock;
  const post = async (token: string, o: { body?: string; headers?: Record<string, string>; method?: string } = {}) => {
    const { fetch: f, dispatcher } = tlsFetch({ ca, token, ...(o.headers ? { headers: o.headers } : {}) });
    try {
      const r = await f(lab.gateway.mcp!.resource, {
        method: o.method ?? 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        ...(o.method === 'OPTIONS' ? {} : { body: o.body ?? INITIALIZE }),
      });
      return { status: r.status, headers: r.headers, text: await r.text() };
    } finally {
      await dispatcher.close();
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-mcp-limits-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({
      stateDir: dir,
      gatewayClock: clock,
      patchConfig: (yaml) =>
        yaml.replace(/ {2}mcp: \{ host: 127\.0\.0\.1, port: 0 \}/, '  mcp: { host: 127.0.0.1, port: 0, rate_limit: 3/1m, max_body_bytes: 2048, allowed_origins: [console.plant.example] }'),
    });
    ca = (await lab.credentials('optimizer')).ca;
  }, 60_000);

  afterAll(async () => {
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers 429 with Retry-After past a token\'s rate, and serves it again once the bucket refills', async () => {
    const token = await lab.mcpToken('optimizer', { now: clock.now() });
    for (let i = 0; i < 3; i++) expect((await post(token)).status).toBe(200);
    const limited = await post(token);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('20');
    expect(limited.text).toContain('RATE_LIMITED');
    // Another token of the same agent has its own bucket.
    expect((await post(await lab.mcpToken('optimizer', { now: clock.now() }))).status).toBe(200);
    clock.advance(20_000);
    expect((await post(token)).status).toBe(200);
    // What a plant's monitoring sees.
    const ops = lab.gateway.ops!;
    const metrics = await (await fetch(`http://${ops.host}:${ops.port}/metrics`)).text();
    expect(metrics).toMatch(/^plantgate_mcp_requests_total\{status="429"\} 1$/m);
    expect(metrics).toMatch(/^plantgate_mcp_sessions \d+$/m);
  });

  it('answers 413 to a body over max_body_bytes without reading it', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { pad: 'x'.repeat(4096) } });
    const r = await post(await lab.mcpToken('optimizer', { now: clock.now() }), { body: big });
    expect(r.status).toBe(413);
    expect(r.text).toContain('larger than 2048 bytes');
  });

  it('lets a configured browser Origin call (CORS headers, preflight), and refuses any other', async () => {
    const token = await lab.mcpToken('optimizer', { now: clock.now() });
    const ok = await post(token, { headers: { origin: 'https://console.plant.example' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://console.plant.example');
    const preflight = await post(token, { method: 'OPTIONS', headers: { origin: 'https://console.plant.example' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    expect((await post(token, { headers: { origin: 'https://console.plant.example.evil.test' } })).status).toBe(403);
  });
});
