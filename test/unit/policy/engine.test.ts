import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Command, ModbusTable, Operation, Target } from '../../../src/core/command.js';
import { BundleError } from '../../../src/policy/errors.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { demoPayload, NOW_MS, subject } from './fixtures.js';
import { resolveModbus } from '../../resolve.js';

const engine = PolicyEngine.fromPayload(demoPayload());
const reporter = subject({ workloadId: 'spiffe://plant.example/agent/reporter', scopes: ['read'] });
const optimizer = subject();

function modbus(operation: Operation, functionCode: number, targets: Target[], rawValues?: number[], unitId = 1): Command {
  const cmd: Command = { sessionId: 's', protocol: 'modbus', assetId: '', operation, functionCode, targets, points: [] };
  if (rawValues) cmd.rawValues = rawValues;
  resolveModbus(engine, cmd, unitId);
  return cmd;
}
const t = (table: ModbusTable, address: number, count = 1): Target => ({ table, address, count });
const writeRegister = (address: number, raw: number) => modbus('write', 6, [t('holding', address)], [raw]);

describe('resolving Modbus commands against the point map', () => {
  it('names the asset and the points a read covers', () => {
    const cmd = modbus('read', 3, [t('holding', 0, 4)]);
    expect(cmd.assetId).toBe('plc1');
    expect(cmd.points).toEqual(['tank1.setpoint', 'pump1.speed', 'flow.target']);
  });

  it('decodes written values into engineering units (scale, 32-bit float, coils)', () => {
    expect(writeRegister(0, 455).values).toEqual({ 'tank1.setpoint': 45.5 });
    const f = Buffer.alloc(4);
    f.writeFloatBE(7.25);
    expect(modbus('write', 16, [t('holding', 2, 2)], [f.readUInt16BE(0), f.readUInt16BE(2)]).values).toEqual({ 'flow.target': 7.25 });
    expect(modbus('write', 5, [t('coil', 0)], [0xff00]).values).toEqual({ 'pump1.run': 1 });
  });

  it('gives no value to half of a 32-bit point', () => {
    const cmd = modbus('write', 6, [t('holding', 3)], [0x4000]);
    expect(cmd.points).toEqual(['flow.target']);
    expect(cmd.values).toBeUndefined();
  });

  it('leaves the asset empty for an unknown unit id', () => {
    const cmd = modbus('read', 3, [t('holding', 0)], undefined, 9);
    expect(cmd.assetId).toBe('');
    expect(cmd.points).toEqual([]);
  });
});

