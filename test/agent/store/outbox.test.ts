import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Buffering } from '../../../agent/store/outbox.js';
import { tempDir } from '../../helpers/temp.js';
import { append, appendAll, change, openStore, put, queued } from './fixtures.js';
import { encodeValue } from '../../../shared/value-bytes.js';
import { encodeHlc, type Hlc } from '../../../shared/hlc.js';
import { HLC_RESERVE_MS } from '../../../agent/store/settings.js';
import { RELEASE_MAX_WAITING } from '../../../agent/store/released-writes.js';
import { valueOf, withValue } from '../../helpers/value-bytes.js';
import { writesOnDisk } from '../../helpers/outbox-on-disk.js';

/** Outbox writes on disk in the store at `dir` (rows and batches), released ones included: what a reopened store would find. */
function outboxRowsIn(dir: string): number {
  const db = new Database(join(dir, 'agent.db'), { readonly: true });
  const n = writesOnDisk(db).length;
  db.close();
  return n;
}

describe('agent store: the outbox', () => {
  it('numbers writes contiguously from 1 and keeps their order, across transactions and restarts', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    expect(appendAll(store, [put('a', 1), put('b', 2), put('a', 3)])).toEqual([1, 2, 3]);
    expect(appendAll(store, [put('c', 4)])).toEqual([4]);
    store.close();
    const reopened = openStore(dir);
    expect(appendAll(reopened, [put('d', 5)])).toEqual([5]);
    expect(queued(reopened)).toEqual([
      [1, 'a', 'put'],
      [2, 'b', 'put'],
      [3, 'a', 'put'],
      [4, 'c', 'put'],
      [5, 'd', 'put'],
    ]);
    expect(reopened.outbox.pendingFrom('default', 1, 10, 1 << 20).map(valueOf)).toEqual([1, 2, 3, 4, 5]);
    expect(reopened.outbox.pendingCount()).toBe(5);
  });

  it('uploads what a write says: its base version (the replica’s by default), its replica count', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(4, 'k', 'theirs')]);
    appendAll(store, [put('k', 'mine'), put('k', 'again', { base: 2 }), put('new', 1, { rep: 2 })]);
    expect(store.outbox.pendingFrom('default', 1, 10, 1 << 20).map(withValue)).toMatchObject([
      { seq: 1, c: 'docs', k: 'k', op: 'put', v: 'mine', base: 4 },
      { seq: 2, k: 'k', v: 'again', base: 2 },
      { seq: 3, k: 'new', rep: 2 },
    ]);
    expect(store.outbox.pendingFrom('default', 3, 10, 1 << 20)[0]).not.toHaveProperty('base'); // 0: no version yet
  });

  it('keeps the clock at or past every stamp, reserving ahead so that most appends leave it alone', () => {
    const store = openStore();
    const write = (clock: Hlc): void => {
      store.outbox.append([{ partition: 'default', collection: 'docs', key: 'k', op: 'put', value: encodeValue(1), hlc: clock }], clock);
    };
    const at = (wall: number, logical = 0): Hlc => encodeHlc(wall, logical);
    write(at(1_000_000, 3));
    expect(store.settings.lastHlc).toBe(at(1_000_000 + HLC_RESERVE_MS));
    write(at(1_000_000 + HLC_RESERVE_MS, 0)); // within what was reserved: kept as it was
    expect(store.settings.lastHlc).toBe(at(1_000_000 + HLC_RESERVE_MS));
    write(at(1_000_000 + HLC_RESERVE_MS, 1)); // past it: reserved again
    expect(store.settings.lastHlc).toBe(at(1_000_000 + 2 * HLC_RESERVE_MS));
  });

  it('never hands out a seq again once the last rows left the outbox, across a restart', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    expect(appendAll(store, [put('a', 1), put('b', 2)])).toEqual([1, 2]);
    expect(appendAll(store, [put('o', 1, { partition: 'orders', collection: 'orders' })])).toEqual([1]);
    store.outbox.applyResults('default', [{ seq: 1, outcome: 'rejected', reason: 'schema' }], () => true);
    expect(appendAll(store, [put('c', 3)])).toEqual([3]);
    // Committed, in a collection this device does not replicate: the rows leave, the outbox is empty.
    const committed = (seq: number, lsn: number) => ({ seq, outcome: 'committed' as const, lsn });
    store.outbox.applyResults('default', [committed(2, 10), committed(3, 11)], () => false);
    store.outbox.applyResults('orders', [committed(1, 5)], () => false);
    store.outbox.flushReleased();
    expect(queued(store)).toEqual([]);
    expect(queued(store, 'orders')).toEqual([]);
    store.close();
    const reopened = openStore(dir);
    expect(appendAll(reopened, [put('d', 4)])).toEqual([4]);
    expect(appendAll(reopened, [put('p', 2, { partition: 'orders', collection: 'orders' })])).toEqual([2]);
  });

  it('hands out contiguous pending runs within the op and byte budgets', () => {
    const store = openStore();
    appendAll(
      store,
      Array.from({ length: 10 }, (_, i) => put(`k${i}`, 'x'.repeat(100))),
    );
    expect(store.outbox.pendingFrom('default', 1, 4, 1 << 20).map((o) => o.seq)).toEqual([1, 2, 3, 4]);
    expect(store.outbox.pendingFrom('default', 8, 100, 1 << 20).map((o) => o.seq)).toEqual([8, 9, 10]);
    expect(store.outbox.pendingFrom('default', 1, 100, 400).length).toBe(2);
    expect(store.outbox.pendingFrom('default', 1, 100, 1).length).toBe(1); // always at least one
    expect(store.outbox.lowestPendingSeq('default')).toBe(1);
  });

  it('counts pending writes per collection, with the age of the oldest', () => {
    const store = openStore();
    const before = Date.now();
    appendAll(store, [put('a', 1), put('b', 2), put('t', 3, { collection: 'telemetry' })]);
    const pending = store.outbox.pendingByCollection();
    expect(Object.keys(pending)).toEqual(['docs', 'telemetry']);
    expect(pending.docs?.pending).toBe(2);
    expect(pending.telemetry?.pending).toBe(1);
    expect(pending.docs!.oldestAt).toBeGreaterThanOrEqual(before);
  });
});

