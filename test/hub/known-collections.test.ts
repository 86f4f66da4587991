import { afterEach, describe, expect, it, vi } from 'vitest';
import { KnownCollections } from '../../hub/known-collections.js';
import type { HubStore } from '../../hub/store/hub-store.js';

/** A store whose listing of collections fails `failures` times, then answers. */
function flakyStore(failures: number): { store: HubStore; calls: () => number } {
  let calls = 0;
  const store = {
    collectionHeads: () => (++calls <= failures ? Promise.reject(new Error('disk I/O error')) : Promise.resolve({ alarms: 7, logs: 3 })),
  } as unknown as HubStore;
  return { store, calls: () => calls };
}

describe('known collections', () => {
  afterEach(() => vi.useRealTimers());

  it('retries a failed load with backoff until it succeeds; meanwhile keeps only declared and newly committed names', async () => {
    vi.useFakeTimers();
    const known = new KnownCollections(['declared']);
    const { store, calls } = flakyStore(3);
    const retries: number[] = [];
    known.load(store, (_error, retryMs) => retries.push(retryMs));
    await vi.advanceTimersByTimeAsync(0);
    const report = {
      declared: 1,
      alarms: 1,
      logs: 1,
      fresh: 1,
      ...Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`x${i}`, 1])),
    };
    const all = (): boolean => true;
    expect(known.filter(report, all)).toEqual({ declared: 1 });
    known.committed('fresh');
    expect(known.filter(report, all)).toEqual({ declared: 1, fresh: 1 });
    await vi.advanceTimersByTimeAsync(1_000 + 2_000 + 4_000);
    expect(retries).toEqual([1_000, 2_000, 4_000]);
    expect(calls()).toBe(4);
    expect(known.filter(report, all)).toEqual({ declared: 1, alarms: 1, logs: 1, fresh: 1 });
    known.stop();
  });

  it('stops retrying when stopped', async () => {
    vi.useFakeTimers();
    const known = new KnownCollections([]);
    const { store, calls } = flakyStore(Infinity);
    known.load(store, () => undefined);
    await vi.advanceTimersByTimeAsync(0);
    known.stop();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(calls()).toBe(1);
  });
});
