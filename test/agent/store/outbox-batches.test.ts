import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_BATCHED, MAX_WRITES_PER_BATCH } from '../../../agent/store/outbox-batches.js';
import { decodeWriteBatch, encodeWriteBatch, type BatchedWriteFields } from '../../../agent/store/write-batch-codec.js';
import { writesOnDisk } from '../../helpers/outbox-on-disk.js';
import { tempDir } from '../../helpers/temp.js';
import { valueOf } from '../../helpers/value-bytes.js';
import { append, appendAll, change, openStore, put, queued } from './fixtures.js';

/** Rows of the outbox table and rows of outbox_batches in the store at `dir`, as a reopened store would find them. */
function formsIn(dir: string): { rows: number; batches: number; writes: number } {
  const db = new Database(join(dir, 'agent.db'), { readonly: true });
  try {
    const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { rows: count('outbox'), batches: count('outbox_batches'), writes: writesOnDisk(db).length };
  } finally {
    db.close();
  }
}

const committed = (from: number, to: number, lsn = from) =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, outcome: 'committed' as const, lsn: lsn + i }));

describe('agent store: the outbox in batches', () => {
  it('stores an append as one batch, and a write the hub commits never gets a row of its own', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    appendAll(
      store,
      Array.from({ length: 100 }, (_, i) => put(`k${i}`, i)),
    );
    expect(formsIn(dir)).toEqual({ rows: 0, batches: 1, writes: 100 });
    store.outbox.applyResults('default', committed(1, 100), () => false);
    expect(store.outbox.pendingCount()).toBe(0);
    expect(queued(store)).toEqual([]);
    // The batch leaves with the next append's commit.
    appendAll(
      store,
      Array.from({ length: 100 }, (_, i) => put(`k${i}`, i + 100)),
    );
    expect(formsIn(dir)).toEqual({ rows: 0, batches: 1, writes: 100 });
    expect(queued(store)[0]).toEqual([101, 'k0', 'put']);
  });

  it('splits a large append into batches of at most MAX_WRITES_PER_BATCH', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const n = MAX_WRITES_PER_BATCH * 2 + 3;
    expect(
      appendAll(
        store,
        Array.from({ length: n }, (_, i) => put(`k${i}`, i)),
      ),
    ).toHaveLength(n);
    expect(formsIn(dir)).toEqual({ rows: 0, batches: 3, writes: n });
    expect(store.outbox.pendingFrom('default', MAX_WRITES_PER_BATCH - 1, 4, 1 << 20).map((o) => o.seq)).toEqual([
      MAX_WRITES_PER_BATCH - 1,
      MAX_WRITES_PER_BATCH,
      MAX_WRITES_PER_BATCH + 1,
      MAX_WRITES_PER_BATCH + 2,
    ]);
  });

  it('keeps a batch the hub answered only part of until it answers the rest, and a close leaves none of the answered', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    appendAll(store, [put('a', 1), put('b', 2), put('c', 3)]);
    store.outbox.applyResults('default', committed(1, 2), () => false);
    expect(queued(store)).toEqual([[3, 'c', 'put']]);
    appendAll(store, [put('d', 4)]);
    expect(formsIn(dir)).toMatchObject({ rows: 0, batches: 2, writes: 4 }); // the first batch waits for seq 3
    store.close();
    store = openStore(dir);
    // What the hub committed is not sent again after a restart.
    expect(queued(store)).toEqual([
      [3, 'c', 'put'],
      [4, 'd', 'put'],
    ]);
    expect(store.outbox.pendingCount()).toBe(2);
    expect(formsIn(dir).writes).toBe(2);
  });

  it('gives a write that needs state of its own a row, its batch split around it: a rejection, an ack the replica is behind', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    appendAll(store, [put('a', 1), put('b', 2), put('c', 3)]);
    const rejections = store.outbox.applyResults(
      'default',
      [
        { seq: 1, outcome: 'committed', lsn: 7 },
        { seq: 2, outcome: 'rejected', reason: 'schema' },
      ],
      () => true,
    );
    expect(rejections).toMatchObject([{ seq: 2, key: 'b', outcome: 'rejected' }]);
    // a is a row (confirmed, waiting for version 7), b is gone (rejected), c stays a batch.
    expect(formsIn(dir)).toEqual({ rows: 1, batches: 1, writes: 2 });
    // Reads keep laying the confirmed write over the replica until it holds version 7.
    expect(store.replica.read('docs', 'a')).toMatchObject({ value: 1, pending: true });
    expect(queued(store)).toEqual([[3, 'c', 'put']]);
    store.replica.applyChanges('default', [{ ...change(7, 'a', 1), o: 'pi-me' }]);
    expect(store.replica.read('docs', 'a')).toMatchObject({ value: 1, version: 7, pending: false });
  });

  it('moves the oldest writes to rows once the batches are full (a device offline), and reads and uploads see one outbox', () => {
    const dir = tempDir('agent-store');
    let store = openStore(dir);
    const n = MAX_BATCHED.writes + 50;
    for (let i = 0; i < n; i += 10)
      appendAll(
        store,
        Array.from({ length: 10 }, (_, j) => put(`k${(i + j) % 300}`, i + j)),
      );
    const forms = formsIn(dir);
    expect(forms.rows).toBeGreaterThan(0);
    expect(forms.batches).toBeGreaterThan(0);
    expect(forms.rows + forms.batches * 10).toBe(n);
    for (let reopened = 0; reopened < 2; reopened++) {
      // In seq order across both forms, a page at a time as the uploader reads them.
      const seqs: number[] = [];
      for (let from = 1; ;) {
        const page = store.outbox.pendingFrom('default', from, 128, 1 << 20);
        if (page.length === 0) break;
        seqs.push(...page.map((o) => o.seq));
        from = page[page.length - 1]!.seq + 1;
      }
      expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      // A key written in both forms reads as its newest write; every key written is listed once.
      expect(store.replica.read('docs', 'k0')?.value).toBe(n - (n % 300 === 0 ? 300 : n % 300));
      expect(store.replica.list('docs', { limit: 1000 }).map((d) => d.key)).toHaveLength(300);
      expect(store.outbox.pendingCount()).toBe(n);
      store.close();
      store = openStore(dir);
    }
  });

  it('gives up an old batched write by TTL and drops the oldest under drop-oldest, the rest staying pending', () => {
    const store = openStore();
    appendAll(store, [put('a', 1), put('b', 2)]);
    append(store, [put('c', 3)], () => ({ maxPending: 2, overflow: 'drop-oldest' }));
    expect(queued(store)).toEqual([
      [1, 'a', 'skip'],
      [2, 'b', 'put'],
      [3, 'c', 'put'],
    ]);
    const expired = store.outbox.expire(() => 1, Date.now() + 60_000);
    expect(expired.map((r) => r.key)).toEqual(['b', 'c']);
    expect(queued(store).map(([, , op]) => op)).toEqual(['skip', 'skip', 'skip']);
  });

  it('holds the batches to the storage budget at their size as rows, which they may become', () => {
    const store = openStore();
    const limit = 4 << 20;
    store.settings.setStorageLimit(limit);
    // Compressible values: a batch stores a fraction of what the same writes take as rows.
    let n = 0;
    let largest = 0;
    expect(() => {
      for (;;) {
        appendAll(
          store,
          Array.from({ length: 100 }, (_, j) => put(`k${n + j}`, { blob: 'x'.repeat(3000), i: n + j })),
        );
        n += 100;
        largest = Math.max(largest, store.settings.databaseBytes());
      }
    }).toThrow(expect.objectContaining({ code: 'OUTPOST_STORAGE_FULL' }));
    expect(n).toBeGreaterThan(500);
    // Past the budget by at most one append's rows, as with rows alone.
    expect(largest).toBeLessThan(limit + 100 * 3_200);
  });

  it('keeps in memory at most MAX_BATCHED.bytes of writes at their row size, however well they compress', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const big = 'y'.repeat(200_000);
    for (let i = 0; i < 10; i++) appendAll(store, [put(`big${i}`, big)]);
    const { rows, batches } = formsIn(dir);
    expect(rows).toBeGreaterThan(0); // 2 MB of values, a few kB compressed: the oldest went to rows
    expect(batches * 200_000).toBeLessThanOrEqual(MAX_BATCHED.bytes);
    expect(store.replica.read('docs', 'big0')?.value).toBe(big);
  });

  it("lays a document's pending writes over the replica in the order the app made them, across partitions", () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    // Written while `docs` was in the default partition (its seq 6), then again after it was assigned p1 (seq 1 there).
    for (let i = 0; i < 5; i++) appendAll(store, [put(`z${i}`, i)]);
    appendAll(store, [put('k', 'old')]);
    appendAll(store, [put('k', 'new', { partition: 'p1' })]);
    expect(store.replica.read('docs', 'k')?.value).toBe('new');
    store.outbox.onlyRows(); // and as rows
    expect(store.replica.read('docs', 'k')?.value).toBe('new');
  });

  it('encodes a batch compactly and back, values and all', () => {
    const at = 1_764_000_000_000;
    const writes: BatchedWriteFields[] = Array.from({ length: 100 }, (_, i) => ({
      collection: i % 3 === 0 ? 'logs' : 'readings',
      key: `s-${i}`,
      op: i === 7 ? 'del' : 'put',
      value: i === 7 ? null : Buffer.from(JSON.stringify({ celsius: 20 + i / 10 })),
      hlc: `0000019a${(i + 1).toString(16).padStart(8, '0')}`,
      base: i,
      rep: i === 5 ? 2 : null,
      created_at: at + (i === 9 ? -5 : 0),
    }));
    const blob = encodeWriteBatch(writes, at);
    expect(decodeWriteBatch(blob, at)).toEqual(writes);
    // Similar writes deflate: well under the bytes the rows' fields take.
    expect(blob.length).toBeLessThan(writes.reduce((n, w) => n + w.key.length + (w.value?.length ?? 0) + w.hlc.length, 0) / 2);
    const one = encodeWriteBatch(writes.slice(0, 1), at);
    expect(decodeWriteBatch(one, at)).toEqual(writes.slice(0, 1));
  });

  it('puts the memory back as the rows are when a transaction fails half way', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    appendAll(store, [put('a', 1), put('b', 2)]);
    let calls = 0;
    // A drop-oldest turns the first batch into rows, then the third policy lookup fails (as a full disk would).
    expect(() =>
      append(store, [put('c', 3), put('d', 4), put('e', 5)], () => {
        if (++calls === 3) throw new Error('the disk failed');
        return { maxPending: 2, overflow: 'drop-oldest' };
      }),
    ).toThrow('the disk failed');
    expect(formsIn(dir)).toEqual({ rows: 0, batches: 1, writes: 2 });
    expect(queued(store)).toEqual([
      [1, 'a', 'put'],
      [2, 'b', 'put'],
    ]);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map(valueOf)).toEqual([1, 2]);
    expect(appendAll(store, [put('f', 6)])).toEqual([3]);
  });
});