describe('agent store: acknowledgements', () => {
  it('never goes backwards between the commit ack and the change set', () => {
    const store = openStore();
    const [seq] = appendAll(store, [put('k', 'mine')]);
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 7 }], () => true);
    expect(store.outbox.pendingCount()).toBe(0); // acknowledged...
    expect(store.outbox.lowestPendingSeq('default')).toBeUndefined();
    expect(store.replica.read('docs', 'k')?.value).toBe('mine'); // ...and still visible
    expect(store.replica.read('docs', 'k', true)).toBeUndefined(); // (the replica does not hold it yet)
    store.replica.applyChanges('default', [change(7, 'k', 'mine')]);
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'mine', version: 7, pending: false });
  });

  it('releases a committed write once the replica holds its version, even through an older change', () => {
    const store = openStore();
    const [first, second] = appendAll(store, [put('k', 'one'), put('k', 'two')]);
    store.outbox.applyResults(
      'default',
      [
        { seq: first!, outcome: 'committed', lsn: 3 },
        { seq: second!, outcome: 'committed', lsn: 4 },
      ],
      () => true,
    );
    store.replica.applyChanges('default', [change(3, 'k', 'one')]);
    // Version 3 arrived: the first write is released, the second still lies over it.
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'two', version: 3, pending: true });
    store.replica.applyChanges('default', [change(4, 'k', 'two')]);
    expect(store.replica.read('docs', 'k')).toMatchObject({ value: 'two', version: 4, pending: false });
  });

  it('releases a committed write at once when its collection is not replicated here, or the replica already holds its version', () => {
    const store = openStore();
    const [seq] = appendAll(store, [put('k', 1, { collection: 'telemetry' })]);
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 3 }], () => false);
    expect(store.replica.read('telemetry', 'k')).toBeUndefined();

    store.replica.applyChanges('default', [change(9, 'j', 'theirs')]);
    const [late] = appendAll(store, [put('j', 'mine')]);
    store.outbox.applyResults('default', [{ seq: late!, outcome: 'committed', lsn: 8 }], () => true);
    expect(store.replica.read('docs', 'j')).toMatchObject({ value: 'theirs', version: 9, pending: false });
  });

  it('records rejections and conflicts and drops them from the overlay', () => {
    const store = openStore();
    store.replica.applyChanges('default', [change(1, 'k', 'theirs')]);
    const seqs = appendAll(store, [put('k', 'mine'), put('j', 'bad')]);
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
    expect(store.outbox.pendingCount()).toBe(0);
    expect(store.rejections.list()).toMatchObject([
      { seq: seqs[1], reason: 'schema', value: 'bad' },
      { seq: seqs[0], outcome: 'conflict' },
    ]);
    // What the app heard is what is kept.
    expect(store.rejections.list()).toEqual([...rejected].reverse());
    expect(rejected[1]).toEqual({
      seq: seqs[1],
      collection: 'docs',
      key: 'j',
      op: 'put',
      value: 'bad',
      outcome: 'rejected',
      reason: 'schema',
      detail: 'no',
      at: expect.any(Number) as number,
    });
  });

  it('reports a write the hub committed without an LSN as a duplicate, and forgets it', () => {
    const store = openStore();
    const [seq] = appendAll(store, [put('k', 'again')]);
    const rejected = store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed' }], () => true);
    expect(rejected).toMatchObject([{ seq, key: 'k', outcome: 'duplicate', reason: null, detail: null }]);
    expect(store.outbox.pendingCount()).toBe(0);
    expect(store.replica.read('docs', 'k')).toBeUndefined();
  });

  it('ignores outcomes for seqs it does not hold, and for another partition', () => {
    const store = openStore();
    const [seq] = appendAll(store, [put('k', 1)]);
    expect(store.outbox.applyResults('default', [{ seq: 99, outcome: 'rejected', reason: 'x' }], () => true)).toEqual([]);
    expect(store.outbox.applyResults('orders', [{ seq: seq!, outcome: 'rejected', reason: 'x' }], () => true)).toEqual([]);
    expect(store.outbox.pendingCount()).toBe(1);
  });
});

