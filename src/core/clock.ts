// Time is injected everywhere it decides something (token expiry, windows, freshness), so tests
// move it by hand instead of sleeping.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export class ManualClock implements Clock {
  private ms: number;
  constructor(startMs = Date.UTC(2026, 0, 15, 12, 0, 0)) {
    this.ms = startMs;
  }
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}
