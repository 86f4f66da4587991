import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Change } from '../../shared/messages.js';
import type { ConflictRecord, HubStore, IngestPlan, IngestTx } from '../../hub/store/hub-store.js';
import { agentPut, commitGroup, hlcAt, hubDel, hubPut, observable, planOf, sleep } from '../helpers/store-writes.js';
import { bucketDigestCases } from './store-contract-bucket-digests.js';
import { scopeBucketCases } from './store-contract-buckets.js';
import { digestCases } from './store-contract-digests.js';
import { rebucketCases } from './store-contract-rebucket.js';
import { encodeValue } from '../../shared/value-bytes.js';
import { valueOf, withValue, plainBytes } from '../helpers/value-bytes.js';

/** How the contract reaches one implementation. */
export interface StoreUnderTest {
  /** A new, empty place for a store: a directory, a database. */
  fresh(): Promise<string>;
  /** Opens the store kept at `location`, again if it was opened before (a restart, another process). */
  open(location: string): Promise<HubStore>;
  /** Makes every delete from the log at `location` fail from now on, as a failing disk would. */
  refuseLogDeletes(location: string): Promise<void>;
  /** How many rows a table at `location` holds, read around the store. */
  rows(location: string, table: string): Promise<number>;
  /** A document's prior buckets at `location` as stored (null: none), read around the store. */
  priorBuckets(location: string, collection: string, key: string): Promise<string[] | null>;
  /** Changes a document's stored value at `location` around the store, as damage would (its hash stays). */
  damageValue(location: string, collection: string, key: string, value: Buffer): Promise<void>;
  /** Changes a collection's stored digest at `location` around the store. */
  damageDigest(location: string, collection: string, digest: number): Promise<void>;
  /** Changes a scope bucket's stored digest at `location` around the store. */
  damageBucketDigest(location: string, bucket: string, digest: number): Promise<void>;
  /** Makes the database at `location` look like one from before bucket digests (see BucketDigestCaseContext). */
  forgetBucketDigests(location: string, bucket: string): Promise<void>;
}

const ALL = Number.MAX_SAFE_INTEGER;
const pi = (seq: number, inc = 'inc-1'): { id: string; inc: string; seq: number } => ({ id: 'pi-1', inc, seq });

/**
 * The behaviour every HubStore must show, run against each implementation (in the manner of
 * aedes-persistence's abstract suite). `skip` says why an implementation cannot run here.
 */
