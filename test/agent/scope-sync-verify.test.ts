import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ScopeSync } from '../../agent/scope-sync.js';
import type { Change, PullMessage } from '../../shared/messages.js';
import { change, openStore } from './store/fixtures.js';

const HLC = '0000018c2a3b4c5d';
const LANE = 'default';
const A = 'AAAAAAAAAAAAAAAA';

const scoped = (lsn: number, k: string): Change => ({ ...change(lsn, k, { lsn }), bk: [A] });

/** What a bucket's change sets and pages hand the verifier: the bucket's digest once they are applied, at the LSN they reach. */
describe('scope sync: a bucket’s digests go to the verifier', () => {
  it('after a change set applied in order, and after the page that reaches the bucket’s head; not after a gap', () => {
    const store = openStore();
    store.scope.reconcile(LANE, [A], []);
    store.replica.applyBucketSnapshot(LANE, A, [scoped(1, 'a')], 10, undefined, true);
    const pulls: PullMessage[] = [];
    const verified: Array<[string, string, number, number]> = [];
    const sync = new ScopeSync(
      store,
      {
        send: (pull) => (pulls.push(pull), true),
        onApplied: () => undefined,
        onEvicted: () => undefined,
        onProgress: () => undefined,
        verify: (...args) => void verified.push(args),
      },
      { lane: LANE, pageLimit: 100, pullTimeoutMs: 10_000 },
      pino({ level: 'silent' }),
    );
    sync.onConnected();
    sync.onScope(['scope', { hlc: HLC, cs: ['docs'], bs: [[A, 10]] }]);
    sync.onChanges(['changes', { c: 'docs', prev: 10, hlc: HLC, changes: [scoped(11, 'b'), scoped(12, 'c')], b: A, dg: 77 }]);
    expect(verified).toEqual([[A, 'docs', 12, 77]]);
    // A gap: the bucket is pulled, and nothing is compared until the page that reaches its head.
    sync.onChanges(['changes', { c: 'docs', prev: 14, hlc: HLC, changes: [scoped(15, 'e')], b: A, dg: 88 }]);
    expect(verified).toHaveLength(1);
    expect(pulls).toHaveLength(1);
    const pull = pulls[0]![1];
    sync.onPage([
      'page',
      { id: pull.id, from: 12, to: 15, more: false, hlc: HLC, changes: [scoped(14, 'd'), scoped(15, 'e')], b: A, dg: { docs: 99 } },
    ]);
    expect(verified).toEqual([
      [A, 'docs', 12, 77],
      [A, 'docs', 15, 99],
    ]);
    expect(store.scope.held(LANE).get(A)?.cursor).toBe(15);
    sync.stop();
  });
});
