import { describe, expect, it } from 'vitest';
import { compileSources } from '../../../src/policy/sources.js';
import { payloadProblems } from '../../../src/policy/payload.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

describe('compiling the demo rules', () => {
  it('builds a payload whose point map comes from the plant file', async () => {
    const p = await compileSources('rules/demo/bundle.yaml', { now: NOW, revision: 7 });
    expect(payloadProblems(p)).toBeNull();
    expect(p.name).toBe('demo');
    expect(p.revision).toBe(7);
    expect(p.issued_at).toBe(NOW / 1000);
    expect(p.expires_at - p.issued_at).toBe(30 * 86400);
    expect(p.limits.max_token_ttl_sec).toBe(900);
    expect(p.issuers[0]!.iss).toBe('https://issuer.dev.plantgate.local');
    expect(p.issuers[0]!.jwks.keys.length).toBeGreaterThan(0);
    const plc1 = p.assets.find((a) => a.id === 'plc1')!;
    expect(plc1.unit_id).toBe(1);
    expect(plc1.points['tank1.setpoint']).toEqual({ table: 'holding', address: 0, type: 'uint16', scale: 0.1, unit: '%' });
    expect(plc1.points['pump1.run']).toMatchObject({ table: 'coil', address: 0, type: 'bool' });
    expect(p.rules.map((r) => r.id).slice(0, 3)).toEqual(['agents-read-plant', 'optimizer-setpoint', 'optimizer-pump']);
    expect(p.windows?.map((w) => w.id)).toEqual(['nightly-maintenance', 'year-end-freeze']);
    const assistant = p.rules.find((r) => r.id === 'assistant-speed-for-operator')!;
    expect(assistant.subject.act).toBe('*@plant.example');
    expect(assistant.max_step).toEqual({ 'pump1.speed': 100 });
    expect(assistant.rate_limits).toEqual([
      { count: 6, per_sec: 60, per: ['workload', 'asset'] },
      { count: 20, per_sec: 60, per: ['asset'] },
    ]);
    expect(p.rules.find((r) => r.id === 'assistant-setpoint-trial')).toMatchObject({ mode: 'monitor', cross_zone: ['operations'] });
    expect(p.freezes).toEqual([{ window: 'year-end-freeze', assets: ['*'], operations: ['write', 'call', 'diagnostic'] }]);
    expect(p.rules.find((r) => r.id === 'planner-drain')!.approval).toBe('required');
    expect(p.rules[1]!.bounds).toEqual({ 'tank1.setpoint': { min: 20, max: 80 }, 'pump1.speed': { min: 0, max: 1800 } });
  });
});

// Broken sources are written to a temp dir so each test states the exact text and the exact line.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SourceErrors } from '../../../src/core/errors.js';

const PLANT = path.resolve('fixtures/plants/water-treatment.yaml');
const JWKS = path.resolve('fixtures/keys/dev-issuer.jwks.json');

function entry(over: { validFor?: string; jwks?: string; extra?: string } = {}): string {
  return [
    'bundle:',
    '  name: t',
    '  audience: plantgate:test',
    `  valid_for: ${over.validFor ?? '1d'}`,
    'limits:',
    '  max_token_ttl: 15m',
    'issuers:',
    '  - iss: https://issuer.test',
    `    jwks_file: ${over.jwks ?? JWKS}`,
    'assets:',
    '  - id: plc1',
    '    zone: treatment',
    '    criticality: high',
    '    protocol: modbus',
    '    unit_id: 1',
    `    points_from: ${PLANT}`,
    'include: [rules.yaml]',
    over.extra ?? '',
  ].join('\n');
}

const GOOD_RULE = [
  '  - id: r0',
  '    subject: { workload: "spiffe://plant.example/agent/*" }',
  '    asset: plc1',
  '    operations: [read]',
  '    points: ["*"]',
];

