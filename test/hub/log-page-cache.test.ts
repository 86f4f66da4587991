import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogPageCache } from '../../hub/log-page-cache.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { commitGroup, hubDel, hubPut } from '../helpers/store-writes.js';
import { tempDir } from '../helpers/temp.js';

const COLLECTIONS = ['config', 'notes', 'secrets'] as const;
const everything = (): boolean => true;

describe('log pages shared by pulls from one cursor', () => {
  let store: SqliteHubStore;
  beforeAll(async () => {
    store = new SqliteHubStore(tempDir('log-page-cache'));
    // 300 entries over three collections, in groups, values of varied size, a few deletes.
    for (let g = 0; g < 10; g++)
      await commitGroup(
        store,
        Array.from({ length: 30 }, (_, i) => {
          const n = g * 30 + i;
          const collection = COLLECTIONS[(n * 7) % 3]!;
          return n % 13 === 0 ? hubDel(collection, `k${n % 40}`, n) : hubPut(collection, `k${n % 40}`, 'x'.repeat(n % 50), n);
        }),
      );
  });
  afterAll(async () => {
    await store.close();
  });

  it('reads a page once for every reader of all it holds, until a commit moves the head', async () => {
    const pages = new LogPageCache(store);
    const first = await pages.readLog(250, undefined, 100, 1 << 20, everything);
    const again = await pages.readLog(250, undefined, 100, 1 << 20, (c) => COLLECTIONS.includes(c as never));
    expect(again).toBe(first); // the same object: not read again
    expect(first).toEqual(await store.readLog(250, undefined, 100, 1 << 20));

    await commitGroup(store, [hubPut('notes', 'late', 1, 999)]);
    const after = await pages.readLog(250, undefined, 100, 1 << 20, everything);
    expect(after).not.toBe(first);
    expect(after.changes.at(-1)).toMatchObject({ c: 'notes', k: 'late' });
  });

  it('reads for itself a pull that may not read a collection in the page', async () => {
    const pages = new LogPageCache(store);
    const shared = await pages.readLog(0, undefined, 50, 1 << 20, everything);
    expect(new Set(shared.changes.map((c) => c.c))).toContain('secrets');
    const noSecrets = (c: string): boolean => c !== 'secrets';
    const own = await pages.readLog(0, undefined, 50, 1 << 20, noSecrets);
    expect(own.changes.some((c) => c.c === 'secrets')).toBe(false);
    expect(own).toEqual(await store.readLog(0, undefined, 50, 1 << 20, noSecrets));
  });

  it('pages every reader through exactly the changes the store would, whatever its cursor, limits, collections and reader', async () => {
    const pages = new LogPageCache(store);
    type Reader = Pick<LogPageCache, 'readLog'>;
    /** Pulls from `from` until a page is complete, as an agent does: the changes it got, in order. */
    const pullAll = async (reader: Reader, ...[from, collections, limit, maxBytes, include]: Parameters<Reader['readLog']>) => {
      const got: unknown[] = [];
      for (let cursor = from; ;) {
        const page = await reader.readLog(cursor, collections, limit, maxBytes, include);
        got.push(...page.changes);
        if (page.complete) return got;
        expect(page.through).toBeGreaterThan(cursor);
        cursor = page.through;
      }
    };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: store.head }),
        fc.option(fc.subarray([...COLLECTIONS], { minLength: 1 }), { nil: undefined }),
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 64, max: 8_000 }),
        fc.subarray([...COLLECTIONS]),
        async (from, collections, limit, maxBytes, readable) => {
          const include = (c: string): boolean => readable.includes(c as never);
          // One page: what the store's own page would hold, or the start of it (a shared page may
          // stop at a row this reader would have skipped; it then pulls on from there).
          const shared = await pages.readLog(from, collections, limit, maxBytes, include);
          const own = await store.readLog(from, collections, limit, maxBytes, include);
          expect(own.changes.slice(0, shared.changes.length)).toEqual(shared.changes);
          if (shared.complete) expect(own).toEqual(shared);
          // Every page after it: the same changes, in the same order, to the same end.
          expect(await pullAll(pages, from, collections, limit, maxBytes, include)).toEqual(
            await pullAll(store, from, collections, limit, maxBytes, include),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