export function hubStoreContract(name: string, subject: StoreUnderTest, skip?: string): void {
  describe.skipIf(skip !== undefined)(`HubStore contract: ${name}${skip ? ` (${skip})` : ''}`, () => {
    let location: string;
    let store: HubStore;
    const opened: HubStore[] = [];
    const open = async (): Promise<HubStore> => {
      const another = await subject.open(location);
      opened.push(another);
      return another;
    };

    beforeEach(async () => {
      location = await subject.fresh();
      store = await open();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    test('starts empty', async () => {
      expect(store.kind).toMatch(/^[a-z]+$/);
      expect([store.head, store.prunedThrough]).toEqual([0, 0]);
      expect(await store.readLog(0, undefined, 10, ALL)).toEqual({ changes: [], complete: true, through: 0, readBytes: 0, digests: {} });
      expect(await store.readDocuments(undefined, undefined, 10, ALL)).toEqual({ docs: [], next: undefined, readBytes: 0 });
      expect(await store.document('s', 'k')).toBeUndefined();
      expect(await store.collectionHeads()).toEqual({});
      expect(await store.lastSeqs('pi-1')).toEqual({});
      expect(await store.credentials()).toEqual([]);
      expect(await store.allLabels()).toEqual(new Map());
    });

    test('hands out gap-free LSNs across group commits, one group commit at a time', async () => {
      expect(await commitGroup(store, [hubPut('s', 'a', 1), hubPut('s', 'b', 2)])).toEqual([1, 2]);
      expect(await commitGroup(store, [hubPut('s', 'c', 3)])).toEqual([3]);
      await store.ingest(planOf([hubPut('t', 'x', 0)]), (tx) => {
        expect(tx.head).toBe(3);
        tx.setCollectionHead('t', tx.commit(hubPut('t', 'x', 0)).lsn);
        expect(tx.head).toBe(4);
      });
      // Started together, they still commit one after another.
      const together = await Promise.all([1, 2, 3].map((n) => commitGroup(store, [hubPut('u', `k${n}`, n), hubPut('u', `j${n}`, n)])));
      expect(together.flat().sort((a, b) => a - b)).toEqual([5, 6, 7, 8, 9, 10]);
      expect(store.head).toBe(10);
      const { changes } = await store.readLog(0, undefined, 100, ALL);
      expect(changes.map((c) => c.lsn)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(withValue(changes[0]!)).toEqual({ lsn: 1, c: 's', k: 'a', op: 'put', v: 1, hlc: hlcAt(0), o: 'hub' });
      expect(changes[0]!.v).toEqual(encodeValue(1)); // the value's bytes, as stored
    });

    test('a group commit that throws changes nothing, and its LSNs are handed out again', async () => {
      await commitGroup(store, [agentPut('s', 'a', { n: 1 }, pi(1))]);
      const agents: Array<[string, string, number]> = [
        ['pi-1', 'inc-1', 1],
        ['pi-1', 'inc-1', 2],
        ['pi-1', 'inc-1', 3],
      ];
      const before = await observable(store, agents);
      const failure = new Error('the work failed half way');
      const plan = planOf([agentPut('s', 'a', 0, pi(2)), hubPut('s', 'b', 0)], {
        agents: [{ agentId: 'pi-1', incarnation: 'inc-1', seqs: [3] }],
      });
      await expect(
        store.ingest(plan, (tx) => {
          const { lsn } = tx.commit(agentPut('s', 'a', { n: 2 }, pi(2)));
          tx.putCommittedRun('pi-1', 'inc-1', 2, 2, lsn);
          tx.putOutcome('pi-1', 'inc-1', { seq: 3, outcome: 'rejected', reason: 'schema', detail: 'no' }, 'digest-3');
          tx.setLastSeq('pi-1', 'inc-1', 3);
          tx.commit(hubPut('s', 'b', 2));
          tx.archiveConflict(conflict('s', 'a', 1));
          tx.setCollectionHead('s', tx.head);
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(store.head).toBe(1);
      expect(await observable(store, agents)).toEqual(before);
      expect(await commitGroup(store, [hubPut('s', 'c', 3)])).toEqual([2]);
    });

    test('a group commit reads its own writes: the same key written twice', async () => {
      await commitGroup(store, [hubPut('s', 'k', { v: 0 })]);
      const fieldHlcs = { v: hlcAt(3) };
      await store.ingest(planOf([hubPut('s', 'k', 0)]), (tx) => {
        expect(plainBytes(tx.document('s', 'k'))).toEqual({
          value: { v: 0 },
          encoded: encodeValue({ v: 0 }),
          deleted: false,
          version: 1,
          hlc: hlcAt(0),
          origin: 'hub',
        });
        const first = tx.commit(hubPut('s', 'k', { v: 1 }, 1));
        expect(tx.document('s', 'k')).toMatchObject({ value: { v: 1 }, version: first.lsn, deleted: false });
        const second = tx.commit(hubDel('s', 'k', 2));
        expect(plainBytes(tx.document('s', 'k'))).toEqual({
          value: undefined,
          encoded: null,
          deleted: true,
          version: second.lsn,
          hlc: hlcAt(2),
          origin: 'hub',
        });
        const third = tx.commit({ ...hubPut('s', 'k', { v: 3 }, 3), fieldHlcs });
        expect(third.bytes).toBeGreaterThan(0);
        expect(plainBytes(tx.document('s', 'k'))).toEqual({
          value: { v: 3 },
          encoded: encodeValue({ v: 3 }),
          deleted: false,
          version: 4,
          hlc: hlcAt(3),
          origin: 'hub',
          fieldHlcs,
        });
        tx.setCollectionHead('s', third.lsn);
      });
      expect(plainBytes(await store.document('s', 'k'))).toEqual({
        value: { v: 3 },
        encoded: encodeValue({ v: 3 }),
        deleted: false,
        version: 4,
        hlc: hlcAt(3),
        origin: 'hub',
        fieldHlcs,
      });
      expect((await store.readLog(0, undefined, 10, ALL)).changes.map((c) => [c.lsn, c.op, valueOf(c)])).toEqual([
        [1, 'put', { v: 0 }],
        [2, 'put', { v: 1 }],
        [3, 'del', undefined],
        [4, 'put', { v: 3 }],
      ]);
      expect((await store.readDocuments(undefined, undefined, 10, ALL)).docs.map(withValue)).toEqual([
        { lsn: 4, c: 's', k: 'k', op: 'put', v: { v: 3 }, hlc: hlcAt(3), o: 'hub' },
      ]);
    });

    test('remembers committed runs and outcomes, and serves them to later group commits', async () => {
      const ops = [1, 2, 3, 4, 5];
      await store.ingest(
        planOf([], {
          agents: [{ agentId: 'pi-1', incarnation: 'inc-1', seqs: ops }],
          documents: [
            ['s', 'a'],
            ['s', 'b'],
            ['s', 'c'],
          ],
        }),
        (tx) => {
          expect(tx.lastSeq('pi-1', 'inc-1')).toBe(0);
          expect(tx.outcome('pi-1', 'inc-1', 1)).toBeUndefined();
          const a = tx.commit(agentPut('s', 'a', 1, pi(1)));
          tx.commit(agentPut('s', 'b', 2, pi(2)));
          tx.putCommittedRun('pi-1', 'inc-1', 1, 2, a.lsn);
          tx.putOutcome('pi-1', 'inc-1', { seq: 3, outcome: 'rejected', reason: 'schema', detail: 'not a number' }, 'digest-3');
          const c = tx.commit(agentPut('s', 'c', 4, pi(4)));
          tx.putCommittedRun('pi-1', 'inc-1', 4, 4, c.lsn);
          tx.putOutcome('pi-1', 'inc-1', { seq: 5, outcome: 'conflict', lsn: a.lsn, reason: 'stale', detail: 'lost' }, 'digest-5');
          tx.setLastSeq('pi-1', 'inc-1', 5);
          tx.setCollectionHead('s', c.lsn);
          // The same incarnation's second batch in this group commit sees the first one's outcomes.
          expect(tx.lastSeq('pi-1', 'inc-1')).toBe(5);
          expect(tx.outcome('pi-1', 'inc-1', 2)).toEqual({ result: { outcome: 'committed', lsn: 2 }, digest: 'digest-pi-1-inc-1-2' });
          expect(tx.outcome('pi-1', 'inc-1', 3)).toEqual({
            result: { outcome: 'rejected', reason: 'schema', detail: 'not a number' },
            digest: 'digest-3',
          });
        },
      );
      const expected = [
        { result: { outcome: 'committed', lsn: 1 }, digest: 'digest-pi-1-inc-1-1' },
        { result: { outcome: 'committed', lsn: 2 }, digest: 'digest-pi-1-inc-1-2' },
        { result: { outcome: 'rejected', reason: 'schema', detail: 'not a number' }, digest: 'digest-3' },
        { result: { outcome: 'committed', lsn: 3 }, digest: 'digest-pi-1-inc-1-4' },
        { result: { outcome: 'conflict', lsn: 1, reason: 'stale', detail: 'lost' }, digest: 'digest-5' },
      ];
      expect(await Promise.all(ops.map((seq) => store.outcomeOf('pi-1', 'inc-1', seq)))).toEqual(expected);
      expect(await store.outcomeOf('pi-1', 'inc-1', 6)).toBeUndefined();
      expect(await store.outcomeOf('pi-1', 'inc-2', 1)).toBeUndefined();
      // A redelivery in a later group commit.
      await store.ingest(planOf([], { agents: [{ agentId: 'pi-1', incarnation: 'inc-1', seqs: [...ops, 6] }] }), (tx) => {
        expect(tx.lastSeq('pi-1', 'inc-1')).toBe(5);
        expect(ops.map((seq) => tx.outcome('pi-1', 'inc-1', seq))).toEqual(expected);
        expect(tx.outcome('pi-1', 'inc-1', 6)).toBeUndefined();
      });
      expect(await store.lastSeqs('pi-1')).toEqual({ 'inc-1': 5 });
      expect(await Promise.all([1, 3, 4].map((seq) => store.countCommitted('pi-1', 'inc-1', seq)))).toEqual([1, 0, 1]);
    });

    test("keeps a committed op's digest while its log entry is kept", async () => {
      await commitGroup(store, [agentPut('s', 'a', 1, pi(1)), agentPut('s', 'b', 2, pi(2)), hubPut('s', 'c', 3)]);
      expect(await store.outcomeOf('pi-1', 'inc-1', 2)).toEqual({
        result: { outcome: 'committed', lsn: 2 },
        digest: 'digest-pi-1-inc-1-2',
      });
    });

    test('retention removes the dedup state as old as the log it prunes, and keeps every last seq', async () => {
      await commitGroup(store, [agentPut('s', 'a', 1, pi(1)), agentPut('s', 'b', 2, pi(2))]);
      const rejected = { seq: 3, outcome: 'rejected', reason: 'schema', detail: 'no' } as const;
      await store.ingest(planOf([], { agents: [{ agentId: 'pi-1', incarnation: 'inc-1', seqs: [3] }] }), (tx) => {
        tx.putOutcome('pi-1', 'inc-1', rejected, 'digest-3');
        tx.setLastSeq('pi-1', 'inc-1', 3);
      });
      await sleep(5); // the outcome is older than every entry committed from here on
      // Ops 4 and 5 as one run at LSNs 3 and 4, then a hub write at 5.
      await store.ingest(planOf([agentPut('s', 'c', 4, pi(4)), agentPut('s', 'd', 5, pi(5)), hubPut('s', 'e', 6)]), (tx) => {
        const first = tx.commit(agentPut('s', 'c', 4, pi(4))).lsn;
        tx.commit(agentPut('s', 'd', 5, pi(5)));
        tx.commit(hubPut('s', 'e', 6));
        tx.putCommittedRun('pi-1', 'inc-1', 4, 5, first);
        tx.setLastSeq('pi-1', 'inc-1', 5);
        tx.setCollectionHead('s', 5);
      });
      const outcomes = (): Promise<unknown[]> => Promise.all([1, 2, 3, 4, 5].map((seq) => store.outcomeOf('pi-1', 'inc-1', seq)));
      expect((await outcomes()).filter(Boolean)).toHaveLength(5);

      expect(await store.prune({ maxAgeMs: 0, maxEntries: 3 })).toBe(2);
      // Ops 1 and 2 went with their entries, the rejection with the older log; the run 4–5 straddles nothing pruned.
      expect(await outcomes()).toEqual([
        undefined,
        undefined,
        undefined,
        { result: { outcome: 'committed', lsn: 3 }, digest: 'digest-pi-1-inc-1-4' },
        { result: { outcome: 'committed', lsn: 4 }, digest: 'digest-pi-1-inc-1-5' },
      ]);
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 })).toBe(3);
      // Op 5's entry is kept, so its run is too (a run goes only once every entry it covers has).
      expect((await outcomes()).slice(3)).toEqual([
        { result: { outcome: 'committed', lsn: 3 } },
        { result: { outcome: 'committed', lsn: 4 }, digest: 'digest-pi-1-inc-1-5' },
      ]);
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 1 })).toBe(4);
      expect(await outcomes()).toEqual([undefined, undefined, undefined, undefined, undefined]);
      // What exactly-once needs stays: a redelivered op at or below it is never applied again.
      expect(await store.lastSeqs('pi-1')).toEqual({ 'inc-1': 5 });
    });

    test('a prune cut short before the dedup state is finished by the next', async () => {
      await commitGroup(store, [agentPut('s', 'a', 1, pi(1)), agentPut('s', 'b', 2, pi(2)), hubPut('s', 'c', 3)]);
      const stop = new AbortController();
      stop.abort();
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 1 }, undefined, stop.signal)).toBe(2);
      expect(await store.outcomeOf('pi-1', 'inc-1', 1)).toBeDefined(); // nothing removed yet
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 1 })).toBe(2);
      expect([await store.outcomeOf('pi-1', 'inc-1', 1), await store.outcomeOf('pi-1', 'inc-1', 2)]).toEqual([undefined, undefined]);
    });

    test('reads the log in pages bounded by count and by bytes, filtered by collection or reader', async () => {
      const big = 'x'.repeat(1000);
      await commitGroup(store, [
        hubPut('a', '1', big),
        hubPut('b', '2', big),
        hubPut('a', '3', big),
        hubPut('b', '4', big),
        hubPut('a', '5', big),
      ]);
      const lsns = (page: { changes: Change[] }): number[] => page.changes.map((c) => c.lsn);
      const firstTwo = await store.readLog(0, undefined, 2, ALL);
      expect([lsns(firstTwo), firstTwo.complete, firstTwo.through]).toEqual([[1, 2], false, 2]);
      const rest = await store.readLog(2, undefined, 10, ALL);
      expect([lsns(rest), rest.complete, rest.through]).toEqual([[3, 4, 5], true, 5]);
      const oneAtLeast = await store.readLog(0, undefined, 10, 1);
      expect([lsns(oneAtLeast), oneAtLeast.complete, oneAtLeast.through]).toEqual([[1], false, 1]);
      const twoFit = await store.readLog(1, undefined, 10, 2500);
      expect([lsns(twoFit), twoFit.complete, twoFit.through]).toEqual([[2, 3], false, 3]);
      const onlyB = await store.readLog(0, ['b'], 10, ALL);
      expect([lsns(onlyB), onlyB.complete, onlyB.through]).toEqual([[2, 4], true, 4]);
      expect(lsns(await store.readLog(0, ['a', 'b'], 10, ALL))).toEqual([1, 2, 3, 4, 5]);
      // What a reader may not see is skipped but still covered by `through`.
      const readerA = await store.readLog(0, undefined, 10, ALL, (c) => c === 'a');
      expect([lsns(readerA), readerA.complete, readerA.through]).toEqual([[1, 3, 5], true, 5]);
      const readerB = await store.readLog(0, undefined, 3, ALL, (c) => c === 'b');
      expect([lsns(readerB), readerB.complete, readerB.through]).toEqual([[2], false, 3]);
    });

    test('a page reads at most twice its size of rows, whoever they are for, and says what it read', async () => {
      // Twenty 10 KB values another reader's, then one small change of this reader's.
      const big = 'x'.repeat(10_000);
      await commitGroup(store, [...Array.from({ length: 20 }, (_, i) => hubPut('theirs', `t${i}`, big)), hubPut('mine', 'm', 1)]);
      const mine = (c: string): boolean => c === 'mine';
      const pageBytes = 20_000;
      const found: Change[] = [];
      let from = 0;
      let pages = 0;
      for (let complete = false; !complete && pages < 50; pages++) {
        const page = await store.readLog(from, undefined, 1000, pageBytes, mine);
        // Each read stops once past twice the page's size: at most one row more than that.
        expect(page.readBytes).toBeLessThanOrEqual(2 * pageBytes + 10_200);
        expect(page.readBytes).toBeGreaterThan(0);
        found.push(...page.changes);
        expect(page.through).toBeGreaterThan(from); // it covers what it read, so the next page goes on
        from = page.through;
        complete = page.complete;
      }
      expect(found.map((c) => c.k)).toEqual(['m']);
      expect(pages).toBeGreaterThan(5); // 200 KB read 40 KB at a time
      // The same for snapshot pages.
      const docs: Change[] = [];
      let after: [string, string] | undefined;
      pages = 0;
      do {
        const page = await store.readDocuments(undefined, after, 1000, pageBytes, mine);
        expect(page.readBytes).toBeLessThanOrEqual(2 * pageBytes + 10_200);
        docs.push(...page.docs);
        after = page.next;
        pages += 1;
      } while (after && pages < 50);
      expect(docs.map((d) => d.k)).toEqual(['m']);
      expect(pages).toBeGreaterThan(5);
    });

    test('pages snapshots in byte order of (collection, key), tombstones included', async () => {
      const keys = ['b', 'B', 'a', 'é', 'z', '~', '😀', 'aa', 'a b', 'Z9', '\u00ff', 'ω'];
      await commitGroup(store, [
        ...keys.map((k, i) => hubPut('docs', k, { i }, i)),
        hubPut('apps', 'x', 1),
        hubPut('zz', 'y', 2),
        hubDel('docs', 'z', 99),
      ]);
      const byteOrder = [...keys.map((k) => ['docs', k]), ['apps', 'x'], ['zz', 'y']].sort(
        ([c1, k1], [c2, k2]) => Buffer.compare(Buffer.from(c1!), Buffer.from(c2!)) || Buffer.compare(Buffer.from(k1!), Buffer.from(k2!)),
      );
      const all = await store.readDocuments(undefined, undefined, 100, ALL);
      expect(all.next).toBeUndefined();
      expect(all.docs.map((d) => [d.c, d.k])).toEqual(byteOrder);
      expect(all.docs.find((d) => d.k === 'z')).toEqual({ lsn: 15, c: 'docs', k: 'z', op: 'del', hlc: hlcAt(99), o: 'hub' });
      expect(all.docs.map(withValue).find((d) => d.k === 'é')).toEqual({
        lsn: 4,
        c: 'docs',
        k: 'é',
        op: 'put',
        v: { i: 3 },
        hlc: hlcAt(3),
        o: 'hub',
      });

      const paged: Change[] = [];
      let after: [string, string] | undefined;
      let pages = 0;
      do {
        const page = await store.readDocuments(undefined, after, 4, ALL);
        expect(page.docs.length).toBeLessThanOrEqual(4);
        paged.push(...page.docs);
        after = page.next;
        pages += 1;
      } while (after && pages < 20);
      expect(paged).toEqual(all.docs);

      const tiny = await store.readDocuments(undefined, undefined, 100, 1);
      expect([tiny.docs.length, tiny.next]).toEqual([1, ['apps', 'x']]);
      expect((await store.readDocuments(['apps', 'zz'], undefined, 100, ALL)).docs.map((d) => d.k)).toEqual(['x', 'y']);
      expect((await store.readDocuments(['docs'], ['docs', 'é'], 100, ALL)).docs.map((d) => d.k)).toEqual(
        ['ω', '\u00ff', '😀'].sort(byBytes),
      );
      const hidden = await store.readDocuments(undefined, undefined, 100, ALL, (c) => c !== 'docs');
      expect([hidden.docs.map((d) => d.k), hidden.next]).toEqual([['x', 'y'], undefined]);
    });

    test('lists live documents of a collection by prefix and after a key', async () => {
      await commitGroup(store, [
        ...['a1', 'a2', 'a3', 'ab', 'b1', 'a4'].map((k, i) => hubPut('l', k, { k }, i)),
        hubPut('other', 'a5', 0),
        hubDel('l', 'a4'),
      ]);
      const keys = async (options: { prefix?: string; after?: string; limit: number }): Promise<string[]> =>
        (await store.listDocuments('l', options)).map((d) => d.key);
      expect(await keys({ limit: 10 })).toEqual(['a1', 'a2', 'a3', 'ab', 'b1']);
      expect(await keys({ prefix: 'a', limit: 10 })).toEqual(['a1', 'a2', 'a3', 'ab']);
      expect(await keys({ prefix: 'a', after: 'a2', limit: 10 })).toEqual(['a3', 'ab']);
      expect(await keys({ prefix: 'a', limit: 2 })).toEqual(['a1', 'a2']);
      expect(await keys({ after: 'ab', limit: 10 })).toEqual(['b1']);
      expect(await keys({ prefix: 'b', after: 'a1', limit: 10 })).toEqual(['b1']);
      expect(await keys({ prefix: 'c', limit: 10 })).toEqual([]);
      expect(await store.listDocuments('l', { prefix: 'b', limit: 1 })).toEqual([
        { key: 'b1', value: { k: 'b1' }, version: 5, origin: 'hub' },
      ]);
    });

    test('archives conflicts and lists them newest first, by collection, document or page', async () => {
      const t0 = Date.now();
      await store.ingest(planOf([hubPut('s', 'k1', 0), hubPut('s', 'k2', 0)]), (tx) => {
        tx.archiveConflict(conflict('s', 'k1', 1));
        tx.archiveConflict({
          ...conflict('s', 'k2', 2),
          detail: null,
          loser: { origin: 'pi-2', incarnation: null, seq: null, op: 'del', value: undefined, hlc: hlcAt(5) },
        });
      });
      await store.ingest(planOf([hubPut('t', 'k1', 0)]), (tx) => tx.archiveConflict(conflict('t', 'k1', 3)));
      const all = await store.conflicts({ limit: 10 });
      expect(all.map((c) => [c.collection, c.key])).toEqual([
        ['t', 'k1'],
        ['s', 'k2'],
        ['s', 'k1'],
      ]);
      expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
      expect(all[1]!.id).toBeGreaterThan(all[2]!.id);
      const { id, at, ...first } = all[2]!;
      expect(first).toEqual(conflict('s', 'k1', 1));
      expect(at).toBeGreaterThanOrEqual(t0);
      expect(all[1]!.loser).toEqual({ origin: 'pi-2', incarnation: null, seq: null, op: 'del', value: undefined, hlc: hlcAt(5) });
      expect(all[1]!.detail).toBeNull();
      const keysOf = (list: ConflictRecord[]): string[] => list.map((c) => `${c.collection}/${c.key}`);
      expect(keysOf(await store.conflicts({ collection: 's', limit: 10 }))).toEqual(['s/k2', 's/k1']);
      expect(keysOf(await store.conflicts({ collection: 's', key: 'k1', limit: 10 }))).toEqual(['s/k1']);
      expect(keysOf(await store.conflicts({ before: all[0]!.id, limit: 1 }))).toEqual(['s/k2']);
      expect(keysOf(await store.conflicts({ limit: 1 }))).toEqual(['t/k1']);
      expect(id).toBe(all[2]!.id);
    });

    test('lists rejected ops, newest first', async () => {
      const rejected =
        (seq: number, reason: string) =>
        (tx: IngestTx): void =>
          tx.putOutcome('pi-1', 'inc-1', { seq, outcome: 'rejected', reason, detail: `op ${seq}` }, `d${seq}`);
      const agent = (seqs: number[]): IngestPlan => planOf([], { agents: [{ agentId: 'pi-1', incarnation: 'inc-1', seqs }] });
      await store.ingest(agent([1]), (tx) => {
        rejected(1, 'schema')(tx);
        tx.setLastSeq('pi-1', 'inc-1', 1);
      });
      await sleep(5);
      await store.ingest(agent([2, 3]), (tx) => {
        rejected(2, 'too_large')(tx);
        tx.putOutcome('pi-1', 'inc-1', { seq: 3, outcome: 'conflict', lsn: 1, reason: 'stale', detail: 'lost' }, 'd3');
        tx.setLastSeq('pi-1', 'inc-1', 3);
      });
      const list = await store.rejections(10);
      expect(list.map(({ at: _at, ...r }) => r)).toEqual([
        { agentId: 'pi-1', incarnation: 'inc-1', seq: 2, reason: 'too_large', detail: 'op 2' },
        { agentId: 'pi-1', incarnation: 'inc-1', seq: 1, reason: 'schema', detail: 'op 1' },
      ]);
      expect(list[0]!.at).toBeGreaterThan(list[1]!.at!);
      expect((await store.rejections(1)).map((r) => r.seq)).toEqual([2]);
    });

    test('keeps each collection head', async () => {
      await commitGroup(store, [hubPut('a', 'x', 1), hubPut('b', 'y', 2), hubPut('a', 'z', 3)]);
      expect(await store.collectionHeads()).toEqual({ a: 3, b: 2 });
      await store.ingest(planOf([hubPut('a', 'x', 0), hubPut('c', 'x', 0)]), (tx) => {
        expect([tx.collectionHead('a'), tx.collectionHead('c')]).toEqual([3, 0]);
        tx.setCollectionHead('c', 3);
        expect(tx.collectionHead('c')).toBe(3);
      });
      expect(await store.collectionHeads()).toEqual({ a: 3, b: 2, c: 3 });
    });

    test('tells when the first change after an LSN was committed, and how many follow', async () => {
      const t0 = Date.now();
      await commitGroup(store, [hubPut('a', '1', 1), hubPut('b', '2', 2), hubPut('a', '3', 3)]);
      const t1 = Date.now();
      const first = await store.firstCommitAfter('a', 0);
      expect(first).toBeGreaterThanOrEqual(t0);
      expect(first).toBeLessThanOrEqual(t1);
      expect(await store.firstCommitAfter('a', 3)).toBeUndefined();
      expect(await store.firstCommitAfter('b', 2)).toBeUndefined();
      expect(await store.firstCommitAfter('c', 0)).toBeUndefined();
      expect(
        await Promise.all([
          store.countAfter('a', 0, 3),
          store.countAfter('a', 1, 3),
          store.countAfter('a', 3, 3),
          store.countAfter('b', 0, 3),
          store.countAfter('a', 0, 2),
        ]),
      ).toEqual([2, 1, 0, 1, 2]);
      await store.prune({ maxAgeMs: 0, maxEntries: 1 });
      expect(await store.countAfter('a', 1, 3)).toBe(2); // below the pruned point: estimated from LSNs
      expect(await store.firstCommitAfter('a', 0)).toBeGreaterThanOrEqual(t0);
    });

    test('keeps the last seq of every incarnation of an agent', async () => {
      await commitGroup(store, [agentPut('s', 'a', 1, pi(1)), agentPut('s', 'b', 1, pi(2))]);
      await commitGroup(store, [agentPut('s', 'c', 1, pi(1, 'inc-2'))]);
      expect(await store.lastSeqs('pi-1')).toEqual({ 'inc-1': 2, 'inc-2': 1 });
      expect(await store.lastSeqs('pi-2')).toEqual({});
    });

    test('prunes by age and by count; head and prunedThrough survive a reopen', async () => {
      await commitGroup(store, [hubPut('s', '1', 1), hubPut('s', '2', 2)]);
      await sleep(20);
      const t = Date.now();
      await sleep(5);
      await commitGroup(store, [hubPut('s', '3', 3), hubPut('s', '4', 4), hubPut('s', '5', 5)]);
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 0 })).toBe(0);
      expect(await store.prune({ maxAgeMs: 10, maxEntries: 0 }, t + 10)).toBe(2);
      expect(store.prunedThrough).toBe(2);
      expect((await store.readLog(0, undefined, 10, ALL)).changes.map((c) => c.lsn)).toEqual([3, 4, 5]);
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 })).toBe(3);
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 4 })).toBe(3); // never backwards
      expect([store.head, store.prunedThrough]).toEqual([5, 3]);
      await store.close();
      store = await open();
      expect([store.head, store.prunedThrough]).toEqual([5, 3]);
      expect((await store.readLog(0, undefined, 10, ALL)).changes.map((c) => c.lsn)).toEqual([4, 5]);
      expect(await commitGroup(store, [hubPut('s', '6', 6)])).toEqual([6]);
    });

    test('records how far it prunes before removing anything: a prune cut short leaves no hole below prunedThrough', async () => {
      await commitGroup(
        store,
        [1, 2, 3, 4, 5].map((n) => hubPut('s', String(n), n)),
      );
      await subject.refuseLogDeletes(location);
      await expect(store.prune({ maxAgeMs: 0, maxEntries: 2 })).rejects.toThrow();
      await store.close();
      store = await open();
      // The bound is recorded although nothing went: readers treat 1–3 as gone, which is safe.
      expect([store.head, store.prunedThrough]).toEqual([5, 3]);
      expect((await store.readLog(3, undefined, 10, ALL)).changes.map((c) => c.lsn)).toEqual([4, 5]);
      expect(await store.logHolds(4)).toBe(true);
      expect(await store.logHolds(6)).toBe(false);
    });

    test('a prune stopped early has recorded its bound, and the next prune removes what is left', async () => {
      await commitGroup(
        store,
        [1, 2, 3, 4, 5].map((n) => hubPut('s', String(n), n)),
      );
      const stop = new AbortController();
      stop.abort();
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 }, undefined, stop.signal)).toBe(3);
      expect(store.prunedThrough).toBe(3);
      expect(await store.logHolds(1)).toBe(true); // not removed yet
      expect(await store.prune({ maxAgeMs: 0, maxEntries: 2 })).toBe(3);
      expect([await store.logHolds(1), await store.logHolds(3), await store.logHolds(4)]).toEqual([false, false, true]);
    });

    test('keeps its head when retention empties the log', async () => {
      await commitGroup(store, [hubPut('s', '1', 1), hubPut('s', '2', 2)]);
      expect(await store.prune({ maxAgeMs: 1, maxEntries: 0 }, Date.now() + 60_000)).toBe(2);
      await store.close();
      store = await open();
      expect([store.head, store.prunedThrough]).toEqual([2, 2]);
      expect(await store.readLog(0, undefined, 10, ALL)).toEqual({ changes: [], complete: true, through: 0, readBytes: 0, digests: {} });
      expect(await commitGroup(store, [hubPut('s', '3', 3)])).toEqual([3]);
    });

    test('stores, replaces and revokes credentials', async () => {
      await store.putCredential('pi-2', 'hash-2', 'mq-2');
      await store.putCredential('pi-1', 'hash-1');
      expect(await store.credential('pi-1')).toEqual({ tokenHash: 'hash-1', revoked: false, verifiedFingerprint: null });
      expect(await store.credential('nobody')).toBeUndefined();
      const listed = await store.credentials();
      expect(listed.map((c) => [c.agentId, c.revokedAt])).toEqual([
        ['pi-1', null],
        ['pi-2', null],
      ]);
      expect(listed[0]!.createdAt).toBeGreaterThan(0);
      expect(await store.brokerCredentials()).toEqual([
        { agentId: 'pi-1', mosquittoHash: null },
        { agentId: 'pi-2', mosquittoHash: 'mq-2' },
      ]);

      expect(await store.revokeCredential('pi-2')).toBe(true);
      expect(await store.revokeCredential('pi-2')).toBe(false);
      expect(await store.revokeCredential('nobody')).toBe(false);
      expect(await store.credential('pi-2')).toEqual({ tokenHash: 'hash-2', revoked: true, verifiedFingerprint: null });
      expect((await store.credentials()).find((c) => c.agentId === 'pi-2')!.revokedAt).toBeGreaterThan(0);
      expect(await store.brokerCredentials()).toEqual([{ agentId: 'pi-1', mosquittoHash: null }]);

      await store.putCredential('pi-2', 'hash-2b', 'mq-2b'); // a new token replaces a revoked one
      expect(await store.credential('pi-2')).toEqual({ tokenHash: 'hash-2b', revoked: false, verifiedFingerprint: null });
      expect(await store.brokerCredentials()).toEqual([
        { agentId: 'pi-1', mosquittoHash: null },
        { agentId: 'pi-2', mosquittoHash: 'mq-2b' },
      ]);
    });

    test("remembers a verified token's fingerprint only against the credential it was verified with, and not as a change", async () => {
      await store.putCredential('pi-1', 'hash-1');
      const version = await store.credentialsVersion();
      await store.rememberVerifiedToken('pi-1', 'hash-1', 'fp-1');
      expect(await store.credential('pi-1')).toEqual({ tokenHash: 'hash-1', revoked: false, verifiedFingerprint: 'fp-1' });
      expect(await store.credentialsVersion()).toBe(version); // other hubs need not re-check their connections
      // Verified against a hash that has been replaced meanwhile: not remembered.
      await store.putCredential('pi-1', 'hash-1b');
      expect((await store.credential('pi-1'))?.verifiedFingerprint).toBeNull();
      await store.rememberVerifiedToken('pi-1', 'hash-1', 'fp-1');
      expect((await store.credential('pi-1'))?.verifiedFingerprint).toBeNull();
      await store.rememberVerifiedToken('pi-1', 'hash-1b', 'fp-1b');
      expect(await store.revokeCredential('pi-1')).toBe(true);
      expect(await store.credential('pi-1')).toEqual({ tokenHash: 'hash-1b', revoked: true, verifiedFingerprint: null });
      await store.rememberVerifiedToken('pi-1', 'hash-1b', 'fp-1b'); // revoked: not remembered
      expect((await store.credential('pi-1'))?.verifiedFingerprint).toBeNull();
    });

    test('credentialsVersion changes when another process changes credentials', async () => {
      const cli = await open(); // `outpost hub agents add|revoke` beside a running hub
      const v0 = await store.credentialsVersion();
      await cli.putCredential('pi-1', 'hash-1');
      const v1 = await store.credentialsVersion();
      expect(v1).not.toBe(v0);
      expect(await store.credential('pi-1')).toEqual({ tokenHash: 'hash-1', revoked: false, verifiedFingerprint: null });
      await cli.revokeCredential('pi-1');
      expect(await store.credentialsVersion()).not.toBe(v1);
      expect(await store.credential('pi-1')).toEqual({ tokenHash: 'hash-1', revoked: true, verifiedFingerprint: null });
    });

    test("sets and removes any agent's labels, names in order, and keeps them", async () => {
      expect(await store.labels('pi-1')).toEqual({});
      const set = await store.setLabels('pi-1', { site: 'berlin', line: '3' }, []);
      expect(Object.entries(set)).toEqual([
        ['line', '3'],
        ['site', 'berlin'],
      ]);
      expect(await store.setLabels('pi-1', { site: 'paris', sites: 'berlin,paris', note: 'Zürich 5 °C' }, ['line', 'never-set'])).toEqual({
        note: 'Zürich 5 °C',
        site: 'paris',
        sites: 'berlin,paris',
      });
      // Labels belong to an agent id, provisioned or not (a --dev hub admits any).
      await store.setLabels('dev-9', { constructor: 'b', tostring: 'a' }, []); // names of Object's methods: ordinary labels
      expect(Object.entries(await store.labels('dev-9'))).toEqual([
        ['constructor', 'b'],
        ['tostring', 'a'],
      ]);
      expect(await store.credentials()).toEqual([]);
      expect([...(await store.allLabels()).keys()]).toEqual(['dev-9', 'pi-1']);

      expect(await store.setLabels('dev-9', {}, ['tostring', 'constructor'])).toEqual({});
      expect([...(await store.allLabels()).keys()]).toEqual(['pi-1']); // an agent without labels is not listed
      expect(await store.setLabels('nobody', {}, ['site'])).toEqual({});
      expect(await store.labels('nobody')).toEqual({});

      await store.close();
      store = await open();
      expect(await store.allLabels()).toEqual(new Map([['pi-1', { note: 'Zürich 5 °C', site: 'paris', sites: 'berlin,paris' }]]));
    });

    test('refuses an invalid label or a 65th, writing nothing', async () => {
      const cli = await open();
      const full = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, `v${i}`]));
      await cli.setLabels('pi-1', full, []);
      const version = await store.labelsVersion();
      await expect(cli.setLabels('pi-1', { l0: 'changed', extra: 'x' }, [])).rejects.toMatchObject({
        code: 'OUTPOST_INVALID_CONFIG',
        message: expect.stringMatching(/agent pi-1 would have 65 labels: at most 64/) as unknown,
      });
      await expect(cli.setLabels('pi-1', { Site: 'x' }, [])).rejects.toThrow(/label name "Site" is invalid/);
      await expect(cli.setLabels('pi-1', { site: 'a\nb' }, [])).rejects.toThrow(/control character/);
      await expect(cli.setLabels('pi-1', { site: '' }, [])).rejects.toThrow(/has no value/);
      await expect(cli.setLabels('pi-1', {}, ['Bad'])).rejects.toThrow(/invalid/);
      expect(await store.labels('pi-1')).toEqual(full);
      expect(await store.labelsVersion()).toBe(version);
      // Swapping one for another keeps it at 64.
      expect(Object.keys(await cli.setLabels('pi-1', { extra: 'x' }, ['l0']))).toHaveLength(64);
    });

    test('labelsVersion changes when another process changes labels, and writers at once lose nothing', async () => {
      const cli = await open(); // `outpost hub agents label` beside a running hub
      const v0 = await store.labelsVersion();
      await cli.setLabels('pi-1', { site: 'berlin' }, []);
      const v1 = await store.labelsVersion();
      expect(v1).not.toBe(v0);
      expect(await store.labels('pi-1')).toEqual({ site: 'berlin' });
      // Other commits (a credential, here) leave it alone: hubs reload labels only when they change.
      await cli.putCredential('pi-9', 'scrypt$hash');
      expect(await store.labelsVersion()).toBe(v1);
      await cli.setLabels('pi-1', {}, ['site']);
      expect(await store.labelsVersion()).not.toBe(v1);
      expect(await store.allLabels()).toEqual(new Map());

      const other = await open();
      await Promise.all(Array.from({ length: 8 }, (_, i) => [cli, other][i % 2]!.setLabels('pi-2', { [`l${i}`]: String(i) }, [])));
      expect(Object.keys(await store.labels('pi-2'))).toEqual(['l0', 'l1', 'l2', 'l3', 'l4', 'l5', 'l6', 'l7']);
    });

    describe('scope buckets', () => {
      scopeBucketCases({
        store: () => store,
        reopen: async () => {
          await store.close();
          return (store = await open());
        },
        rows: (table) => subject.rows(location, table),
      });
    });

    describe('scope rules changed', () => {
      rebucketCases({
        store: () => store,
        reopen: async () => {
          await store.close();
          return (store = await open());
        },
        rows: (table) => subject.rows(location, table),
        priorBuckets: (collection, key) => subject.priorBuckets(location, collection, key),
      });
    });

    describe('content digests', () => {
      digestCases({
        store: () => store,
        reopen: async () => {
          await store.close();
          return (store = await open());
        },
        damageValue: (collection, key, value) => subject.damageValue(location, collection, key, value),
        damageDigest: (collection, digest) => subject.damageDigest(location, collection, digest),
      });
    });

    describe('scope bucket digests', () => {
      bucketDigestCases({
        store: () => store,
        reopen: async () => {
          await store.close();
          return (store = await open());
        },
        damageBucketDigest: (bucket, digest) => subject.damageBucketDigest(location, bucket, digest),
        forgetBucketDigests: (bucket) => subject.forgetBucketDigests(location, bucket),
      });
    });

    test('closes, twice without harm, and opens again on what it kept', async () => {
      await commitGroup(store, [hubPut('s', 'k', 1)]);
      await store.close();
      await store.close();
      store = await open();
      expect(await store.document('s', 'k')).toMatchObject({ value: 1, version: 1 });
    });
  });
}

function conflict(collection: string, key: string, n: number): Omit<ConflictRecord, 'id' | 'at'> {
  return {
    collection,
    key,
    policy: 'lww',
    reason: 'older',
    detail: `conflict ${n}`,
    loser: { origin: 'pi-1', incarnation: 'inc-1', seq: n, op: 'put', value: { loser: n }, hlc: hlcAt(n) },
    winner: { lsn: n, origin: 'hub', hlc: hlcAt(n + 1), value: { winner: n } },
  };
}

function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
