// The policy the throughput bench's gateway columns run with (test/bench/extra-rules.ts): the bench
// bundle plus 1,000 generated rules. The bench is only honest if the extra rules are real work for
// the engine (they compile and are enforced) yet never decide the bench agents' commands.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command, Subject, Target } from '../../../src/core/command.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { writeBenchRules } from '../../bench/extra-rules.js';
import { resolveModbus } from '../../resolve.js';

const NOW_MS = Date.UTC(2026, 5, 10, 12, 0); // a Wednesday noon: outside every generated window

function subject(workloadId: string, assurance: Subject['assurance'] = 'mtls+token'): Subject {
  return {
    workloadId, owner: 'alice@plant.example', taskId: 't', taskPurpose: 'bench', jti: 'j', roles: [], scopes: ['read', 'write'],
    assurance, issuer: 'https://issuer.dev.plantgate.local', expiresAtMs: NOW_MS + 600_000, issuedAtMs: NOW_MS,
  };
}

describe('the throughput bench policy (bench bundle + 1,000 generated rules)', () => {
  let dir: string;
  let engine: PolicyEngine;
  let ruleCount: number;

  const command = (unitId: number, operation: 'read' | 'write', fc: number, target: Target, rawValues?: number[]): Command => {
    const cmd: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation, functionCode: fc, targets: [target], points: [] };
    if (rawValues) cmd.rawValues = rawValues;
    resolveModbus(engine, cmd, unitId);
    return cmd;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-bench-rules-'));
    const payload = await compileSources(await writeBenchRules(dir, 1000), { now: NOW_MS, revision: 1 });
    ruleCount = payload.rules.length;
    engine = PolicyEngine.fromPayload(payload);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('compiles into one bundle with the bench rules and the 1,000 extra ones', () => {
    expect(ruleCount).toBe(1002);
  });

  it("still decides the bench agents' reads and writes of 10 registers by the bench bundle's rules", () => {
    for (const workload of ['spiffe://plant.example/agent/optimizer', 'spiffe://plant.example/agent/bench-legacy']) {
      const assurance = workload.endsWith('bench-legacy') ? 'static-ip+token' : 'mtls+token';
      const read = engine.decide(command(1, 'read', 3, { table: 'holding', address: 0, count: 10 }), subject(workload, assurance), NOW_MS);
      expect(read).toMatchObject({ effect: 'allow', ruleId: 'agents-read-block' });
      const write = engine.decide(command(1, 'write', 16, { table: 'holding', address: 0, count: 10 }, Array(10).fill(257)), subject(workload, assurance), NOW_MS);
      expect(write).toMatchObject({ effect: 'allow', ruleId: 'agents-write-block', durable: true });
    }
  });

  it('lets a workload of another line read its own PLC and nothing of the bench PLC it has no rule for', () => {
    // extra-0001: line2/agent-1 reads valve.position and temp.setpoint of hx-line1 (unit 3), no window.
    const lineAgent = subject('spiffe://plant.example/line2/agent-1');
    expect(engine.decide(command(3, 'read', 4, { table: 'input', address: 1, count: 1 }), lineAgent, NOW_MS)).toMatchObject({ effect: 'allow', ruleId: 'extra-0001' });
    expect(engine.decide(command(1, 'read', 3, { table: 'holding', address: 0, count: 10 }), lineAgent, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });
});