describe('agent store: buffering policies and TTL', () => {
  const policy =
    (p: Buffering): ((c: string) => Buffering) =>
    (c) =>
      c === 'docs' ? p : { maxPending: 0, overflow: 'reject' };

  it('refuses a write over maxPending with OutboxFullError, storing the others', () => {
    const store = openStore();
    const { seqs, dropped } = append(
      store,
      [put('a', 1), put('b', 2), put('c', 3), put('t', 4, { collection: 'other' })],
      policy({ maxPending: 2, overflow: 'reject' }),
    );
    expect(seqs.slice(0, 2)).toEqual([1, 2]);
    expect(seqs[2]).toMatchObject({ code: 'OUTPOST_OUTBOX_FULL', collection: 'docs', maxPending: 2 });
    expect(seqs[3]).toBe(3); // no gap: the refused write took no seq
    expect(dropped).toEqual([]);
    expect(queued(store).map(([, k]) => k)).toEqual(['a', 'b', 't']);
  });

  it('drop-oldest gives the oldest pending write up, keeping its seq as a skip and telling the app', () => {
    const store = openStore();
    appendAll(store, [put('a', 1), put('b', 2)]);
    const { seqs, dropped } = append(store, [put('c', 3)], policy({ maxPending: 2, overflow: 'drop-oldest' }));
    expect(seqs).toEqual([3]);
    expect(dropped).toMatchObject([{ seq: 1, key: 'a', value: 1, outcome: 'dropped', reason: 'dropped' }]);
    expect(queued(store)).toEqual([
      [1, 'a', 'skip'],
      [2, 'b', 'put'],
      [3, 'c', 'put'],
    ]);
    expect(withValue(store.outbox.pendingFrom('default', 1, 1, 1 << 20)[0]!)).toMatchObject({ op: 'skip', v: 'dropped' });
    expect(store.replica.read('docs', 'a')).toBeUndefined(); // no longer laid over the replica
    expect(store.outbox.pendingByCollection().docs?.pending).toBe(2);
    expect(store.rejections.list()).toEqual(dropped);
    // The skip's ack drops the placeholder without reporting it again.
    expect(store.outbox.applyResults('default', [{ seq: 1, outcome: 'rejected', reason: 'dropped' }], () => true)).toEqual([]);
    expect(store.outbox.lowestPendingSeq('default')).toBe(2);
  });

  it('expires pending writes older than their collection’s TTL, keeping their seqs as skips', () => {
    const store = openStore();
    appendAll(store, [put('old', 1), put('t', 2, { collection: 'forever' })]);
    const ttl = (c: string): number => (c === 'docs' ? 60 : 0);
    expect(store.outbox.expire(ttl)).toEqual([]); // not old yet
    const expired = store.outbox.expire(ttl, Date.now() + 61_000);
    expect(expired).toMatchObject([
      { seq: 1, key: 'old', value: 1, outcome: 'expired', reason: 'expired', detail: "not uploaded within the collection's TTL" },
    ]);
    expect(queued(store)).toEqual([
      [1, 'old', 'skip'],
      [2, 't', 'put'],
    ]);
    expect(store.replica.read('docs', 'old')).toBeUndefined();
    expect(store.rejections.list()).toEqual(expired);
    expect(store.outbox.expire(ttl, Date.now() + 120_000)).toEqual([]); // given up once
  });
});

