import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
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
