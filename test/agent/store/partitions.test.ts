import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { partitionScoped } from '../../../agent/store/agent-db.js';
import { tempDir } from '../../helpers/temp.js';
import { appendAll, change, openStore, put, queued } from './fixtures.js';
import { valueOf, withValue } from '../../helpers/value-bytes.js';

const toOrders = (c: string): string => (c === 'orders' ? 'orders' : 'default');

describe('agent store: partitions', () => {
  it('is born with an incarnation that survives restarts, and a new database gets a new one', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    const inc = store.partitions.incarnationOf('default');
    expect(inc).toMatch(/^[0-9a-f]{32}$/);
    appendAll(store, [put('a', 1)]);
    store.close();
    store = openStore(dir);
    expect(store.partitions.incarnationOf('default')).toBe(inc);
    expect(appendAll(store, [put('b', 2)])).toEqual([2]);
    expect(openStore().partitions.incarnationOf('default')).not.toBe(inc);
  });

  it('keeps one sequence space, incarnation and watermark per partition', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    const seqs = appendAll(store, [
      put('a', 1, { partition: 'default' }),
      put('o1', 2, { partition: 'orders', collection: 'orders' }),
      put('o2', 3, { partition: 'orders', collection: 'orders' }),
      put('b', 4, { partition: 'default' }),
    ]);
    expect(seqs).toEqual([1, 1, 2, 2]); // contiguous within each partition, as each partition's hub requires
    expect(store.partitions.incarnationOf('orders')).not.toBe(store.partitions.incarnationOf('default'));
    expect(store.outbox.pendingFrom('orders', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'o1'],
      [2, 'o2'],
    ]);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'a'],
      [2, 'b'],
    ]);
    // An ack in one partition settles only that partition's seq 1.
    store.outbox.applyResults('orders', [{ seq: 1, outcome: 'committed', lsn: 5 }], () => false);
    expect(store.outbox.lowestPendingSeq('orders')).toBe(2);
    expect(store.outbox.lowestPendingSeq('default')).toBe(1);
    store.replica.applyChanges('orders', [], 40);
    expect(store.partitions.watermarkOf('orders')).toBe(40);
    expect(store.partitions.watermarkOf('default')).toBe(0);
    const orders = store.partitions.incarnationOf('orders');
    store.close();
    store = openStore(dir);
    expect(store.partitions.incarnationOf('orders')).toBe(orders);
    expect(store.partitions.watermarkOf('orders')).toBe(40);
    expect(appendAll(store, [put('o3', 5, { partition: 'orders', collection: 'orders' })])).toEqual([3]);
    // A partition's reincarnation renumbers that partition only.
    expect(store.outbox.reincarnate('orders').renumbered).toEqual([
      { from: 2, to: 1 },
      { from: 3, to: 2 },
    ]);
    expect(store.outbox.pendingFrom('orders', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'o2'],
      [2, 'o3'],
    ]);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => o.seq)).toEqual([1, 2]);
  });

  it('reincarnating renumbers unacknowledged writes from 1 in order under a new incarnation, and new writes follow on', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    appendAll(store, [put('a', 1), put('b', 2), put('c', 3), put('d', 4)]);
    store.outbox.applyResults(
      'default',
      [
        { seq: 1, outcome: 'committed', lsn: 1 },
        { seq: 2, outcome: 'committed', lsn: 2 },
      ],
      () => true,
    ); // 1 and 2 stay in the overlay, waiting for their versions
    const before = store.partitions.incarnationOf('default');
    const { incarnation, renumbered } = store.outbox.reincarnate('default');
    expect(incarnation).not.toBe(before);
    expect(store.partitions.incarnationOf('default')).toBe(incarnation);
    // The acknowledged writes are never sent again: the new incarnation's first upload is seq 1.
    expect(renumbered).toEqual([
      { from: 3, to: 1 },
      { from: 4, to: 2 },
    ]);
    expect(store.outbox.lowestPendingSeq('default')).toBe(1);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'c'],
      [2, 'd'],
    ]);
    store.replica.applyChanges('default', [change(1, 'a', 1)]); // releases the first confirmed row
    expect(store.outbox.reincarnate('default').renumbered).toEqual([
      { from: 1, to: 1 },
      { from: 2, to: 2 },
    ]);
    expect(queued(store)).toEqual([
      [1, 'c', 'put'],
      [2, 'd', 'put'],
    ]);
    expect(store.replica.read('docs', 'b')).toMatchObject({ value: 2, pending: true });
    const renamed = store.partitions.incarnationOf('default');
    store.close();
    store = openStore(dir);
    expect(store.partitions.incarnationOf('default')).toBe(renamed);
    expect(appendAll(store, [put('e', 5)])).toEqual([3]);
    // The confirmed write still waiting for its version is released when it arrives.
    store.replica.applyChanges('default', [change(2, 'b', 2)]);
    expect(store.replica.read('docs', 'b')).toMatchObject({ value: 2, version: 2, pending: false });
  });

  it('adopting the partition assignment moves earlier writes to their partitions; those that stay keep their identity', () => {
    const store = openStore();
    appendAll(
      store,
      ['d1', 'o1', 'd2', 'o2', 'd3'].map((k) => put(k, k, { collection: k.startsWith('o') ? 'orders' : 'docs' })),
    );
    const before = store.partitions.incarnationOf('default');
    const moved = store.outbox.adoptAssignment('partitions', { orders: 'orders' }, toOrders);
    const orders = store.partitions.incarnationOf('orders');
    expect(moved).toEqual([
      { from: { incarnation: before, seq: 2 }, to: { partition: 'orders', incarnation: orders, seq: 1 } },
      { from: { incarnation: before, seq: 4 }, to: { partition: 'orders', incarnation: orders, seq: 2 } },
    ]);
    // Recorded in the same transaction as the move.
    expect(store.settings.get('partitions')).toEqual({ orders: 'orders' });
    expect(store.outbox.pendingFrom('orders', 1, 10, 1 << 20).map((o) => [o.seq, o.k, valueOf(o)])).toEqual([
      [1, 'o1', 'o1'],
      [2, 'o2', 'o2'],
    ]);
    // The default partition keeps its sequence and incarnation: a moved write leaves a skip in its
    // place, so whatever the hub already holds of that sequence still means the same.
    expect(store.partitions.incarnationOf('default')).toBe(before);
    expect(queued(store)).toEqual([
      [1, 'd1', 'put'],
      [2, 'o1', 'skip'],
      [3, 'd2', 'put'],
      [4, 'o2', 'skip'],
      [5, 'd3', 'put'],
    ]);
    expect(withValue(store.outbox.pendingFrom('default', 2, 1, 1 << 20)[0]!)).toMatchObject({ op: 'skip', v: 'moved' });
    expect(store.replica.read('orders', 'o2')).toMatchObject({ value: 'o2', pending: true });
    expect(store.outbox.pendingByCollection().orders?.pending).toBe(2); // once each, not twice
    // The skip's ack drops the placeholder without reporting it to the app.
    expect(store.outbox.applyResults('default', [{ seq: 2, outcome: 'rejected', reason: 'moved' }], () => true)).toEqual([]);
    expect(store.rejections.list()).toEqual([]);
    expect(store.outbox.adoptAssignment('partitions', { orders: 'orders' }, toOrders)).toEqual([]);
    // New writes to the partition follow the moved ones.
    expect(appendAll(store, [put('o3', 3, { partition: 'orders', collection: 'orders' })])).toEqual([3]);
  });

  it('moves only writes not yet acknowledged, and appends moved writes after those already in the partition', () => {
    const store = openStore();
    appendAll(store, [put('o0', 0, { partition: 'orders', collection: 'orders' })]);
    appendAll(store, [put('o1', 1, { collection: 'orders' }), put('o2', 2, { collection: 'orders' })]);
    store.outbox.applyResults('default', [{ seq: 1, outcome: 'committed', lsn: 3 }], () => true);
    const moved = store.outbox.adoptAssignment('partitions', { orders: 'orders' }, toOrders);
    expect(moved.map(({ from, to }) => [from.seq, to.seq])).toEqual([[2, 2]]);
    expect(queued(store, 'orders')).toEqual([
      [1, 'o0', 'put'],
      [2, 'o2', 'put'],
    ]);
    expect(store.replica.read('orders', 'o1')).toMatchObject({ value: 1, pending: true }); // still in the overlay
  });

  it('moves a backlog larger than one page in order, two collections interleaved, and leaves what stays where it was', () => {
    const store = openStore();
    const collections = ['orders', 'docs', 'invoices'];
    const writes = Array.from({ length: 3_000 }, (_, i) => put(`k${i}`, i, { collection: collections[i % 3]! }));
    appendAll(store, writes);
    const billing = (collection: string): string => (collection === 'docs' ? 'default' : 'billing');
    const moved = store.outbox.adoptAssignment('partitions', { orders: 'billing', invoices: 'billing' }, billing);
    expect(moved).toHaveLength(2_000);
    // In billing, in the order they were written: orders and invoices as they interleaved.
    const expected = writes.filter((w) => w.collection !== 'docs').map((w, i) => [i + 1, w.key]);
    expect(store.outbox.pendingFrom('billing', 1, 5_000, 1 << 30).map((o) => [o.seq, o.k])).toEqual(expected);
    const stayed = store.outbox.pendingFrom('default', 1, 5_000, 1 << 30);
    expect(stayed.filter((o) => o.op !== 'skip').map((o) => o.k)).toEqual(writes.filter((w) => w.collection === 'docs').map((w) => w.key));
    expect(stayed.filter((o) => o.op === 'skip')).toHaveLength(2_000);
  });

  it('keeps snapshot progress per partition', () => {
    const store = openStore();
    store.replica.applySnapshotPage('default', [change(3, 'a', 1)], 10, ['docs', 'a']);
    store.replica.applySnapshotPage('orders', [change(5, 'o', 1, 'orders')], 20, ['orders', 'o']);
    expect(store.partitions.snapshotProgressOf('default')).toEqual({ lsn: 10, after: ['docs', 'a'] });
    expect(store.partitions.snapshotProgressOf('orders')).toEqual({ lsn: 20, after: ['orders', 'o'] });
    store.replica.applySnapshotPage('orders', [], 20, undefined);
    expect(store.partitions.snapshotProgressOf('orders')).toBeUndefined();
    expect(store.partitions.snapshotProgressOf('default')).toEqual({ lsn: 10, after: ['docs', 'a'] });
  });

  it('keeps its state under the names existing databases use', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    appendAll(store, [put('a', 1), put('o', 1, { partition: 'orders', collection: 'orders' })]);
    // The next seqs go to meta when the last rows leave (here, committed in collections not replicated).
    store.outbox.applyResults('default', [{ seq: 1, outcome: 'committed', lsn: 1 }], () => false);
    store.outbox.applyResults('orders', [{ seq: 1, outcome: 'committed', lsn: 1 }], () => false);
    store.replica.applyChanges('default', [], 7);
    store.replica.applyChanges('orders', [], 8);
    store.replica.applySnapshotPage('default', [], 9, ['docs', 'a']);
    store.replica.applySnapshotPage('orders', [], 9, ['orders', 'o']);
    store.settings.set(partitionScoped('hubEpoch', 'default'), 2);
    store.settings.set(partitionScoped('hubEpoch', 'orders'), 3);
    store.outbox.adoptAssignment('partitions', { orders: 'orders' }, toOrders);
    store.close();
    const db = new Database(`${dir}/agent.db`, { readonly: true });
    const meta = Object.fromEntries(
      db
        .prepare<[], { name: string; value: string }>('SELECT name, value FROM meta')
        .all()
        .map((r) => [r.name, r.value]),
    );
    db.close();
    expect(Object.keys(meta).sort()).toEqual([
      'hlc',
      'incarnation',
      'incarnation:orders',
      'next_seq',
      'next_seq:orders',
      'setting:hubEpoch',
      'setting:hubEpoch:orders',
      'setting:partitions',
      'snapshot',
      'snapshot:orders',
      'watermark',
      'watermark:orders',
    ]);
    expect(meta).toMatchObject({
      next_seq: '2',
      'next_seq:orders': '2',
      watermark: '7',
      'watermark:orders': '8',
      snapshot: '{"lsn":9,"after":["docs","a"]}',
      'setting:hubEpoch': '2',
      'setting:hubEpoch:orders': '3',
      'setting:partitions': '{"orders":"orders"}',
    });
  });
});

describe('agent store: settings', () => {
  it('keeps small JSON values across restarts', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    expect(store.settings.get('hub-policies')).toBeUndefined();
    store.settings.set('hub-policies', { defaults: { ttlSeconds: 5 } });
    store.settings.set('hubEpoch', 4);
    store.close();
    store = openStore(dir);
    expect(store.settings.get('hub-policies')).toEqual({ defaults: { ttlSeconds: 5 } });
    expect(store.settings.get<number>('hubEpoch')).toBe(4);
  });
});
