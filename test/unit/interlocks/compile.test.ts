import { describe, expect, it } from 'vitest';
import { compileInterlocksText, parseDurationMs } from '../../../src/interlocks/compile.js';
import { interlocksSchema } from '../../../src/interlocks/payload.js';
import { PLC1, PLC2 } from './fixtures.js';

const ASSETS = [PLC1, PLC2];

function compile(text: string) {
  return compileInterlocksText(text, 'rules/plant/interlocks.yaml', ASSETS);
}
function messages(text: string): string[] {
  return compile(text).errors.map((e) => e.message);
}

describe('interlock sources compile into the bundle', () => {
  it('compiles a guard with a value, defaults, overrides and a cross-asset input', () => {
    const { interlocks, errors } = compile(`
interlocks:
  - id: pump1-dry-run
    description: never start the feed pump on a nearly empty tank
    asset: plc1
    guards: ["pump1.run := 1", pump1.speed]
    deny_when: tank1.level < 10 and (not valve1.open or plc2/header.pressure > 6.5)
    poll: 250ms
    inputs:
      tank1.level: { poll: 100ms, max_age: 1s }
`);
    expect(errors).toEqual([]);
    expect(interlocks).toEqual([
      {
        id: 'pump1-dry-run',
        description: 'never start the feed pump on a nearly empty tank',
        asset: 'plc1',
        operations: ['write'],
        guards: [{ point: 'pump1.run', value: 1 }, { point: 'pump1.speed' }],
        deny_when: 'tank1.level < 10 and (not valve1.open or plc2/header.pressure > 6.5)',
        inputs: [
          { asset: 'plc1', point: 'tank1.level', poll_ms: 100, max_age_ms: 1000 },
          { asset: 'plc1', point: 'valve1.open', poll_ms: 250, max_age_ms: 2000 },
          { asset: 'plc2', point: 'header.pressure', poll_ms: 250, max_age_ms: 2000 },
        ],
      },
    ]);
    // What the compiler emits is what the gateway's payload schema accepts.
    expect(interlocksSchema.safeParse(interlocks).success).toBe(true);
  });

  it('takes true/false guard values and a block-scalar condition', () => {
    const { interlocks, errors } = compile(`
interlocks:
  - id: no-drain-while-filling
    asset: plc1
    operations: [write, call]
    guards: ["valve1.open := true"]
    deny_when: |
      pump1.running
        and tank1.level < 50
`);
    expect(errors).toEqual([]);
    expect(interlocks[0]).toMatchObject({ operations: ['write', 'call'], guards: [{ point: 'valve1.open', value: 1 }], deny_when: 'pump1.running and tank1.level < 50' });
  });

  it('points expression errors at the exact file line and column', () => {
    expect(
      messages(`
interlocks:
  - id: a
    asset: plc1
    guards: [pump1.run]
    deny_when: tank1.level = 10
`),
    ).toEqual([`rules/plant/interlocks.yaml:6:28: interlocks.a.deny_when: use '==' to compare ('=' alone is not an operator)`]);
    expect(
      messages(`
interlocks:
  - id: a
    asset: plc1
    guards: [pump1.run]
    deny_when: "tank1.levl < 10"
`),
    ).toEqual([`rules/plant/interlocks.yaml:6:17: interlocks.a.deny_when: asset 'plc1' has no point 'tank1.levl'`]);
    expect(
      messages(`
interlocks:
  - id: a
    asset: plc1
    guards: [pump1.run]
    deny_when: |
      tank1.level < 10
        and pump1.speed >> 3
`),
    ).toEqual([`rules/plant/interlocks.yaml:8:26: interlocks.a.deny_when: expected a value, found '>'`]);
  });

  it('reports every problem of every interlock in one run', () => {
    const errs = messages(`
interlocks:
  - id: a
    asset: plc9
    guards: [pump1.run]
    deny_when: x > 1
  - id: a
    asset: plc1
    guards: ["tank1.level := 5", "pump1.run := 2", "nope"]
    deny_when: tank1.level * 2
    colour: red
  - id: c
    asset: plc1
    guards: [pump1.run]
    operations: [read]
    deny_when: tank1.level < 1
    poll: 10ms
    inputs:
      pump1.speed: { poll: 1s }
  - id: d
    asset: plc1
    guards: [pump1.run]
    deny_when: tank1.level < 1
    poll: 1s
    max_age: 500ms
  - id: e
    asset: plc1
    guards: [pump1.run]
    deny_when: true
  - id: f
    asset: plc1
    guards: [pump1.run]
    deny_when: tank1.level/pump1.speed > 1
`);
    const expected = [
      `:4:12: interlocks.a.asset: unknown asset 'plc9'`,
      `:7:9: interlocks.a.id: duplicate interlock id 'a'`,
      `:11:5: interlocks[1].colour: unknown field 'colour'`,
      `:9:14: interlocks.a.guards: 'tank1.level' is a read-only input point`,
      `:9:34: interlocks.a.guards: 'pump1.run' is a bool point`,
      `:9:52: interlocks.a.guards: asset 'plc1' has no point 'nope'`,
      `:10:28: interlocks.a.deny_when: a condition must be true or false`,
      `:15:18: interlocks.c.operations: 'read' is not an operation an interlock guards`,
      `:19:7: interlocks.c.inputs.plc1/pump1.speed: 'plc1/pump1.speed' is not used by deny_when`,
      `interlocks.c.inputs.plc1/tank1.level.poll: 10ms is faster than the minimum 50ms`,
      `interlocks.d.inputs.plc1/tank1.level.max_age: 500ms must be longer than the poll interval 1000ms`,
      `:29:16: interlocks.e.deny_when: names no point`,
      `:33:16: interlocks.f.deny_when: unknown asset 'tank1.level' in 'tank1.level/pump1.speed' (to divide, write 'tank1.level / pump1.speed' with spaces)`,
    ];
    for (const text of expected) expect(errs.some((m) => m.includes(text)), `${text}\n in:\n${errs.join('\n')}`).toBe(true);
    expect(errs).toHaveLength(expected.length);
  });

  it('treats a missing or empty interlocks key as none', () => {
    expect(compile('rules: []\n')).toEqual({ interlocks: [], errors: [] });
    expect(compile('interlocks:\n')).toEqual({ interlocks: [], errors: [] });
    expect(messages('interlocks: {a: 1}\n')).toEqual(['rules/plant/interlocks.yaml:1:13: interlocks: must be a list of interlocks']);
  });

  it('reads poll and freshness durations in ms, s and m only', () => {
    expect([parseDurationMs('250ms'), parseDurationMs('2s'), parseDurationMs('1m')]).toEqual([250, 2000, 60000]);
    for (const bad of ['', '0s', '1.5s', '-1s', '2 s', '1h', 's']) expect(parseDurationMs(bad)).toBeNull();
  });
});

