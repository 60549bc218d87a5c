// The MCP part of `plantgate demo`: an LLM agent's view of the plant through the gateway's MCP front
// (the official MCP SDK's client over HTTPS with a bearer token). It reads a live value, is refused a
// setpoint outside its bounds and a pump start the overfill interlock forbids, and opens the drain
// valve only after an operator approved it on the operator API — each with the decision the SOC
// stream recorded and the sentence the agent was given.
import type { Lab } from './lab.js';
import { connectMcpAgent, type McpAgent } from './mcp-agent.js';
import { decisionsFrom, operatorApproves, type StepResult } from './script.js';

interface ToolAnswer {
  content?: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** What the agent read, in short: the value, 'written', or isError for a refusal (its text follows). */
function answerOf(r: ToolAnswer): string {
  if (r.isError) return 'isError';
  const text = r.content?.[0]?.text ?? '';
  return text.includes('confirmed the write') ? 'written' : (text.split('\n')[0] ?? '').slice(0, 24);
}

export async function runMcpScript(lab: Lab, print: (r: StepResult) => void, explain: (text: string) => void = () => undefined): Promise<StepResult[]> {
  const mcp = lab.gateway.mcp;
  if (mcp === undefined) throw new Error('the demo gateway has no MCP front');
  const results: StepResult[] = [];
  const decisions = decisionsFrom(lab);
  const { ca } = await lab.credentials('optimizer');
  const open: McpAgent[] = [];
  const connect = async (agent: 'optimizer' | 'planner'): Promise<McpAgent> => {
    const a = await connectMcpAgent({ url: mcp.resource, ca, token: await lab.mcpToken(agent), name: `${agent}-llm`, version: '1.0.0' });
    open.push(a);
    return a;
  };
  const step = async (a: McpAgent, agent: string, step: string, tool: string, args: Record<string, unknown>, expected: string): Promise<ToolAnswer> => {
    const r = (await a.client.callTool({ name: tool, arguments: args })) as ToolAnswer;
    const d = await decisions.next();
    const shown = Object.values(args).map((v) => (Array.isArray(v) ? v.join(',') : String(v))).join(' ');
    const result: StepResult = { step, agent, command: `MCP ${tool} ${shown}`, answer: answerOf(r), decision: d.effect, reason: d.reason, expected, ok: d.reason === expected };
    results.push(result);
    print(result);
    if (r.isError) explain(r.content?.[0]?.text ?? '');
    return r;
  };
  const setLevel = async (percent: number) => {
    lab.sim.write('tank1.level', percent);
    const image = lab.gateway.processImage();
    // Twice: a poll already in flight may have read the level before the change.
    await image?.pollNow();
    await image?.pollNow();
  };

  try {
    const optimizer = await connect('optimizer');
    await step(optimizer, 'optimizer', 'LLM reads the tank level', 'read_plc1', { points: ['tank1.level'] }, 'ALLOWED');
    await step(optimizer, 'optimizer', 'LLM asks for a setpoint out of bounds', 'write_plc1_tank1_setpoint', { value: 95 }, 'VALUE_OUT_OF_BOUNDS');
    await setLevel(90);
    await step(optimizer, 'optimizer', 'LLM starts the pump on a 90 % tank', 'write_plc1_pump1_run', { value: true }, 'INTERLOCK');
    await setLevel(50);

    const planner = await connect('planner');
    const first = await step(planner, 'planner', 'LLM opens the drain valve', 'write_plc1_valve1_open', { value: true }, 'APPROVAL_REQUIRED');
    const approval = (first.structuredContent?.approval as { id?: string } | undefined)?.id;
    const r = await operatorApproves(lab, approval, 'operator approves (operator API)', 'drain requested by the planning assistant, checked on site');
    results.push(r);
    print(r);
    await step(planner, 'planner', 'LLM retries the same call', 'write_plc1_valve1_open', { value: true }, 'ALLOWED');
  } finally {
    for (const a of open) await a.close();
  }
  return results;
}
