import { afterEach, describe, expect, test } from 'vitest';
import pino from 'pino';
import { HubRunningError, StorageFailedError } from '../../shared/errors.js';
import { LeaderLock } from '../../hub/leadership.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { ConcurrentWriterError, WriterFencedError } from '../../hub/store/writer-errors.js';
import type { ScopeRulesChange } from '../../hub/store/hub-store.js';
import { UnplannedReadError } from '../../hub/store/pg-ingest-tx.js';
import { PG_MIGRATIONS } from '../../hub/store/pg-schema.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { commitGroup, hubPut, observable, planOf, scoped } from '../helpers/store-writes.js';

/** What only the PostgreSQL store has to show: several processes on one database. */
describe.skipIf(NO_POSTGRES !== undefined)(`PostgresHubStore${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`, () => {
  const opened: PostgresHubStore[] = [];
  const open = async (url: string, options?: Parameters<typeof PostgresHubStore.open>[1]): Promise<PostgresHubStore> => {
    const store = await PostgresHubStore.open(url, options);
    opened.push(store);
    return store;
  };
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
  });

  test('two hubs committing at once on one database: one commits, the other is refused, no LSN twice', async () => {
    const url = await freshDatabase();
    const [a, b] = [await open(url), await open(url)];
    const results = await Promise.allSettled([commitGroup(a, [hubPut('s', 'a', 1)]), commitGroup(b, [hubPut('s', 'b', 2)])]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = results.find((r) => r.status === 'rejected')!;
    expect(refused.reason).toBeInstanceOf(ConcurrentWriterError);
    expect(refused.reason).toBeInstanceOf(StorageFailedError);
    expect(await sql(url, 'SELECT lsn::int, key FROM log ORDER BY lsn')).toHaveLength(1);
    expect([a.head, b.head].sort()).toEqual([0, 1]);

    // The one that lost stays refused (its view is stale) until it is reopened.
    const loser = a.head === 0 ? a : b;
    await expect(commitGroup(loser, [hubPut('s', 'c', 3)])).rejects.toBeInstanceOf(ConcurrentWriterError);
    const reopened = await open(url);
    expect(await commitGroup(reopened, [hubPut('s', 'c', 3)])).toEqual([2]);
    expect((await sql<{ lsn: number }>(url, 'SELECT lsn::int FROM log ORDER BY lsn')).map((r) => r.lsn)).toEqual([1, 2]);
  });

  test('a hub deposed by a higher epoch can no longer commit, and writes nothing', async () => {
    const url = await freshDatabase();
    await (await open(url)).close(); // creates the schema
    await sql(url, 'UPDATE leadership SET epoch = 1');
    const leader = await open(url, { epoch: 1 });
    expect(await commitGroup(leader, [hubPut('s', 'a', 1)])).toEqual([1]);

    await sql(url, 'UPDATE leadership SET epoch = 2'); // a new leader took over
    const before = await observable(leader);
    const refused = await commitGroup(leader, [hubPut('s', 'a', 2), hubPut('s', 'b', 2)]).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(WriterFencedError);
    expect(refused).toBeInstanceOf(StorageFailedError);
    expect(refused).toMatchObject({ code: 'OUTPOST_STORAGE_FAILED', epoch: 1, storedEpoch: 2 });
    expect((refused as Error).message).toMatch(/epoch 1 .* epoch 2/);
    expect(leader.head).toBe(1);
    expect(await observable(leader)).toEqual(before);

    const successor = await open(url, { epoch: 2 });
    expect(await commitGroup(successor, [hubPut('s', 'b', 3)])).toEqual([2]);
  });

  test('hubs starting at once migrate once', async () => {
    const url = await freshDatabase();
    const stores = await Promise.all(Array.from({ length: 6 }, () => open(url)));
    expect(stores.every((s) => s.head === 0)).toBe(true);
    expect(await sql(url, 'SELECT version FROM schema_migrations ORDER BY version')).toEqual(
      PG_MIGRATIONS.map((_, i) => ({ version: i + 1 })),
    );
    expect(await sql(url, 'SELECT count(*)::int AS n FROM leadership')).toEqual([{ n: 1 }]);
    await open(url); // and again, with nothing left to do
    expect(await sql(url, 'SELECT count(*)::int AS n FROM schema_migrations')).toEqual([{ n: PG_MIGRATIONS.length }]);
  });

  test('refuses a database migrated by a newer Outpost, and an unreachable server, with a typed error', async () => {
    const url = await freshDatabase();
    await (await open(url)).close();
    await sql(url, 'INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)');
    await expect(PostgresHubStore.open(url)).rejects.toThrow(/schema version 999 is newer/);
    await expect(PostgresHubStore.open(url)).rejects.toMatchObject({ code: 'OUTPOST_DATABASE_TOO_NEW', version: 999 });
    expect(await sql(url, 'SELECT max(version) AS version FROM schema_migrations')).toEqual([{ version: 999 }]); // left as it was
    const nowhere = 'postgresql:///outpost?host=/nonexistent-socket-dir';
    await expect(PostgresHubStore.open(nowhere)).rejects.toBeInstanceOf(StorageFailedError);
  });

  test('a group commit that the database refuses leaves nothing behind and the head where it was', async () => {
    const store = await open(await freshDatabase());
    await commitGroup(store, [hubPut('s', 'a', 1)]);
    const before = await observable(store);
    // PostgreSQL text cannot hold U+0000: the statement fails inside the database.
    const refused = commitGroup(store, [hubPut('s', 'b', 2), hubPut('s', 'bad\u0000key', 3)]);
    await expect(refused).rejects.toBeInstanceOf(StorageFailedError);
    expect(store.head).toBe(1);
    expect(await observable(store)).toEqual(before);
    expect(await commitGroup(store, [hubPut('s', 'b', 2)])).toEqual([2]);
  });

  test('a group commit the database refuses or fences off leaves the bucket heads the store keeps as they were', async () => {
    const [A, B] = ['bucket-A-0000000', 'bucket-B-0000000'];
    const url = await freshDatabase();
    const store = await open(url);
    const headsInTx = (): Promise<number[]> => store.ingest(planOf([]), (tx) => [tx.bucketHead(A), tx.bucketHead(B)]);
    await commitGroup(store, [scoped(hubPut('s', 'a', 1), [A])]);
    // The work ran and set both heads; the statement then fails inside the database (text cannot hold U+0000).
    const refused = commitGroup(store, [scoped(hubPut('s', 'b', 2), [A, B]), scoped(hubPut('s', 'bad\u0000key', 3), [B])]);
    await expect(refused).rejects.toBeInstanceOf(StorageFailedError);
    expect(await headsInTx()).toEqual([1, 0]);
    expect(await store.bucketHeads([A, B])).toEqual(new Map([[A, 1]]));
    expect(await commitGroup(store, [scoped(hubPut('s', 'b', 2), [B])])).toEqual([2]);
    expect(await headsInTx()).toEqual([1, 2]);

    await sql(url, 'UPDATE leadership SET epoch = epoch + 1'); // a new leader took over
    await expect(commitGroup(store, [scoped(hubPut('s', 'c', 3), [A])])).rejects.toBeInstanceOf(WriterFencedError);
    expect(await headsInTx()).toEqual([1, 2]);
  });

  test('rebucketing is fenced as group commits are: it counts as a write, and a deposed leader rebuckets nothing', async () => {
    const [A, B] = ['bucket-A-0000000', 'bucket-B-0000000'];
    const into = (bucket: string): ScopeRulesChange => ({ rules: bucket, since: 0, bucketsOf: () => [bucket], prior: (old) => old });
    const url = await freshDatabase();
    const store = await open(url);
    await commitGroup(store, [hubPut('s', 'a', 1), hubPut('s', 'b', 2)]);
    const second = await open(url); // a second writer, at the same position

    // Group commits made meanwhile go in between its transactions.
    const [changed, lsns] = await Promise.all([store.rebucket('s', into(A)), commitGroup(store, [hubPut('t', 'x', 3)])]);
    expect([changed, lsns]).toEqual([2, [3]]);
    await expect(second.rebucket('s', into(B))).rejects.toBeInstanceOf(ConcurrentWriterError);
    await expect(commitGroup(second, [hubPut('s', 'c', 3)])).rejects.toBeInstanceOf(ConcurrentWriterError);

    await sql(url, 'UPDATE leadership SET epoch = epoch + 1'); // a new leader took over
    await expect(store.rebucket('s', into(B))).rejects.toBeInstanceOf(WriterFencedError);
    expect((await store.document('s', 'a'))?.buckets).toEqual([A]);
    expect(await store.scopeRulesServed()).toEqual(new Map([['s', { rules: A, since: 0 }]]));
  });

  test('a group commit that reads what its plan did not name fails and writes nothing', async () => {
    const store = await open(await freshDatabase());
    await expect(
      store.ingest(planOf([hubPut('s', 'a', 0)]), (tx) => {
        tx.commit(hubPut('s', 'a', 1));
        return tx.document('s', 'unplanned');
      }),
    ).rejects.toBeInstanceOf(UnplannedReadError);
    await expect(store.ingest(planOf([]), (tx) => tx.lastSeq('pi-1', 'inc-1'))).rejects.toBeInstanceOf(UnplannedReadError);
    // A scoped change needs the buckets its document was in.
    await expect(store.ingest(planOf([]), (tx) => tx.commit(scoped(hubPut('s', 'a', 1), ['bucket-A-0000000'])))).rejects.toBeInstanceOf(
      UnplannedReadError,
    );
    expect(store.head).toBe(0);
    expect(await store.document('s', 'a')).toBeUndefined();
  });

  test('a scrub runs beside the leader; its repair only once no hub leads the partition', async () => {
    const url = await freshDatabase();
    const store = await open(url);
    await commitGroup(store, [hubPut('s', 'a', 1)]);
    await sql(url, "UPDATE collections SET digest = 1 WHERE name = 's'");
    const leader = await LeaderLock.acquire(url, { log: pino({ level: 'silent' }), partition: 'default', pollMs: 50 });
    try {
      expect((await store.verify()).digests).toMatchObject([{ collection: 's', stored: 1, rewritten: false }]);
      await expect(store.verify({ repair: true })).rejects.toBeInstanceOf(HubRunningError);
      expect(await store.digestAt('s', 1)).toBe(1); // nothing was rewritten
    } finally {
      await leader.release();
    }
    expect((await store.verify({ repair: true })).digests).toMatchObject([{ collection: 's', stored: 1, rewritten: true }]);
    expect((await store.verify()).ok).toBe(true);
  });

  test("credentialsVersion moves with this store's own credential changes too", async () => {
    const store = await open(await freshDatabase());
    const v0 = await store.credentialsVersion();
    await store.putCredential('pi-1', 'hash');
    const v1 = await store.credentialsVersion();
    expect(v1).toBeGreaterThan(v0);
    await store.revokeCredential('pi-1');
    const v2 = await store.credentialsVersion();
    expect(v2).toBeGreaterThan(v1);
    await store.revokeCredential('pi-1'); // nothing changed
    expect(await store.credentialsVersion()).toBe(v2);
  });
});
