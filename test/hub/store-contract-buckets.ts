import { expect, test } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import type { Change } from '../../shared/messages.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { agentPut, commitGroup, hlcAt, hubDel, hubPut, planOf, scoped } from '../helpers/store-writes.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { withValue, plainBytes } from '../helpers/value-bytes.js';

/** What the scope bucket cases need of the contract suite around them. */
export interface BucketCaseContext {
  /** The store under test now. */
  store(): HubStore;
  /** Closes the store and opens it again on what it kept. */
  reopen(): Promise<HubStore>;
  /** How many rows a table holds, read around the store: index rows no read shows. */
  rows(table: string): Promise<number>;
}

const ALL = Number.MAX_SAFE_INTEGER;
const NONE_HELD = new Map<string, number>();
// Bucket ids are opaque 16-character strings.
const A = 'bucket-A-0000000';
const B = 'bucket-B-0000000';
const C = 'bucket-C-0000000';

const lsns = (page: { changes: Change[] }): number[] => page.changes.map((c) => c.lsn);
const keys = (page: { docs: Change[] }): string[] => page.docs.map((d) => d.k);

/**
 * The scope bucket index every HubStore keeps (see HubStore.readBucketLog): cases of the
 * contract suite, run inside it against each implementation.
 */
export function scopeBucketCases(ctx: BucketCaseContext): void {
  test("keeps where each device last joined each bucket, across a reopen; a device's join is its own", async () => {
    let store = ctx.store();
    expect(await store.bucketJoins.joinedAt('pi-1', A)).toBeUndefined();
    await store.bucketJoins.record('pi-1', A, 5);
    await store.bucketJoins.record('pi-2', A, 9);
    await store.bucketJoins.record('pi-1', B, 0);
    await store.bucketJoins.record('pi-1', A, 12); // joined again (a relabel back, a snapshot after retention)
    store = await ctx.reopen();
    expect(await store.bucketJoins.joinedAt('pi-1', A)).toBe(12);
    expect(await store.bucketJoins.joinedAt('pi-2', A)).toBe(9);
    expect(await store.bucketJoins.joinedAt('pi-1', B)).toBe(0);
    expect(await store.bucketJoins.joinedAt('pi-2', B)).toBeUndefined();
  });

  test('tells who wrote the entries at some LSNs and, of a scoped change, its buckets; none for LSNs not in the log', async () => {
    const store = ctx.store();
    const inc = 'i'.repeat(32);
    await commitGroup(store, [
      scoped(agentPut('s', 'k1', 1, { id: 'pi-1', inc, seq: 7 }), [A, B]),
      agentPut('u', 'k2', 2, { id: 'pi-1', inc, seq: 8 }),
      hubPut('u', 'k3', 3),
    ]);
    expect(await store.loggedWrites([3, 1, 2, 9])).toEqual(
      new Map([
        [1, { collection: 's', origin: 'pi-1', incarnation: inc, seq: 7, buckets: [A, B] }],
        [2, { collection: 'u', origin: 'pi-1', incarnation: inc, seq: 8 }],
        [3, { collection: 'u', origin: 'hub', incarnation: null, seq: null }],
      ]),
    );
    expect(await store.loggedWrites([])).toEqual(new Map());
  });

  test('indexes a scoped change in its buckets: whole with bk where it is, out where it left, nowhere else', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', { n: 1 }, 1), [A]),
      scoped(hubPut('s', 'k2', { n: 2 }, 2), [B]),
      hubPut('u', 'x', 3, 3),
    ]);
    await commitGroup(store, [scoped(hubPut('s', 'k1', { n: 4 }, 4), [B], [A]), scoped(hubDel('s', 'k2', 5), [B])]);

    const inA = await store.readBucketLog(A, 0, 10, ALL);
    expect(inA.changes.map(withValue)).toEqual([
      { lsn: 1, c: 's', k: 'k1', op: 'put', v: { n: 1 }, hlc: hlcAt(1), o: 'hub', bk: [A] },
      { lsn: 4, c: 's', k: 'k1', op: 'out', hlc: hlcAt(4), o: 'hub' },
    ]);
    expect([inA.complete, inA.through]).toEqual([true, 4]);
    expect((await store.readBucketLog(B, 0, 10, ALL)).changes.map(withValue)).toEqual([
      { lsn: 2, c: 's', k: 'k2', op: 'put', v: { n: 2 }, hlc: hlcAt(2), o: 'hub', bk: [B] },
      { lsn: 4, c: 's', k: 'k1', op: 'put', v: { n: 4 }, hlc: hlcAt(4), o: 'hub', bk: [B] },
      { lsn: 5, c: 's', k: 'k2', op: 'del', hlc: hlcAt(5), o: 'hub', bk: [B] },
    ]);
    expect(lsns(await store.readBucketLog(B, 2, 10, ALL))).toEqual([4, 5]);
    expect(await store.readBucketLog(C, 0, 10, ALL)).toEqual({ changes: [], complete: true, through: 0, readBytes: 0, digests: {} });
    expect(await store.bucketHeads([A, B, C])).toEqual(
      new Map([
        [A, 4],
        [B, 5],
      ]),
    );

    // The document keeps the buckets its current version is in, inside a group commit and out.
    expect(plainBytes(await store.document('s', 'k1'))).toEqual({
      value: { n: 4 },
      encoded: encodeValue({ n: 4 }),
      deleted: false,
      version: 4,
      hlc: hlcAt(4),
      origin: 'hub',
      buckets: [B],
    });
    expect(plainBytes(await store.document('u', 'x'))).toEqual({
      value: 3,
      encoded: encodeValue(3),
      deleted: false,
      version: 3,
      hlc: hlcAt(3),
      origin: 'hub',
    });
    await store.ingest(planOf([hubPut('s', 'k1', 0), hubPut('s', 'k2', 0), hubPut('s', 'k3', 0)]), (tx) => {
      expect(tx.document('s', 'k1')?.buckets).toEqual([B]);
      expect(tx.document('s', 'k2')).toMatchObject({ deleted: true, buckets: [B] });
      tx.commit(scoped(hubPut('s', 'k3', 6, 6), [A, C]));
      expect(tx.document('s', 'k3')?.buckets).toEqual([A, C]);
      tx.commit(hubPut('s', 'k3', 7, 7));
      expect(tx.document('s', 'k3')).not.toHaveProperty('buckets');
    });
  });

  test('moves a document between bucket snapshots as its buckets change; tombstones stay in theirs', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A, B]),
      scoped(hubPut('s', 'k3', 3, 3), [B]),
    ]);
    await commitGroup(store, [scoped(hubPut('s', 'k1', 4, 4), [B], [A]), scoped(hubDel('s', 'k3', 5), [B])]);

    expect(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD)).toMatchObject({
      docs: [{ lsn: 2, c: 's', k: 'k2', op: 'put', v: encodeValue(2), hlc: hlcAt(2), o: 'hub', bk: [A, B] }],
      next: undefined,
    });
    expect((await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD)).docs.map(withValue)).toEqual([
      { lsn: 4, c: 's', k: 'k1', op: 'put', v: 4, hlc: hlcAt(4), o: 'hub', bk: [B] },
      { lsn: 2, c: 's', k: 'k2', op: 'put', v: 2, hlc: hlcAt(2), o: 'hub', bk: [A, B] },
      { lsn: 5, c: 's', k: 'k3', op: 'del', hlc: hlcAt(5), o: 'hub', bk: [B] },
    ]);
    expect(keys(await store.readBucketDocuments(B, ['s', 'k1'], 10, ALL, NONE_HELD))).toEqual(['k2', 'k3']);

    // Out of every bucket: in no snapshot, and it says so.
    await commitGroup(store, [scoped(hubPut('s', 'k2', 6, 6), [], [A, B])]);
    expect(keys(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD))).toEqual([]);
    expect(keys(await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD))).toEqual(['k1', 'k3']);
    expect((await store.document('s', 'k2'))?.buckets).toEqual([]);
    expect(await ctx.rows('document_buckets')).toBe(2);
  });

  test('sends as a tag (its buckets, no value) what a held bucket already brought, so that the device learns its buckets now', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1), [A]),
      scoped(hubPut('s', 'k2', 2), [A, B]),
      scoped(hubPut('s', 'k3', 3), [A]),
      scoped(hubPut('s', 'k4', 4), [A, B]),
    ]);
    const page = (after: [string, string] | undefined, limit: number, held: Array<[string, number]>) =>
      store.readBucketDocuments(A, after, limit, ALL, new Map(held));
    const sent = async (...args: Parameters<typeof page>) => (await page(...args)).docs.map((d) => [d.k, d.op]);
    expect(await sent(undefined, 10, [[B, 4]])).toEqual([
      ['k1', 'put'],
      ['k2', 'tag'],
      ['k3', 'put'],
      ['k4', 'tag'],
    ]);
    const { hlc, ...tagged } = (await page(undefined, 10, [[B, 4]])).docs[1]!;
    expect([tagged, hlc]).toEqual([{ lsn: 2, c: 's', k: 'k2', op: 'tag', o: 'hub', bk: [A, B] }, (await store.document('s', 'k2'))?.hlc]);
    expect(await sent(undefined, 10, [[B, 3]])).toEqual([
      ['k1', 'put'],
      ['k2', 'tag'],
      ['k3', 'put'],
      ['k4', 'put'], // k4's version 4 came after
    ]);
    expect(keys(await page(undefined, 10, [[C, 100]]))).toEqual(['k1', 'k2', 'k3', 'k4']); // not a bucket they are in

    expect(await page(undefined, 2, [[B, 4]])).toMatchObject({ docs: [{ k: 'k1' }, { k: 'k2', op: 'tag' }], next: ['s', 'k2'] });
    expect(await page(['s', 'k2'], 2, [[B, 4]])).toMatchObject({ docs: [{ k: 'k3' }, { k: 'k4', op: 'tag' }], next: ['s', 'k4'] });
    expect(await page(['s', 'k4'], 2, [[B, 4]])).toMatchObject({ docs: [], next: undefined });
  });

  test('keeps bucket heads through a reopen and a prune; a group commit that throws changes none of the index', async () => {
    let store = ctx.store();
    await commitGroup(store, [scoped(hubPut('s', 'k1', 1), [A]), scoped(hubPut('s', 'k2', 2), [A, B]), hubPut('u', 'x', 3)]);
    const heads = new Map([
      [A, 2],
      [B, 2],
    ]);
    expect(await store.bucketHeads([A, B, C])).toEqual(heads);
    expect(await store.bucketHeads([])).toEqual(new Map());

    const failure = new Error('the work failed half way');
    await expect(
      store.ingest(planOf([hubPut('s', 'k1', 0), hubPut('s', 'k3', 0)]), (tx) => {
        expect([tx.bucketHead(A), tx.bucketHead(C)]).toEqual([2, 0]);
        const moved = tx.commit(scoped(hubPut('s', 'k1', 4), [C], [A])).lsn;
        const added = tx.commit(scoped(hubPut('s', 'k3', 5), [A])).lsn;
        tx.setBucketHead(A, added);
        tx.setBucketHead(C, moved);
        expect([tx.bucketHead(A), tx.bucketHead(C)]).toEqual([added, moved]);
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await store.bucketHeads([A, B, C])).toEqual(heads);
    expect(lsns(await store.readBucketLog(A, 0, 10, ALL))).toEqual([1, 2]);
    expect(keys(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD))).toEqual(['k1', 'k2']);
    expect(keys(await store.readBucketDocuments(C, undefined, 10, ALL, NONE_HELD))).toEqual([]);
    await store.ingest(planOf([]), (tx) => expect([tx.bucketHead(A), tx.bucketHead(C)]).toEqual([2, 0]));

    expect(await store.prune({ maxAgeMs: 0, maxEntries: 1 })).toBe(2);
    expect(await store.bucketHeads([A, B])).toEqual(heads);
    store = await ctx.reopen();
    expect(await store.bucketHeads([A, B])).toEqual(heads);
    await store.ingest(planOf([]), (tx) => expect([tx.bucketHead(A), tx.bucketHead(B)]).toEqual([2, 2]));
    // The next change of a bucket moves its head on from there.
    await commitGroup(store, [scoped(hubPut('s', 'k4', 4), [B])]);
    expect(await store.bucketHeads([A, B])).toEqual(
      new Map([
        [A, 2],
        [B, 4],
      ]),
    );
  });

  test('retention removes the bucket logs with the log they index, and keeps documents in their buckets', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1), [A]),
      scoped(hubPut('s', 'k2', 2), [A, B]),
      hubPut('u', 'x', 3),
      scoped(hubPut('s', 'k1', 4), [B], [A]),
      scoped(hubPut('s', 'k3', 5), [A]),
    ]);
    expect(await ctx.rows('log_buckets')).toBe(6);
    expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 })).toBe(3);
    expect(await ctx.rows('log_buckets')).toBe(3); // (A, 4) out, (B, 4), (A, 5)
    expect(lsns(await store.readBucketLog(A, 0, 10, ALL))).toEqual([4, 5]);
    expect(lsns(await store.readBucketLog(B, 0, 10, ALL))).toEqual([4]);
    expect(keys(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD))).toEqual(['k2', 'k3']);
    expect(keys(await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD))).toEqual(['k1', 'k2']);

    expect(await store.prune({ maxAgeMs: 0, maxEntries: 1 })).toBe(4);
    expect(await ctx.rows('log_buckets')).toBe(1);
    expect(await store.readBucketLog(B, 0, 10, ALL)).toEqual({ changes: [], complete: true, through: 0, readBytes: 0, digests: {} });
  });

  test('reads a bucket in pages bounded by count and by bytes', async () => {
    const store = ctx.store();
    const big = 'x'.repeat(1000);
    await commitGroup(store, [
      scoped(hubPut('s', 'a1', big), [A]),
      scoped(hubPut('s', 'b1', big), [B]),
      hubPut('u', 'x', big),
      scoped(hubPut('s', 'a2', big), [A]),
      scoped(hubPut('s', 'a3', big), [A, B]),
      scoped(hubPut('s', 'a4', big), [A]),
    ]);
    const firstTwo = await store.readBucketLog(A, 0, 2, ALL);
    expect([lsns(firstTwo), firstTwo.complete, firstTwo.through]).toEqual([[1, 4], false, 4]);
    expect(firstTwo.readBytes).toBeGreaterThan(2000);
    const rest = await store.readBucketLog(A, 4, 10, ALL);
    expect([lsns(rest), rest.complete, rest.through]).toEqual([[5, 6], true, 6]);
    const oneBySize = await store.readBucketLog(A, 0, 10, 1500);
    expect([lsns(oneBySize), oneBySize.complete, oneBySize.through]).toEqual([[1], false, 1]);
    expect(lsns(await store.readBucketLog(A, 0, 10, 1))).toEqual([1]); // at least one

    const docs = await store.readBucketDocuments(A, undefined, 2, ALL, NONE_HELD);
    expect([keys(docs), docs.next]).toEqual([
      ['a1', 'a2'],
      ['s', 'a2'],
    ]);
    const bySize = await store.readBucketDocuments(A, undefined, 10, 1500, NONE_HELD);
    expect([keys(bySize), bySize.next]).toEqual([['a1'], ['s', 'a1']]);
    expect(bySize.readBytes).toBeGreaterThan(1000);
    const all = await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD);
    expect([keys(all), all.next]).toEqual([['a1', 'a2', 'a3', 'a4'], undefined]);

    // A bucket that a document left reads neither its value nor its buckets.
    await commitGroup(store, [scoped(hubPut('s', 'a1', big), [B], [A])]);
    const out = await store.readBucketLog(A, 6, 10, ALL);
    expect(out.changes).toEqual([{ lsn: 7, c: 's', k: 'a1', op: 'out', hlc: hlcAt(0), o: 'hub' }]);
    expect(out.readBytes).toBeLessThan(200);
  });

  test('counts the distinct live documents of buckets, and their bytes', async () => {
    const store = ctx.store();
    const [v1, v2, v3] = [{ text: 'x'.repeat(100) }, { text: 'y'.repeat(50) }, 'z'];
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', v1), [A, B]),
      scoped(hubPut('s', 'k2', v2), [B]),
      scoped(hubPut('s', 'k3', v3), [A]),
      hubPut('u', 'x', 'unscoped'),
    ]);
    await commitGroup(store, [scoped(hubDel('s', 'k3'), [A])]);
    const bytes = (...values: unknown[]): number => values.reduce<number>((sum, v) => sum + encodeCbor(v).length, 0);
    expect(await store.bucketSize([A, B])).toEqual({ documents: 2, bytes: bytes(v1, v2) });
    expect(await store.bucketSize([A])).toEqual({ documents: 1, bytes: bytes(v1) });
    expect(await store.bucketSize([B, C])).toEqual({ documents: 2, bytes: bytes(v1, v2) });
    expect(await store.bucketSize([C])).toEqual({ documents: 0, bytes: 0 });
    expect(await store.bucketSize([])).toEqual({ documents: 0, bytes: 0 });
    // A device's lag within its scope: the changes of its buckets after how far it applied each.
    // (A: k1 at 1, k3 at 3 and its delete at 5; B: k1 at 1, k2 at 2.)
    expect(await store.bucketBacklog(new Map([[A, 0]]))).toBe(3);
    expect(
      await store.bucketBacklog(
        new Map([
          [A, 3],
          [B, 1],
        ]),
      ),
    ).toBe(2);
    expect(
      await store.bucketBacklog(
        new Map([
          [A, 5],
          [B, 2],
          [C, 0],
        ]),
      ),
    ).toBe(0);
    expect(await store.bucketBacklog(new Map())).toBe(0);
  });

  test('unscoped changes leave the bucket tables empty', async () => {
    const store = ctx.store();
    await commitGroup(store, [hubPut('s', 'k1', 1), hubPut('s', 'k2', 2), hubDel('s', 'k1')]);
    await store.ingest(planOf([]), (tx) => expect(tx.bucketHead(A)).toBe(0));
    expect(await Promise.all(['log_buckets', 'document_buckets', 'bucket_heads'].map((table) => ctx.rows(table)))).toEqual([0, 0, 0]);
    expect(await store.document('s', 'k2')).not.toHaveProperty('buckets');
    expect((await store.readDocuments(undefined, undefined, 10, ALL)).docs.every((d) => d.bk === undefined)).toBe(true);
  });
}
