import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { HubRunningError } from '../../shared/errors.js';
import type { HubStore, LostReport } from '../../hub/store/hub-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { LeaderLock } from '../../hub/leadership.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { commitGroup, hlcAt, hubPut } from '../helpers/store-writes.js';
import { tempDir } from '../helpers/temp.js';
import pino from 'pino';

interface Subject {
  fresh(): Promise<string>;
  open(location: string): Promise<HubStore>;
  /** Plays a running hub on `location` until the returned function is called. */
  occupy(location: string): Promise<() => Promise<void>>;
}

const report = (agentId: string, lineage: string, docs: Array<[key: string, version: number, value?: unknown]>): LostReport => ({
  agentId,
  lineage,
  fork: 2,
  docs: docs.map(([key, version, value]) => ({
    collection: 's',
    key,
    version,
    op: value === undefined ? 'del' : 'put',
    value: value as never,
    hlc: hlcAt(version),
    origin: 'pi-1',
  })),
});

/** The lineage and lost-version parts of the HubStore contract, on every store. */
function lineageContract(name: string, subject: Subject, skip?: string): void {
  describe.skipIf(skip !== undefined)(`HubStore lineage contract: ${name}${skip ? ` (${skip})` : ''}`, () => {
    let location: string;
    const opened: HubStore[] = [];
    const open = async (): Promise<HubStore> => {
      const store = await subject.open(location);
      opened.push(store);
      return store;
    };
    beforeEach(async () => {
      location = await subject.fresh();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    test('a new database has a random lineage that parts at 0 and stays across opens', async () => {
      const store = await open();
      expect(store.lineage).toEqual({ id: expect.stringMatching(/^[0-9a-f]{32}$/) as unknown, fork: 0 });
      const again = await open();
      expect(again.lineage).toEqual(store.lineage);
      const other = await subject.open(await subject.fresh());
      opened.push(other);
      expect(other.lineage.id).not.toBe(store.lineage.id);
    });

    test('marking a restore starts a new lineage parting at the head, kept across opens', async () => {
      const store = await open();
      await commitGroup(store, [hubPut('s', 'a', 1), hubPut('s', 'b', 2), hubPut('s', 'c', 3)]);
      const before = store.lineage;
      await store.close();
      opened.splice(0);
      const marking = await open();
      const after = await marking.markRestored();
      expect(after.id).not.toBe(before.id);
      expect(after.fork).toBe(3);
      expect(marking.lineage).toEqual(after);
      await marking.close();
      opened.splice(0);
      expect((await open()).lineage).toEqual(after);
    });

    test('marking a restore is refused while a hub holds the database', async () => {
      const store = await open();
      const release = await subject.occupy(location);
      try {
        await expect(store.markRestored()).rejects.toBeInstanceOf(HubRunningError);
      } finally {
        await release();
      }
    });

    test('keeps each lost version once, with every agent that reported it, and marks what reapplying did, once', async () => {
      const store = await open();
      expect(await store.lostDocuments({ limit: 10 })).toEqual([]);
      await store.recordLost(
        report('pi-1', 'f'.repeat(32), [
          ['a', 3, { n: 1 }],
          ['b', 4],
        ]),
        1000,
      );
      await store.recordLost(
        report('pi-2', 'f'.repeat(32), [
          ['a', 3, { n: 1 }],
          ['a', 5, { n: 2 }],
        ]),
        2000,
      );
      await store.recordLost(report('pi-2', 'f'.repeat(32), [['a', 3, { n: 1 }]]), 3000); // a resent chunk
      const lost = await store.lostDocuments({ limit: 10 });
      expect(lost.map((d) => [d.key, d.version, d.op, d.value, d.reporters.map((r) => r.agentId), d.reportedAt])).toEqual([
        ['a', 3, 'put', { n: 1 }, ['pi-1', 'pi-2'], 1000],
        ['b', 4, 'del', undefined, ['pi-1'], 1000],
        ['a', 5, 'put', { n: 2 }, ['pi-2'], 2000],
      ]);
      expect(lost[0]).toMatchObject({ lineage: 'f'.repeat(32), fork: 2, hlc: hlcAt(3), origin: 'pi-1', collection: 's' });
      expect(lost[0]!.reporters).toEqual([
        { agentId: 'pi-1', at: 1000 },
        { agentId: 'pi-2', at: 2000 },
      ]);
      const mark = (version: number, outcome: string, lsn: number | null) => ({
        lineage: 'f'.repeat(32),
        collection: 's',
        key: version === 4 ? 'b' : 'a',
        version,
        outcome,
        lsn,
        reason: null,
      });
      await store.markReapplied([mark(5, 'committed', 9), mark(3, 'superseded', 9)], 4000);
      await store.markReapplied([mark(5, 'conflict', 10)], 5000); // already marked: stays as it was
      expect((await store.lostDocuments({ pending: true, limit: 10 })).map((d) => d.key)).toEqual(['b']);
      const all = await store.lostDocuments({ limit: 10 });
      expect(all.find((d) => d.version === 5)!.reapplied).toEqual({ at: 4000, outcome: 'committed', lsn: 9, reason: null });
      expect(all.find((d) => d.version === 3)!.reapplied?.outcome).toBe('superseded');
    });
  });
}

lineageContract('SQLite', {
  fresh: async () => tempDir('hub-lineage'),
  open: async (dir) => new SqliteHubStore(dir),
  occupy: async (dir) => {
    const hub = new SqliteHubStore(dir);
    await hub.collectionHeads(); // a read: the connection is in use, as a running hub's is
    return () => hub.close();
  },
});

lineageContract(
  'PostgreSQL',
  {
    fresh: freshDatabase,
    open: (url) => PostgresHubStore.open(url),
    occupy: async (url) => {
      const lock = await LeaderLock.acquire(url, { log: pino({ level: 'silent' }) });
      return () => lock.release();
    },
  },
  NO_POSTGRES,
);
