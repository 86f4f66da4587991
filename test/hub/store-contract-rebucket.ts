import pino from 'pino';
import { expect, test } from 'vitest';
import { bucketIdOf } from '../../shared/buckets.js';
import type { JsonValue } from '../../shared/values.js';
import { parseHubConfig, scopeRules } from '../../hub/config.js';
import { reindexScopes } from '../../hub/scope-reindex.js';
import { ScopeRules } from '../../hub/scope-rules.js';
import type { ScopeRulesChange } from '../../hub/store/hub-store.js';
import { REBUCKET_CHUNK } from '../../hub/store/rebucket-rows.js';
import { commitGroup, hlcAt, hubDel, hubPut, scoped } from '../helpers/store-writes.js';
import type { BucketCaseContext } from './store-contract-buckets.js';
import { withValue } from '../helpers/value-bytes.js';

/** What the rebucket cases need of the contract suite around them. */
export interface RebucketCaseContext extends BucketCaseContext {
  /** A document's prior buckets as stored (null: none), read around the store: no read shows them. */
  priorBuckets(collection: string, key: string): Promise<string[] | null>;
}

const ALL = Number.MAX_SAFE_INTEGER;
const NONE_HELD = new Map<string, number>();
const A = 'bucket-A-0000000';
const B = 'bucket-B-0000000';
const C = 'bucket-C-0000000';
/** The bucket devices held a collection through before it was scoped. */
const WHOLE = 'bucket-W-0000000';

const keys = (page: { docs: Array<{ k: string }> }): string[] => page.docs.map((d) => d.k);

/** Rules that put each key in the buckets listed for it (none for a key not listed); prior buckets are the old ones. */
function rules(name: string, byKey: Record<string, string[]>, since = 0): ScopeRulesChange {
  return { rules: name, since, bucketsOf: (key) => byKey[key] ?? [], prior: (old) => old };
}

/** The collection is no longer scoped: rules are never asked. */
const UNSCOPED: ScopeRulesChange = {
  rules: undefined,
  since: 0,
  bucketsOf: () => {
    throw new Error('unscoping asked for buckets');
  },
  prior: () => {
    throw new Error('unscoping asked for prior buckets');
  },
};

/**
 * Bringing a collection's bucket index to changed scope rules (HubStore.rebucket), and how bucket
 * snapshots then spare devices what they hold: cases of the contract suite, run inside it against
 * each implementation.
 */
