import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../helpers/temp.js';
import { appendAll, change, openStore, put } from './fixtures.js';

describe('agent store: reads over the overlay', () => {
  it('lays pending writes over the confirmed replica, in order', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(1, 'k', { a: 1, b: 1 })]);
    appendAll(store, [
      { collection: 'docs', key: 'k', op: 'patch', value: { b: 2 } },
      { collection: 'docs', key: 'k', op: 'patch', value: { c: 3 } },
      put('gone', 1),
      { collection: 'docs', key: 'gone', op: 'del', value: undefined },
    ]);
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

  it('shows put, patch and delete over a confirmed document; confirmed reads ignore them all', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(1, 'p', { n: 1 }), change(2, 'x', { n: 2 }), change(3, 'd', 'there')]);
    appendAll(store, [
      put('p', { m: 1 }),
      { collection: 'docs', key: 'x', op: 'patch', value: { n: null, m: 2 } },
      { collection: 'docs', key: 'd', op: 'del', value: undefined },
      { collection: 'docs', key: 'fresh', op: 'patch', value: { f: 1 } },
    ]);
    expect(store.replica.read('docs', 'p')).toMatchObject({ value: { m: 1 }, version: 1, pending: true }); // a put replaces
    expect(store.replica.read('docs', 'x')).toMatchObject({ value: { m: 2 }, version: 2, pending: true }); // null removes a field
    expect(store.replica.read('docs', 'd')).toBeUndefined();
    expect(store.replica.read('docs', 'fresh')).toMatchObject({ value: { f: 1 }, version: 0, pending: true });
    expect(store.replica.read('docs', 'p', true)).toMatchObject({ value: { n: 1 }, pending: false });
    expect(store.replica.read('docs', 'x', true)).toMatchObject({ value: { n: 2 }, pending: false });
    expect(store.replica.read('docs', 'd', true)).toMatchObject({ value: 'there', pending: false });
    expect(store.replica.read('docs', 'fresh', true)).toBeUndefined();
    expect(store.replica.read('other', 'p')).toBeUndefined(); // documents are per collection
  });

  it('lists by prefix and after, with pending writes merged in key order', () => {
    const store = openStore();
    store.replica.applyChanges(
      'default',
      ['a1', 'a2', 'a3', 'b1'].map((k, i) => change(i + 1, k, k)),
    );
    appendAll(store, [{ collection: 'docs', key: 'a2', op: 'del', value: undefined }, put('a0', 'new')]);
    expect(store.replica.list('docs', { limit: 10 }).map((d) => d.key)).toEqual(['a0', 'a1', 'a3', 'b1']);
    expect(store.replica.list('docs', { prefix: 'a', limit: 10 }).map((d) => d.key)).toEqual(['a0', 'a1', 'a3']);
    expect(store.replica.list('docs', { prefix: 'a', after: 'a1', limit: 10 }).map((d) => d.key)).toEqual(['a3']);
    expect(store.replica.list('docs', { limit: 2 }).map((d) => d.key)).toEqual(['a0', 'a1']);
    expect(store.replica.list('docs', { limit: 10, confirmedOnly: true }).map((d) => d.key)).toEqual(['a1', 'a2', 'a3', 'b1']);
  });

  it('fills a page even when pending deletes hide confirmed documents', () => {
    const store = openStore();
    store.replica.applyChanges(
      'default',
      Array.from({ length: 10 }, (_, i) => change(i + 1, `k${i}`, i)),
    );
    appendAll(
      store,
      ['k0', 'k1', 'k2', 'k3'].map((key) => ({ collection: 'docs', key, op: 'del' as const, value: undefined })),
    );
    expect(store.replica.list('docs', { limit: 3 }).map((d) => d.key)).toEqual(['k4', 'k5', 'k6']);
    expect(store.replica.list('docs', { limit: 3, after: 'k5' }).map((d) => d.key)).toEqual(['k6', 'k7', 'k8']);
  });
});

