import { describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/backoff.js';

describe('reconnect backoff', () => {
  it('widens exponentially up to the cap, and resets', () => {
    const ceilings: number[] = [];
    const b = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 1 });
    for (let i = 0; i < 6; i++) ceilings.push(b.next());
    expect(ceilings).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it('spreads a fleet that lost the hub together over the whole window', () => {
    const firstDelays = Array.from({ length: 1_000 }, () => new Backoff({ initialMs: 1_000, maxMs: 30_000 }).next());
    const buckets = new Array<number>(10).fill(0);
    for (const d of firstDelays) buckets[Math.min(9, Math.floor(d / 100))]! += 1;
    // Full jitter: roughly uniform, no bucket holds more than a fifth of the fleet.
    expect(Math.max(...buckets)).toBeLessThan(200);
    expect(Math.min(...buckets)).toBeGreaterThan(40);
  });
});
