import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { AGENT_MIGRATIONS } from '../../agent/schema.js';
import { AgentStore } from '../../agent/store/agent-store.js';
import type { NewWrite } from '../../agent/store/writes.js';
import { encodeHlc, type Hlc } from '../../shared/hlc.js';
import type { Change } from '../../shared/messages.js';
import { tempDir } from '../helpers/temp.js';

let t = 1_000;
const hlc = (): Hlc => encodeHlc(t++, 0);
const change = (lsn: number, k: string, v?: unknown, c = 'docs'): Change => ({
  lsn,
  c,
  k,
  op: v === undefined ? 'del' : 'put',
  ...(v !== undefined && { v }),
  hlc: hlc(),
  o: 'pi-x',
});

/** Appends writes (to the default partition unless they name one) and returns their seqs. */
const appendAll = (store: AgentStore, writes: Array<Omit<NewWrite, 'partition'> & { partition?: string }>, clockNow: Hlc): number[] =>
  store.outbox.append(
    writes.map((w) => ({ partition: 'default', ...w })),
    clockNow,
  ).seqs as number[];

describe('agent store', () => {
  let store: AgentStore;
  afterEach(() => store?.close());

  it('is born with an incarnation that survives restarts, and a new database gets a new one', () => {
    const dir = tempDir('agent');
    store = new AgentStore(dir);
    const inc = store.partitions.incarnationOf('default');
    expect(inc).toMatch(/^[0-9a-f]{32}$/);
    appendAll(store, [{ collection: 'docs', key: 'a', op: 'put', value: 1, hlc: hlc() }], hlc());
    store.close();
    store = new AgentStore(dir);
    expect(store.partitions.incarnationOf('default')).toBe(inc);
    expect(appendAll(store, [{ collection: 'docs', key: 'b', op: 'put', value: 2, hlc: hlc() }], hlc())).toEqual([2]);
    store.close();
    store = new AgentStore(tempDir('agent'));
    expect(store.partitions.incarnationOf('default')).not.toBe(inc);
  });

  it('lays pending writes over the confirmed replica, in order', () => {
    store = new AgentStore(tempDir('agent'));
    store.replica.applyChanges('default', [change(1, 'k', { a: 1, b: 1 })]);
    appendAll(
      store,
      [
        { collection: 'docs', key: 'k', op: 'patch', value: { b: 2 }, hlc: hlc() },
        { collection: 'docs', key: 'k', op: 'patch', value: { c: 3 }, hlc: hlc() },
        { collection: 'docs', key: 'gone', op: 'put', value: 1, hlc: hlc() },
        { collection: 'docs', key: 'gone', op: 'del', value: undefined, hlc: hlc() },
      ],
      hlc(),
    );
    expect(store.replica.read('docs', 'k')).toEqual({
      collection: 'docs',
      key: 'k',
      value: { a: 1, b: 2, c: 3 },
      version: 1,
      pending: true,
    });
    expect(store.replica.read('docs', 'k', true)).toEqual({
      collection: 'docs',
      key: 'k',
      value: { a: 1, b: 1 },
      version: 1,
      pending: false,
    });
    expect(store.replica.read('docs', 'gone')).toBeUndefined();
    expect(store.outbox.pendingCount()).toBe(4);
  });

  it('never goes backwards between the commit ack and the change set', () => {
    store = new AgentStore(tempDir('agent'));
    const [seq] = appendAll(store, [{ collection: 'docs', key: 'k', op: 'put', value: 'mine', hlc: hlc() }], hlc());
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 7 }], () => true);
    expect(store.outbox.pendingCount()).toBe(0); // acknowledged...
    expect(store.replica.read('docs', 'k')?.value).toBe('mine'); // ...and still visible
    store.replica.applyChanges('default', [change(7, 'k', 'mine')]);
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'mine', version: 7, pending: false });
  });

  it('releases a committed write at once when its collection is not replicated here', () => {
    store = new AgentStore(tempDir('agent'));
    const [seq] = appendAll(store, [{ collection: 'telemetry', key: 'k', op: 'put', value: 1, hlc: hlc() }], hlc());
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 3 }], () => false);
    expect(store.replica.read('telemetry', 'k')).toBeUndefined();
  });

  it('records rejections and conflicts and drops them from the overlay', () => {
    store = new AgentStore(tempDir('agent'));
    store.replica.applyChanges('default', [change(1, 'k', 'theirs')]);
    const seqs = appendAll(
      store,
      [
        { collection: 'docs', key: 'k', op: 'put', value: 'mine', hlc: hlc() },
        { collection: 'docs', key: 'j', op: 'put', value: 'bad', hlc: hlc() },
      ],
      hlc(),
    );
    const rejected = store.outbox.applyResults(
      'default',
      [
        { seq: seqs[0]!, outcome: 'conflict', lsn: 1, reason: 'lww' },
        { seq: seqs[1]!, outcome: 'rejected', reason: 'schema', detail: 'no' },
      ],
      () => true,
    );
    expect(rejected.map((r) => r.outcome)).toEqual(['conflict', 'rejected']);
    expect(store.replica.read('docs', 'k')?.value).toBe('theirs');
    expect(store.replica.read('docs', 'j')).toBeUndefined();
    expect(store.rejections.list()).toMatchObject([
      { seq: seqs[1], reason: 'schema', value: 'bad' },
      { seq: seqs[0], outcome: 'conflict' },
    ]);
  });

  it('applies changes idempotently by version; tombstones stop old puts resurrecting', () => {
    store = new AgentStore(tempDir('agent'));
    expect(store.replica.applyChanges('default', [change(2, 'k', 'two'), change(1, 'k', 'one')]).map((c) => c.lsn)).toEqual([2]);
    expect(store.replica.read('docs', 'k')?.value).toBe('two');
    store.replica.applyChanges('default', [change(3, 'k')]);
    expect(store.replica.applyChanges('default', [change(2, 'k', 'two')])).toEqual([]);
    expect(store.replica.read('docs', 'k')).toBeUndefined();
    expect(store.replica.cursor('docs')).toBe(3);
    store.replica.applyChanges('default', [], 10);
    expect(store.partitions.watermarkOf('default')).toBe(10);
    store.replica.applyChanges('default', [], 5);
    expect(store.partitions.watermarkOf('default')).toBe(10);
  });

  it('lists by prefix and after, with pending writes merged in key order', () => {
    store = new AgentStore(tempDir('agent'));
    store.replica.applyChanges(
      'default',
      ['a1', 'a2', 'a3', 'b1'].map((k, i) => change(i + 1, k, k)),
    );
    appendAll(
      store,
      [
        { collection: 'docs', key: 'a2', op: 'del', value: undefined, hlc: hlc() },
        { collection: 'docs', key: 'a0', op: 'put', value: 'new', hlc: hlc() },
      ],
      hlc(),
    );
    expect(store.replica.list('docs', { limit: 10 }).map((d) => d.key)).toEqual(['a0', 'a1', 'a3', 'b1']);
    expect(store.replica.list('docs', { prefix: 'a', limit: 10 }).map((d) => d.key)).toEqual(['a0', 'a1', 'a3']);
    expect(store.replica.list('docs', { prefix: 'a', after: 'a1', limit: 10 }).map((d) => d.key)).toEqual(['a3']);
    expect(store.replica.list('docs', { limit: 2 }).map((d) => d.key)).toEqual(['a0', 'a1']);
    expect(store.replica.list('docs', { limit: 10, confirmedOnly: true }).map((d) => d.key)).toEqual(['a1', 'a2', 'a3', 'b1']);
  });

  it('hands out contiguous pending runs within the op and byte budgets', () => {
    store = new AgentStore(tempDir('agent'));
    appendAll(
      store,
      Array.from({ length: 10 }, (_, i) => ({ collection: 'docs', key: `k${i}`, op: 'put' as const, value: 'x'.repeat(100), hlc: hlc() })),
      hlc(),
    );
    expect(store.outbox.pendingFrom('default', 1, 4, 1 << 20).map((o) => o.seq)).toEqual([1, 2, 3, 4]);
    expect(store.outbox.pendingFrom('default', 8, 100, 1 << 20).map((o) => o.seq)).toEqual([8, 9, 10]);
    expect(store.outbox.pendingFrom('default', 1, 100, 400).length).toBe(2);
    expect(store.outbox.pendingFrom('default', 1, 100, 1).length).toBe(1); // always at least one
    expect(store.outbox.lowestPendingSeq('default')).toBe(1);
  });

  it('reports a full database as StorageFullError and keeps what was queued', () => {
    store = new AgentStore(tempDir('agent'));
    appendAll(store, [{ collection: 'docs', key: 'kept', op: 'put', value: 'safe', hlc: hlc() }], hlc());
    store.settings.setStorageLimit(store.settings.databaseBytes() + 8192);
    expect(() =>
      appendAll(
        store,
        Array.from({ length: 50 }, (_, i) => ({
          collection: 'docs',
          key: `big${i}`,
          op: 'put' as const,
          value: 'x'.repeat(8000),
          hlc: hlc(),
        })),
        hlc(),
      ),
    ).toThrow(expect.objectContaining({ code: 'OUTPOST_STORAGE_FULL' }));
    expect(store.outbox.pendingCount()).toBe(1);
    expect(store.replica.read('docs', 'kept')?.value).toBe('safe');
    expect(appendAll(store, [{ collection: 'docs', key: 'small', op: 'put', value: 1, hlc: hlc() }], hlc())).toEqual([2]);
  });

  it('keeps one sequence space, incarnation and watermark per partition lane', () => {
    const dir = tempDir('agent');
    store = new AgentStore(dir);
    const seqs = appendAll(
      store,
      [
        { partition: 'default', collection: 'docs', key: 'a', op: 'put', value: 1, hlc: hlc() },
        { partition: 'orders', collection: 'orders', key: 'o1', op: 'put', value: 2, hlc: hlc() },
        { partition: 'orders', collection: 'orders', key: 'o2', op: 'put', value: 3, hlc: hlc() },
        { partition: 'default', collection: 'docs', key: 'b', op: 'put', value: 4, hlc: hlc() },
      ],
      hlc(),
    );
    expect(seqs).toEqual([1, 1, 2, 2]); // contiguous within each lane, as each partition's hub requires
    expect(store.partitions.incarnationOf('orders')).not.toBe(store.partitions.incarnationOf('default'));
    expect(store.outbox.pendingFrom('orders', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'o1'],
      [2, 'o2'],
    ]);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => [o.seq, o.k])).toEqual([
      [1, 'a'],
      [2, 'b'],
    ]);
    // An ack in one lane settles only that lane's seq 1.
    store.outbox.applyResults('orders', [{ seq: 1, outcome: 'committed', lsn: 5 }], () => false);
    expect(store.outbox.lowestPendingSeq('orders')).toBe(2);
    expect(store.outbox.lowestPendingSeq('default')).toBe(1);
    store.replica.applyChanges('orders', [], 40);
    expect(store.partitions.watermarkOf('orders')).toBe(40);
    expect(store.partitions.watermarkOf('default')).toBe(0);
    const orders = store.partitions.incarnationOf('orders');
    store.close();
    store = new AgentStore(dir);
    expect(store.partitions.incarnationOf('orders')).toBe(orders);
    expect(appendAll(store, [{ partition: 'orders', collection: 'orders', key: 'o3', op: 'put', value: 5, hlc: hlc() }], hlc())).toEqual([
      3,
    ]);
    // A lane's reincarnation renumbers that lane only.
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

  it('adopting the partition assignment moves earlier writes to their lanes; those that stay keep their identity', () => {
    const dir = tempDir('agent');
    store = new AgentStore(dir);
    appendAll(
      store,
      ['d1', 'o1', 'd2', 'o2', 'd3'].map((k) => ({
        collection: k.startsWith('o') ? 'orders' : 'docs',
        key: k,
        op: 'put' as const,
        value: k,
        hlc: hlc(),
      })),
      hlc(),
    );
    const before = store.partitions.incarnationOf('default');
    const moved = store.outbox.adoptAssignment('partitions', { orders: 'orders' }, (c) => (c === 'orders' ? 'orders' : 'default'));
    const orders = store.partitions.incarnationOf('orders');
    expect(moved).toEqual([
      { from: { incarnation: before, seq: 2 }, to: { partition: 'orders', incarnation: orders, seq: 1 } },
      { from: { incarnation: before, seq: 4 }, to: { partition: 'orders', incarnation: orders, seq: 2 } },
    ]);
    // Recorded in the same transaction as the move.
    expect(store.settings.get('partitions')).toEqual({ orders: 'orders' });
    expect(store.outbox.pendingFrom('orders', 1, 10, 1 << 20).map((o) => [o.seq, o.k, o.v])).toEqual([
      [1, 'o1', 'o1'],
      [2, 'o2', 'o2'],
    ]);
    // The default lane keeps its sequence and incarnation: a moved write leaves a skip in its place,
    // so whatever the hub already holds of this lane still means the same.
    expect(store.partitions.incarnationOf('default')).toBe(before);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => [o.seq, o.k, o.op])).toEqual([
      [1, 'd1', 'put'],
      [2, 'o1', 'skip'],
      [3, 'd2', 'put'],
      [4, 'o2', 'skip'],
      [5, 'd3', 'put'],
    ]);
    expect(store.replica.read('orders', 'o2')).toMatchObject({ value: 'o2', pending: true });
    expect(store.outbox.pendingByCollection().orders?.pending).toBe(2); // once each, not twice
    // The skip's ack drops the placeholder without reporting it to the app.
    expect(store.outbox.applyResults('default', [{ seq: 2, outcome: 'rejected', reason: 'moved' }], () => true)).toEqual([]);
    expect(store.rejections.list()).toEqual([]);
    expect(store.outbox.adoptAssignment('partitions', { orders: 'orders' }, (c) => (c === 'orders' ? 'orders' : 'default'))).toEqual([]);
  });

  it('migrates an outbox from before partitions into the default lane, keeping seqs', () => {
    const dir = tempDir('agent');
    const db = new Database(join(dir, 'agent.db'));
    db.exec(AGENT_MIGRATIONS.slice(0, 4).join(';'));
    db.pragma('user_version = 4');
    db.prepare("INSERT INTO meta (name, value) VALUES ('incarnation', ?), ('next_seq', '8')").run('ab'.repeat(16));
    db.prepare(
      "INSERT INTO outbox (seq, collection, key, op, value, hlc, base, created_at) VALUES (7, 'docs', 'k', 'del', NULL, ?, 0, 1)",
    ).run(hlc());
    db.close();
    store = new AgentStore(dir);
    expect(store.partitions.incarnationOf('default')).toBe('ab'.repeat(16));
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map((o) => [o.seq, o.k, o.op])).toEqual([[7, 'k', 'del']]);
    expect(appendAll(store, [{ collection: 'docs', key: 'n', op: 'put', value: 1, hlc: hlc() }], hlc())).toEqual([8]);
  });
});
