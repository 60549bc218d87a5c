// Modbus assets described by the plant/asset format (docs/policy.md, "Third-party Modbus
// equipment"): read-only addresses of the plant file refuse writes NOT_WRITABLE before any rule, a
// string point reaches policy and the audit as its text, and an asset without points_from is
// governed by range-only rules. Commands are built from raw request PDUs as the listener builds them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { decodeRequest } from '../../../protocols/modbus/codec.js';
import type { Command } from '../../../src/core/command.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { NOW_MS, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const JWKS = path.resolve(import.meta.dirname, '../../../fixtures/keys/dev-issuer.jwks.json');
const WORKLOAD = 'spiffe://plant.example/agent/writer';
const SUBJECT = subject({ workloadId: WORKLOAD, scopes: ['read', 'write'] });

const PLANT = `plant: line
plcs:
  - id: plc1
    unit_id: 1
    registers:
      - holding[0..9]
      - holding[10..19] read-only
      - coil[0..7] read-only
    points:
      tag: { table: holding, address: 0, type: string, length: 6 }
      limit: { table: holding, address: 21, type: uint16, read_only: true }
`;

function bundle(asset: string, rules: string): string {
  return [
    'bundle: { name: assets, audience: plantgate:test, valid_for: 1d }',
    'limits: { max_token_ttl: 15m }',
    `issuers: [{ iss: https://issuer.test, jwks_file: ${JWKS} }]`,
    `assets: [${asset}]`,
    'rules:',
    rules,
  ].join('\n');
}

describe('Modbus assets from the plant/asset format', () => {
  let dir: string;
  let described: PolicyEngine;
  let rangeOnly: PolicyEngine;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-assets-'));
    await writeFile(path.join(dir, 'plant.yaml'), PLANT);
    const everything = `  - { id: writes-everything, subject: { workload: ${WORKLOAD} }, asset: plc1, operations: [read, write], ranges: ["holding[0..65535]", "coil[0..65535]"] }`;
    await writeFile(path.join(dir, 'described.yaml'), bundle(`{ id: plc1, zone: z, criticality: high, protocol: modbus, unit_id: 1, points_from: ${path.join(dir, 'plant.yaml')} }`, everything));
    await writeFile(
      path.join(dir, 'range-only.yaml'),
      bundle('{ id: plc1, zone: z, criticality: high, protocol: modbus, unit_id: 1 }', `  - { id: reads-32, subject: { workload: ${WORKLOAD} }, asset: plc1, operations: [read], ranges: ["holding[0..31]"] }`),
    );
    described = PolicyEngine.fromPayload(await compileSources(path.join(dir, 'described.yaml'), { now: NOW_MS, revision: 1 }));
    rangeOnly = PolicyEngine.fromPayload(await compileSources(path.join(dir, 'range-only.yaml'), { now: NOW_MS, revision: 1 }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function decide(engine: PolicyEngine, pdu: number[]): { effect: string; reason: string; cmd: Command } {
    const cmd = commandFromRequest('s', 1, decodeRequest(Buffer.from(pdu)));
    resolveModbus(engine, cmd, 1);
    const { effect, reason } = engine.decide(cmd, SUBJECT, NOW_MS);
    return { effect, reason, cmd };
  }

  it('refuses a write touching a read-only range or point NOT_WRITABLE although a rule allows it, and reads them', () => {
    expect(decide(described, [6, 0, 12, 0, 1])).toMatchObject({ effect: 'deny', reason: 'NOT_WRITABLE' });
    expect(decide(described, [16, 0, 8, 0, 3, 6, 0, 1, 0, 2, 0, 3])).toMatchObject({ effect: 'deny', reason: 'NOT_WRITABLE' }); // 8..10
    expect(decide(described, [6, 0, 21, 0, 1])).toMatchObject({ effect: 'deny', reason: 'NOT_WRITABLE' }); // read_only point
    expect(decide(described, [5, 0, 3, 0xff, 0])).toMatchObject({ effect: 'deny', reason: 'NOT_WRITABLE' }); // read-only coils
    expect(decide(described, [23, 0, 10, 0, 2, 0, 9, 0, 1, 2, 0, 7])).toMatchObject({ effect: 'allow' }); // reads 10..11, writes 9
    expect(decide(described, [22, 0, 15, 0xff, 0, 0, 1])).toMatchObject({ effect: 'deny', reason: 'NOT_WRITABLE' });
    expect(decide(described, [16, 0, 7, 0, 3, 6, 0, 1, 0, 2, 0, 3])).toMatchObject({ effect: 'allow' }); // 7..9
    expect(decide(described, [3, 0, 10, 0, 12])).toMatchObject({ effect: 'allow' });
  });

  it('a string point written whole reaches policy and the audit as its text', () => {
    const text = Buffer.from('PUMP-2', 'latin1');
    const { effect, cmd } = decide(described, [16, 0, 0, 0, 3, 6, ...text]);
    expect(effect).toBe('allow');
    expect(cmd.typedValues).toEqual({ tag: 'PUMP-2' });
  });

  it('an asset without points_from is governed by range-only rules', () => {
    expect(decide(rangeOnly, [3, 0, 0, 0, 32])).toMatchObject({ effect: 'allow', reason: 'ALLOWED' });
    expect(decide(rangeOnly, [3, 0, 31, 0, 2])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(decide(rangeOnly, [6, 0, 0, 0, 1])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });
});