async function compileBroken(rules: string[], entryOver: Parameters<typeof entry>[0] = {}): Promise<{ dir: string; messages: string[] }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-rules-'));
  await writeFile(path.join(dir, 'bundle.yaml'), entry(entryOver));
  await writeFile(path.join(dir, 'rules.yaml'), ['rules:', ...rules, ''].join('\n'));
  try {
    await compileSources(path.join(dir, 'bundle.yaml'), { now: NOW, revision: 1 });
  } catch (err) {
    expect(err).toBeInstanceOf(SourceErrors);
    return { dir, messages: (err as SourceErrors).errors.map((e) => e.message) };
  }
  throw new Error('expected the sources to be rejected');
}

describe('broken policy sources are rejected with file:line:col and field', () => {
  it('names a misspelt operation', async () => {
    const { dir, messages } = await compileBroken([
      ...GOOD_RULE,
      '  - id: r1',
      '    subject: { workload: spiffe://plant.example/agent/optimizer }',
      '    asset: plc1',
      '    operations: [wirte]',
      '    points: [pump1.run]',
    ]);
    expect(messages).toEqual([
      `${dir}/rules.yaml:10:18: rules[1].operations[0]: unknown operation 'wirte' (expected read, write, call, browse, subscribe, diagnostic)`,
    ]);
  });

  it('names an unknown field instead of ignoring a typo', async () => {
    const { dir, messages } = await compileBroken([...GOOD_RULE.slice(0, 4), '    pionts: ["*"]']);
    expect(messages).toContain(`${dir}/rules.yaml:6:5: rules[0].pionts: unknown field 'pionts' (expected id, description, subject, asset, assets, operations, points, nodes, ranges, function_codes, sub_functions, mei_types, object_ids, require_scope, bounds, max_step, windows, freezes, rate_limit, cross_zone, approval, mode)`);
  });

  it('names a duplicate rule id and where the first one is', async () => {
    const { dir, messages } = await compileBroken([...GOOD_RULE, ...GOOD_RULE]);
    expect(messages).toEqual([`${dir}/rules.yaml:7:9: rules[1].id: duplicate rule id 'r0' (first at ${dir}/rules.yaml:2:9)`]);
  });

  it('names a rule that refers to an unknown asset', async () => {
    const { dir, messages } = await compileBroken([GOOD_RULE[0]!, GOOD_RULE[1]!, '    asset: plc9', ...GOOD_RULE.slice(3)]);
    expect(messages).toEqual([`${dir}/rules.yaml:4:12: rules[0].asset: unknown asset 'plc9' (known: plc1)`]);
  });

  it('names a point glob that matches no point of the asset', async () => {
    const { dir, messages } = await compileBroken([...GOOD_RULE.slice(0, 4), '    points: [tank1.level, tank2.*]']);
    expect(messages).toEqual([`${dir}/rules.yaml:6:27: rules[0].points[1]: 'tank2.*' matches no point of asset 'plc1'`]);
  });

  it('names bounds on a point the rule does not cover', async () => {
    const { dir, messages } = await compileBroken([
      '  - id: w',
      '    subject: { workload: spiffe://plant.example/agent/optimizer }',
      '    asset: plc1',
      '    operations: [write]',
      '    points: [tank1.setpoint]',
      '    bounds:',
      '      tank1.setpoint: { min: 20, max: 80 }',
      '      pump1.speed: { max: 1800 }',
    ]);
    expect(messages).toEqual([`${dir}/rules.yaml:9:7: rules[0].bounds.pump1.speed: 'pump1.speed' is not one of the rule's points (tank1.setpoint)`]);
  });

  it('names a bad duration', async () => {
    const { dir, messages } = await compileBroken(GOOD_RULE, { validFor: '30x' });
    expect(messages).toEqual([`${dir}/bundle.yaml:4:14: bundle.valid_for: bad duration '30x' (expected a positive number followed by s, m, h or d, e.g. 15m)`]);
  });

  it('names a missing JWKS file', async () => {
    const { dir, messages } = await compileBroken(GOOD_RULE, { jwks: 'missing.jwks.json' });
    expect(messages).toEqual([`${dir}/bundle.yaml:9:16: issuers[0].jwks_file: cannot read JWKS file '${dir}/missing.jwks.json' (ENOENT)`]);
  });

  it('reports a YAML syntax error with its line', async () => {
    const { dir, messages } = await compileBroken([...GOOD_RULE.slice(0, 4), '    points: ["*"', '  - id: r2']);
    expect(messages).toEqual([`${dir}/rules.yaml:7:3: yaml: Flow sequence in block collection must be sufficiently indented and end with a ]`]);
  });

  it('reports every problem of a run at once, across files', async () => {
    const { dir, messages } = await compileBroken(
      [
        '  - id: a',
        '    subject: { workload: "spiffe://plant.example/agent/*", team: ops }',
        '    asset: plc1',
        '    operations: [read, write]',
        '    points: ["*"]',
        '    function_codes: [3, 99]',
        '    ranges: [{ table: holding, from: 10, to: 2 }]',
      ],
      { extra: 'lmits: {}' },
    );
    expect(messages).toEqual([
      `${dir}/bundle.yaml:18:1: lmits: unknown field 'lmits' (expected bundle, limits, issuers, assets, windows, freezes, include, rules, interlocks, revocations)`,
      `${dir}/rules.yaml:3:60: rules[0].subject.team: unknown field 'team' (expected workload, owner, roles, scopes, act, assurance)`,
      `${dir}/rules.yaml:8:46: rules[0].ranges[0].to: 2 is below from (10)`,
      `${dir}/rules.yaml:7:25: rules[0].function_codes[1]: unsupported function code 99 (supported: 1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 7, 8, 11, 12, 17, 43)`,
    ]);
  });

  it('refuses bounds on a rule that cannot write', async () => {
    const { dir, messages } = await compileBroken([...GOOD_RULE.slice(0, 4), '    points: [tank1.setpoint]', '    bounds: { tank1.setpoint: { max: 80 } }']);
    expect(messages).toEqual([`${dir}/rules.yaml:7:5: rules[0].bounds: bounds apply to written values, but the rule does not allow write`]);
  });

  const WRITE_RULE = [
    '  - id: w',
    '    subject: { workload: spiffe://plant.example/agent/optimizer }',
    '    asset: plc1',
    '    operations: [write]',
    '    points: [tank1.setpoint]',
  ];
  const WINDOWS = [
    'windows:',
    '  - id: night',
    '    time_zone: Europe/Berlin',
    '    from: "22:00"',
    '    to: "06:00"',
  ];

  it('names a window with an unknown time zone and a bad local time', async () => {
    const { dir, messages } = await compileBroken([...WRITE_RULE, '    windows: [night]'], {
      extra: ['windows:', '  - id: night', '    time_zone: Europe/Berlni', '    from: "25:00"', '    to: "06:00"'].join('\n'),
    });
    expect(messages).toEqual([
      `${dir}/bundle.yaml:20:16: windows[0].time_zone: unknown time zone 'Europe/Berlni' (expected an IANA name such as Europe/Berlin)`,
      `${dir}/bundle.yaml:21:11: windows[0].from: '25:00' is not a local time HH:MM (quote it: "06:00")`,
      `${dir}/rules.yaml:7:15: rules[0].windows[0]: unknown window 'night' (known: none; define them under windows: in the entry file)`,
    ]);
  });

  it('names a rule that refers to an unknown window, and one whose window is also its freeze', async () => {
    const { dir, messages } = await compileBroken([...WRITE_RULE, '    windows: [nite]'], { extra: WINDOWS.join('\n') });
    expect(messages).toEqual([`${dir}/rules.yaml:7:15: rules[0].windows[0]: unknown window 'nite' (known: night)`]);
    const both = await compileBroken([...WRITE_RULE, '    windows: [night]', '    freezes: [night]'], { extra: WINDOWS.join('\n') });
    expect(both.messages).toEqual([`${both.dir}/rules.yaml:8:14: rules[0].freezes: 'night' is both a window and a freeze of this rule: it can never allow`]);
  });

  it('names a bad rate, a max_step on a point the rule does not cover, and an unknown mode', async () => {
    const { dir, messages } = await compileBroken([
      ...WRITE_RULE,
      '    rate_limit: { per_subject: 10 per minute }',
      '    mode: shadow',
    ]);
    expect(messages).toEqual([
      `${dir}/rules.yaml:7:32: rules[0].rate_limit.per_subject: bad rate '10 per minute' (expected COUNT/PERIOD, e.g. 10/m, 5/30s, 100/1h)`,
      `${dir}/rules.yaml:8:11: rules[0].mode: unknown mode 'shadow' (expected enforce, monitor)`,
    ]);
    const step = await compileBroken([...WRITE_RULE, '    max_step: { pump1.speed: 10 }']);
    expect(step.messages).toEqual([`${step.dir}/rules.yaml:7:17: rules[0].max_step.pump1.speed: 'pump1.speed' is not one of the rule's points (tank1.setpoint)`]);
  });

  it('names a change freeze of an unknown window or asset, and a bad operation', async () => {
    const { dir, messages } = await compileBroken([...WRITE_RULE], {
      extra: [...WINDOWS, 'freezes:', '  - { window: nite, assets: ["*"] }', '  - { window: night, assets: [plc9], operations: [wirte] }'].join('\n'),
    });
    expect(messages).toEqual([
      `${dir}/bundle.yaml:24:15: freezes[0].window: unknown window 'nite' (known: night)`,
      `${dir}/bundle.yaml:25:31: freezes[1].assets[0]: unknown asset 'plc9' (known: plc1)`,
      `${dir}/bundle.yaml:25:51: freezes[1].operations[0]: unknown operation 'wirte' (expected read, write, call, browse, subscribe, diagnostic)`,
    ]);
  });

  it('names a rate limit keyed by an unknown key, and one with no keys named', async () => {
    const { dir, messages } = await compileBroken([...WRITE_RULE, '    rate_limit:', '      - { rate: 6/m, per: [workload, site] }', '      - { rate: 6/m }']);
    expect(messages).toEqual([
      `${dir}/rules.yaml:8:38: rules[0].rate_limit[0].per[1]: unknown key 'site' (expected workload, owner, task, asset)`,
      `${dir}/rules.yaml:9:9: rules[0].rate_limit[1].per: is required: what the limit counts by (any of workload, owner, task, asset; [] for one budget for the whole rule)`,
    ]);
  });

  it('names an approval with too many approvers, or one that lets the requester approve', async () => {
    const { dir, messages } = await compileBroken([...WRITE_RULE, '    approval: { approvers: 9, distinct_from: [owner], execute_within: soon }']);
    expect(messages).toEqual([
      `${dir}/rules.yaml:7:28: rules[0].approval.approvers: 9 is outside 1..5`,
      `${dir}/rules.yaml:7:46: rules[0].approval.distinct_from: must include requester (an agent, or the human it acts for, never approves its own command)`,
      `${dir}/rules.yaml:7:71: rules[0].approval.execute_within: bad duration 'soon' (expected a positive number followed by s, m, h or d, e.g. 15m)`,
    ]);
  });

  it('names a step base age no longer than its poll interval', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plantgate-rules-'));
    await writeFile(path.join(dir, 'bundle.yaml'), entry().replace('  max_token_ttl: 15m', '  max_token_ttl: 15m\n  step_base: { max_age: 500ms, poll: 1s }'));
    await writeFile(path.join(dir, 'rules.yaml'), ['rules:', ...GOOD_RULE, ''].join('\n'));
    const err = await compileSources(path.join(dir, 'bundle.yaml'), { now: NOW, revision: 1 }).catch((e: unknown) => e);
    expect((err as SourceErrors).errors.map((e) => e.message)).toEqual([`${dir}/bundle.yaml:7:14: limits.step_base.max_age: 500ms must be longer than the poll interval 1000ms`]);
  });

  it('refuses a human principal rule that requires delegation (it can never match)', async () => {
    const { dir, messages } = await compileBroken([
      '  - id: h',
      '    subject: { workload: "user:alice", act: "*" }',
      ...WRITE_RULE.slice(2),
    ]);
    expect(messages).toEqual([`${dir}/rules.yaml:3:45: rules[0].subject.act: a human principal ('user:alice') never acts for another: this rule can never match`]);
  });
});
