import { describe, expect, it } from 'vitest';
import { AuthThrottle } from '../../hub/auth-throttle.js';

describe('auth throttle', () => {
  it('runs at most `concurrency` checks at once, queues a few, and refuses the rest at once', async () => {
    const throttle = new AuthThrottle({ concurrency: 2, maxBackoffMs: 60_000 });
    let running = 0;
    let most = 0;
    const release: Array<() => void> = [];
    const check = (): Promise<boolean> =>
      new Promise((resolve) => {
        running += 1;
        most = Math.max(most, running);
        release.push(() => {
          running -= 1;
          resolve(true);
        });
      });
    const results = Array.from({ length: 70 }, () => throttle.run(check));
    // 2 running, 64 waiting: the other 4 are refused without running.
    expect((await Promise.all(results.slice(66))).every((r) => r === 'busy')).toBe(true);
    while (release.length > 0 || running > 0) {
      release.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect((await Promise.all(results.slice(0, 66))).every((r) => r === true)).toBe(true);
    expect(most).toBe(2);
  });

  it('makes an address wait twice as long after each failure, up to the maximum, and forgets it on success', () => {
    let now = 0;
    const throttle = new AuthThrottle({ concurrency: 1, maxBackoffMs: 3_000 }, () => now);
    throttle.failed('a');
    expect(throttle.backingOff('a')).toBe(true);
    expect(throttle.backingOff('b')).toBe(false);
    now = 500;
    expect(throttle.backingOff('a')).toBe(false);
    throttle.failed('a'); // 1 s
    throttle.failed('a'); // 2 s
    throttle.failed('a'); // 4 s, capped at 3 s
    now = 3_499;
    expect(throttle.backingOff('a')).toBe(true);
    now = 3_500;
    expect(throttle.backingOff('a')).toBe(false);
    throttle.failed('a');
    throttle.succeeded('a');
    expect(throttle.backingOff('a')).toBe(false);
  });
});
