// `plantgate policy test`'s runner against real rule sources and test files on disk.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findTestFiles, runPolicyTests } from '../../../src/policy/testing.js';
import { RESOLVERS } from '../../../protocols/resolvers.js';

const DEMO_ENTRY = path.resolve('rules/demo/bundle.yaml');

async function testFile(body: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pg-policy-test-'));
  const file = path.join(dir, 'cases.yaml');
  await writeFile(file, `bundle: ${DEMO_ENTRY}\n${body}`);
  return file;
}

describe('policy test cases', () => {
  it('finds the demo tests under rules/ and they all pass', async () => {
    const files = await findTestFiles('rules');
    expect(files).toContain(path.join('rules', 'demo', 'tests', 'demo.yaml'));
    const run = await runPolicyTests(files, RESOLVERS);
    expect(run.errors).toEqual([]);
    expect(run.results.length).toBeGreaterThanOrEqual(20);
    expect(run.results.filter((r) => !r.passed)).toEqual([]);
  });

  it('reports a case whose expectation the rules do not meet, with what was expected and what was decided', async () => {
    const file = await testFile(
      [
        'cases:',
        '  - name: optimizer may not write pump speed above 1800',
        '    subject: { workload: spiffe://plant.example/agent/optimizer }',
        '    command: { asset: plc1, operation: write, points: { pump1.speed: 1900 } }',
        '    expect: { effect: allow }',
      ].join('\n'),
    );
    const run = await runPolicyTests([file], RESOLVERS);
    expect(run.results).toEqual([
      expect.objectContaining({ passed: false, expected: 'allow', actual: 'deny VALUE_OUT_OF_BOUNDS (rule optimizer-setpoint)' }),
    ]);
  });

  it('names file, line, column and field of a malformed case', async () => {
    const file = await testFile(
      [
        'cases:',
        '  - name: typo in the reason',
        '    subject: { workload: spiffe://plant.example/agent/optimizer }',
        '    command: { asset: plc1, operation: read, points: [tank1.level] }',
        '    expect: { effect: allow, reason: ALLOWD }',
      ].join('\n'),
    );
    const run = await runPolicyTests([file], RESOLVERS);
    expect(run.errors.map((e) => e.message)).toEqual([expect.stringMatching(/cases\.yaml:6:\d+: cases\[0\]\.expect\.reason: /)]);
  });

  it('refuses a command naming a point the asset does not have', async () => {
    const file = await testFile(
      [
        'cases:',
        '  - name: unknown point',
        '    subject: { workload: spiffe://plant.example/agent/optimizer }',
        '    command: { asset: plc1, operation: read, points: [tank9.level] }',
        '    expect: { effect: deny }',
      ].join('\n'),
    );
    const run = await runPolicyTests([file], RESOLVERS);
    expect(run.errors.map((e) => e.message)).toEqual([expect.stringMatching(/cases\.yaml:3:3: cases\[0\]\.command: no point 'tank9\.level'/)]);
  });
});
