import { describe, expect, it } from 'vitest';
import { HybridClock, decodeHlc, encodeHlc, isHlc } from '../../shared/hlc.js';

describe('hybrid logical clock', () => {
  it('orders as strings the way it orders in time', () => {
    const values = [encodeHlc(1, 0), encodeHlc(1, 1), encodeHlc(2, 0), encodeHlc(1_800_000_000_000, 65535)];
    expect([...values].sort()).toEqual(values);
    expect(decodeHlc(values[3]!)).toEqual({ wall: 1_800_000_000_000, logical: 65535 });
    expect(values.every(isHlc)).toBe(true);
  });

  it('never goes backwards when the wall clock does', () => {
    let now = 1_000_000;
    const clock = new HybridClock(() => now);
    const a = clock.tick();
    now -= 500_000; // NTP stepped the clock back
    const b = clock.tick();
    const c = clock.tick();
    expect(b > a).toBe(true);
    expect(c > b).toBe(true);
    expect(decodeHlc(c).wall).toBe(1_000_000);
  });

  it('moves past timestamps it observes from a peer whose clock is ahead', () => {
    const clock = new HybridClock(() => 1_000);
    const remote = encodeHlc(5_000_000, 7);
    clock.observe(remote);
    const next = clock.tick();
    expect(next > remote).toBe(true);
    expect(decodeHlc(next)).toEqual({ wall: 5_000_000, logical: 9 });
  });

  it('resumes after a restart from the last persisted timestamp', () => {
    const last = encodeHlc(9_000_000, 3);
    const clock = new HybridClock(() => 1_000, last);
    expect(clock.tick() > last).toBe(true);
  });

  it('borrows the next millisecond rather than overflow the counter', () => {
    const clock = new HybridClock(() => 10, encodeHlc(10, 65535));
    expect(decodeHlc(clock.tick())).toEqual({ wall: 11, logical: 0 });
  });
});
