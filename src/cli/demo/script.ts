// The scripted agent of `plantgate demo`: allowed reads and writes, and the denials a plant
// engineer should see (no token, wrong register, value out of bounds, a read-only agent writing,
// an expired token, a forged token), each with the gateway's decision, reason and Modbus answer
// as the SOC stream recorded them.
import type { Lab } from './lab.js';
import { callOperatorApi } from '../commands/approvals.js';
import { connectModbusAgent, exceptionCodeOf, putToken, type ModbusAgent } from './agent.js';

export interface StepResult {
  step: string;
  agent: string;
  command: string;
  /** What the agent got back: a value, "ok", "exception 0x02", or the HTTP answer. */
  answer: string;
  decision: string;
  reason: string;
  expected: string;
  ok: boolean;
}

type Decided = { effect: string; reason: string; ruleId: string };

/** Waits until the collector has the decision record for the command just sent. */
export function decisionsFrom(lab: Lab): { next(): Promise<Decided> } {
  const queue: Decided[] = [];
  const waiters: Array<(d: Decided) => void> = [];
  lab.collector.on('record', (_gatewayId: string, record: { decision?: { decision?: { effect?: unknown; reason?: string; ruleId?: string } } | null }) => {
    const d = record.decision?.decision;
    if (!d) return;
    const decided = { effect: d.effect === 1 || d.effect === 'ALLOW' ? 'allow' : 'deny', reason: d.reason ?? '', ruleId: d.ruleId ?? '' };
    const w = waiters.shift();
    if (w) w(decided);
    else queue.push(decided);
  });
  return {
    next: () => {
      const d = queue.shift();
      if (d) return Promise.resolve(d);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the collector received no decision record within 5 s')), 5000);
        waiters.push((x) => {
          clearTimeout(timer);
          resolve(x);
        });
      });
    },
  };
}

/** Where the demo's operator reaches the operator API, with a fresh operator token. */
async function operatorTarget(lab: Lab): Promise<{ api: string; token: string; ca: Buffer }> {
  const api = lab.gateway.operatorApi;
  if (api === undefined) throw new Error('the demo gateway has no operator API');
  return { api: `https://${api.host}:${api.port}/`, token: await lab.operatorToken(), ca: (await lab.credentials('planner')).ca };
}

/** The demo's operator approves a pending request on the operator API (no id: nothing to approve, a failed step). */
export async function operatorApproves(lab: Lab, id: string | undefined, step: string, reason: string): Promise<StepResult> {
  const approved = id === undefined ? { status: 0, body: {} as Record<string, unknown> } : await callOperatorApi(await operatorTarget(lab), 'POST', `v1/approvals/${id}/approve`, { reason });
  const ok = approved.status === 200;
  return {
    step,
    agent: 'operator',
    command: `approve ${id?.slice(0, 8) ?? '(none)'}`,
    answer: `HTTP ${approved.status}`,
    decision: ok ? 'grant' : 'none',
    reason: ok ? 'APPROVED' : String(approved.body.reason ?? ''),
    expected: 'APPROVED',
    ok,
  };
}

const hex = (code: number) => `exception 0x${code.toString(16).padStart(2, '0')}`;

