import { describe, expect, it } from 'vitest';
import { sourceOf } from '../../hub/address-source.js';
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
    // Each from its own source (at most four per source may be in flight).
    const results = Array.from({ length: 70 }, (_, i) => throttle.run(`10.0.0.${i}`, 'pi-1', check));
    // 2 running, 64 waiting: the other 4 are refused without running.
    expect((await Promise.all(results.slice(66))).every((r) => r === 'busy')).toBe(true);
    while (release.length > 0 || running > 0) {
      release.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect((await Promise.all(results.slice(0, 66))).every((r) => r === true)).toBe(true);
    expect(most).toBe(2);
  });

  it('makes an id wait twice as long after each failure from a source, up to the maximum, and forgets it on success', () => {
    let now = 0;
    const throttle = new AuthThrottle({ concurrency: 1, maxBackoffMs: 3_000 }, () => now);
    throttle.failed('a', 'pi-1');
    expect(throttle.backingOff('a', 'pi-1')).toBe(true);
    expect(throttle.backingOff('b', 'pi-1')).toBe(false);
    // Another device behind the same address is not held up by one with a wrong or revoked token.
    expect(throttle.backingOff('a', 'pi-2')).toBe(false);
    now = 500;
    expect(throttle.backingOff('a', 'pi-1')).toBe(false);
    throttle.failed('a', 'pi-1'); // 1 s
    throttle.failed('a', 'pi-1'); // 2 s
    throttle.failed('a', 'pi-1'); // 4 s, capped at 3 s
    now = 3_499;
    expect(throttle.backingOff('a', 'pi-1')).toBe(true);
    now = 3_500;
    expect(throttle.backingOff('a', 'pi-1')).toBe(false);
    throttle.failed('a', 'pi-1');
    throttle.succeeded('a', 'pi-1');
    expect(throttle.backingOff('a', 'pi-1')).toBe(false);
  });

  it('makes the whole source wait once three ids have failed from it, and a success does not lift that', () => {
    let now = 0;
    const throttle = new AuthThrottle({ concurrency: 1, maxBackoffMs: 60_000 }, () => now);
    throttle.failed('a', 'guess-1');
    throttle.failed('a', 'guess-2');
    expect(throttle.backingOff('a', 'pi-9')).toBe(false);
    throttle.failed('a', 'guess-3');
    expect(throttle.backingOff('a', 'pi-9')).toBe(true); // any id, from that source
    expect(throttle.backingOff('b', 'pi-9')).toBe(false);
    throttle.succeeded('a', 'pi-9'); // a stolen token cannot reset it
    expect(throttle.backingOff('a', 'pi-9')).toBe(true);
    now = 500;
    expect(throttle.backingOff('a', 'pi-9')).toBe(false);
    throttle.failed('a', 'guess-4'); // the fourth id: twice as long
    now = 1_499;
    expect(throttle.backingOff('a', 'pi-9')).toBe(true);
    // The same id failing again (a revoked device retrying) does not escalate the source.
    now = 10_000;
    throttle.failed('a', 'guess-4');
    now = 10_001;
    expect(throttle.backingOff('a', 'pi-9')).toBe(false);
  });

  it('holds one source to four logins in flight, and refuses those waiting once its first failure starts the backoff', async () => {
    const throttle = new AuthThrottle({ concurrency: 1, maxBackoffMs: 60_000 });
    const checked: number[] = [];
    let fail!: () => void;
    const first = throttle.run('a', 'pi-1', async () => {
      checked.push(0);
      await new Promise<void>((resolve) => (fail = resolve));
      return false;
    });
    const waiting = [1, 2, 3].map((i) =>
      throttle.run('a', 'pi-1', async () => {
        checked.push(i);
        return false;
      }),
    );
    // A fifth from the same source is refused at once; another source still queues.
    expect(await throttle.run('a', 'pi-1', async () => true)).toBe('busy');
    const other = throttle.run('b', 'pi-1', async () => true);
    await new Promise((resolve) => setImmediate(resolve));
    fail();
    expect(await first).toBe(false);
    // The three queued behind the failure are not checked: the source is backing off now.
    expect(await Promise.all(waiting)).toEqual(['backoff', 'backoff', 'backoff']);
    expect(await other).toBe(true);
    expect(checked).toEqual([0]);
  });

  it('keys IPv6 clients by their /64, so rotating addresses within it does not escape the backoff', () => {
    expect(sourceOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(sourceOf('::1')).toBe('0:0:0:0::/64');
    expect(sourceOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceOf('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('::ffff:c000:201')).toBe('192.0.2.1');
    expect(sourceOf('::ffff:0:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('64:ff9b::192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('64:ff9b::c000:202')).toBe('192.0.2.2');
    expect(sourceOf('192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf(undefined)).toBe('unknown');
    const throttle = new AuthThrottle({ concurrency: 1, maxBackoffMs: 60_000 });
    throttle.failed(sourceOf('2001:db8:1:2::10'), 'pi-1');
    expect(throttle.backingOff(sourceOf('2001:db8:1:2:dead:beef:0:1'), 'pi-1')).toBe(true);
    expect(throttle.backingOff(sourceOf('2001:db8:1:3::10'), 'pi-1')).toBe(false);
  });
});
