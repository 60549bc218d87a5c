// The MCP front through the real gateway (issue 22): the official MCP SDK's client plays the LLM
// agent over HTTPS against the lab (simulated plant, signed demo bundle, SOC collector). Every
// claim is checked where a plant engineer or SOC analyst would look: the tool result the agent
// reads, the simulated PLC's served-request log, and the audit record the collector received.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams, type AuthProvider, type OAuthProtectedResourceMetadata } from '@modelcontextprotocol/client';
import { decodeJwt, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { callOperatorApi } from '../../../src/cli/commands/approvals.js';
import { DEV_ISSUER, PACKAGE_ROOT, startLab, type DemoAgent, type Lab } from '../../../src/cli/demo/lab.js';
import { connectMcpAgent, tlsFetch, type McpAgent } from '../../../src/cli/demo/mcp-agent.js';
import { decodeBundleUnverified, readBundleFile, signBundle, writeBundleFile } from '../../../src/policy/bundle.js';
import type { BundlePayload } from '../../../src/policy/payload.js';
import { compileSources } from '../../../src/policy/sources.js';
import { setTankLevel } from '../safety/gateway-harness.js';

interface ToolResult {
  content: { type: string; text: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

interface SeenRecord {
  decision?: {
    decision?: { effect?: unknown; reason?: string; ruleId?: string; approvalId?: string; interlockId?: string } | null;
    command?: { protocol?: string; operation?: string; points?: string[]; values?: Record<string, number>; functionCode?: number } | null;
    mcp?: { clientName?: string; clientVersion?: string; tool?: string; arguments?: string; protocolVersion?: string; mcpSessionId?: string } | null;
  } | null;
  token?: { kind?: string; reason?: string; detail?: string } | null;
  violation?: { protocol?: string; detail?: string } | null;
}

describe('the MCP front through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let url: string;
  let ca: Buffer;
  const records: SeenRecord[] = [];
  const agents: McpAgent[] = [];

  /** Records the collector has received since `from` that match. Waits for the shipper first. */
  const recordsSince = async (from: number, match: (r: SeenRecord) => boolean): Promise<SeenRecord[]> => {
    await lab.waitShipped();
    return records.slice(from).filter(match);
  };
  const decisionsSince = (from: number) => recordsSince(from, (r) => r.decision != null);
  /** Where a case's own records start: everything earlier cases made has reached the collector first. */
  const mark = async (): Promise<number> => {
    await lab.waitShipped();
    return records.length;
  };

  const agent = async (who: DemoAgent, o: { era?: 'legacy' | 'modern'; token?: string; bound?: boolean; onToolsChanged?: () => void } = {}): Promise<McpAgent> => {
    const creds = await lab.credentials(who);
    const a = await connectMcpAgent({
      url,
      ca,
      token: o.token ?? (await lab.mcpToken(who, { bound: o.bound })),
      ...(o.bound ? { cert: creds.cert, key: creds.key } : {}),
      era: o.era ?? 'legacy',
      name: `${who}-llm`,
      version: '1.2.3',
      ...(o.onToolsChanged ? { onToolsChanged: o.onToolsChanged } : {}),
    });
    agents.push(a);
    return a;
  };
  const call = async (a: McpAgent, name: string, args: Record<string, unknown>): Promise<ToolResult> =>
    (await a.client.callTool({ name, arguments: args })) as unknown as ToolResult;
  const writesServed = (): number => lab.sim.served().filter((r) => r.isWrite).length;
  /** A raw HTTPS request to the MCP endpoint (what a client that does not speak MCP yet sees). */
  const raw = async (o: { token?: string; headers?: Record<string, string>; body?: string; path?: string; method?: string } = {}) => {
    const { fetch: f, dispatcher } = tlsFetch({ ca, ...(o.token !== undefined ? { token: o.token } : {}), ...(o.headers ? { headers: o.headers } : {}) });
    try {
      const res = await f(new URL(o.path ?? '/mcp', url), {
        method: o.method ?? 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        ...(o.method === 'GET' ? {} : { body: o.body ?? JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } }) }),
      });
      return { status: res.status, headers: res.headers, text: await res.text() };
    } finally {
      await dispatcher.close();
    }
  };

  /**
   * Connects the SDK's client holding `token` and returns the challenge of the 401 it was given.
   * The client is told it has no other token, so it gives up and never connects.
   */
  const sdkRefusal = async (token: string): Promise<ReturnType<typeof extractWWWAuthenticateParams>> => {
    let challenge: ReturnType<typeof extractWWWAuthenticateParams> | undefined;
    const authProvider: AuthProvider = {
      token: async () => token,
      onUnauthorized: async ({ response }) => {
        challenge = extractWWWAuthenticateParams(response);
        throw new Error('no other token');
      },
    };
    await expect(connectMcpAgent({ url, ca, authProvider })).rejects.toThrow('no other token');
    return challenge ?? {};
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-mcp-'));
    lab = await startLab({ stateDir: dir });
    url = lab.gateway.mcp!.resource;
    ca = (await lab.credentials('optimizer')).ca;
    lab.collector.on('record', (_g: string, r: SeenRecord) => records.push(r));
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) await a.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // ------------------------------------------------------------ discovery and tokens

  it('publishes RFC 9728 metadata naming this resource and the bundle\'s token issuers', async () => {
    for (const p of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const r = await raw({ path: p, method: 'GET' });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text)).toMatchObject({
        resource: url,
        authorization_servers: [DEV_ISSUER],
        bearer_methods_supported: ['header'],
        tls_client_certificate_bound_access_tokens: true,
      });
    }
  });

  it('answers a request without a token 401 with a WWW-Authenticate challenge pointing at the metadata', async () => {
    const r = await raw();
    expect(r.status).toBe(401);
    const challenge = r.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain(`resource_metadata="${new URL('/.well-known/oauth-protected-resource/mcp', url).href}"`);
    expect(challenge).toContain('NO_TOKEN');
  });

  it('lets the SDK\'s client discover from the 401 where tokens for this resource come from, then connect with one', async () => {
    // What a client does with no token yet: the 401's challenge names the metadata, the metadata
    // names the resource (the token's aud) and the plant's issuer, which mints the token.
    let token: string | undefined;
    let challenge: ReturnType<typeof extractWWWAuthenticateParams> | undefined;
    let discovered: OAuthProtectedResourceMetadata | undefined;
    const authProvider: AuthProvider = {
      token: async () => token,
      onUnauthorized: async ({ response, serverUrl, fetchFn }) => {
        challenge = extractWWWAuthenticateParams(response);
        discovered = await discoverOAuthProtectedResourceMetadata(serverUrl, { resourceMetadataUrl: challenge.resourceMetadataUrl! }, fetchFn);
        if (discovered.authorization_servers?.includes(DEV_ISSUER)) token = await lab.mcpToken('reporter', { aud: discovered.resource });
      },
    };
    const a = await connectMcpAgent({ url, ca, authProvider, name: 'discovering-llm', version: '1' });
    agents.push(a);
    expect(challenge).toMatchObject({ error: 'invalid_token' });
    expect(challenge?.resourceMetadataUrl?.href).toBe(new URL('/.well-known/oauth-protected-resource/mcp', url).href);
    expect(discovered).toMatchObject({ resource: url, authorization_servers: [DEV_ISSUER] });
    expect((await a.client.listTools()).tools.map((t) => t.name)).toContain('read_plc1');
    // The SDK's well-known probing (no challenge at hand) finds the same document.
    const { fetch: f, dispatcher } = tlsFetch({ ca });
    try {
      expect(await discoverOAuthProtectedResourceMetadata(url, {}, f)).toEqual(discovered);
    } finally {
      await dispatcher.close();
    }
  });

  it('refuses a token minted for another audience (the gateway\'s Modbus audience) with TOKEN_INVALID, audited', async () => {
    const from = await mark();
    const r = await raw({ token: await lab.token('optimizer') });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toContain('TOKEN_INVALID');
    const rejected = await recordsSince(from, (x) => x.token?.kind === 'rejected');
    expect(rejected.at(-1)?.token).toMatchObject({ reason: 'TOKEN_INVALID', detail: 'MCP: AUD_MISMATCH' });
    expect(await sdkRefusal(await lab.token('optimizer'))).toMatchObject({ error: 'invalid_token', errorDescription: expect.stringMatching(/^TOKEN_INVALID: /) });
  });

  it('refuses an expired token with TOKEN_EXPIRED', async () => {
    const expired = await lab.mcpToken('optimizer', { ttlSec: 60, now: Date.now() - 10 * 60_000 });
    const r = await raw({ token: expired });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toContain('TOKEN_EXPIRED');
    expect(await sdkRefusal(expired)).toMatchObject({ error: 'invalid_token', errorDescription: expect.stringMatching(/^TOKEN_EXPIRED: /) });
  });

  it('refuses a certificate-bound token without its certificate, and accepts it over mutual TLS', async () => {
    const bound = await lab.mcpToken('optimizer', { bound: true });
    const r = await raw({ token: bound });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toContain('TOKEN_BINDING_MISMATCH');
    // Another agent's certificate does not carry it either.
    const planner = await lab.credentials('planner');
    const { fetch: f, dispatcher } = tlsFetch({ ca, cert: planner.cert, key: planner.key, token: bound });
    const other = await f(new URL(url), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(other.status).toBe(401);
    await dispatcher.close();
    const a = await agent('optimizer', { bound: true });
    const read = await call(a, 'read_plc1', { points: ['tank1.level'] });
    expect(read.isError).toBeFalsy();
  });

  it('a revocation tells clients their tools changed, and the revoked token is refused on its next request', async () => {
    const legacyToken = await lab.mcpToken('reporter');
    const modernToken = await lab.mcpToken('reporter');
    let legacyChanged!: () => void;
    let modernChanged!: () => void;
    const legacyNotified = new Promise<void>((r) => (legacyChanged = r));
    const modernNotified = new Promise<void>((r) => (modernChanged = r));
    const legacy = await agent('reporter', { token: legacyToken, onToolsChanged: () => legacyChanged() });
    const modern = await agent('reporter', { token: modernToken, era: 'modern', onToolsChanged: () => modernChanged() });
    expect((await call(legacy, 'read_plc1', { points: ['tank1.level'] })).isError).toBeFalsy();
    await Promise.all([legacy.notifications, modern.notifications]);
    const api = lab.gateway.operatorApi!;
    const revoke = async (token: string) =>
      callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken(), ca }, 'POST', 'v1/revocations', {
        jti: decodeJwt(token).jti, reason: 'test: agent misbehaved',
      });
    expect((await revoke(legacyToken)).status).toBe(201);
    await legacyNotified;
    const r = await raw({ token: legacyToken });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toContain('TOKEN_REVOKED');
    await expect(legacy.client.callTool({ name: 'read_plc1', arguments: { points: ['tank1.level'] } })).rejects.toThrow();
    expect(await sdkRefusal(legacyToken)).toMatchObject({ error: 'invalid_token', errorDescription: expect.stringMatching(/^TOKEN_REVOKED: /) });
    expect((await revoke(modernToken)).status).toBe(201);
    await modernNotified;
    await expect(modern.client.callTool({ name: 'read_plc1', arguments: { points: ['tank1.level'] } })).rejects.toThrow();
  });

  it('refuses a request from a browser Origin it was not configured for (403), audited as a violation', async () => {
    const from = await mark();
    const r = await raw({ token: await lab.mcpToken('optimizer'), headers: { origin: 'https://evil.example' } });
    expect(r.status).toBe(403);
    expect(r.text).toContain('Origin');
    const v = await recordsSince(from, (x) => x.violation != null);
    expect(v.at(-1)?.violation).toMatchObject({ protocol: 'mcp' });
    expect(v.at(-1)?.violation?.detail).toContain('evil.example');
    // The SDK's client from such a page gets no session, so it can call no tool.
    const before = writesServed();
    const refused = connectMcpAgent({ url, ca, token: await lab.mcpToken('optimizer'), headers: { origin: 'https://evil.example' } });
    await expect(refused).rejects.toMatchObject({ status: 403 });
    expect(writesServed()).toBe(before);
  });

  it('refuses a Host header naming another server (DNS rebinding), 403', async () => {
    // fetch will not send a Host of our choosing; a plain HTTPS request will.
    const { port } = lab.gateway.mcp!;
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', ca, servername: 'localhost', headers: { host: 'attacker.example', 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{}');
    });
    expect(status).toBe(403);
  });

  // ------------------------------------------------------------ tools per caller

  it('lists a read-only agent no tool that writes: every tool it sees is read-only', async () => {
    const a = await agent('reporter');
    const { tools } = await a.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['list_assets', 'read_plc1']);
    for (const t of tools) expect(t.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false });
  });

  it('gives the optimizer write tools whose schemas carry exactly its rules\' bounds, units and annotations', async () => {
    const a = await agent('optimizer');
    const { tools } = await a.client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    // rules/demo/rules.yaml optimizer-setpoint: tank1.setpoint 20..80 %, pump1.speed 0..1800 rpm.
    expect(byName.get('write_plc1_tank1_setpoint')?.inputSchema.properties).toEqual({
      value: { type: 'number', minimum: 20, maximum: 80, description: 'new value, in %, from 20 to 80' },
    });
    expect(byName.get('write_plc1_pump1_speed')?.inputSchema.properties?.value).toMatchObject({ type: 'integer', minimum: 0, maximum: 1800 });
    expect(byName.get('write_plc1_pump1_run')?.inputSchema.properties?.value).toMatchObject({ type: 'boolean' });
    expect(byName.get('write_plc1_tank1_setpoint')?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true, idempotentHint: true });
    // No rule lets the optimizer write control.auto (that is the maintainers'), so no tool does.
    expect(byName.has('write_plc1_control_auto')).toBe(false);
    const read = byName.get('read_plc1')?.inputSchema.properties?.points as { items: { enum: string[] } };
    expect(read.items.enum).toContain('tank1.level');
  });

  it('lets every numeric write tool reach the PLC at its schema\'s minimum and maximum, and refuses one step beyond with VALUE_OUT_OF_BOUNDS', async () => {
    // The schema's bounds are the rules' as the engine applies them: its edges pass the real
    // pipeline, one step of the point's resolution outside does not (and never reaches the PLC).
    const { payload } = decodeBundleUnverified(await readBundleFile(lab.bundleFile)) as { payload: BundlePayload };
    const plc1 = payload.assets.find((x) => x.id === 'plc1')!;
    const a = await agent('optimizer');
    const numeric = (await a.client.listTools()).tools.flatMap((t) => {
      const v = t.inputSchema.properties?.value as { minimum?: number; maximum?: number } | undefined;
      const point = /^Write (\S+) on plc1$/.exec(t.title ?? '')?.[1];
      return point !== undefined && v?.minimum !== undefined && v.maximum !== undefined ? [{ tool: t.name, point, min: v.minimum, max: v.maximum }] : [];
    });
    expect(numeric.map((n) => n.point).sort()).toEqual(['pump1.speed', 'tank1.setpoint']);
    for (const { tool, point, min, max } of numeric) {
      const step = plc1.points[point]!.scale ?? 1;
      const kept = lab.sim.read(point);
      for (const edge of [min, max]) {
        const r = await call(a, tool, { value: edge });
        expect(r.isError, `${tool} ${edge}: ${r.content[0]?.text}`).toBeFalsy();
        expect(lab.sim.read(point)).toBeCloseTo(edge, 6);
      }
      for (const beyond of [min - step, max + step]) {
        const before = writesServed();
        const r = await call(a, tool, { value: beyond });
        expect(r.structuredContent, `${tool} ${beyond}`).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS' });
        expect(writesServed()).toBe(before);
      }
      lab.sim.write(point, kept);
    }
  });

  it('tells the planner that opening the drain valve needs an approval', async () => {
    const a = await agent('planner');
    const { tools } = await a.client.listTools();
    const valve = tools.find((t) => t.name === 'write_plc1_valve1_open');
    expect(valve?.description).toContain('approval');
  });

  it('answers list_assets with each caller\'s own points, write bounds and approvals', async () => {
    type Summary = { assets: { asset: string; points: { name: string; unit?: string; read: boolean; write?: Record<string, unknown> }[] }[] };
    const pointsOf = async (who: DemoAgent) => {
      const r = await call(await agent(who), 'list_assets', {});
      expect(r.isError).toBeFalsy();
      const plc1 = (r.structuredContent as unknown as Summary).assets.find((x) => x.asset === 'plc1')!;
      return new Map(plc1.points.map((pt) => [pt.name, pt]));
    };
    const optimizer = await pointsOf('optimizer');
    expect(optimizer.get('tank1.setpoint')).toMatchObject({ unit: '%', read: true, write: { min: 20, max: 80, approval: false, windows: [] } });
    expect(optimizer.get('pump1.run')?.write).toEqual({ approval: false, windows: [] });
    expect(optimizer.get('control.auto')).toMatchObject({ read: true });
    expect(optimizer.get('control.auto')?.write).toBeUndefined();
    expect((await pointsOf('planner')).get('valve1.open')?.write).toMatchObject({ approval: true });
    for (const pt of (await pointsOf('reporter')).values()) expect(pt.write, pt.name).toBeUndefined();
  });

  // ------------------------------------------------------------ the path of a tool call

  it('reads live values through the pipeline and records the MCP client, tool and arguments with the Command', async () => {
    const from = await mark();
    lab.sim.write('tank1.level', 42.5);
    const a = await agent('optimizer');
    const r = await call(a, 'read_plc1', { points: ['tank1.level', 'pump1.run'] });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toEqual({ asset: 'plc1', values: { 'tank1.level': { value: 42.5, unit: '%' }, 'pump1.run': { value: false } } });
    const d = (await decisionsSince(from)).filter((x) => x.decision?.mcp?.tool === 'read_plc1');
    expect(d).toHaveLength(2);
    expect(d[0]!.decision).toMatchObject({
      decision: { effect: 'ALLOW', reason: 'ALLOWED', ruleId: 'agents-read-plant' },
      command: { protocol: 'modbus', operation: 'read' },
      mcp: { clientName: 'optimizer-llm', clientVersion: '1.2.3', tool: 'read_plc1', protocolVersion: '2025-11-25' },
    });
    expect(JSON.parse(d[0]!.decision!.mcp!.arguments!)).toEqual({ points: ['tank1.level', 'pump1.run'] });
    expect(d[0]!.decision!.mcp!.mcpSessionId).toMatch(/^mcp-/);
  });

  it('an allowed write reaches the simulated PLC after its durable decision record', async () => {
    const from = await mark();
    const a = await agent('optimizer');
    const r = await call(a, 'write_plc1_tank1_setpoint', { value: 60 });
    expect(r.isError).toBeFalsy();
    expect(r.content[0]!.text).toContain('the PLC confirmed the write');
    expect(lab.sim.read('tank1.setpoint')).toBe(60);
    const d = await decisionsSince(from);
    expect(d.at(-1)?.decision).toMatchObject({
      decision: { effect: 'ALLOW', ruleId: 'optimizer-setpoint' },
      command: { protocol: 'modbus', operation: 'write', functionCode: 6, points: ['tank1.setpoint'], values: { 'tank1.setpoint': 60 } },
      mcp: { tool: 'write_plc1_tank1_setpoint', arguments: '{"value":60}' },
    });
  });

  it('refuses an out-of-bounds write with VALUE_OUT_OF_BOUNDS and a sentence to act on; the PLC never sees it', async () => {
    const before = writesServed();
    const from = await mark();
    const a = await agent('optimizer');
    const r = await call(a, 'write_plc1_tank1_setpoint', { value: 95 });
    expect(r.isError).toBe(true);
    expect(r.content[0]!.text).toMatch(/^VALUE_OUT_OF_BOUNDS: .*20 to 80 %/);
    expect(r.structuredContent).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', rule: 'optimizer-setpoint' });
    expect(writesServed()).toBe(before);
    expect((await decisionsSince(from)).at(-1)?.decision?.decision).toMatchObject({ effect: 'DENY', reason: 'VALUE_OUT_OF_BOUNDS' });
  });

  it('refuses a value the point\'s type cannot hold (never wrapped), audited as VALUE_OUT_OF_BOUNDS', async () => {
    const before = writesServed();
    const from = await mark();
    const a = await agent('optimizer');
    const r = await call(a, 'write_plc1_pump1_speed', { value: 70_000 });
    expect(r.isError).toBe(true);
    expect(r.content[0]!.text).toMatch(/^VALUE_OUT_OF_BOUNDS: /);
    expect(writesServed()).toBe(before);
    expect((await decisionsSince(from)).at(-1)?.decision).toMatchObject({ decision: { reason: 'VALUE_OUT_OF_BOUNDS' }, command: { points: ['pump1.speed'] } });
  });

  it('refuses an interlocked write with INTERLOCK, naming the interlock and the live value; the PLC never sees it', async () => {
    await setTankLevel(lab, 91);
    const before = writesServed();
    const from = await mark();
    const a = await agent('optimizer');
    const r = await call(a, 'write_plc1_pump1_run', { value: true });
    expect(r.isError).toBe(true);
    expect(r.content[0]!.text).toMatch(/^INTERLOCK: A safety interlock \(tank1-overfill\)/);
    expect(r.content[0]!.text).toContain('tank1.level=91');
    expect(r.structuredContent).toMatchObject({ reason: 'INTERLOCK', interlock: 'tank1-overfill' });
    expect(writesServed()).toBe(before);
    expect(lab.sim.read('pump1.run')).toBe(0);
    expect((await decisionsSince(from)).at(-1)?.decision).toMatchObject({
      decision: { effect: 'DENY', reason: 'INTERLOCK', interlockId: 'tank1-overfill' },
      command: { operation: 'write', points: ['pump1.run'] },
      mcp: { tool: 'write_plc1_pump1_run', arguments: '{"value":true}' },
    });
    await setTankLevel(lab, 50);
  });

  it('round-trips an approval: refused with its id and how to retry, approved by an operator, then run once', async () => {
    lab.sim.write('valve1.open', 0);
    const a = await agent('planner');
    const first = await call(a, 'write_plc1_valve1_open', { value: true });
    expect(first.isError).toBe(true);
    expect(first.content[0]!.text).toMatch(/^APPROVAL_REQUIRED: /);
    const approval = first.structuredContent?.approval as { id: string };
    expect(approval.id).toMatch(/^apr-/);
    expect(first.content[0]!.text).toContain(`plantgate approvals approve ${approval.id}`);
    expect(first.content[0]!.text).toContain('write_plc1_valve1_open again with exactly the same arguments');
    expect(lab.sim.read('valve1.open')).toBe(0);

    // The agent cannot approve its own request: its MCP client has no such tool, and the operator
    // API refuses its tokens (the MCP one and the gateway one alike).
    expect((await a.client.listTools()).tools.filter((t) => /approv/i.test(t.name))).toEqual([]);
    const api = lab.gateway.operatorApi!;
    for (const own of [await lab.mcpToken('planner'), await lab.token('planner')]) {
      const self = await callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: own, ca }, 'POST', `v1/approvals/${approval.id}/approve`, { reason: 'I approve myself' });
      expect([401, 403]).toContain(self.status);
    }
    expect(lab.sim.read('valve1.open')).toBe(0);

    const approved = await callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken(), ca }, 'POST', `v1/approvals/${approval.id}/approve`, {
      reason: 'drain for inspection, checked on site',
    });
    expect(approved.status).toBe(200);

    const retry = await call(a, 'write_plc1_valve1_open', { value: true });
    expect(retry.isError).toBeFalsy();
    expect(retry.structuredContent).toMatchObject({ approval: approval.id });
    expect(lab.sim.read('valve1.open')).toBe(1);
    // The grant is used: the same call needs a new approval.
    const again = await call(a, 'write_plc1_valve1_open', { value: true });
    expect(again.structuredContent).toMatchObject({ reason: 'APPROVAL_REQUIRED' });
    lab.sim.write('valve1.open', 0);
  });

  it('serves assets and live point values as resources (reads through the pipeline)', async () => {
    const a = await agent('reporter');
    const { resources } = await a.client.listResources();
    const uri = 'plantgate://assets/plc1/points/tank1.level';
    expect(resources.map((r) => r.uri)).toContain(uri);
    lab.sim.write('tank1.level', 33);
    const r = await a.client.readResource({ uri });
    expect(JSON.parse((r.contents[0] as { text: string }).text)).toEqual({ asset: 'plc1', point: 'tank1.level', value: 33, unit: '%' });
    const assets = await a.client.readResource({ uri: 'plantgate://assets' });
    expect(JSON.parse((assets.contents[0] as { text: string }).text).assets[0]).toMatchObject({ asset: 'plc1' });
  });

  it('works the same for a 2026-07-28 (stateless) client', async () => {
    const from = await mark();
    const a = await agent('optimizer', { era: 'modern' });
    const r = await call(a, 'read_plc1', { points: ['tank1.setpoint'] });
    expect(r.isError).toBeFalsy();
    const w = await call(a, 'write_plc1_tank1_setpoint', { value: 95 });
    expect(w.structuredContent).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS' });
    const d = await decisionsSince(from);
    expect(d.at(-1)?.decision?.mcp).toMatchObject({ clientName: 'optimizer-llm', protocolVersion: '2026-07-28' });
    // No MCP session in this revision: the record says so by leaving the session id empty.
    expect(d.at(-1)?.decision?.mcp?.mcpSessionId ?? '').toBe('');
  });

  // ------------------------------------------------------------ changes

  it('a bundle reload that drops a rule tells clients their tools changed, and the tool is gone', async () => {
    let legacyChanged!: () => void;
    let modernChanged!: () => void;
    const legacyNotified = new Promise<void>((r) => (legacyChanged = r));
    const modernNotified = new Promise<void>((r) => (modernChanged = r));
    const legacy = await agent('optimizer', { onToolsChanged: () => legacyChanged() });
    const modern = await agent('optimizer', { era: 'modern', onToolsChanged: () => modernChanged() });
    expect((await legacy.client.listTools()).tools.map((t) => t.name)).toContain('write_plc1_tank1_setpoint');
    // The SDK client opens its notification stream on its own: a change before that would be missed.
    await Promise.all([legacy.notifications, modern.notifications]);

    const revision = (lab.gateway.policy.engine?.revision ?? 1) + 1;
    const payload = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: Date.now(), revision });
    payload.rules = payload.rules.filter((r) => r.id !== 'optimizer-setpoint');
    const policyKey = JSON.parse(await readFile(path.join(dir, 'keys', 'policy.private.jwk.json'), 'utf8')) as JWK;
    await writeBundleFile(lab.bundleFile, await signBundle(payload, policyKey, policyKey.kid as string));
    expect(await lab.gateway.reloadBundle()).toBe(true);
    // The other cases find the demo rules again, under a newer revision (an older one is a rollback).
    onTestFinished(async () => {
      const full = await compileSources(path.join(PACKAGE_ROOT, 'rules/demo/bundle.yaml'), { now: Date.now(), revision: revision + 1 });
      await writeBundleFile(lab.bundleFile, await signBundle(full, policyKey, policyKey.kid as string));
      expect(await lab.gateway.reloadBundle()).toBe(true);
    });

    await legacyNotified;
    await modernNotified;
    for (const a of [legacy, modern]) {
      const names = (await a.client.listTools()).tools.map((t) => t.name);
      expect(names).not.toContain('write_plc1_tank1_setpoint');
      expect(names).toContain('write_plc1_pump1_run');
    }
  });
});