describe('agent store: the storage budget', () => {
  it('reports a full database as StorageFullError and keeps what was queued', () => {
    const store = openStore();
    appendAll(store, [put('kept', 'safe')]);
    store.settings.setStorageLimit(store.settings.databaseBytes() + 8192);
    expect(() =>
      appendAll(
        store,
        Array.from({ length: 50 }, (_, i) => put(`big${i}`, 'x'.repeat(8000))),
      ),
    ).toThrow(expect.objectContaining({ code: 'OUTPOST_STORAGE_FULL' }));
    expect(store.outbox.pendingCount()).toBe(1);
    expect(store.replica.read('docs', 'kept')?.value).toBe('safe');
    expect(appendAll(store, [put('small', 1)])).toEqual([2]);
  });

  it('holds replication to no budget: the hub’s changes still apply', () => {
    const store = openStore();
    store.settings.setStorageLimit(store.settings.databaseBytes());
    expect(() => appendAll(store, [put('k', 1)])).toThrow(expect.objectContaining({ code: 'OUTPOST_STORAGE_FULL' }));
    store.replica.applyChanges('default', [change(1, 'big', 'x'.repeat(20_000))]);
    expect(store.replica.read('docs', 'big')?.version).toBe(1);
    store.settings.setStorageLimit(undefined);
    expect(appendAll(store, [put('k', 1)])).toEqual([1]);
  });

  it('lets a committed write go with the next append, and until then neither sends it again nor lays it over newer versions', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const [seq] = appendAll(store, [put('x', 'mine')]);
    store.replica.applyChanges('default', [{ ...change(1, 'x', 'mine'), o: 'pi-me' }]);
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 1 }], () => true);
    // Committed and applied: no longer pending, not sent again, though its row waits for the next append.
    expect(store.outbox.pendingCount()).toBe(0);
    expect(queued(store)).toEqual([]);
    expect(outboxRowsIn(dir)).toBe(1);
    // An answer repeated (a resend crossed the ack) counts nothing twice.
    store.outbox.applyResults('default', [{ seq: seq!, outcome: 'committed', lsn: 1, dup: true }], () => true);
    expect(store.outbox.pendingCount()).toBe(0);
    // Another device's newer version arrives: the released write lays nothing over it.
    store.replica.applyChanges('default', [change(2, 'x', 'theirs')]);
    expect(store.replica.read('docs', 'x')).toMatchObject({ value: 'theirs', version: 2, pending: false });
    // The next write's transaction takes the row out.
    expect(appendAll(store, [put('y', 1)])).toEqual([2]);
    expect(outboxRowsIn(dir)).toBe(1);
    expect(queued(store)).toEqual([[2, 'y', 'put']]);
  });

  it('does not count a released write as the oldest pending one of its collection', () => {
    const store = openStore();
    appendAll(store, [put('old', 1)]);
    const later = Date.now() + 5;
    while (Date.now() < later); // the next write is stored at least 5 ms later
    appendAll(store, [put('new', 2)]);
    store.outbox.applyResults('default', [{ seq: 1, outcome: 'committed', lsn: 1 }], () => false);
    const { docs } = store.outbox.pendingByCollection();
    expect(docs!.pending).toBe(1);
    expect(docs!.oldestAt).toBeGreaterThanOrEqual(later);
  });

  it('does not keep more than RELEASE_MAX_WAITING released rows waiting for an append', () => {
    const dir = tempDir('agent-store');
    const store = openStore(dir);
    const n = RELEASE_MAX_WAITING + 10;
    appendAll(
      store,
      Array.from({ length: n }, (_, i) => put(`k${i}`, i)),
    );
    // A backlog acknowledged in two parts, in a collection this device does not replicate.
    const committed = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, outcome: 'committed' as const, lsn: from + i }));
    store.outbox.applyResults('default', committed(1, RELEASE_MAX_WAITING - 1), () => false);
    expect(outboxRowsIn(dir)).toBe(n); // waiting for an append
    store.outbox.applyResults('default', committed(RELEASE_MAX_WAITING, n), () => false);
    expect(outboxRowsIn(dir)).toBeLessThanOrEqual(10); // the thousandth took them out at once
    expect(store.outbox.pendingCount()).toBe(0);
    expect(appendAll(store, [put('next', 1)])).toEqual([n + 1]);
  });
});
