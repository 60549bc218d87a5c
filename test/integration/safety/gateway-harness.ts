// Shared by the gateway-* safety suites: what an agent and a SOC analyst see of one command through
// the real gateway (the Modbus exception the agent got, the decision record the collector stored).
import type { Lab } from '../../../src/cli/demo/lab.js';
import { exceptionCodeOf } from '../../../src/cli/demo/agent.js';

/** The Modbus exception code a command was answered with; throws when it succeeded. */
export async function modbusError(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    const code = exceptionCodeOf(err);
    if (code === undefined) throw err;
    return code;
  }
  throw new Error('expected a Modbus exception, the command succeeded');
}

export interface SeenDecision {
  effect: 'allow' | 'deny';
  reason: string;
  ruleId: string;
  interlockId: string;
  approvalId: string;
  protocol: string;
  points: string[];
}

interface RecordShape {
  decision?: {
    command?: { protocol?: string; points?: string[] } | null;
    decision?: { effect?: unknown; reason?: string; ruleId?: string; interlockId?: string; approvalId?: string } | null;
  } | null;
}

/**
 * Decision records as the SOC collector receives them, in order. Subscribe before sending the
 * commands; next() waits (an event, not a sleep) for the record of the command just sent.
 */
export function decisionRecords(lab: Lab): { next(): Promise<SeenDecision>; drain(): SeenDecision[] } {
  const queue: SeenDecision[] = [];
  const waiters: Array<(d: SeenDecision) => void> = [];
  lab.collector.on('record', (_gatewayId: string, record: RecordShape) => {
    const d = record.decision?.decision;
    if (!d) return;
    const seen: SeenDecision = {
      effect: d.effect === 1 || d.effect === 'ALLOW' ? 'allow' : 'deny',
      reason: d.reason ?? '',
      ruleId: d.ruleId ?? '',
      interlockId: d.interlockId ?? '',
      approvalId: d.approvalId ?? '',
      protocol: record.decision?.command?.protocol ?? '',
      points: record.decision?.command?.points ?? [],
    };
    const w = waiters.shift();
    if (w) w(seen);
    else queue.push(seen);
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
    drain: () => queue.splice(0, queue.length),
  };
}

/** Forces the simulated tank level and makes the gateway read it now. */
export async function setTankLevel(lab: Lab, percent: number): Promise<void> {
  lab.sim.write('tank1.level', percent);
  const image = lab.gateway.processImage();
  if (image === undefined) throw new Error('the gateway has no process image (no interlocks active)');
  // Twice: a poll already in flight may have read the level before the change.
  await image.pollNow();
  await image.pollNow();
}