describe('policy decisions', () => {
  it('allows an agent to read a mapped point, with the rule id and no durable requirement', () => {
    const d = engine.decide(modbus('read', 4, [t('input', 0)]), reporter, NOW_MS);
    expect(d).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'agents-read-plant', bundleRevision: 5, durable: false });
  });

  it('allows the optimizer to write the setpoint inside its bounds, durably', () => {
    const { forward, ...d } = engine.decide(writeRegister(0, 500), optimizer, NOW_MS);
    expect(d).toEqual({ effect: 'allow', reason: 'ALLOWED', ruleId: 'optimizer-setpoint', bundleRevision: 5, durable: true });
    // Forwarding it writes 50 % to the setpoint: the PLC's value once it acknowledges.
    expect(forward?.writes).toEqual([{ asset: 'plc1', point: 'tank1.setpoint', value: 50 }]);
  });

  it('denies a setpoint outside its bounds with VALUE_OUT_OF_BOUNDS and the rule id', () => {
    for (const raw of [199, 801]) {
      const d = engine.decide(writeRegister(0, raw), optimizer, NOW_MS);
      expect(d).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint', durable: false });
    }
    expect(engine.decide(writeRegister(0, 200), optimizer, NOW_MS).effect).toBe('allow');
    expect(engine.decide(writeRegister(0, 800), optimizer, NOW_MS).effect).toBe('allow');
  });

  it('denies a write to half of a bounded 32-bit point with VALUE_OUT_OF_BOUNDS', () => {
    const d = engine.decide(modbus('write', 6, [t('holding', 2)], [0]), optimizer, NOW_MS);
    expect(d).toMatchObject({ effect: 'deny', reason: 'VALUE_OUT_OF_BOUNDS', ruleId: 'optimizer-setpoint' });
  });

  it('denies a write to an unmapped register with NO_MATCHING_RULE', () => {
    expect(engine.decide(writeRegister(50, 1), optimizer, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE', ruleId: '' });
  });

  it('denies a reporter agent any write with NO_MATCHING_RULE', () => {
    expect(engine.decide(writeRegister(0, 500), reporter, NOW_MS)).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE', ruleId: '' });
  });

  it('denies a covered write without the write scope with SCOPE_MISSING and the rule id', () => {
    const d = engine.decide(writeRegister(0, 500), subject({ scopes: ['read'] }), NOW_MS);
    expect(d).toMatchObject({ effect: 'deny', reason: 'SCOPE_MISSING', ruleId: 'optimizer-setpoint' });
    expect(engine.decide(writeRegister(0, 500), subject({ scopes: ['*'] }), NOW_MS).effect).toBe('allow');
  });

  it('denies a multi-register write spanning an allowed and a disallowed point with NO_MATCHING_RULE', () => {
    // coils 1..2: valve1.open (optimizer-pump) and control.auto (no rule)
    const d = engine.decide(modbus('write', 15, [t('coil', 1, 2)], [1, 1]), optimizer, NOW_MS);
    expect(d).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE', ruleId: '' });
  });

  it('allows a multi-register write when one rule covers every point, checking each point bound', () => {
    expect(engine.decide(modbus('write', 16, [t('holding', 0, 2)], [500, 1500]), optimizer, NOW_MS).ruleId).toBe('optimizer-setpoint');
    expect(engine.decide(modbus('write', 16, [t('holding', 0, 2)], [500, 1801]), optimizer, NOW_MS).reason).toBe('VALUE_OUT_OF_BOUNDS');
  });

  it('denies a function code outside the rule allow-list', () => {
    expect(engine.decide(modbus('write', 5, [t('coil', 0)], [0xff00]), optimizer, NOW_MS).ruleId).toBe('optimizer-pump');
    expect(engine.decide(modbus('write', 15, [t('coil', 0, 2)], [1, 0]), optimizer, NOW_MS).ruleId).toBe('optimizer-pump');
    expect(engine.decide(modbus('write', 22, [t('coil', 0)], [1]), optimizer, NOW_MS).reason).toBe('NO_MATCHING_RULE');
  });

  it('denies a command for an unknown unit id with NO_MATCHING_RULE', () => {
    const d = engine.decide(modbus('read', 3, [t('holding', 0)], undefined, 9), reporter, NOW_MS);
    expect(d).toMatchObject({ effect: 'deny', reason: 'NO_MATCHING_RULE', ruleId: '' });
  });

  it('allows raw address ranges only to a subject with the owner, every role and the custom scope', () => {
    const maint = subject({ workloadId: 'spiffe://plant.example/maintenance/site-a/laptop', roles: ['maintainer', 'x'], scopes: ['maintain'] });
    expect(engine.decide(modbus('write', 16, [t('holding', 100, 10)], new Array(10).fill(0)), maint, NOW_MS).ruleId).toBe('maintainer-scratch');
    expect(engine.decide(modbus('write', 16, [t('holding', 100, 11)], new Array(11).fill(0)), maint, NOW_MS).reason).toBe('NO_MATCHING_RULE');
    expect(engine.decide(modbus('write', 6, [t('holding', 105)], [0]), { ...maint, roles: ['x'] }, NOW_MS).reason).toBe('NO_MATCHING_RULE');
    expect(engine.decide(modbus('write', 6, [t('holding', 105)], [0]), { ...maint, owner: 'someone' }, NOW_MS).reason).toBe('NO_MATCHING_RULE');
    expect(engine.decide(modbus('write', 6, [t('holding', 105)], [0]), { ...maint, scopes: ['write'] }, NOW_MS)).toMatchObject({ reason: 'SCOPE_MISSING', ruleId: 'maintainer-scratch' });
  });

  it('matches a single-segment workload glob only one segment deep', () => {
    const nested = subject({ workloadId: 'spiffe://plant.example/agent/team/reporter', scopes: ['read'] });
    expect(engine.decide(modbus('read', 4, [t('input', 0)]), nested, NOW_MS).reason).toBe('NO_MATCHING_RULE');
  });

  it('after expiry denies writes with BUNDLE_UNAVAILABLE but still allows reads', () => {
    const later = engine.expiresAtMs + 1;
    expect(engine.decide(writeRegister(0, 500), optimizer, later)).toMatchObject({ effect: 'deny', reason: 'BUNDLE_UNAVAILABLE', ruleId: '' });
    expect(engine.decide(modbus('read', 4, [t('input', 0)]), reporter, later)).toMatchObject({ effect: 'allow', ruleId: 'agents-read-plant' });
    const strict = PolicyEngine.fromPayload(demoPayload(), { readsWhenExpired: false });
    expect(strict.decide(modbus('read', 4, [t('input', 0)]), reporter, later).reason).toBe('BUNDLE_UNAVAILABLE');
  });

  it('refuses to load a payload whose rules name an unknown asset', () => {
    const p = demoPayload();
    p.rules[0]!.assets = ['plc9'];
    expect(() => PolicyEngine.fromPayload(p)).toThrow(BundleError);
  });

  it('never allows a target outside what some rule covers (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ModbusTable>('coil', 'holding', 'input', 'discrete'),
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 20, maxLength: 20 }),
        (table, address, count, raw) => {
          const cmd = modbus('write', 16, [t(table, address, count)], raw.slice(0, count));
          const d = engine.decide(cmd, optimizer, NOW_MS);
          if (d.effect === 'allow') {
            // every written address is a point of the deciding rule
            expect(['optimizer-setpoint', 'optimizer-pump']).toContain(d.ruleId);
            expect(table === 'holding' ? address + count <= 4 : table === 'coil' && address + count <= 2).toBe(true);
          }
        },
      ),
    );
  });
});
