import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { compileWindows, isValidTimeZone, localToUtcMs, windowProblem, type WindowSpec } from '../../../src/policy/windows.js';

const Z = (iso: string) => Date.parse(iso);
function window(spec: Omit<WindowSpec, 'id'>) {
  return compileWindows([{ id: 'w', ...spec }]).get('w')!;
}
/** Walks a ManualClock minute by minute and returns the instants where the window opens/closes. */
function edges(w: ReturnType<typeof window>, fromIso: string, toIso: string): string[] {
  const clock = new ManualClock(Z(fromIso));
  const out: string[] = [];
  let inside = w.contains(clock.now());
  while (clock.now() < Z(toIso)) {
    clock.advance(60_000);
    const now = w.contains(clock.now());
    if (now !== inside) out.push(`${now ? 'open' : 'close'} ${new Date(clock.now()).toISOString().slice(0, 16)}`);
    inside = now;
  }
  return out;
}

describe('maintenance windows across daylight-saving changes', () => {
  it('Europe/Berlin spring forward: a 01:00-04:00 window lasts two real hours', () => {
    const w = window({ time_zone: 'Europe/Berlin', from: '01:00', to: '04:00' });
    // 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST.
    expect(edges(w, '2026-03-28T20:00Z', '2026-03-29T06:00Z')).toEqual(['open 2026-03-29T00:00', 'close 2026-03-29T02:00']);
  });

  it('Europe/Berlin fall back: a 02:00-03:00 window covers the repeated hour twice', () => {
    const w = window({ time_zone: 'Europe/Berlin', from: '02:00', to: '03:00' });
    // 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET.
    expect(edges(w, '2026-10-24T20:00Z', '2026-10-25T06:00Z')).toEqual(['open 2026-10-25T00:00', 'close 2026-10-25T02:00']);
  });

  it('America/New_York spring forward: a window inside the skipped hour never opens that night', () => {
    const w = window({ time_zone: 'America/New_York', from: '02:00', to: '03:00' });
    // 2026-03-08 07:00 UTC: 02:00 EST becomes 03:00 EDT.
    expect(edges(w, '2026-03-08T04:00Z', '2026-03-08T12:00Z')).toEqual([]);
    expect(edges(w, '2026-03-09T04:00Z', '2026-03-09T12:00Z')).toEqual(['open 2026-03-09T06:00', 'close 2026-03-09T07:00']);
  });

  it('America/New_York fall back: a 01:00-02:00 window lasts two real hours', () => {
    const w = window({ time_zone: 'America/New_York', from: '01:00', to: '02:00' });
    // 2026-11-01 06:00 UTC: 02:00 EDT becomes 01:00 EST.
    expect(edges(w, '2026-11-01T02:00Z', '2026-11-01T10:00Z')).toEqual(['open 2026-11-01T05:00', 'close 2026-11-01T07:00']);
  });

  it('keeps office hours in local time on both sides of the change (America/New_York, weekdays)', () => {
    const w = window({ time_zone: 'America/New_York', days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:00' });
    expect(edges(w, '2026-03-06T00:00Z', '2026-03-07T00:00Z')).toEqual(['open 2026-03-06T14:00', 'close 2026-03-06T22:00']); // Fri, EST
    expect(edges(w, '2026-03-07T00:00Z', '2026-03-09T00:00Z')).toEqual([]); // weekend
    expect(edges(w, '2026-03-09T00:00Z', '2026-03-10T00:00Z')).toEqual(['open 2026-03-09T13:00', 'close 2026-03-09T21:00']); // Mon, EDT
  });

  it('a window past midnight belongs to the day it starts on', () => {
    const w = window({ time_zone: 'Europe/Berlin', days: ['fri'], from: '22:00', to: '06:00' });
    // Friday 2026-01-16 22:00 CET = 21:00Z until Saturday 06:00 CET = 05:00Z; nothing on Saturday night.
    expect(edges(w, '2026-01-16T00:00Z', '2026-01-18T12:00Z')).toEqual(['open 2026-01-16T21:00', 'close 2026-01-17T05:00']);
  });

  it('an absolute change freeze starts and ends at local midnight of its time zone', () => {
    const w = window({ time_zone: 'Europe/Berlin', start: '2026-12-20T00:00', end: '2027-01-06T00:00' });
    expect(w.contains(Z('2026-12-19T22:59Z'))).toBe(false);
    expect(w.contains(Z('2026-12-19T23:00Z'))).toBe(true);
    expect(w.contains(Z('2027-01-05T22:59Z'))).toBe(true);
    expect(w.contains(Z('2027-01-05T23:00Z'))).toBe(false);
  });

  it('moves a local time in the spring gap forward by the gap', () => {
    expect(new Date(localToUtcMs('Europe/Berlin', Date.UTC(2026, 2, 29, 2, 30))).toISOString()).toBe('2026-03-29T01:30:00.000Z');
  });

  it('names what is wrong with a window', () => {
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus')).toBe(false);
    expect(windowProblem({ id: 'w', time_zone: 'Mars/Olympus', from: '01:00', to: '02:00' })).toMatch(/unknown time zone/);
    expect(windowProblem({ id: 'w', time_zone: 'UTC', from: '01:00', to: '01:00' })).toMatch(/empty/);
    expect(windowProblem({ id: 'w', time_zone: 'UTC', from: '01:00', to: '02:00', start: '2026-01-01T00:00' })).toMatch(/either/);
    expect(windowProblem({ id: 'w', time_zone: 'UTC', start: '2026-02-30T00:00', end: '2026-03-01T00:00' })).toMatch(/start/);
    expect(windowProblem({ id: 'w', time_zone: 'UTC', days: [], from: '01:00', to: '02:00' })).toMatch(/never/);
  });
});