export function rebucketCases(ctx: RebucketCaseContext): void {
  test('indexes a collection never scoped, with prior buckets from what `prior` makes of none; no log entry, no bucket head', async () => {
    const store = ctx.store();
    await commitGroup(store, [hubPut('s', 'k1', { team: 'a' }, 1), hubPut('s', 'k2', { team: 'b' }, 2), hubPut('u', 'x', 3, 3)]);
    const log = await store.readLog(0, undefined, 100, ALL);
    const asked: Array<[string, JsonValue | undefined]> = [];
    const priors: Array<string[] | undefined> = [];
    const changed = await store.rebucket('s', {
      rules: 'by team',
      since: 3,
      bucketsOf: (key, value) => {
        asked.push([key, value]);
        return [(value as { team: string }).team === 'a' ? A : B];
      },
      prior: (old) => {
        priors.push(old);
        return [WHOLE];
      },
    });

    expect(changed).toBe(2);
    expect(asked).toEqual([
      ['k1', { team: 'a' }],
      ['k2', { team: 'b' }],
    ]);
    expect(priors).toEqual([undefined, undefined]);
    expect(await store.document('s', 'k1')).toMatchObject({ version: 1, buckets: [A] });
    expect(await ctx.priorBuckets('s', 'k1')).toEqual([WHOLE]);
    expect((await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD)).docs.map(withValue)).toEqual([
      { lsn: 2, c: 's', k: 'k2', op: 'put', v: { team: 'b' }, hlc: hlcAt(2), o: 'hub', bk: [B] },
    ]);
    expect(await ctx.rows('document_buckets')).toBe(2);
    expect(await store.document('u', 'x')).not.toHaveProperty('buckets');
    expect(await store.scopeRulesServed()).toEqual(new Map([['s', { rules: 'by team', since: 3 }]]));

    expect(store.head).toBe(3);
    expect(await store.readLog(0, undefined, 100, ALL)).toEqual(log);
    expect(await store.bucketHeads([A, B, WHOLE])).toEqual(new Map());
    expect(await ctx.rows('log_buckets')).toBe(0);
  });

  test('moves the documents of a scoped collection whose rules changed, keeping their old buckets as prior; leaves the others alone', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A, B]),
      scoped(hubPut('s', 'k3', 3, 3), [B]),
    ]);
    const heads = await store.bucketHeads([A, B, C]);

    // k2 stays in the same buckets, listed in another order: not a change.
    expect(await store.rebucket('s', rules('v2', { k1: [C], k2: [B, A], k3: [B, C] }, 3))).toBe(2);
    expect((await store.document('s', 'k1'))?.buckets).toEqual([C]);
    expect((await store.document('s', 'k2'))?.buckets).toEqual([A, B]);
    expect((await store.document('s', 'k3'))?.buckets).toEqual([B, C]);
    expect(await Promise.all(['k1', 'k2', 'k3'].map((k) => ctx.priorBuckets('s', k)))).toEqual([[A], null, [B]]);
    expect(keys(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD))).toEqual(['k2']);
    expect(keys(await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD))).toEqual(['k2', 'k3']);
    expect(keys(await store.readBucketDocuments(C, undefined, 10, ALL, NONE_HELD))).toEqual(['k1', 'k3']);
    expect(await ctx.rows('document_buckets')).toBe(5);
    expect(await store.bucketHeads([A, B, C])).toEqual(heads);
    expect(await store.scopeRulesServed()).toEqual(new Map([['s', { rules: 'v2', since: 3 }]]));

    // The next write of a document clears its prior buckets, scoped or not.
    await commitGroup(store, [scoped(hubPut('s', 'k1', 4, 4), [C]), hubPut('s', 'k3', 5, 5)]);
    expect(await Promise.all(['k1', 'k2', 'k3'].map((k) => ctx.priorBuckets('s', k)))).toEqual([null, null, null]);
  });

  test('rebuckets tombstones by their key', async () => {
    const store = ctx.store();
    await commitGroup(store, [scoped(hubPut('s', 'k1', 1, 1), [A]), scoped(hubPut('s', 'k2', 2, 2), [A])]);
    await commitGroup(store, [scoped(hubDel('s', 'k2', 3), [A])]);
    const asked: Array<[string, JsonValue | undefined]> = [];
    const change = rules('by key', { k1: [B], k2: [B] });
    const changed = await store.rebucket('s', {
      ...change,
      bucketsOf: (key, value) => {
        asked.push([key, value]);
        return change.bucketsOf(key, value);
      },
    });
    expect(changed).toBe(2);
    expect(asked).toEqual([
      ['k1', 1],
      ['k2', undefined],
    ]);
    expect((await store.readBucketDocuments(B, undefined, 10, ALL, NONE_HELD)).docs.map(withValue)).toEqual([
      { lsn: 1, c: 's', k: 'k1', op: 'put', v: 1, hlc: hlcAt(1), o: 'hub', bk: [B] },
      { lsn: 3, c: 's', k: 'k2', op: 'del', hlc: hlcAt(3), o: 'hub', bk: [B] },
    ]);
    // A device that holds the tombstone through its old bucket hears only where it is now.
    expect((await store.readBucketDocuments(B, undefined, 10, ALL, new Map([[A, 3]]))).docs).toEqual([
      { lsn: 1, c: 's', k: 'k1', op: 'tag', hlc: hlcAt(1), o: 'hub', bk: [B] },
      { lsn: 3, c: 's', k: 'k2', op: 'tag', hlc: hlcAt(3), o: 'hub', bk: [B] },
    ]);
    expect(await store.document('s', 'k2')).toMatchObject({ deleted: true, buckets: [B] });
  });

  test('a bucket snapshot sends as a tag what a device holds, through a prior bucket or a current one', async () => {
    const store = ctx.store();
    const big = 'x'.repeat(600);
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', big, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A]),
      scoped(hubPut('s', 'k3', 3, 3), [B]),
      scoped(hubPut('s', 'k4', 4, 4), [C]),
    ]);
    await store.rebucket('s', rules('all in C', { k1: [C], k2: [C], k3: [C], k4: [C] }));
    await commitGroup(store, [scoped(hubPut('s', 'k2', 5, 5), [C])]); // written since: no prior buckets
    const page = (held: Array<[string, number]>, maxBytes = ALL) => store.readBucketDocuments(C, undefined, 10, maxBytes, new Map(held));

    expect((await page([[A, 5]])).docs.map(withValue)).toEqual([
      { lsn: 1, c: 's', k: 'k1', op: 'tag', hlc: hlcAt(1), o: 'hub', bk: [C] },
      { lsn: 5, c: 's', k: 'k2', op: 'put', v: 5, hlc: hlcAt(5), o: 'hub', bk: [C] },
      { lsn: 3, c: 's', k: 'k3', op: 'put', v: 3, hlc: hlcAt(3), o: 'hub', bk: [C] },
      { lsn: 4, c: 's', k: 'k4', op: 'put', v: 4, hlc: hlcAt(4), o: 'hub', bk: [C] },
    ]);
    // Held through a prior bucket, but not as far as the document's version: sent whole.
    expect((await page([[B, 2]])).docs.map((d) => d.op)).toEqual(['put', 'put', 'put', 'put']);
    expect((await page([[B, 3]])).docs.map((d) => [d.k, d.op])).toEqual([
      ['k1', 'put'],
      ['k2', 'put'],
      ['k3', 'tag'],
      ['k4', 'put'],
    ]);
    // Held through a current bucket that far: a tag too, with its buckets now.
    expect(
      (
        await page([
          [A, 5],
          [B, 5],
          [C, 4],
        ])
      ).docs.map((d) => [d.k, d.op]),
    ).toEqual([
      ['k1', 'tag'],
      ['k2', 'put'],
      ['k3', 'tag'],
      ['k4', 'tag'],
    ]);

    // A tag counts at its own small size: the page holds all four, where k1 whole would fill it.
    expect(keys(await page([], 600))).toEqual(['k1']);
    const tagged = await page(
      [
        [A, 5],
        [B, 5],
      ],
      600,
    );
    expect([tagged.docs.map((d) => d.op), tagged.next]).toEqual([['tag', 'put', 'tag', 'put'], undefined]);
  });

  test('unscoping forgets the collection’s buckets, current and prior, its index rows and its rules; others keep theirs', async () => {
    const store = ctx.store();
    await commitGroup(store, [
      scoped(hubPut('s', 'k1', 1, 1), [A]),
      scoped(hubPut('s', 'k2', 2, 2), [A, B]),
      scoped(hubPut('t', 'k', 3, 3), [A]),
    ]);
    await store.rebucket('s', rules('v2', { k1: [C], k2: [A, B] }));
    await store.rebucket('t', rules('t1', { k: [A] }));

    expect(await store.rebucket('s', UNSCOPED)).toBe(2);
    expect(await store.document('s', 'k1')).not.toHaveProperty('buckets');
    expect(await store.document('s', 'k2')).not.toHaveProperty('buckets');
    expect(await ctx.priorBuckets('s', 'k1')).toBeNull();
    expect(await ctx.rows('document_buckets')).toBe(1);
    expect(keys(await store.readBucketDocuments(A, undefined, 10, ALL, NONE_HELD))).toEqual(['k']);
    expect(keys(await store.readBucketDocuments(C, undefined, 10, ALL, NONE_HELD))).toEqual([]);
    expect(await store.scopeRulesServed()).toEqual(new Map([['t', { rules: 't1', since: 0 }]]));
    expect(await store.rebucket('s', UNSCOPED)).toBe(0);
  });

  test('remembers the rules each collection was indexed with, across a reopen', async () => {
    let store = ctx.store();
    expect(await store.scopeRulesServed()).toEqual(new Map());
    await commitGroup(store, [hubPut('s', 'k1', 1, 1)]);
    expect(await store.rebucket('s', rules('s1', { k1: [A] }, 1))).toBe(1);
    expect(await store.rebucket('empty', rules('e1', {}, 1))).toBe(0); // a collection with no document yet
    await commitGroup(store, [hubPut('u', 'x', 2, 2)]);
    expect(await store.rebucket('s', rules('s2', { k1: [B] }, 2))).toBe(1);
    const served = new Map([
      ['empty', { rules: 'e1', since: 1 }],
      ['s', { rules: 's2', since: 2 }],
    ]);
    expect(await store.scopeRulesServed()).toEqual(served);
    store = await ctx.reopen();
    expect(await store.scopeRulesServed()).toEqual(served);
    expect((await store.document('s', 'k1'))?.buckets).toEqual([B]);
  });

  test(`rebuckets ${REBUCKET_CHUNK} documents to a transaction: a run cut short keeps its finished chunks and is listed as unfinished, the next finishes, a rerun changes nothing`, async () => {
    let store = ctx.store();
    const all = Array.from({ length: 2_500 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    for (let i = 0; i < all.length; i += 500)
      await commitGroup(
        store,
        all.slice(i, i + 500).map((key) => hubPut('s', key, key)),
      );
    const inA = (): string[] => [A];

    let asked = 0;
    const failing: ScopeRulesChange = {
      ...rules('v1', {}),
      bucketsOf: () => {
        if (++asked === 1_500) throw new Error('the rules failed part way');
        return inA();
      },
    };
    await expect(store.rebucket('s', failing)).rejects.toThrow('the rules failed part way');
    expect(await ctx.rows('document_buckets')).toBe(REBUCKET_CHUNK); // the first chunk is done, the second undone
    expect(await store.scopeRulesServed()).toEqual(new Map());
    store = await ctx.reopen(); // as a hub stopped part way would
    expect(await store.unfinishedRebuckets()).toEqual(new Set(['s']));

    const seen: string[] = [];
    const priors: Array<string[] | undefined> = [];
    const change: ScopeRulesChange = {
      rules: 'v1',
      since: store.head,
      bucketsOf: (key) => (seen.push(key), inA()),
      prior: (old) => (priors.push(old), [WHOLE]),
    };
    expect(await store.rebucket('s', change)).toBe(all.length - REBUCKET_CHUNK);
    expect(seen).toEqual(all); // every document, in key order
    expect(priors).toHaveLength(all.length - REBUCKET_CHUNK);
    expect(await ctx.rows('document_buckets')).toBe(all.length);
    expect(await store.bucketSize([A])).toMatchObject({ documents: all.length });
    expect(await store.scopeRulesServed()).toEqual(new Map([['s', { rules: 'v1', since: store.head }]]));
    expect(await store.unfinishedRebuckets()).toEqual(new Set());

    priors.length = 0;
    expect(await store.rebucket('s', change)).toBe(0);
    expect(priors).toEqual([]);
    expect(await ctx.priorBuckets('s', 'k2499')).toEqual([WHOLE]);

    expect(await store.rebucket('s', UNSCOPED)).toBe(all.length);
    expect(await ctx.rows('document_buckets')).toBe(0);
  });

  test('a start after a rebucket cut short redoes it for the rules configured then, even the ones served before it', async () => {
    const store = ctx.store();
    const keys = Array.from({ length: 2_500 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 500)
      await commitGroup(
        store,
        keys.slice(i, i + 500).map((key) => hubPut('s', key, { site: 'berlin', region: 'eu' })),
      );
    const bySite = parseHubConfig({ collections: { s: { scope: { field: 'site', equals: '{label.site}' } } } }).collections;
    const byRegion = parseHubConfig({ collections: { s: { scope: { field: 'region', equals: '{label.region}' } } } }).collections;
    const silent = pino({ level: 'silent' });
    await reindexScopes(store, scopeRules(bySite), bySite, silent);
    const site = bucketIdOf('s|f|site|berlin');
    const region = bucketIdOf('s|f|region|eu');
    expect(await store.bucketSize([site])).toMatchObject({ documents: keys.length });

    // The hub is stopped part way through moving the collection to the region rules: the first
    // chunk is indexed by region, the rest still by site.
    class CutShort extends ScopeRules {
      #asked = 0;
      override bucketsOfDocument(collection: string, key: string, value: unknown): string[] {
        if (++this.#asked > REBUCKET_CHUNK) throw new Error('stopped part way');
        return super.bucketsOfDocument(collection, key, value);
      }
    }
    const cut = new CutShort({ s: byRegion.s!.scope! });
    await expect(reindexScopes(store, cut, byRegion, silent)).rejects.toThrow('stopped part way');
    expect(await store.bucketSize([region])).toMatchObject({ documents: REBUCKET_CHUNK });

    // The operator rolls the config back: the rules served before are configured again, and
    // every document is back where they put it.
    await reindexScopes(store, scopeRules(bySite), bySite, silent);
    expect(await store.bucketSize([site])).toMatchObject({ documents: keys.length });
    expect(await store.bucketSize([region])).toMatchObject({ documents: 0 });
    expect(await store.scopeRulesServed()).toEqual(new Map([['s', { rules: JSON.stringify(bySite.s!.scope), since: store.head }]]));

    // Cut short again, then the collection is configured unscoped: nothing was served by the
    // region rules, yet the documents they indexed are not left in their buckets.
    const others = keys.slice(0, 1_200);
    await commitGroup(
      store,
      others.map((key) => hubPut('t', key, { region: 'eu' })),
    );
    const withT = parseHubConfig({ collections: { t: byRegion.s!, s: bySite.s! } }).collections;
    await expect(reindexScopes(store, new CutShort({ t: byRegion.s!.scope!, s: bySite.s!.scope! }), withT, silent)).rejects.toThrow(
      'stopped part way',
    );
    const tRegion = bucketIdOf('t|f|region|eu');
    expect(await store.bucketSize([tRegion])).toMatchObject({ documents: REBUCKET_CHUNK });
    await reindexScopes(store, scopeRules(bySite), bySite, silent);
    expect(await store.bucketSize([tRegion])).toMatchObject({ documents: 0 });
    expect(await store.document('t', 'k0000')).not.toHaveProperty('buckets');
    expect([...(await store.scopeRulesServed()).keys()]).toEqual(['s']);
  });
}
