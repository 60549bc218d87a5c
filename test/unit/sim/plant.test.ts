import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { SourceErrors } from '../../../src/core/errors.js';
import { findPoint, loadPlant, parsePlant } from '../../../src/sim/plant.js';

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
      'plant.yaml:7:53: plcs[0].points.pump1.run.type: "boolean" is not one of: bool, int16, uint16, int32, uint32, float32',
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
