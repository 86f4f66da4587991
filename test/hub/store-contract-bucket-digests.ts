import { expect, test } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { adjustDigest, documentHash, RangeTally } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { JsonValue } from '../../shared/values.js';
import type { HubStore, LogEntry, ScopeRulesChange } from '../../hub/store/hub-store.js';
import { commitGroup, hubDel, hubPut, planOf, scoped } from '../helpers/store-writes.js';
import { asBuffer } from '../../shared/value-bytes.js';

/** What the bucket digest cases need of the contract suite around them. */
export interface BucketDigestCaseContext {
  store(): HubStore;
  reopen(): Promise<HubStore>;
  /** Changes a bucket's stored digest underneath the store. */
  damageBucketDigest(bucket: string, digest: number): Promise<void>;
  /**
   * Makes the database look like one from before bucket digests, underneath the store: every
   * digest 0, the row of `bucket` gone (it had documents, no head), and the mark to count them.
   */
  forgetBucketDigests(bucket: string): Promise<void>;
}

const ALL = Number.MAX_SAFE_INTEGER;
const NONE_HELD = new Map<string, number>();
const A = 'bucket-A-0000000';
const B = 'bucket-B-0000000';
const C = 'bucket-C-0000000';

const hashOf = (doc: Change): number => documentHash(doc.c, doc.k, doc.lsn, doc.op === 'del', doc.op === 'del' ? null : asBuffer(doc.v!));

/** A bucket's documents as the store serves a snapshot of it. */
async function bucketDocuments(store: HubStore, bucket: string): Promise<Change[]> {
  return (await store.readBucketDocuments(bucket, undefined, 1_000_000, ALL, NONE_HELD)).docs;
}

/** A bucket's digest summed by the test from its documents as the store serves them. */
async function recount(store: HubStore, bucket: string): Promise<number> {
  return (await bucketDocuments(store, bucket)).reduce((digest, doc) => adjustDigest(digest, hashOf(doc)), 0);
}

/** Each bucket's stored digest, and the test's own recount of it. */
async function storedAndCounted(store: HubStore, buckets: string[]): Promise<[Array<number | undefined>, number[]]> {
  const stored = await store.bucketDigests(buckets);
  return [buckets.map((b) => stored.get(b)?.digest), await Promise.all(buckets.map((b) => recount(store, b)))];
}

/** Commits entries as one group commit as commitGroup does, returning what each commit returned of bucket digests. */
function commitEach(store: HubStore, entries: readonly LogEntry[]): Promise<Array<Record<string, number> | undefined>> {
  return store.ingest(planOf(entries), (tx) =>
    entries.map((entry) => {
      tx.document(entry.collection, entry.key);
      const { lsn, bucketDigests } = tx.commit(entry);
      for (const bucket of [...(entry.buckets?.in ?? []), ...(entry.buckets?.left ?? [])]) tx.setBucketHead(bucket, lsn);
      tx.setCollectionHead(entry.collection, lsn);
      return bucketDigests;
    }),
  );
}

/** Rules that put each key in the buckets listed for it. */
function rules(text: string | undefined, of: Record<string, string[]>): ScopeRulesChange {
  return { rules: text, since: 0, bucketsOf: (key: string, _value: JsonValue | undefined) => of[key] ?? [], prior: () => undefined };
}

/**
 * Scope buckets' digests (bucket-digests.ts): cases of the contract suite, run inside it against
 * each implementation. Every stored digest is checked against the test's own sum of the hashes
 * of the documents the store serves in the bucket.
 */
