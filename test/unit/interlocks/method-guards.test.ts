// OPC UA methods that change the process (pump1.start) can be guarded by an interlock: without
// this, an agent refused "pump1.run := 1" could start the same pump by calling the method.
import { describe, expect, it } from 'vitest';
import { compileInterlocksText } from '../../../src/interlocks/compile.js';
import type { BundleAsset } from '../../../src/policy/payload.js';
import { PLC1 } from './fixtures.js';

const PLC1_UA: BundleAsset = {
  ...PLC1,
  id: 'plc1-ua',
  protocol: 'opcua',
  methods: {
    'pump1.start': { node_id: 'nsu=urn:x;s=pump1.start', inputs: [{ name: 'speed', type: 'Double', min: 0, max: 1800 }], outputs: [] },
    'pump1.stop': { node_id: 'nsu=urn:x;s=pump1.stop', inputs: [], outputs: [] },
  },
} as BundleAsset;

const compile = (guards: string, operations?: string) =>
  compileInterlocksText(
    `interlocks:\n  - id: a\n    asset: plc1-ua\n    guards: ${guards}\n${operations ? `    operations: ${operations}\n` : ''}    deny_when: tank1.level > 85\n`,
    'rules/plant/interlocks.yaml',
    [PLC1_UA],
  );

describe('interlock guards on OPC UA methods', () => {
  it('compiles a method guard next to a point guard when call is among the operations', () => {
    const r = compile('["pump1.run := 1", pump1.start]', '[write, call]');
    expect(r.errors).toEqual([]);
    expect(r.interlocks[0]).toMatchObject({ operations: ['write', 'call'], guards: [{ point: 'pump1.run', value: 1 }, { point: 'pump1.start' }] });
  });

  it('refuses a method guard without call, which would guard nothing', () => {
    expect(compile('[pump1.start]').errors.map((e) => e.message)).toEqual([
      `rules/plant/interlocks.yaml:4:14: interlocks.a.guards: 'pump1.start' is a method: add call to interlocks.a.operations (e.g. operations: [write, call])`,
    ]);
  });

  it('refuses a value on a method guard, and names points and methods when neither matches', () => {
    expect(compile('["pump1.start := 1"]', '[call]').errors.map((e) => e.message)).toEqual([
      `rules/plant/interlocks.yaml:4:14: interlocks.a.guards: 'pump1.start' is a method: guard it by name alone (any call), without ':= value'`,
    ]);
    expect(compile('[pump1.launch]', '[call]').errors.map((e) => e.message)).toEqual([`rules/plant/interlocks.yaml:4:14: interlocks.a.guards: asset 'plc1-ua' has no point or method 'pump1.launch'`]);
  });
});
