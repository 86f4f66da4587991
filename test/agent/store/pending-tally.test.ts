import Database from 'better-sqlite3';
import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../../../agent/store/agent-store.js';
import type { OpResult } from '../../../shared/messages.js';
import { DEFAULT_PARTITION } from '../../../shared/topics.js';
import { tempDir } from '../../helpers/temp.js';
import { append, change, openStore, put } from './fixtures.js';
import { writesOnDisk } from '../../helpers/outbox-on-disk.js';

/** What the outbox holds, counted in SQL row by row: the truth the in-memory tally must equal. */
function counted(dir: string): { byCollection: Record<string, { pending: number; oldestAt: number }>; unacknowledged: number } {
  const db = new Database(join(dir, 'agent.db'), { readonly: true });
  try {
    const writes = writesOnDisk(db);
    const byCollection: Record<string, { pending: number; oldestAt: number }> = {};
    for (const w of writes.filter((w) => w.acked_lsn === null && w.skipped === null)) {
      const counted = (byCollection[w.collection] ??= { pending: 0, oldestAt: w.created_at });
      counted.pending += 1;
      counted.oldestAt = Math.min(counted.oldestAt, w.created_at);
    }
    const n = writes.filter((w) => w.acked_lsn === null).length;
    return { byCollection: Object.fromEntries(Object.entries(byCollection).sort(([a], [b]) => (a < b ? -1 : 1))), unacknowledged: n };
  } finally {
    db.close();
  }
}

const COLLECTIONS = ['docs', 'logs', 'telemetry'] as const;
const partitionOf = (collection: string): string => (collection === 'logs' ? 'billing' : DEFAULT_PARTITION);

type Step =
  | { kind: 'append'; collection: (typeof COLLECTIONS)[number]; count: number; policy: boolean }
  | { kind: 'answer'; outcome: OpResult['outcome']; share: number; twice: boolean }
  | { kind: 'expire' }
  | { kind: 'apply'; share: number }
  | { kind: 'adopt' }
  | { kind: 'reincarnate' }
  | { kind: 'full' }
  | { kind: 'reopen' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('append' as const),
    collection: fc.constantFrom(...COLLECTIONS),
    count: fc.integer({ min: 1, max: 6 }),
    policy: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('answer' as const),
    outcome: fc.constantFrom<OpResult['outcome']>('committed', 'rejected', 'conflict', 'duplicate'),
    share: fc.double({ min: 0, max: 1, noNaN: true }),
    twice: fc.boolean(),
  }),
  fc.constant({ kind: 'expire' as const }),
  fc.record({ kind: fc.constant('apply' as const), share: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.constant({ kind: 'adopt' as const }),
  fc.constant({ kind: 'reincarnate' as const }),
  fc.constant({ kind: 'full' as const }),
  fc.constant({ kind: 'reopen' as const }),
);

describe('the outbox tally', () => {
  it('always says what counting the rows says: after appends under policies, acks, refusals, expiry, moves, renumbering, failed transactions and restarts', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
        const dir = tempDir('tally');
        let store: AgentStore = openStore(dir);
        let lsn = 0;
        let key = 0;
        for (const s of steps) {
          switch (s.kind) {
            case 'append': {
              const policy = s.policy
                ? { maxPending: 4, overflow: s.collection === 'docs' ? ('reject' as const) : ('drop-oldest' as const) }
                : undefined;
              const writes = Array.from({ length: s.count }, () =>
                put(`k${key++}`, key, { collection: s.collection, partition: DEFAULT_PARTITION }),
              );
              append(store, writes, policy && (() => policy));
              break;
            }
            case 'answer': {
              // The hub answers for the first part of the default partition's unacknowledged writes (and perhaps again).
              const ops = store.outbox.pendingFrom(DEFAULT_PARTITION, 1, 1000, 1 << 30);
              const answered = ops.slice(0, Math.ceil(ops.length * s.share));
              const results: OpResult[] = answered.map((op) =>
                s.outcome === 'committed'
                  ? { seq: op.seq, outcome: 'committed', lsn: ++lsn }
                  : { seq: op.seq, outcome: s.outcome, reason: 'schema' },
              );
              for (let i = 0; i < (s.twice ? 2 : 1); i++) store.outbox.applyResults(DEFAULT_PARTITION, results, (c) => c !== 'telemetry');
              break;
            }
            case 'expire':
              store.outbox.expire((c) => (c === 'telemetry' ? 1 : 0), Date.now() + 60_000);
              break;
            case 'apply': {
              // The replica receives the versions of some confirmed writes: their overlay rows go.
              const changes = Array.from({ length: Math.ceil(lsn * s.share) }, (_, i) => change(i + 1, `k${i}`, i));
              store.replica.applyChanges(DEFAULT_PARTITION, changes);
              break;
            }
            case 'adopt':
              store.outbox.adoptAssignment('partitions', { logs: 'billing' }, partitionOf);
              break;
            case 'reincarnate':
              store.outbox.reincarnate(DEFAULT_PARTITION);
              break;
            case 'full': {
              // A transaction that fails half way (here a policy lookup throws on the third write,
              // as a full disk would fail an insert): nothing stored, nothing counted.
              let calls = 0;
              const failing = (): { maxPending: number; overflow: 'reject' } => {
                if (++calls === 3) throw new Error('the disk failed');
                return { maxPending: 0, overflow: 'reject' };
              };
              expect(() => append(store, [put(`k${key++}`, 1), put(`k${key++}`, 2), put(`k${key++}`, 3)], failing)).toThrow();
              break;
            }
            case 'reopen':
              store.close();
              store = openStore(dir);
              break;
          }
          // Committed writes leave the outbox with the next append, or with their batch once the hub
          // has answered for all of it: count once they have (as a close makes them).
          store.outbox.settleReleased();
          const truth = counted(dir);
          expect(store.outbox.pendingByCollection()).toEqual(truth.byCollection);
          expect(store.outbox.pendingCount()).toBe(truth.unacknowledged);
        }
      }),
      { numRuns: 60 },
    );
  });
});
