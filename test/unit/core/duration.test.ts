import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDurationMs, POLICY_DURATION, POLL_DURATION, type DurationUnit } from '../../../src/core/duration.js';

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };
const ALL: DurationUnit[] = ['ms', 's', 'm', 'min', 'h', 'd'];

describe('durations people write', () => {
  it('reads a whole number of any unit a field allows as that many milliseconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(...ALL), (n, unit) => {
        expect(parseDurationMs(`${n}${unit}`, { units: ALL })).toBe(n * UNIT_MS[unit]);
      }),
    );
  });

  it('refuses a unit the field does not take, a fraction, a space or zero unless the field allows it', () => {
    expect(parseDurationMs('30d', POLL_DURATION)).toBeNull();
    expect(parseDurationMs('250ms', POLICY_DURATION)).toBeNull();
    expect(parseDurationMs('1.5min', { units: ['min'] })).toBeNull();
    expect(parseDurationMs('1.5min', { units: ['min'], fractions: true })).toBe(90_000);
    expect(parseDurationMs('30 s', POLL_DURATION)).toBeNull();
    expect(parseDurationMs('30 s', { ...POLL_DURATION, spaces: true })).toBe(30_000);
    expect(parseDurationMs('0s', POLL_DURATION)).toBeNull();
    expect(parseDurationMs('0s', { ...POLL_DURATION, zero: true })).toBe(0);
  });

  it('never throws and never answers a negative, fractional-garbage or unsafe value for any text', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const ms = parseDurationMs(text, { units: ALL, fractions: true, spaces: true, zero: true });
        expect(ms === null || (ms >= 0 && Number.isFinite(ms))).toBe(true);
      }),
    );
    expect(parseDurationMs('99999999999999999999d', { units: ALL })).toBeNull();
    expect(parseDurationMs('-1s', { units: ALL })).toBeNull();
  });
});
