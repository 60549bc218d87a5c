import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SourceErrors } from '../../../src/core/errors.js';
import { findPoint, loadPlant, parsePlant } from '../../../src/assets/plant.js';

const FIXTURE = resolve(import.meta.dirname, '../../../fixtures/plants/water-treatment.yaml');

// Line numbers in the expectations below refer to this text (line 1 = "plant: t").
const BASE = [
  'plant: t', //                                                              1
  'plcs:', //                                                                 2
  '  - id: plc1', //                                                          3
  '    unit_id: 1', //                                                        4
  '    points:', //                                                           5
  '      tank1.level: { table: input, address: 0, type: uint16, scale: 0.1 }', // 6
  '      pump1.run:   { table: coil, address: 0, type: bool }', //            7
  '      flow:        { table: holding, address: 10, type: float32, word_order: little }', // 8
  '    model: water-tank', //                                                 9
].join('\n');

function errorsOf(text: string, file = 'plant.yaml'): SourceErrors {
  try {
    parsePlant(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(SourceErrors);
    return e as SourceErrors;
  }
  throw new Error('expected the plant to be rejected');
}

function edit(line: number, replacement: string): string {
  const lines = BASE.split('\n');
  lines[line - 1] = replacement;
  return lines.join('\n');
}

describe('plant loader', () => {
  it('loads the water-treatment fixture with every point, its table, address and scaling', async () => {
    const plant = await loadPlant(FIXTURE);
    expect(plant.name).toBe('water-treatment');
    expect(plant.plcs).toHaveLength(1);
    const plc = plant.plcs[0];
    expect(plc).toMatchObject({ id: 'plc1', unitId: 1, model: 'water-tank' });
    expect(plc.points.map((p) => p.name)).toEqual([
      'tank1.level',
      'tank1.setpoint',
      'pump1.speed',
      'pump1.run',
      'valve1.open',
      'control.auto',
      'pump1.running',
      'tank1.high_alarm',
      'tank1.low_alarm',
    ]);
    expect(findPoint(plant, 'tank1.level')?.point).toMatchObject({
      table: 'input',
      address: 0,
      type: 'uint16',
      words: 1,
      scale: 0.1,
      offset: 0,
      unit: '%',
      description: 'tank level',
    });
    expect(findPoint(plant, 'plc1/pump1.run')?.point).toMatchObject({ table: 'coil', address: 0, type: 'bool' });
    expect(findPoint(plant, 'plc2/pump1.run')).toBeUndefined();
  });

  it('gives 32-bit points two registers and keeps their word order', () => {
    const plant = parsePlant(BASE, 'p.yaml');
    const flow = plant.plcs[0].points.find((p) => p.name === 'flow');
    expect(flow).toMatchObject({ words: 2, wordOrder: 'little', type: 'float32', source: { line: 8, column: 20 } });
  });

  it('names file, line, column and field for an unknown point type', () => {
    const e = errorsOf(edit(7, '      pump1.run:   { table: coil, address: 0, type: boolean }'));
    expect(e.errors).toHaveLength(1);
    expect(e.errors[0]).toMatchObject({ file: 'plant.yaml', line: 7, column: 53, field: 'plcs[0].points.pump1.run.type' });
    expect(e.message).toBe(
      'plant.yaml:7:53: plcs[0].points.pump1.run.type: unknown value \'boolean\' (expected bool, int16, uint16, int32, uint32, float32, string)',
    );
  });

  it('rejects a bool point on a register table at its type', () => {
    const e = errorsOf(edit(7, '      pump1.run:   { table: holding, address: 3, type: bool }'));
    expect(e.errors[0]).toMatchObject({ line: 7, column: 56, field: 'plcs[0].points.pump1.run.type' });
    expect(e.errors[0].message).toContain('bool cannot live in the holding table');
  });

  it('rejects two points sharing a register, naming the point already there', () => {
    // flow occupies holding 10 and 11; a point at 11 collides with its second word.
    const text = BASE.replace('    model:', '      valve:       { table: holding, address: 11, type: uint16 }\n    model:');
    const e = errorsOf(text);
    expect(e.errors[0]).toMatchObject({ line: 9, column: 47, field: 'plcs[0].points.valve.address' });
    expect(e.errors[0].message).toContain('holding address 11 overlaps point flow');
  });

  it('allows the same address in different tables', () => {
    const plant = parsePlant(edit(7, '      pump1.run:   { table: discrete, address: 0, type: bool }'), 'p.yaml');
    expect(plant.plcs[0].points).toHaveLength(3);
  });

  it('points at the point when a required address is missing', () => {
    const e = errorsOf(edit(7, '      pump1.run:   { table: coil, type: bool }'));
    expect(e.errors[0]).toMatchObject({ line: 7, column: 20, field: 'plcs[0].points.pump1.run.address' });
    expect(e.errors[0].message).toContain('is required');
  });

  it('rejects an address outside 0..65535 and a 32-bit point running past the end', () => {
    const e = errorsOf(
      edit(6, '      tank1.level: { table: input, address: 70000, type: uint16 }').replace('address: 10,', 'address: 65535,'),
    );
    expect(e.errors.map((x) => [x.line, x.field])).toEqual([
      [6, 'plcs[0].points.tank1.level.address'],
      [8, 'plcs[0].points.flow.address'],
    ]);
    expect(e.errors[1].message).toContain('runs past address 65535');
  });

  it('reports a YAML syntax error with its position', () => {
    const e = errorsOf(edit(6, '      tank1.level: { table: input, address: 0'));
    expect(e.errors[0].field).toBe('yaml');
    expect(e.errors[0].line).toBeGreaterThanOrEqual(6);
  });

  it('rejects duplicate point names as a YAML error on the second one', () => {
    const e = errorsOf(edit(8, '      pump1.run:   { table: coil, address: 5, type: bool }'));
    expect(e.errors[0]).toMatchObject({ line: 8, field: 'yaml' });
  });

  it('rejects unknown fields, unknown models and a unit id out of range, all in one report', () => {
    const text = edit(4, '    unit_id: 300')
      .replace('model: water-tank', 'model: boiler')
      .replace('type: bool }', 'type: bool, units: x }');
    const e = errorsOf(text);
    expect(e.errors.map((x) => `${x.line}:${x.column} ${x.field}`).sort()).toEqual([
      '4:14 plcs[0].unit_id',
      '7:59 plcs[0].points.pump1.run.units',
      '9:12 plcs[0].model',
    ]);
  });

  it('rejects two PLCs with the same unit id', () => {
    const text = `${BASE}\n  - id: plc2\n    unit_id: 1\n    points:\n      x: { table: coil, address: 0, type: bool }\n`;
    const e = errorsOf(text);
    expect(e.errors[0]).toMatchObject({ line: 11, column: 14, field: 'plcs[1].unit_id' });
    expect(e.errors[0].message).toContain('unit id 1 is already used by PLC plc1');
  });

  it('rejects a file without PLCs and a file that is not a mapping', () => {
    expect(errorsOf('plant: x\nplcs: []\n').errors[0]).toMatchObject({ line: 2, column: 7, field: 'plcs' });
    expect(errorsOf('- 1\n').errors[0]).toMatchObject({ line: 1, column: 1, field: 'plant file' });
    expect(errorsOf('').errors[0]).toMatchObject({ field: 'plant file' });
  });

  it('reports an unreadable file as a source error', async () => {
    await expect(loadPlant('/nonexistent/plant.yaml')).rejects.toThrow('/nonexistent/plant.yaml:1:1: file: cannot read plant file (ENOENT)');
  });
});

describe('the map of a third-party PLC (registers, arrays, strings, read-only, identity)', () => {
  const REFERENCE = resolve(import.meta.dirname, '../../../fixtures/plants/reference-plc.yaml');

  it('describes the 100/100/32/32 reference device with its identity in at most 15 lines', async () => {
    expect((await readFile(REFERENCE, 'utf8')).trimEnd().split('\n').length).toBeLessThanOrEqual(15);
    const plc = (await loadPlant(REFERENCE)).plcs[0];
    expect(plc.points).toEqual([]);
    expect(plc.registers.map((r) => [r.table, r.from, r.to, r.readOnly])).toEqual([
      ['coil', 0, 99, false],
      ['discrete', 0, 99, false],
      ['holding', 0, 31, false],
      ['input', 0, 31, false],
    ]);
    expect(plc.identity?.objects).toEqual([
      { id: 0, value: 'Acme Controls' },
      { id: 1, value: 'RC-100' },
      { id: 2, value: '2.1' },
      { id: 4, value: 'Reference PLC' },
    ]);
  });

  const MAP = [
    'plant: m', //                                                                        1
    'plcs:', //                                                                           2
    '  - id: plc', //                                                                     3
    '    unit_id: 3', //                                                                  4
    '    registers: [ "holding[0..99]", "holding[100..109] read-only", "coil[5]" ]', //   5
    '    points:', //                                                                     6
    '      temp[1..4]:      { table: input, address: 10, type: int16, scale: 0.1, unit: "°C" }', // 7
    '      flow[0..1]:      { table: holding, address: 20, type: float32 }', //          8
    '      pump[1..2].run:  { table: coil, address: 0, type: bool }', //                 9
    '      slot[0..2]:      { table: holding, address: 30, type: uint16, stride: 4 }', // 10
    '      recipe.name:     { table: holding, address: 40, type: string, length: 9, initial: BATCH-7 }', // 11
    '      limit.max:       { table: holding, address: 50, type: uint16, read_only: true }', // 12
    '    identity:', //                                                                   13
    '      vendor: Acme', //                                                              14
    '      product_code: X1', //                                                          15
    '      revision: 3', //                                                               16
    '      extended: { 0x80: line 4 }', //                                                17
  ].join('\n');

  it('expands arrays (index in place of the brackets, stride = width unless given) beside raw ranges', () => {
    const plc = parsePlant(MAP, 'm.yaml').plcs[0];
    expect(plc.points.map((p) => [p.name, p.table, p.address, p.words])).toEqual([
      ['temp1', 'input', 10, 1],
      ['temp2', 'input', 11, 1],
      ['temp3', 'input', 12, 1],
      ['temp4', 'input', 13, 1],
      ['flow0', 'holding', 20, 2],
      ['flow1', 'holding', 22, 2],
      ['pump1.run', 'coil', 0, 1],
      ['pump2.run', 'coil', 1, 1],
      ['slot0', 'holding', 30, 1],
      ['slot1', 'holding', 34, 1],
      ['slot2', 'holding', 38, 1],
      ['recipe.name', 'holding', 40, 5],
      ['limit.max', 'holding', 50, 1],
    ]);
    expect(plc.points[0]).toMatchObject({ scale: 0.1, unit: '°C', source: { line: 7 } });
    expect(plc.points.find((p) => p.name === 'recipe.name')).toMatchObject({ type: 'string', length: 9, initial: 'BATCH-7' });
    expect(plc.points.find((p) => p.name === 'limit.max')?.readOnly).toBe(true);
    expect(plc.registers.map((r) => [r.table, r.from, r.to, r.readOnly])).toEqual([
      ['holding', 0, 99, false],
      ['holding', 100, 109, true],
      ['coil', 5, 5, false],
    ]);
    expect(plc.identity?.objects).toEqual([
      { id: 0, value: 'Acme' },
      { id: 1, value: 'X1' },
      { id: 2, value: '3' },
      { id: 0x80, value: 'line 4' },
    ]);
  });

  it('names file:line:column and field for bad ranges, strings, read-only inputs and identity objects', () => {
    const text = MAP.replace('"coil[5]"', '"coil[9..3]"')
      .replace('type: string, length: 9, initial: BATCH-7', 'type: string, scale: 2')
      .replace('{ table: holding, address: 50, type: uint16, read_only: true }', '{ table: input, address: 50, type: uint16, read_only: true }')
      .replace('      revision: 3\n', '')
      .replace('0x80: line 4', '0x20: line 4');
    expect(errorsOf(text, 'm.yaml').errors.map((e) => e.message)).toEqual([
      'm.yaml:11:24: plcs[0].points.recipe.name.length: is required',
      'm.yaml:11:69: plcs[0].points.recipe.name.scale: does not apply to a string (two characters per register, the first in the high byte)',
      'm.yaml:12:67: plcs[0].points.limit.max.read_only: input points are read-only for clients already; read_only applies to holding and coil',
      'm.yaml:5:67: plcs[0].registers[2]: coil[9..3] must run from a lower to a higher address within 0..65535',
      'm.yaml:14:7: plcs[0].identity.revision: is required (vendor, product_code and revision are the basic objects every device answers)',
      'm.yaml:16:19: plcs[0].identity.extended.32: extended object ids are 0x80..0xFF (128..255)',
    ]);
  });

  it('refuses a PLC with no addresses at all, and accepts one with an open map', () => {
    expect(errorsOf('plant: x\nplcs:\n  - id: a\n    unit_id: 1\n').errors[0].message).toBe(
      'plant.yaml:3:5: plcs[0]: has no addresses: give points, registers (e.g. - holding[0..99]) or open_map: true',
    );
    expect(parsePlant('plant: x\nplcs:\n  - id: a\n    unit_id: 1\n    open_map: true\n', 'x.yaml').plcs[0]).toMatchObject({ openMap: true, points: [], registers: [] });
  });

  it('checks PLC logic against the PLC: unknown points, strings and syntax, each with its field', () => {
    const text = [
      'plant: x',
      'plcs:',
      '  - id: a',
      '    unit_id: 1',
      '    points:',
      '      level: { table: input, address: 0, type: uint16 }',
      '      run:   { table: coil, address: 0, type: bool }',
      '      tag:   { table: holding, address: 0, type: string, length: 4 }',
      '    logic:',
      '      - { when: level > 90, set: { run: 0 } }',
      '      - { when: levle > 90, set: { run: 0 } }',
      '      - { set: { tag: 1 } }',
      '      - { when: level >, set: { run: level * 2 } }',
    ].join('\n');
    expect(errorsOf(text, 'x.yaml').errors.map((e) => `${e.line}:${e.field}: ${e.message.split(': ').pop()}`)).toEqual([
      '11:plcs[0].logic[1].when: levle is not a point of this PLC',
      '12:plcs[0].logic[2].set.tag: logic sets numbers and bools, not strings',
      expect.stringMatching(/^13:plcs\[0\]\.logic\[3\]\.when: /),
    ]);
  });
});
