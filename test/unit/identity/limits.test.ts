import { describe, expect, it } from 'vitest';
import { ConnectionLimiter } from '../../../src/identity/limits.js';

const A = 'spiffe://plant.example/agent/optimizer';
const B = 'spiffe://plant.example/agent/reporter';

describe('ConnectionLimiter', () => {
  it('refuses a workload’s connection past its maximum while others still connect', () => {
    const limiter = new ConnectionLimiter({ maxPerWorkload: 2 });
    const l1 = limiter.acquire(A);
    const l2 = limiter.acquire(A);
    expect(l1).toBeDefined();
    expect(l2).toBeDefined();
    expect(limiter.acquire(A)).toBeUndefined();
    expect(limiter.acquire(B)).toBeDefined();
    l1?.release();
    l1?.release(); // close and error may both fire: counted once
    expect(limiter.connections(A)).toBe(1);
    expect(limiter.acquire(A)).toBeDefined();
  });

  it('forgets a workload once all its connections closed', () => {
    const limiter = new ConnectionLimiter({ maxPerWorkload: 1 });
    limiter.acquire(A)?.release();
    expect(limiter.connections(A)).toBe(0);
  });

  it('rejects a nonsensical limit at construction', () => {
    expect(() => new ConnectionLimiter({ maxPerWorkload: 0 })).toThrow(RangeError);
  });
});
