// One token intake for every front (docs/identity.md, Token intake): the agent API (a Modbus agent
// PUTs its token) and the MCP front (a bearer token on each request) accept and refuse the same
// kinds of token for the same reasons, through the real gateway. Before, each ran its own accept
// steps around the shared verifier, and the agent API registered a token that had already been
// revoked (every command on it was then refused, but its acceptance was on the audit record).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callOperatorApi } from '../../../src/cli/commands/approvals.js';
import { putToken, type AgentCredentials } from '../../../src/cli/demo/agent.js';
import { startLab, type Lab, type LabTokenOptions } from '../../../src/cli/demo/lab.js';
import { tlsFetch } from '../../../src/cli/demo/mcp-agent.js';
import { ManualClock } from '../../../src/core/clock.js';

const INITIALIZE = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } });

describe('the agent API and the MCP front accept tokens the same way', () => {
  let dir: string;
  let lab: Lab;
  let clock: ManualClock;
  let optimizer: AgentCredentials;
  /** The audit's token records as the SOC's collector stored them: kind, reason and jti. */
  const tokenRecords: { kind: string; reason: string; jti: string }[] = [];
  const recorded = async (jwt: string) => {
    await lab.waitShipped();
    const jti = decodeJwt(jwt).jti;
    return tokenRecords.filter((r) => r.jti === jti).map((r) => `${r.kind} ${r.reason}`);
  };

  /** What the agent API answered: 'accepted' or the reason code. */
  const viaAgentApi = async (jwt: string): Promise<string> => {
    const r = await putToken(lab.gateway.agentApi.host, lab.gateway.agentApi.port, optimizer, jwt);
    return r.status === 200 ? 'accepted' : String((r.body as { reason?: string }).reason);
  };
  /** What the MCP front answered over mutual TLS: 'accepted' or the reason code of its challenge. */
  const viaMcp = async (jwt: string): Promise<string> => {
    const { fetch: f, dispatcher } = tlsFetch({ ca: optimizer.ca, cert: optimizer.cert, key: optimizer.key, token: jwt });
    try {
      const r = await f(lab.gateway.mcp!.resource, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: INITIALIZE });
      await r.text();
      if (r.status === 200) return 'accepted';
      return /error_description="([A-Z_]+):/.exec(r.headers.get('www-authenticate') ?? '')?.[1] ?? `HTTP ${r.status}`;
    } finally {
      await dispatcher.close();
    }
  };
  /** The same kind of token for each front: the gateway's audience, or the MCP resource's. */
  const tokens = async (t: LabTokenOptions = {}) => ({
    agentApi: await lab.token('optimizer', { now: clock.now(), ...t }),
    mcp: await lab.mcpToken('optimizer', { bound: true, now: clock.now(), ...t }),
  });
  const revoke = async (jwt: string) => {
    const api = lab.gateway.operatorApi!;
    const r = await callOperatorApi({ api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken({ now: clock.now() }), ca: optimizer.ca }, 'POST', 'v1/revocations', {
      jti: decodeJwt(jwt).jti, reason: 'test: token leaked',
    });
    expect(r.status).toBe(201);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-token-fronts-'));
    clock = new ManualClock(Date.now());
    lab = await startLab({ stateDir: dir, gatewayClock: clock });
    optimizer = await lab.credentials('optimizer');
    lab.collector.on('record', (_gw: string, record: { token?: { kind: string; reason: string; subject?: { jti?: string } } | null }) => {
      if (record.token) tokenRecords.push({ kind: record.token.kind, reason: record.token.reason, jti: record.token.subject?.jti ?? '' });
    });
  }, 60_000);

  afterAll(async () => {
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Each case's tokens are issued after the previous case's, past any leeway.
  beforeEach(() => clock.advance(120_000));

  it('accepts a valid token on both, and again when it is presented again', async () => {
    const t = await tokens();
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['accepted', 'accepted']);
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['accepted', 'accepted']);
    // A registration is recorded each time (an agent re-PUTs deliberately); a bearer token riding on
    // every request is recorded when first seen, not once per request.
    expect(await recorded(t.agentApi)).toEqual(['accepted ALLOWED', 'accepted ALLOWED']);
    expect(await recorded(t.mcp)).toEqual(['accepted ALLOWED']);
  });

  it('refuses a token revoked before it was first presented with TOKEN_REVOKED on both', async () => {
    const t = await tokens();
    await revoke(t.agentApi);
    await revoke(t.mcp);
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['TOKEN_REVOKED', 'TOKEN_REVOKED']);
    // Never on record as accepted: the audit says what the gateway did.
    expect(await recorded(t.agentApi)).toEqual(['rejected TOKEN_REVOKED']);
    expect(await recorded(t.mcp)).toEqual(['rejected TOKEN_REVOKED']);
  });

  it('refuses a token revoked after it was accepted with TOKEN_REVOKED on both', async () => {
    const t = await tokens();
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['accepted', 'accepted']);
    await revoke(t.agentApi);
    await revoke(t.mcp);
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['TOKEN_REVOKED', 'TOKEN_REVOKED']);
  });

  it('refuses a token past its exp but within the clock leeway with TOKEN_EXPIRED on both', async () => {
    const t = await tokens({ ttlSec: 60 });
    clock.advance(61_000);
    expect([await viaAgentApi(t.agentApi), await viaMcp(t.mcp)]).toEqual(['TOKEN_EXPIRED', 'TOKEN_EXPIRED']);
  });

  it('refuses a token that names another workload with the same reason on both', async () => {
    const other = {
      agentApi: await lab.token('planner', { now: clock.now() }),
      mcp: await lab.mcpToken('planner', { bound: true, now: clock.now() }),
    };
    const answers = [await viaAgentApi(other.agentApi), await viaMcp(other.mcp)];
    expect(answers[0]).toMatch(/^TOKEN_/);
    expect(answers[1]).toBe(answers[0]);
  });
});
