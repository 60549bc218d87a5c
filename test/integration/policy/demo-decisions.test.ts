// The demo rules as the gateway runs them: compiled from rules/demo, signed, verified, loaded.
import { beforeAll, describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair } from 'jose';
import type { Command, Subject, Target } from '../../../src/core/command.js';
import { signBundle, verifyBundle } from '../../../src/policy/bundle.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { resolveModbus } from '../../resolve.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
let engine: PolicyEngine;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const payload = await compileSources('rules/demo/bundle.yaml', { now: NOW, revision: 1 });
  const jws = await signBundle(payload, await exportJWK(privateKey), 'policy-1');
  engine = PolicyEngine.fromPayload(await verifyBundle(jws, [{ kid: 'policy-1', publicJwk: await exportJWK(publicKey) }], { now: NOW }));
});

function agent(name: string, scopes: string[]): Subject {
  return {
    workloadId: `spiffe://plant.example/agent/${name}`,
    owner: 'ops',
    taskId: 't',
    taskPurpose: 'demo',
    jti: 'j',
    roles: [],
    scopes,
    assurance: 'mtls+token',
    issuer: 'https://issuer.dev.plantgate.local',
    expiresAtMs: NOW + 600_000,
    issuedAtMs: NOW,
  };
}

function cmd(operation: 'read' | 'write', functionCode: number, target: Target, rawValues?: number[]): Command {
  const c: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation, functionCode, targets: [target], points: [] };
  if (rawValues) c.rawValues = rawValues;
  resolveModbus(engine, c, 1);
  return c;
}

describe('the demo bundle', () => {
  const optimizer = agent('optimizer', ['read', 'write']);
  const reporter = agent('reporter', ['read']);

  it('lets the reporter read the tank level and nothing else', () => {
    expect(engine.decide(cmd('read', 4, { table: 'input', address: 0, count: 1 }), reporter, NOW).ruleId).toBe('agents-read-plant');
    expect(engine.decide(cmd('write', 6, { table: 'holding', address: 0, count: 1 }, [500]), reporter, NOW).reason).toBe('NO_MATCHING_RULE');
  });

  it('lets the optimizer set the level setpoint between 20 % and 80 %', () => {
    expect(engine.decide(cmd('write', 6, { table: 'holding', address: 0, count: 1 }, [650]), optimizer, NOW)).toMatchObject({ effect: 'allow', ruleId: 'optimizer-setpoint', durable: true });
    expect(engine.decide(cmd('write', 6, { table: 'holding', address: 0, count: 1 }, [950]), optimizer, NOW)).toMatchObject({ reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint' });
  });

  it('lets the optimizer run the pump but not switch off auto control', () => {
    expect(engine.decide(cmd('write', 5, { table: 'coil', address: 0, count: 1 }, [0xff00]), optimizer, NOW).ruleId).toBe('optimizer-pump');
    expect(engine.decide(cmd('write', 5, { table: 'coil', address: 2, count: 1 }, [0]), optimizer, NOW).reason).toBe('NO_MATCHING_RULE');
  });
});