describe('agent store: applying the hub’s changes', () => {
  it('applies changes idempotently by version; tombstones stop old puts resurrecting', () => {
    const store = openStore();
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

  it('keeps a delete as a tombstone: hidden from reads and lists, its version kept for the next write', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(4, 'k', 'here')]);
    store.replica.applyChanges('default', [change(6, 'k')]);
    expect(store.replica.read('docs', 'k', true)).toBeUndefined();
    expect(store.replica.list('docs', { limit: 10 })).toEqual([]);
    expect(store.replica.versionOf('docs', 'k')).toBe(6);
    appendAll(store, [put('k', 'back')]);
    expect(store.outbox.pendingFrom('default', 1, 1, 1 << 20)[0]).toMatchObject({ base: 6 });
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'back', version: 6, pending: true });
  });

  it('never lets an older change overwrite a newer version, in one batch or across batches', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(9, 'k', 'nine')]);
    expect(store.replica.applyChanges('default', [change(5, 'k', 'five'), change(7, 'k')])).toEqual([]);
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'nine', version: 9 });
    expect(store.replica.cursor('docs')).toBe(9); // cursors never go back either
  });

  it('keeps per collection the highest LSN applied', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(1, 'a', 1), change(3, 'b', 2, 'other'), change(2, 'c', 3)]);
    expect(store.replica.cursors()).toEqual({ docs: 2, other: 3 });
    expect(store.replica.cursor('none')).toBe(0);
  });

  it('writes a live change set’s cursor with its rows: a killed process never shows an applied LSN going back', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const disk = new Database(join(dir, 'agent.db'), { readonly: true });
    const onDisk = (): number | undefined =>
      disk.prepare<[], { lsn: number }>("SELECT applied_lsn AS lsn FROM collections WHERE collection = 'docs'").get()?.lsn;
    for (let lsn = 1; lsn <= 20; lsn++) {
      store.replica.applyChanges('default', [change(lsn, `k${lsn}`, lsn)]);
      expect(onDisk()).toBe(lsn);
    }
    store.close();
    disk.close();
  });

  it('applies a snapshot page by page, remembering where it stopped; the last page sets watermark and cursors', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(2, 'old', 'stale')]);
    const page1 = store.replica.applySnapshotPage(
      'default',
      [change(20, 'a', 1), change(2, 'old', 'stale')],
      30,
      ['docs', 'a'],
      ['docs', 'quiet'],
    );
    expect(page1.map((c) => c.k)).toEqual(['a']);
    expect(store.partitions.snapshotProgressOf('default')).toEqual({ lsn: 30, after: ['docs', 'a'] });
    expect(store.partitions.watermarkOf('default')).toBe(0);
    store.replica.applySnapshotPage('default', [change(25, 'b', 2)], 30, undefined, ['docs', 'quiet']);
    expect(store.partitions.snapshotProgressOf('default')).toBeUndefined();
    expect(store.partitions.watermarkOf('default')).toBe(30);
    // Every replicated collection now holds everything up to the snapshot's LSN, even one without documents.
    expect(store.replica.cursors()).toEqual({ docs: 30, quiet: 30 });
  });

  it('a finished snapshot of one partition moves only that partition’s watermark and collections', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(4, 'd', 1)], 4);
    const inBilling = (c: string): boolean => c === 'orders';
    store.replica.applySnapshotPage('billing', [change(7, 'o1', 1, 'orders')], 9, ['orders', 'o1'], ['orders', 'docs'], inBilling);
    expect(store.partitions.snapshotProgressOf('billing')).toEqual({ lsn: 9, after: ['orders', 'o1'] });
    expect(store.partitions.snapshotProgressOf('default')).toBeUndefined();
    store.replica.applySnapshotPage('billing', [], 9, undefined, ['orders', 'docs'], inBilling);
    expect(store.partitions.watermarkOf('billing')).toBe(9);
    expect(store.partitions.watermarkOf('default')).toBe(4);
    expect(store.replica.cursors()).toEqual({ docs: 4, orders: 9 });
  });
});
