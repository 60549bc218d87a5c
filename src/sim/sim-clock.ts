// Clocks for running a plant faster than real time (`plantgate sim --speed N`). Tests use
// ManualClock from core instead (step mode): nothing here sleeps or reads time on its own except
// through the wall clock it wraps.
import type { Clock } from '../core/clock.js';

/** Plant time that runs `speed` times as fast as the wall clock, starting at the wall clock's now. */
export class ScaledClock implements Clock {
  private readonly wallStart: number;
  constructor(
    readonly speed: number,
    private readonly wall: Clock = { now: () => Date.now() },
  ) {
    if (!Number.isFinite(speed) || speed <= 0) throw new RangeError(`speed must be a positive number, not ${speed}`);
    this.wallStart = wall.now();
  }
  now(): number {
    return this.wallStart + (this.wall.now() - this.wallStart) * this.speed;
  }
}