export function bucketDigestCases(ctx: BucketDigestCaseContext): void {
  test("commit returns each bucket's digest after a put, a move between buckets and a delete, equal to a recount", async () => {
    const store = ctx.store();
    const [first, second, unscoped] = await commitEach(store, [
      scoped(hubPut('s', 'k1', { n: 1 }, 1), [A]),
      scoped(hubPut('s', 'k2', { n: 2 }, 2), [A, B]),
      hubPut('u', 'x', 3, 3),
    ]);
    expect(first).toEqual({ [A]: documentHash('s', 'k1', 1, false, encodeCbor({ n: 1 })) });
    const k2 = documentHash('s', 'k2', 2, false, encodeCbor({ n: 2 }));
    expect(second).toEqual({ [A]: adjustDigest(first![A]!, k2), [B]: k2 });
    expect(unscoped).toBeUndefined();
    // k1 moves from A to B, k2 is deleted (it stays in its buckets as a tombstone), k1 changes twice more in one group commit.
    const moves = await commitEach(store, [
      scoped(hubPut('s', 'k1', { n: 4 }, 4), [B], [A]),
      scoped(hubDel('s', 'k2', 5), [A, B]),
      scoped(hubPut('s', 'k1', { n: 6 }, 6), [B, C]),
      scoped(hubPut('s', 'k1', { n: 7 }, 7), [C], [B]),
    ]);
    expect(Object.keys(moves[0]!).sort()).toEqual([A, B]);
    expect(moves[0]![A]).toBe(k2); // k1 left A
    expect(Object.keys(moves[3]!).sort()).toEqual([B, C]);
    const [stored, counted] = await storedAndCounted(store, [A, B, C]);
    expect(stored).toEqual(counted);
    expect([moves[1]![A], moves[3]![B], moves[3]![C]]).toEqual(counted);
    expect(counted[0]).toBe(documentHash('s', 'k2', 5, true, null));
    const heads = await store.bucketDigests([A, B, C, 'bucket-none-0000']);
    expect([...heads.keys()].sort()).toEqual([A, B, C]);
    expect([heads.get(A)!.head, heads.get(B)!.head, heads.get(C)!.head]).toEqual([5, 7, 7]);
    // Kept across a reopen, and moved on from there.
    const reopened = await ctx.reopen();
    const [again] = await commitEach(reopened, [scoped(hubPut('s', 'k3', 'new', 8), [A])]);
    expect(again![A]).toBe(await recount(reopened, A));
    const [after, recounted] = await storedAndCounted(reopened, [A, B, C]);
    expect(after).toEqual(recounted);
  });

  test("a group commit that throws moves no bucket's digest; one that sets no bucket head still keeps them", async () => {
    const store = ctx.store();
    await commitGroup(store, [scoped(hubPut('s', 'k1', 1, 1), [A])]);
    const before = await store.bucketDigests([A, B]);
    const entries = [scoped(hubPut('s', 'k1', 2, 2), [B], [A]), scoped(hubPut('s', 'k2', 2, 2), [A])];
    await expect(
      store.ingest(planOf(entries), (tx) => {
        for (const entry of entries) {
          tx.document(entry.collection, entry.key);
          const { lsn } = tx.commit(entry);
          for (const bucket of [A, B]) tx.setBucketHead(bucket, lsn);
        }
        throw new Error('the work failed half way');
      }),
    ).rejects.toThrow('half way');
    expect(await store.bucketDigests([A, B])).toEqual(before);
    // Heads left as they were: the digests are written all the same.
    const moved = await store.ingest(planOf(entries), (tx) =>
      entries.map((entry) => {
        tx.document(entry.collection, entry.key);
        return tx.commit(entry).bucketDigests;
      }),
    );
    const [stored, counted] = await storedAndCounted(store, [A, B]);
    expect(stored).toEqual(counted);
    expect([moved[1]![A], moved[0]![B]]).toEqual(counted);
    expect((await store.bucketDigests([A])).get(A)!.head).toBe(1);
    const [next] = await commitEach(store, [scoped(hubPut('s', 'k3', 3, 3), [A])]);
    expect(next![A]).toBe(await recount(store, A));
  });

  test('a rebucket moves the digests of the buckets documents leave and join; a bucket it gives documents has no head', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A, B]),
      scoped(hubDel('s', 'k3', 3), [B]),
    ]);
    expect(await store.rebucket('s', rules('v2', { k1: [C], k2: [B, A], k3: [B, C] }))).toBe(2);
    const [stored, counted] = await storedAndCounted(store, [A, B, C]);
    expect(stored).toEqual(counted);
    expect(counted[2]).not.toBe(0);
    expect((await store.bucketDigests([C])).get(C)).toEqual({ head: 0, digest: counted[2] });
    expect(await store.bucketHeads([C])).toEqual(new Map()); // no change of C yet
    const [next] = await commitEach(store, [scoped(hubPut('s', 'k1', 4, 4), [C])]);
    expect(next![C]).toBe(await recount(store, C));
    // Unscoped: no document is in any bucket.
    await store.rebucket('s', rules(undefined, {}));
    expect((await storedAndCounted(store, [A, B, C]))[0]).toEqual([0, 0, 0]);
  });

  test('a database from before bucket digests has them counted when it opens, a bucket without a head included', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A, B]),
      scoped(hubDel('s', 'k2', 3), [A, B]),
    ]);
    await store.rebucket('s', rules('v2', { k1: [A, C], k2: [A, B] }));
    const sound = await storedAndCounted(store, [A, B, C]);
    expect(sound[0]).toEqual(sound[1]);
    await ctx.forgetBucketDigests(C);
    const reopened = await ctx.reopen();
    expect(await storedAndCounted(reopened, [A, B, C])).toEqual(sound);
    expect((await reopened.bucketDigests([C])).get(C)!.head).toBe(0);
    expect((await reopened.verify()).bucketDigests).toEqual([]);
    const [next] = await commitEach(reopened, [scoped(hubPut('s', 'k1', 5, 5), [C], [A])]);
    expect([next![A], next![C]]).toEqual([await recount(reopened, A), await recount(reopened, C)]);
  });

  test("sums and pages a bucket's documents by key range, only those in the bucket, with their buckets", async () => {
    const store = ctx.store();
    const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`);
    await commitGroup(store, [
      ...keys.map((k, i) => scoped(hubPut('s', k, { i }, i), i % 3 === 0 ? [A, B] : [B])),
      scoped(hubPut('t', 'key-0', 'other collection', 1), [A]),
    ]);
    await commitGroup(store, [scoped(hubDel('s', 'key-3', 70), [A, B])]);
    const inA = (await bucketDocuments(store, A)).filter((d) => d.c === 's');
    expect(inA.length).toBe(20);
    const tally = new RangeTally(0, [0], 4);
    for (const doc of inA) tally.add(doc.k, hashOf(doc));
    const sums = await store.rangeDigests('s', 0, [0], 4, A);
    expect([sums.lsn, sums.digests, sums.counts]).toEqual([store.head, tally.digests, tally.counts]);
    const whole = await store.rangeDigests('s', 0, [0], 4);
    expect(whole.counts[0]!.reduce((n, c) => n + c, 0)).toBe(60);
    const pages: Change[] = [];
    for (let after: string | undefined, n = 0; n < 20; n++) {
      const page = await store.rangeDocuments({ collection: 's', depth: 0, ranges: [0], after, limit: 7, maxBytes: ALL, bucket: A });
      pages.push(...page.docs);
      after = page.next;
      if (after === undefined) break;
    }
    expect(pages).toEqual([...inA].sort((x, y) => (x.k < y.k ? -1 : 1)));
    expect(pages.every((d) => d.bk !== undefined && d.bk.includes(A))).toBe(true);
    expect(pages.find((d) => d.k === 'key-3')).toMatchObject({ op: 'del', bk: [A, B] });
    expect((await store.rangeDocuments({ collection: 's', depth: 0, ranges: [0], limit: 10, maxBytes: ALL, bucket: C })).docs).toEqual([]);
    expect((await store.rangeDigests('s', 0, [0], 1, C)).counts).toEqual([[0, 0]]);
  });

  test("a scrub finds a bucket's wrong digest, and repairs it", async () => {
    let store = ctx.store();
    await commitGroup(store, [scoped(hubPut('s', 'k1', 1, 1), [A]), scoped(hubPut('s', 'k2', 2, 2), [A, B])]);
    const sound = await recount(store, A);
    expect(await store.verify()).toMatchObject({ buckets: 2, bucketDigests: [], ok: true });
    await ctx.damageBucketDigest(A, 4242);
    store = await ctx.reopen();
    const found = await store.verify();
    expect([found.ok, found.bucketDigests]).toEqual([false, [{ bucket: A, stored: 4242, computed: sound, rewritten: false }]]);
    expect((await store.bucketDigests([A])).get(A)!.digest).toBe(4242);
    const repaired = await store.verify({ repair: true });
    expect(repaired.bucketDigests).toEqual([{ bucket: A, stored: 4242, computed: sound, rewritten: true }]);
    store = await ctx.reopen(); // PostgreSQL's writer reads digests when it opens, as a hub restarted after a repair does
    expect((await store.bucketDigests([A])).get(A)).toEqual({ head: 2, digest: sound });
    expect((await store.verify()).ok).toBe(true);
    const [next] = await commitEach(store, [scoped(hubPut('s', 'k3', 3, 3), [A])]);
    expect(next![A]).toBe(await recount(store, A));
  });
}
