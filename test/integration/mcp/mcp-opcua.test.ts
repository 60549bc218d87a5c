// MCP tool calls on an OPC UA asset through the real gateway: the lab with the OPC UA front and its
// upstream session to the simulator's OPC UA face (asset plc1-ua). The MCP front runs the tool calls
// on that same upstream session, after the same pipeline; the simulator's log of served OPC UA
// requests says what reached the PLC.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLab, type Lab } from '../../../src/cli/demo/lab.js';
import { connectMcpAgent, type McpAgent } from '../../../src/cli/demo/mcp-agent.js';

interface ToolResult {
  content: { type: string; text: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

describe('MCP tool calls on an OPC UA asset through the real gateway', () => {
  let dir: string;
  let lab: Lab;
  let agent: McpAgent;
  const call = async (name: string, args: Record<string, unknown>): Promise<ToolResult> => (await agent.client.callTool({ name, arguments: args })) as unknown as ToolResult;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-mcp-ua-'));
    lab = await startLab({ stateDir: dir, opcua: true });
    const { ca } = await lab.credentials('optimizer');
    agent = await connectMcpAgent({ url: lab.gateway.mcp!.resource, ca, token: await lab.mcpToken('optimizer', { scope: ['read', 'write', 'call'] }) });
  }, 90_000);

  afterAll(async () => {
    await agent?.close();
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists read, write and method tools for the OPC UA asset with its rules\' bounds', async () => {
    const { tools } = await agent.client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    expect(byName.get('write_plc1-ua_tank1_setpoint')?.inputSchema.properties?.value).toMatchObject({ minimum: 20, maximum: 80 });
    // pump1.start's speed argument is bounded by the asset (0..1800) in rules/demo/bundle.yaml.
    expect(byName.get('call_plc1-ua_pump1_start')?.inputSchema.properties?.speed).toMatchObject({ type: 'number', minimum: 0, maximum: 1800 });
    expect(byName.get('call_plc1-ua_pump1_start')?.annotations).toMatchObject({ destructiveHint: true, idempotentHint: false });
  });

  it('reads a live value on the asset\'s OPC UA upstream session', async () => {
    lab.sim.write('tank1.level', 37.5);
    const r = await call('read_plc1-ua', { points: ['tank1.level'] });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ values: { 'tank1.level': { value: 37.5 } } });
  });

  it('writes an allowed setpoint over OPC UA, and refuses one out of bounds before the PLC sees it', async () => {
    const before = lab.opcua!.served().length;
    const ok = await call('write_plc1-ua_tank1_setpoint', { value: 55 });
    expect(ok.isError).toBeFalsy();
    expect(lab.sim.read('tank1.setpoint')).toBe(55);
    const refused = await call('write_plc1-ua_tank1_setpoint', { value: 99 });
    expect(refused.structuredContent).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS' });
    const served = lab.opcua!.served().slice(before);
    expect(served.filter((s) => s.service === 'Write').map((s) => s.values)).toEqual([[55]]);
  });

  it('calls a method with its bounded argument, and refuses an argument out of bounds', async () => {
    const before = lab.opcua!.served().length;
    const bad = await call('call_plc1-ua_pump1_start', { speed: 5000 });
    expect(bad.structuredContent).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS' });
    lab.sim.write('tank1.level', 40);
    const ok = await call('call_plc1-ua_pump1_stop', {});
    expect(ok.isError).toBeFalsy();
    const calls = lab.opcua!.served().slice(before).filter((s) => s.service === 'Call');
    expect(calls.map((c) => c.nodeId)).toEqual([expect.stringContaining('pump1.stop')]);
  });
});
