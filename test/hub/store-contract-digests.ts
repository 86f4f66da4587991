import { expect, test } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { adjustDigest, documentHash, keyPosition, RangeTally, rangeOf } from '../../shared/digest.js';
import type { Change } from '../../shared/messages.js';
import type { HubStore, LogEntry } from '../../hub/store/hub-store.js';
import { commitGroup, hubDel, hubPut, planOf, scoped } from '../helpers/store-writes.js';
import { asBuffer } from '../../shared/value-bytes.js';

/** What the digest cases need of the contract suite around them. */
export interface DigestCaseContext {
  /** The store under test now. */
  store(): HubStore;
  /** Closes the store and opens it again on what it kept. */
  reopen(): Promise<HubStore>;
  /** Changes a document's stored value underneath the store, as damage would: its stored hash stays. */
  damageValue(collection: string, key: string, value: Buffer): Promise<void>;
  /** Changes a collection's stored digest underneath the store. */
  damageDigest(collection: string, digest: number): Promise<void>;
}

const ALL = Number.MAX_SAFE_INTEGER;

/** A document's hash as the test computes it on its own: over the CBOR of its value, as the hub stores it. */
const hashOf = (doc: Change): number => documentHash(doc.c, doc.k, doc.lsn, doc.op === 'del', doc.op === 'del' ? null : asBuffer(doc.v!));

/** Every document of a collection (tombstones included), read as a snapshot. */
async function documentsOf(store: HubStore, collection: string): Promise<Change[]> {
  return (await store.readDocuments([collection], undefined, 1_000_000, ALL)).docs;
}

/** A collection's digest summed by the test from its documents as the store serves them. */
async function digestOf(store: HubStore, collection: string): Promise<number> {
  return (await documentsOf(store, collection)).reduce((digest, doc) => adjustDigest(digest, hashOf(doc)), 0);
}

/** Commits entries as one group commit, the way commitGroup does; the LSN and digest of each. */
function commitEach(store: HubStore, entries: readonly LogEntry[]): Promise<Array<{ lsn: number; digest: number }>> {
  return store.ingest(planOf(entries), (tx) => {
    const results = entries.map((entry) => {
      tx.document(entry.collection, entry.key);
      const { lsn, digest } = tx.commit(entry);
      return { lsn, digest };
    });
    for (const [i, entry] of entries.entries()) tx.setCollectionHead(entry.collection, results[i]!.lsn);
    return results;
  });
}

/** Keys that spread over every range (keyPosition hashes them). */
const manyKeys = (n: number): string[] => Array.from({ length: n }, (_, i) => `key-${i}`);

/**
 * The content digests every HubStore keeps and answers (see DigestReads): cases of the contract
 * suite, run inside it against each implementation. Every figure is checked against one the test
 * works out itself from shared/digest.ts.
 */
