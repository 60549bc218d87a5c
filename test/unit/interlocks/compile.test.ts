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
