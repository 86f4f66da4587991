import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { ReplicationTracker, type ReplicaWait } from '../../hub/replication-tracker.js';

const INC = 'a'.repeat(32);
const wait = (agentId: string, seq: number, lsn: number, replicas: number, collection = 'alarms'): ReplicaWait => ({
  agentId,
  inc: INC,
  seq,
  collection,
  lsn,
  replicas,
});

describe('replica waits', () => {
  it('settle once N agents other than the writer report the LSN applied', () => {
    const tracker = new ReplicationTracker();
    expect(tracker.add([wait('pi-a', 1, 5, 2)])).toEqual([]);
    expect(tracker.report('pi-a', { alarms: 9 })).toEqual([]); // the writer itself does not count
    expect(tracker.report('pi-b', { alarms: 4 })).toEqual([]);
    expect(tracker.report('pi-b', { other: 9 })).toEqual([]);
    expect(tracker.report('pi-c', { alarms: 5 })).toEqual([]);
    expect(tracker.report('pi-b', { alarms: 6 })).toEqual([wait('pi-a', 1, 5, 2)]);
    expect(tracker.waiting).toBe(0);
  });

  it('a wait reported again by its writer is held once; one the agents already hold settles at once', () => {
    const tracker = new ReplicationTracker();
    tracker.add([wait('pi-a', 1, 5, 2)]);
    tracker.add([wait('pi-a', 1, 5, 2)]);
    expect(tracker.waiting).toBe(1);
    tracker.report('pi-b', { alarms: 7 });
    tracker.report('pi-c', { alarms: 7 });
    expect(tracker.waiting).toBe(0);
    // After a restart, the writer reports a wait that both others already hold.
    const restarted = new ReplicationTracker();
    restarted.report('pi-b', { alarms: 7 });
    restarted.report('pi-c', { alarms: 6 });
    expect(restarted.add([wait('pi-a', 1, 5, 2), wait('pi-a', 2, 7, 2)])).toEqual([wait('pi-a', 1, 5, 2)]);
    expect(restarted.waiting).toBe(1);
  });

  it('holds at most its limits, per writer and in all, and counts what it refused', () => {
    const tracker = new ReplicationTracker({ perAgent: 3, total: 5 });
    tracker.add([1, 2, 3, 4].map((seq) => wait('pi-a', seq, seq, 1)));
    expect([tracker.waiting, tracker.refused]).toEqual([3, 1]);
    tracker.add([1, 2, 3].map((seq) => wait('pi-b', seq, 10 + seq, 1)));
    expect([tracker.waiting, tracker.refused]).toEqual([5, 2]);
    // Settled waits make room again.
    expect(tracker.report('pi-c', { alarms: 3 })).toHaveLength(3);
    tracker.add([wait('pi-a', 9, 20, 1)]);
    expect([tracker.waiting, tracker.refused]).toEqual([3, 2]);
  });

  it('settles exactly what counting every agent would, whatever the order of waits and reports', () => {
    const agents = ['pi-a', 'pi-b', 'pi-c', 'pi-d'];
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('add' as const),
        agent: fc.constantFrom(...agents),
        lsn: fc.integer({ min: 1, max: 40 }),
        replicas: fc.integer({ min: 1, max: 4 }),
        collection: fc.constantFrom('x', 'y'),
      }),
      fc.record({
        kind: fc.constant('report' as const),
        agent: fc.constantFrom(...agents),
        lsn: fc.integer({ min: 0, max: 40 }),
        collection: fc.constantFrom('x', 'y'),
      }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const tracker = new ReplicationTracker();
        // The model: every wait counted against every agent's applied LSN after each step.
        const applied = new Map<string, number>();
        let model: ReplicaWait[] = [];
        let seq = 0;
        for (const s of steps) {
          let settled: ReplicaWait[];
          if (s.kind === 'add') {
            const w = wait(s.agent, ++seq, s.lsn, s.replicas, s.collection);
            model.push(w);
            settled = tracker.add([w]);
          } else {
            const key = `${s.agent}/${s.collection}`;
            applied.set(key, Math.max(applied.get(key) ?? 0, s.lsn));
            settled = tracker.report(s.agent, { [s.collection]: s.lsn });
          }
          const holders = (w: ReplicaWait): number =>
            agents.filter((a) => a !== w.agentId && (applied.get(`${a}/${w.collection}`) ?? 0) >= w.lsn).length;
          const met = model.filter((w) => holders(w) >= w.replicas);
          model = model.filter((w) => holders(w) < w.replicas);
          expect(settled.map((w) => w.seq).sort((a, b) => a - b)).toEqual(met.map((w) => w.seq).sort((a, b) => a - b));
          expect(tracker.waiting).toBe(model.length);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('replica wait limits', () => {
  it('are checked before anything else: a writer at its limit costs no scan of the fleet, whatever it reports', () => {
    const tracker = new ReplicationTracker({ perAgent: 1, total: 100 });
    for (let i = 0; i < 2_000; i++) tracker.report(`pi-${i}`, { alarms: 1_000 });
    tracker.add([wait('pi-w', 1, 1_000, 5_000)]); // held: its limit is reached
    // Counting a wait's holders walks every agent's map; at the limit, none may be walked.
    const walks = vi.spyOn(Map.prototype, Symbol.iterator);
    try {
      const forged = Array.from({ length: 1_000 }, (_, i) => wait('pi-w', i + 2, 500, 5_000));
      expect(tracker.add(forged)).toEqual([]);
      expect(walks).not.toHaveBeenCalled();
    } finally {
      walks.mockRestore();
    }
    expect(tracker.refused).toBe(1_000);
    expect(tracker.waitingFor('pi-w')).toBe(1);
  });

  it('take at most maxNew new waits per call; those already held do not count, the rest come with a later report', () => {
    const tracker = new ReplicationTracker();
    const waits = Array.from({ length: 250 }, (_, i) => wait('pi-w', i + 1, i + 1, 2));
    tracker.add(waits, 100);
    expect(tracker.waitingFor('pi-w')).toBe(100);
    tracker.add(waits, 100);
    expect(tracker.waitingFor('pi-w')).toBe(200);
    tracker.add(waits, 100);
    expect(tracker.waitingFor('pi-w')).toBe(250);
    expect(tracker.refused).toBe(0);
  });
});
