import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../../../agent/store/agent-store.js';
import type { Change } from '../../../shared/messages.js';
import { change, openStore } from './fixtures.js';
import type { JsonValue } from '../../../shared/values.js';

const LANE = 'default';
const [A, B, C] = ['AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB', 'CCCCCCCCCCCCCCCC'];

/** A change of a scoped document: a put in buckets `bk`, or `out` (it left the bucket it comes through). */
const scoped = (lsn: number, k: string, bk: string[], v: JsonValue = { lsn }): Change => ({ ...change(lsn, k, v), bk });
const out = (lsn: number, k: string): Change => ({ ...change(lsn, k), op: 'out' });
const tag = (lsn: number, k: string, bk: string[]): Change => ({ ...change(lsn, k), op: 'tag', bk });

/** Joins `bucket` and applies its whole snapshot at `lsn`, as a device does (a fresh snapshot, in one page). */
function join(store: AgentStore, bucket: string, docs: Change[], lsn: number, left: string[] = []): void {
  store.scope.reconcile(LANE, [bucket], left);
  store.replica.applyBucketSnapshot(LANE, bucket, docs, lsn, undefined, true);
}

const heldNow = (store: AgentStore) => store.scope.held(LANE);
const holds = (store: AgentStore, k: string): boolean => store.replica.read('docs', k) !== undefined;

describe('agent store: which buckets a scoped document is held through', () => {
  it('a bucket joined holds only what its snapshot names: a document whose stored buckets named it, and that has since left it, is evicted', () => {
    const store = openStore();
    join(store, A, [scoped(1, 'd', [A, B])], 1);
    // The device leaves A and joins B. Meanwhile d moved out of B (into A alone): B's snapshot
    // does not name it, and A is no longer followed to say so.
    join(store, B, [], 5, [A]);
    expect(store.replica.evictOutside(new Set(heldNow(store).keys()), ['docs'])).toEqual([{ collection: 'docs', key: 'd' }]);
    expect(holds(store, 'd')).toBe(false);
  });

  it('a document the snapshot names as a tag (held through a bucket still held) keeps the bucket joined', () => {
    const store = openStore();
    join(store, A, [scoped(2, 'd', [A, B])], 3);
    join(store, B, [tag(2, 'd', [A, B])], 5);
    store.scope.reconcile(LANE, [], [A]);
    expect(store.replica.evictOutside(new Set(heldNow(store).keys()), ['docs'])).toEqual([]);
    expect(holds(store, 'd')).toBe(true);
  });

  it('a document that left a bucket is kept only for a bucket that will bring the change: not one being joined', () => {
    const store = openStore();
    join(store, A, [scoped(1, 'd', [A, B])], 1);
    store.scope.reconcile(LANE, [B], []); // joining B: its snapshot is still to come
    // d left A (and B) at 2: B's snapshot, taken later, will not name it, nor will its log.
    const { evicted } = store.replica.applyBucketChanges(LANE, A, [out(2, 'd')], 2, heldNow(store));
    expect(evicted).toEqual([{ collection: 'docs', key: 'd' }]);
    store.replica.applyBucketSnapshot(LANE, B, [], 5, undefined, true);
    expect(store.replica.evictOutside(new Set(heldNow(store).keys()), ['docs'])).toEqual([]);
    expect(holds(store, 'd')).toBe(false);
  });

  it('nor one already past the change: its snapshot was taken after the document left it', () => {
    const store = openStore();
    join(store, A, [scoped(1, 'd', [A, B])], 1);
    join(store, B, [], 10); // d left B before B's snapshot at 10 was taken
    const { evicted } = store.replica.applyBucketChanges(LANE, A, [out(4, 'd')], 4, heldNow(store));
    expect(evicted).toEqual([{ collection: 'docs', key: 'd' }]);
  });

  it('another bucket’s change does not vouch for a bucket that went past it without bringing it', () => {
    const store = openStore();
    join(store, A, [scoped(1, 'd', [A])], 1);
    join(store, B, [], 10); // B's snapshot at 10: d is not in B (it entered at 2 and left before 10)
    // A lags: its change at 2 says d is in A and B, which B's snapshot already contradicts.
    store.replica.applyBucketChanges(LANE, A, [scoped(2, 'd', [A, B])], 2, heldNow(store));
    store.scope.reconcile(LANE, [], [A]);
    expect(store.replica.evictOutside(new Set(heldNow(store).keys()), ['docs'])).toEqual([{ collection: 'docs', key: 'd' }]);
  });

  it('a bucket that will bring the change keeps the document, and a change through it restores the bucket to its buckets', () => {
    const store = openStore();
    join(store, A, [scoped(1, 'd', [A, B]), scoped(1, 'e', [A, C])], 1);
    join(store, B, [tag(1, 'd', [A, B])], 1);
    // d leaves A at 3, B is at 1: B brings 3.
    expect(store.replica.applyBucketChanges(LANE, A, [out(3, 'd')], 3, heldNow(store)).evicted).toEqual([]);
    expect(holds(store, 'd')).toBe(true);
    expect(store.replica.applyBucketChanges(LANE, B, [scoped(3, 'd', [B])], 3, heldNow(store)).applied).toHaveLength(1);
    store.scope.reconcile(LANE, [], [A]);
    expect(store.replica.evictOutside(new Set(heldNow(store).keys()), ['docs'])).toEqual([{ collection: 'docs', key: 'e' }]);
    expect(holds(store, 'd')).toBe(true);
  });
});
