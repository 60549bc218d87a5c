// Rules for Modbus function codes without register addresses (docs/policy.md, "Diagnostics and
// device identification"): commands built from raw request PDUs exactly as the listener builds them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandFromRequest } from '../../../protocols/modbus/command.js';
import { decodeRequest } from '../../../protocols/modbus/codec.js';
import { SourceErrors } from '../../../src/core/errors.js';
import { commandDigest } from '../../../src/approvals/digest.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileSources } from '../../../src/policy/sources.js';
import { NOW_MS, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const PLANT = path.resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');
const JWKS = path.resolve(import.meta.dirname, '../../../fixtures/keys/dev-issuer.jwks.json');

function bundle(rules: string): string {
  return [
    'bundle: { name: diag, audience: plantgate:test, valid_for: 1d }',
    'limits: { max_token_ttl: 15m }',
    `issuers: [{ iss: https://issuer.test, jwks_file: ${JWKS} }]`,
    `assets: [{ id: plc1, zone: z, criticality: high, protocol: modbus, unit_id: 1, points_from: ${PLANT} }]`,
    'rules:',
    rules,
  ].join('\n');
}

const SUBJECT = subject({ workloadId: 'spiffe://plant.example/agent/inspector', scopes: ['diagnostic', 'read'] });
const RULES = `
  - id: identify
    subject: { workload: spiffe://plant.example/agent/inspector }
    asset: plc1
    operations: [diagnostic]
    function_codes: [43]
    mei_types: [14]
    object_ids: [0..2, 0x80]
  - id: echo-and-counters
    subject: { workload: spiffe://plant.example/agent/inspector }
    asset: plc1
    operations: [diagnostic]
    function_codes: [8, 17]
    sub_functions: [0, 0x0b..0x12]
  - id: everything-diagnostic-by-points
    subject: { workload: spiffe://plant.example/agent/inspector }
    asset: plc1
    operations: [diagnostic, read]
    points: ['*']`;

describe('rules for diagnostics and device identification', () => {
  let dir: string;
  let engine: PolicyEngine;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-diag-'));
    await writeFile(path.join(dir, 'bundle.yaml'), bundle(RULES));
    engine = PolicyEngine.fromPayload(await compileSources(path.join(dir, 'bundle.yaml'), { now: NOW_MS, revision: 1 }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function decide(pdu: number[]): { effect: string; reason: string; ruleId: string } {
    const cmd = commandFromRequest('s', 1, decodeRequest(Buffer.from(pdu)));
    resolveModbus(engine, cmd, 1);
    const { effect, reason, ruleId } = engine.decide(cmd, SUBJECT, NOW_MS);
    return { effect, reason, ruleId };
  }

  it('allows a basic device identification stream (FC 43/14, code 1 from object 0) by MEI type and object ids', () => {
    expect(decide([43, 14, 1, 0])).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'identify' });
    expect(decide([43, 14, 4, 0x80])).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'identify' });
  });

  it('denies a regular stream (objects 0..0x7F), one object outside the list, and MEI 13', () => {
    expect(decide([43, 14, 2, 0])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(decide([43, 14, 4, 0x05])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(decide([43, 13, 0, 0])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });

  it('allows FC 8 echo and counters by sub-function, never restart communications', () => {
    expect(decide([8, 0, 0, 0x12, 0x34])).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'echo-and-counters' });
    expect(decide([8, 0, 0x0e, 0, 0])).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'echo-and-counters' });
    expect(decide([8, 0, 0x01, 0, 0])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });

  it('covers a function code without selectors by naming it, and never by an operation alone', () => {
    expect(decide([17])).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'echo-and-counters' });
    // FC 7 and 11 are diagnostics too, and a rule allows diagnostics on every point: still denied.
    expect(decide([7])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
    expect(decide([11])).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE' });
  });

  it('gives an approval digest that tells sub-functions and function codes apart', () => {
    const digest = (pdu: number[]) => commandDigest(commandFromRequest('s', 1, decodeRequest(Buffer.from(pdu))));
    expect(digest([8, 0, 0x00, 0, 0])).not.toBe(digest([8, 0, 0x01, 0, 0]));
    expect(digest([7])).not.toBe(digest([17]));
    expect(digest([43, 14, 1, 0])).not.toBe(digest([43, 14, 2, 0]));
  });
});

describe('compiling diagnostic selectors', () => {
  async function problems(rules: string): Promise<string[]> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'plantgate-diag-'));
    try {
      await writeFile(path.join(dir, 'bundle.yaml'), bundle(rules));
      await compileSources(path.join(dir, 'bundle.yaml'), { now: NOW_MS, revision: 1 });
    } catch (err) {
      expect(err).toBeInstanceOf(SourceErrors);
      return (err as SourceErrors).errors.map((e) => e.message.replace(/^.*bundle\.yaml:/, ''));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    throw new Error('expected the sources to be refused');
  }

  it('names the field of a selector whose function code the rule does not name, a bad range and object ids without MEI 14', async () => {
    const rules = [
      '  - id: a', //                                                              6
      '    subject: { workload: spiffe://x/a }', //                                7
      '    asset: plc1', //                                                         8
      '    operations: [diagnostic]', //                                           9
      '    function_codes: [43]', //                                               10
      '    sub_functions: [0]', //                                                 11
      '    mei_types: [13]', //                                                    12
      '    object_ids: [2..1]', //                                                 13
      '  - id: b', //                                                              14
      '    subject: { workload: spiffe://x/b }', //                                15
      '    asset: plc1', //                                                        16
      '    operations: [diagnostic]', //                                           17
      '    function_codes: [43]', //                                               18
      '    mei_types: [13]', //                                                    19
      '    object_ids: [0..2]', //                                                 20
    ].join('\n');
    expect(await problems(rules)).toEqual([
      '11:5: rules[0].sub_functions: selects function code 8, which the rule\'s function_codes must name',
      '13:18: rules[0].object_ids[0]: must be an integer or a range a..b with 0 <= a <= b <= 255',
      '20:5: rules[1].object_ids: object ids are read by MEI type 14 (Read Device Identification), which mei_types leaves out',
    ]);
  });

  it('still refuses a rule that covers nothing', async () => {
    const rules = ['  - id: a', '    subject: { workload: spiffe://x/a }', '    asset: plc1', '    operations: [diagnostic]', '    function_codes: [3]'].join('\n');
    expect((await problems(rules))[0]).toMatch(/covers nothing: give points, ranges or nodes, or function_codes naming one of 7, 8, 11, 12, 17, 43/);
  });
});