export async function runScript(lab: Lab, print: (r: StepResult) => void): Promise<StepResult[]> {
  const results: StepResult[] = [];
  const decisions = decisionsFrom(lab);
  const { host, port } = lab.gateway.modbus;
  const api = lab.gateway.agentApi;
  const optimizerCreds = await lab.credentials('optimizer');
  const reporterCreds = await lab.credentials('reporter');

  const modbusStep = async (
    agent: ModbusAgent,
    agentName: string,
    step: string,
    command: string,
    expected: string,
    run: (a: ModbusAgent) => Promise<string>,
  ) => {
    let answer: string;
    try {
      answer = await run(agent);
    } catch (err) {
      const code = exceptionCodeOf(err);
      answer = code === undefined ? `error: ${(err as Error).message}` : hex(code);
    }
    const d = await decisions.next();
    const r: StepResult = { step, agent: agentName, command, answer, decision: d.effect, reason: d.reason, expected, ok: d.reason === expected };
    results.push(r);
    print(r);
  };

  /** An operator's call on the operator API, shown as a step ('FROZEN', 'UNFROZEN' when it did what it should). */
  const operatorStep = (step: string, command: string, status: number, want: number, expected: string, body: Record<string, unknown>) => {
    const ok = status === want;
    const r: StepResult = { step, agent: 'operator', command, answer: `HTTP ${status}`, decision: ok ? 'done' : 'none', reason: ok ? expected : String(body.reason ?? ''), expected, ok };
    results.push(r);
    print(r);
  };

  const optimizer = await connectModbusAgent(host, port, optimizerCreds);
  const reporter = await connectModbusAgent(host, port, reporterCreds);
  try {
    await modbusStep(optimizer, 'optimizer', 'read before putting a token', 'FC4 read tank1.level', 'NO_TOKEN', async (a) => {
      const r = await a.client.readInputRegisters(0, 1);
      return `${r.data[0]}`;
    });

    const put = await putToken(api.host, api.port, optimizerCreds, await lab.token('optimizer'));
    if (put.status !== 200) throw new Error(`the gateway refused the optimizer's token: ${put.status} ${JSON.stringify(put.body)}`);

    await modbusStep(optimizer, 'optimizer', 'read the tank level', 'FC4 read tank1.level', 'ALLOWED', async (a) => {
      const r = await a.client.readInputRegisters(0, 1);
      return `tank1.level = ${(r.data[0] / 10).toFixed(1)} %`;
    });
    await modbusStep(optimizer, 'optimizer', 'raise the setpoint within bounds', 'FC6 tank1.setpoint := 60.0 %', 'ALLOWED', async (a) => {
      await a.client.writeRegister(0, 600);
      return 'ok';
    });
    await modbusStep(optimizer, 'optimizer', 'setpoint outside the bounds (20–80 %)', 'FC6 tank1.setpoint := 95.0 %', 'VALUE_OUT_OF_BOUNDS', async (a) => {
      await a.client.writeRegister(0, 950);
      return 'ok';
    });
    await modbusStep(optimizer, 'optimizer', 'write a register no rule names', 'FC6 holding[10] := 1', 'NO_MATCHING_RULE', async (a) => {
      await a.client.writeRegister(10, 1);
      return 'ok';
    });
    // The safety interlock: the gateway polls the tank level itself and refuses to start the
    // feed pump on a nearly full tank, whatever the policy allows.
    const setLevel = async (percent: number) => {
      lab.sim.write('tank1.level', percent);
      const image = lab.gateway.processImage();
      // Twice: a poll already in flight may have read the level before the change.
      await image?.pollNow();
      await image?.pollNow();
    };
    await setLevel(90);
    await modbusStep(optimizer, 'optimizer', 'start the pump on a 90 % tank', 'FC5 pump1.run := on', 'INTERLOCK', async (a) => {
      await a.client.writeCoil(0, true);
      return 'ok';
    });
    await setLevel(50);
    await modbusStep(optimizer, 'optimizer', 'start the pump on a 50 % tank', 'FC5 pump1.run := on', 'ALLOWED', async (a) => {
      await a.client.writeCoil(0, true);
      return 'ok';
    });

    // Human approval: the planner may open the drain valve only with an operator's approval,
    // bound to this exact command and used once.
    const plannerCreds = await lab.credentials('planner');
    const putP = await putToken(api.host, api.port, plannerCreds, await lab.token('planner'));
    if (putP.status !== 200) throw new Error(`the gateway refused the planner's token: ${putP.status} ${JSON.stringify(putP.body)}`);
    const planner = await connectModbusAgent(host, port, plannerCreds);
    try {
      await modbusStep(planner, 'planner', 'open the drain valve', 'FC5 valve1.open := on', 'APPROVAL_REQUIRED', async (a) => {
        await a.client.writeCoil(1, true);
        return 'ok';
      });
      const pending = await callOperatorApi(await operatorTarget(lab), 'GET', 'v1/approvals?status=pending');
      const list = (pending.body.approvals ?? []) as Array<{ id: string }>;
      const r = await operatorApproves(lab, list[0]?.id, 'operator approves', 'drain for inspection, checked on site');
      results.push(r);
      print(r);
      await modbusStep(planner, 'planner', 'retry the identical command', 'FC5 valve1.open := on', 'ALLOWED', async (a) => {
        await a.client.writeCoil(1, true);
        return 'ok';
      });
      await modbusStep(planner, 'planner', 'a second retry (grant used)', 'FC5 valve1.open := on', 'APPROVAL_REQUIRED', async (a) => {
        await a.client.writeCoil(1, true);
        return 'ok';
      });
    } finally {
      await planner.close();
    }

    // Emergency freeze: an operator stops every write to plc1 at once; the optimizer's next write on
    // its open connection is refused whatever its token and the rules say, until an operator lifts it.
    const frozen = await callOperatorApi(await operatorTarget(lab), 'POST', 'v1/freezes', { asset: 'plc1', reason: 'demo: leak reported on tank 1', expires_in_sec: 3600 });
    const freezeId = String((frozen.body.freeze as { id?: string } | undefined)?.id ?? '');
    operatorStep('operator freezes plc1 (emergency)', 'freeze --asset plc1', frozen.status, 201, 'FROZEN', frozen.body);
    await modbusStep(optimizer, 'optimizer', 'write during the freeze', 'FC6 tank1.setpoint := 55.0 %', 'EMERGENCY_FREEZE', async (a) => {
      await a.client.writeRegister(0, 550);
      return 'ok';
    });
    const lifted = await callOperatorApi(await operatorTarget(lab), 'POST', `v1/freezes/${encodeURIComponent(freezeId)}/unfreeze`, { reason: 'demo: leak fixed' });
    operatorStep('operator lifts the freeze', `unfreeze ${freezeId.slice(0, 10)}`, lifted.status, 200, 'UNFROZEN', lifted.body);
    await modbusStep(optimizer, 'optimizer', 'the same write after the freeze', 'FC6 tank1.setpoint := 55.0 %', 'ALLOWED', async (a) => {
      await a.client.writeRegister(0, 550);
      return 'ok';
    });

    // A read-only agent, and a token that runs out while the agent is connected.
    const shortTtl = 2;
    const putR = await putToken(api.host, api.port, reporterCreds, await lab.token('reporter', { ttlSec: shortTtl }));
    if (putR.status !== 200) throw new Error(`the gateway refused the reporter's token: ${putR.status} ${JSON.stringify(putR.body)}`);
    await modbusStep(reporter, 'reporter', 'read-only agent reads the alarms', 'FC2 read discrete[0..2]', 'ALLOWED', async (a) => {
      const r = await a.client.readDiscreteInputs(0, 3);
      return `running=${r.data[0]} high=${r.data[1]} low=${r.data[2]}`;
    });
    await modbusStep(reporter, 'reporter', 'read-only agent tries to stop the pump', 'FC5 pump1.run := off', 'NO_MATCHING_RULE', async (a) => {
      await a.client.writeCoil(0, false);
      return 'ok';
    });
    await new Promise((r) => setTimeout(r, shortTtl * 1000 + 200));
    await modbusStep(reporter, 'reporter', `its ${shortTtl} s token has expired`, 'FC4 read tank1.level', 'TOKEN_EXPIRED', async (a) => {
      const r = await a.client.readInputRegisters(0, 1);
      return `${r.data[0]}`;
    });

    // A forged token: valid shape, signature of another key.
    const good = await lab.token('reporter');
    const [h, p] = good.split('.');
    const forged = `${h}.${p}.${Buffer.alloc(64, 7).toString('base64url')}`;
    const putF = await putToken(api.host, api.port, reporterCreds, forged);
    const r: StepResult = {
      step: 'put a forged token',
      agent: 'reporter',
      command: 'PUT /v1/token',
      answer: `HTTP ${putF.status}`,
      decision: 'deny',
      reason: putF.body.reason ?? '',
      expected: 'TOKEN_INVALID',
      ok: putF.body.reason === 'TOKEN_INVALID',
    };
    results.push(r);
    print(r);
  } finally {
    await optimizer.close();
    await reporter.close();
  }
  return results;
}
