import { describe, expect, it } from 'vitest';
import { DurabilityWaiters } from '../../agent/durability.js';

describe('durability waits', () => {
  it('a new incarnation ends the replica waits of writes already committed, and only those', async () => {
    const waits = new DurabilityWaiters(() => true);
    const committed = waits.wait(1, 'alarms', { replicas: 2 }, 5_000);
    const pending = waits.wait(2, 'alarms', { replicas: 2 }, 5_000);
    const hub = waits.wait(3, 'alarms', 'hub', 5_000);
    waits.onResults([{ seq: 1, outcome: 'committed', lsn: 7 }]);
    expect(waits.replicaWaits()).toEqual([[1, 7, 'alarms', 2]]);

    waits.abandonAcknowledged('the hub was restored from a backup');
    await expect(committed).rejects.toMatchObject({ code: 'OUTPOST_REPLICA_WAIT_ABANDONED', seq: 1 });
    // Nothing is reported under the new incarnation for it; the writes not yet committed wait on.
    expect(waits.replicaWaits()).toEqual([]);
    waits.onResults([
      { seq: 2, outcome: 'committed', lsn: 9 },
      { seq: 3, outcome: 'committed', lsn: 10 },
    ]);
    await expect(hub).resolves.toBe(10);
    waits.onReplicated([2]);
    await expect(pending).resolves.toBe(9);
  });
});