export function digestCases(ctx: DigestCaseContext): void {
  test('commit returns the collection digest after each change: a put, an overwrite, a delete, one key over and over', async () => {
    const store = ctx.store();
    // A hash by hand: a put of "hello" at LSN 1.
    const [put] = await commitEach(store, [hubPut('s', 'a', 'hello')]);
    expect(put).toEqual({ lsn: 1, digest: documentHash('s', 'a', 1, false, encodeCbor('hello')) });
    const [overwrite, other] = await commitEach(store, [hubPut('s', 'a', { n: 2 }), hubPut('t', 'x', 1)]);
    expect(overwrite!.digest).toBe(documentHash('s', 'a', 2, false, encodeCbor({ n: 2 })));
    expect(other!.digest).toBe(documentHash('t', 'x', 3, false, encodeCbor(1))); // each collection its own
    const [second] = await commitEach(store, [hubPut('s', 'b', [1, 2])]);
    expect(second!.digest).toBe(await digestOf(store, 's'));
    const [deleted] = await commitEach(store, [hubDel('s', 'a')]);
    // A tombstone counts, by its version and without a value.
    expect(deleted!.digest).toBe(adjustDigest(documentHash('s', 'b', 4, false, encodeCbor([1, 2])), documentHash('s', 'a', 5, true, null)));
    expect(deleted!.digest).toBe(await digestOf(store, 's'));
    // One key four times in one group commit: each change moves the digest from the one before it.
    const again = await commitEach(store, [hubPut('s', 'k', 1), hubPut('s', 'k', 2), hubDel('s', 'k'), hubPut('s', 'k', 'back')]);
    const before = deleted!.digest;
    const values = [1, 2, undefined, 'back'];
    expect(again.map((r) => r.digest)).toEqual(
      again.map((r, i) =>
        adjustDigest(
          before,
          documentHash('s', 'k', r.lsn, values[i] === undefined, values[i] === undefined ? null : encodeCbor(values[i])),
        ),
      ),
    );
    expect(again.at(-1)!.digest).toBe(await digestOf(store, 's'));
    // A scoped change too, and an agent's; kept across a reopen.
    await commitGroup(store, [scoped(hubPut('s', 'scoped', { site: 'x' }), ['bucket-A-0000000'])]);
    const reopened = await ctx.reopen();
    const head = reopened.head;
    expect(await reopened.digestAt('s', head)).toBe(await digestOf(reopened, 's'));
    expect(await reopened.digestAt('t', head)).toBe(other!.digest);
    const [afterReopen] = await commitEach(reopened, [hubPut('s', 'z', 0)]);
    expect(afterReopen!.digest).toBe(await digestOf(reopened, 's'));
  });

  test('a group commit that throws moves no digest', async () => {
    const store = ctx.store();
    const [first] = await commitEach(store, [hubPut('s', 'a', 1)]);
    await expect(
      store.ingest(planOf([hubPut('s', 'a', 2), hubPut('s', 'b', 2)]), (tx) => {
        tx.document('s', 'a');
        tx.commit(hubPut('s', 'a', 2));
        tx.document('s', 'b');
        tx.commit(hubPut('s', 'b', 2));
        tx.setCollectionHead('s', tx.head);
        throw new Error('the work failed half way');
      }),
    ).rejects.toThrow('half way');
    expect(await store.digestAt('s', store.head)).toBe(first!.digest);
    const [next] = await commitEach(store, [hubPut('s', 'b', 3)]);
    expect(next!.digest).toBe(await digestOf(store, 's'));
  });

  test("a change moves its collection's digest even where the group commit leaves the collection's head as it was", async () => {
    const store = ctx.store();
    await commitEach(store, [hubPut('s', 'a', 1)]);
    const digest = await store.ingest(planOf([hubPut('s', 'b', 2)]), (tx) => {
      tx.document('s', 'b');
      return tx.commit(hubPut('s', 'b', 2)).digest;
    });
    expect(digest).toBe(await digestOf(store, 's'));
    expect((await store.verify()).digests).toEqual([]);
    const [next] = await commitEach(store, [hubPut('s', 'c', 3)]);
    expect(next!.digest).toBe(await digestOf(store, 's'));
  });

  test("a log page gives each collection's digest after its last change in the page", async () => {
    const store = ctx.store();
    const results = await commitEach(store, [hubPut('s', 'a', 1), hubPut('t', 'x', 2), hubPut('s', 'b', 3), hubDel('s', 'a')]);
    const [a, x, b, gone] = results.map((r) => r.digest);
    expect((await store.readLog(0, undefined, 10, ALL)).digests).toEqual({ s: gone, t: x });
    expect((await store.readLog(0, undefined, 3, ALL)).digests).toEqual({ s: b, t: x });
    expect((await store.readLog(0, undefined, 1, ALL)).digests).toEqual({ s: a });
    expect((await store.readLog(1, ['s'], 10, ALL)).digests).toEqual({ s: gone });
    // A collection the reader may not see has no change in its page, so no digest either.
    expect((await store.readLog(0, undefined, 10, ALL, (c) => c === 't')).digests).toEqual({ t: x });
    expect((await store.readLog(4, undefined, 10, ALL)).digests).toEqual({});
  });

  test('tells a collection digest at an LSN: its current one from its head on, else the one logged, unless retention pruned it', async () => {
    const store = ctx.store();
    const [a, x, b, gone] = (
      await commitEach(store, [hubPut('s', 'a', 1), hubPut('t', 'x', 2), hubPut('s', 'b', 3), hubDel('s', 'a')])
    ).map((r) => r.digest);
    expect(await Promise.all([4, 100, 3, 2, 1, 0].map((lsn) => store.digestAt('s', lsn)))).toEqual([gone, gone, b, a, a, 0]);
    expect(await Promise.all([0, 1, 2, 4].map((lsn) => store.digestAt('t', lsn)))).toEqual([0, 0, x, x]);
    expect(await store.digestAt('never-written', 4)).toBe(0);
    expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 })).toBe(2);
    // Entries 1 and 2 are gone: what `s` was at 2 cannot be told, nor whether it had a change by 0.
    expect(await Promise.all([0, 1, 2, 3, 4].map((lsn) => store.digestAt('s', lsn)))).toEqual([undefined, undefined, undefined, b, gone]);
    // `t` has not changed since 2: its current digest holds from there.
    expect(await Promise.all([1, 2, 3].map((lsn) => store.digestAt('t', lsn)))).toEqual([undefined, x, x]);
  });

  test('sums a collection into key ranges as a RangeTally fed by the test does, children summing to their parent', async () => {
    const store = ctx.store();
    const keys = manyKeys(300);
    await commitGroup(
      store,
      keys.map((k, i) => hubPut('r', k, { i })),
    );
    await commitGroup(store, [...keys.slice(0, 40).map((k) => hubDel('r', k)), hubPut('other', 'key-1', 'elsewhere')]);
    const docs = await documentsOf(store, 'r');
    const tallied = (depth: number, parents: number[], bits: number): RangeTally => {
      const tally = new RangeTally(depth, parents, bits);
      for (const doc of docs) tally.add(doc.k, hashOf(doc));
      return tally;
    };
    const whole = await store.rangeDigests('r', 0, [0], 4);
    expect(whole.lsn).toBe(store.head);
    const expected = tallied(0, [0], 4);
    expect(whole.digests).toEqual(expected.digests);
    expect(whole.counts).toEqual(expected.counts);
    expect(whole.counts[0]!.reduce((n, c) => n + c, 0)).toBe(300);
    const sum = (digests: number[]): number => digests.reduce((d, h) => adjustDigest(d, h), 0);
    expect(sum(whole.digests[0]!)).toBe(await store.digestAt('r', store.head));
    // Two of those sixteen, each split 16 ways: each one's children sum to it.
    const parents = [3, 12];
    const narrower = await store.rangeDigests('r', 4, parents, 4);
    expect(narrower.digests).toEqual(tallied(4, parents, 4).digests);
    expect(narrower.counts).toEqual(tallied(4, parents, 4).counts);
    expect(narrower.digests.map(sum)).toEqual(parents.map((p) => whole.digests[0]![p]));
    expect(await store.rangeDigests('none', 0, [0], 2)).toEqual({ lsn: store.head, digests: [[0, 0, 0, 0]], counts: [[0, 0, 0, 0]] });
  });

  test("reads a collection's documents in key ranges, in key order, in pages bounded by count and by bytes", async () => {
    const store = ctx.store();
    const keys = manyKeys(200);
    await commitGroup(
      store,
      keys.map((k, i) => hubPut('r', k, { i, pad: 'x'.repeat(100) })),
    );
    await commitGroup(store, [...keys.slice(0, 30).map((k) => hubDel('r', k)), hubPut('other', 'key-7', 1)]);
    const all = await documentsOf(store, 'r');
    const ranges = [1, 3];
    const inRanges = all.filter((d) => ranges.includes(rangeOf(keyPosition(d.k), 2)));
    expect(inRanges.length).toBeGreaterThan(50);
    expect(inRanges.some((d) => d.op === 'del')).toBe(true);
    const pages: Change[][] = [];
    let after: string | undefined;
    do {
      const page = await store.rangeDocuments({ collection: 'r', depth: 2, ranges, after, limit: 7, maxBytes: ALL });
      expect(page.lsn).toBe(store.head);
      expect(page.docs.length).toBeLessThanOrEqual(7);
      expect(page.next === undefined || page.next === page.docs.at(-1)!.k).toBe(true);
      pages.push(page.docs);
      after = page.next;
    } while (after !== undefined && pages.length < 100);
    expect(pages.flat()).toEqual(inRanges); // tombstones as `del` without a value, in the snapshot's order
    expect(pages.length).toBe(Math.ceil(inRanges.length / 7));
    // Exactly `limit` left: nothing follows, so no `next`.
    const last = await store.rangeDocuments({ collection: 'r', depth: 2, ranges, after: inRanges.at(-4)!.k, limit: 3, maxBytes: ALL });
    expect([last.docs, last.next]).toEqual([inRanges.slice(-3), undefined]);
    // About `maxBytes`, at least one.
    const small = await store.rangeDocuments({ collection: 'r', depth: 2, ranges, limit: 100, maxBytes: 1 });
    expect([small.docs, small.next]).toEqual([inRanges.slice(0, 1), inRanges[0]!.k]);
    expect(small.readBytes).toBeGreaterThan(0);
    const some = await store.rangeDocuments({ collection: 'r', depth: 2, ranges, limit: 100, maxBytes: 600 });
    expect(some.docs.length).toBeGreaterThan(1);
    expect(some.docs.length).toBeLessThan(8);
    // A range of depth 32 is one key position.
    const one = all[17]!;
    expect(
      (await store.rangeDocuments({ collection: 'r', depth: 32, ranges: [keyPosition(one.k)], limit: 10, maxBytes: ALL })).docs,
    ).toEqual([one]);
    expect(await store.rangeDocuments({ collection: 'none', depth: 0, ranges: [0], limit: 10, maxBytes: ALL })).toEqual({
      lsn: store.head,
      docs: [],
      next: undefined,
      readBytes: 0,
    });
  });

  test('a scrub of a sound store finds nothing wrong', async () => {
    const store = ctx.store();
    await commitGroup(store, [...manyKeys(30).map((k) => hubPut('s', k, k)), hubDel('s', 'key-3'), hubPut('t', 'x', 1)]);
    const report = await store.verify();
    expect(report).toMatchObject({ documents: 31, collections: 2, damaged: [], digests: [], ok: true });
    expect(report.engine.ok).toBe(true);
    expect(report.engine.check).toMatch(/\w/);
  });

  test('a scrub finds a document changed underneath and a wrong digest, and repairs what the log still holds', async () => {
    let store = ctx.store();
    await commitGroup(store, [hubPut('s', 'old', 'first')]); // LSN 1, pruned below
    await commitGroup(store, [hubPut('s', 'a', { n: 1 }), hubPut('s', 'b', 'kept'), hubPut('t', 'x', 1), hubDel('s', 'gone')]);
    expect(await store.prune({ maxAgeMs: 0, maxEntries: 4 })).toBe(1);
    const sound = { s: await digestOf(store, 's'), t: await digestOf(store, 't') };
    await ctx.damageValue('s', 'a', encodeCbor({ n: 666 }));
    await ctx.damageValue('s', 'old', encodeCbor('tampered'));
    await ctx.damageDigest('t', 12345);
    store = await ctx.reopen();

    const found = await store.verify();
    expect(found.ok).toBe(false);
    expect(found.damaged).toEqual([
      { collection: 's', key: 'a', version: 2, restorable: true, restored: false },
      { collection: 's', key: 'old', version: 1, restorable: false, restored: false },
    ]);
    // The stored hashes still sum to `s`'s digest: only `t`'s is wrong.
    expect(found.digests).toEqual([{ collection: 't', stored: 12345, computed: sound.t, rewritten: false }]);
    expect((await store.document('s', 'a'))?.value).toEqual({ n: 666 }); // a scrub alone changes nothing

    const repaired = await store.verify({ repair: true });
    expect(repaired.ok).toBe(false); // damage was found, even if repaired
    expect(repaired.damaged).toEqual([
      { collection: 's', key: 'a', version: 2, restorable: true, restored: true },
      { collection: 's', key: 'old', version: 1, restorable: false, restored: false },
    ]);
    expect(repaired.digests).toEqual([{ collection: 't', stored: 12345, computed: sound.t, rewritten: true }]);
    expect(await store.document('s', 'a')).toMatchObject({ value: { n: 1 }, version: 2, deleted: false, origin: 'hub' });
    expect(await store.digestAt('t', store.head)).toBe(sound.t);

    const after = await store.verify();
    expect([after.damaged.map((d) => d.key), after.digests]).toEqual([['old'], []]);
    // The log keeps no version of `old` to restore: it stays as damaged as it was, and says so.
    expect((await store.document('s', 'old'))?.value).toBe('tampered');
    const [next] = await commitEach(store, [hubPut('t', 'y', 2)]);
    expect(next!.digest).toBe(await digestOf(store, 't'));
  });
}
