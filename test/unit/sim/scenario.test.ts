import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SourceErrors } from '../../../src/core/errors.js';
import { parsePlant } from '../../../src/assets/plant.js';
import { parseDuration, parseScenario } from '../../../src/sim/scenario.js';

const FILE = resolve(import.meta.dirname, '../../../fixtures/plants/heat-loop.yaml');
const PLANT = parsePlant(readFileSync(FILE, 'utf8'), FILE);
const SCENARIO = resolve(import.meta.dirname, '../../../fixtures/plants/scenarios/heat-loop-valve-sticks.yaml');

function errorsOf(text: string): string[] {
  try {
    parseScenario(text, 's.yaml', PLANT);
  } catch (e) {
    expect(e).toBeInstanceOf(SourceErrors);
    return (e as SourceErrors).errors.map((x) => x.message);
  }
  throw new Error('expected the scenario to be rejected');
}

describe('scenario files', () => {
  it('reads durations in ms, s, min and h, and bare numbers as seconds', () => {
    expect([parseDuration('250ms'), parseDuration('30s'), parseDuration('1.5min'), parseDuration('2h'), parseDuration(12)]).toEqual([
      250, 30_000, 90_000, 7_200_000, 12_000,
    ]);
    expect(parseDuration('30 sec')).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
  });

  it('loads the fixture scenario with its steps in plant time', () => {
    const s = parseScenario(readFileSync(SCENARIO, 'utf8'), SCENARIO, PLANT);
    expect(s.steps.map((x) => x.at)).toEqual([0, 20_000, 60_000, 90_000, 120_000]);
    expect(s.steps[1].fault).toEqual({ kind: 'valve-stuck', point: 'valve.position' });
  });

  it('names file:line:column and field for a point the plant lacks, a bad duration and a bad fault', () => {
    const text = [
      'scenario: broken', //                                        1
      'steps:', //                                                  2
      '  - at: 10 sec', //                                          3
      '    set: { pump.run: 1, pump.fly: 1 }', //                   4
      '  - at: 20s', //                                             5
      '    fault: { kind: exception, code: 6, points: [nope] }', // 6
      '  - at: 5s', //                                              7
      '    clear: never_set', //                                    8
    ].join('\n');
    expect(errorsOf(text)).toEqual([
      's.yaml:3:9: steps[0].at: "10 sec" is not a duration (e.g. 500ms, 30s, 1.5min, 2h, or seconds)',
      's.yaml:4:35: steps[0].set.pump.fly: is not a point of plant heat-loop',
      's.yaml:6:49: steps[1].fault.points[0]: is not a point of plant heat-loop',
    ]);
  });

  it('refuses steps out of time order, a clear of an unknown label and a step without an action', () => {
    const text = ['scenario: s', 'steps:', '  - at: 20s', '    note: nothing', '  - at: 10s', '    clear: x'].join('\n');
    expect(errorsOf(text)).toEqual([
      's.yaml:3:5: steps[0]: needs an action: set, fault, clear or drop_connections',
      's.yaml:5:9: steps[1].at: steps must be in time order',
      's.yaml:6:12: steps[1].clear: "x" is not the label of an earlier fault step (or "all")',
    ]);
  });
});