describe('confirming reads and plausibility checks in interlock sources', () => {
  it('compiles confirm and the three kinds of check; their points become polled inputs', () => {
    const { interlocks, errors } = compile(`
interlocks:
  - id: overfill
    asset: plc1
    guards: ["pump1.run := 1"]
    deny_when: tank1.level > 85
    confirm: 300ms
    plausible:
      - { input: tank1.level, changes_within: 30s, while: pump1.running or valve1.open }
      - { input: tank1.level, max_rate: 2 }
      - { agree: [tank1.level, plc2/header.pressure], within: 1.5 }
`);
    expect(errors).toEqual([]);
    expect(interlocks[0]).toMatchObject({
      confirm_ms: 300,
      plausible: [
        { kind: 'changes', input: { asset: 'plc1', point: 'tank1.level' }, within_ms: 30_000, while: 'pump1.running or valve1.open' },
        { kind: 'rate', input: { asset: 'plc1', point: 'tank1.level' }, max_per_sec: 2 },
        { kind: 'agree', inputs: [{ asset: 'plc1', point: 'tank1.level' }, { asset: 'plc2', point: 'header.pressure' }], within: 1.5 },
      ],
    });
    expect(interlocks[0]!.inputs.map((i) => `${i.asset}/${i.point}`)).toEqual(['plc1/tank1.level', 'plc1/pump1.running', 'plc1/valve1.open', 'plc2/header.pressure']);
    expect(interlocksSchema.safeParse(interlocks).success).toBe(true);
  });

  it('names each problem of a confirm or a check with file, line, column and field', () => {
    expect(messages(`
interlocks:
  - id: overfill
    asset: plc1
    guards: ["pump1.run := 1"]
    deny_when: tank1.level > 85
    confirm: 9s
    plausible:
      - { input: tank1.lvl, changes_within: 30s }
      - { input: tank1.level, changes_within: 30s, max_rate: 2 }
      - { agree: [tank1.level], within: 1 }
      - { input: tank1.level, changes_within: 30s, while: "pump1.running ==" }
      - { input: tank1.level, max_rate: fast }
`)).toEqual([
      "rules/plant/interlocks.yaml:7:14: interlocks.overfill.confirm: 9000ms is outside 10ms..5000ms (one PLC round trip; a command must never hang)",
      "rules/plant/interlocks.yaml:9:18: interlocks.overfill.plausible[0].input: asset 'plc1' has no point 'tank1.lvl'",
      'rules/plant/interlocks.yaml:10:9: interlocks.overfill.plausible[1]: give one of changes_within (a stuck sensor) or max_rate (a jumping one)',
      'rules/plant/interlocks.yaml:11:18: interlocks.overfill.plausible[2].agree: must name exactly two points (two sensors of one quantity)',
      expect.stringMatching(/^rules\/plant\/interlocks\.yaml:12:\d+: interlocks\.overfill\.plausible\[3\]\.while: /),
      'rules/plant/interlocks.yaml:13:41: interlocks.overfill.plausible[4].max_rate: must be a number > 0 (engineering units per second)',
    ]);
  });
});
