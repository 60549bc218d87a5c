// Seeded pseudo-random numbers for the simulator (measurement noise, fault probabilities, latency
// draws): the same --seed gives the same sequence, so a noisy run can be replayed exactly.
// Not for anything security-related.

/** mulberry32: 32-bit state, full period 2^32, good enough for simulation noise. */
export class Rng {
  private state: number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  save(): [number, number | undefined] {
    return [this.state, this.spare];
  }

  load(s: [number, number | undefined]): void {
    [this.state, this.spare] = s;
  }

  /** Standard normal (mean 0, deviation 1), Box-Muller with the second value kept for the next call. */
  gaussian(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

/** A second independent stream from the same seed (e.g. faults apart from noise). */
export function deriveSeed(seed: number, stream: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(stream, 0xc2b2ae35)) >>> 0;
}
