import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { encodeCbor } from '../../shared/codec.js';
import { adjustDigest, documentHash } from '../../shared/digest.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { PG_MIGRATIONS } from '../../hub/store/pg-schema.js';
import { HUB_MIGRATIONS } from '../../hub/store/sqlite-schema.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { commitGroup, hlcAt, hubPut } from '../helpers/store-writes.js';
import { tempDir } from '../helpers/temp.js';

/** The schema versions just before digests: SQLite migration 16, PostgreSQL migration 9. */
const SQLITE_BEFORE = 15;
const PG_BEFORE = 8;

/** A document as a hub from before digests wrote it, at LSN `lsn`: documents over more than one backfill chunk, some deleted. */
interface OldDocument {
  lsn: number;
  collection: string;
  key: string;
  value: Buffer | null;
}

const OLD: OldDocument[] = Array.from({ length: 2300 }, (_, i) => {
  const collection = i % 3 === 0 ? 'b' : 'a';
  const deleted = collection === 'b' && i % 7 === 0;
  return { lsn: i + 1, collection, key: `k-${i}`, value: deleted ? null : encodeCbor({ i, name: `doc ${i}` }) };
});
const HEAD = OLD.length;

/** Each collection's digest, summed by the test from what it wrote. */
function expectedDigests(): Map<string, number> {
  const digests = new Map<string, number>();
  for (const d of OLD) {
    const hash = documentHash(d.collection, d.key, d.lsn, d.value === null, d.value);
    digests.set(d.collection, adjustDigest(digests.get(d.collection) ?? 0, hash));
  }
  return digests;
}

/** What every store must show once opened on such a database. */
async function expectBackfilled(store: HubStore): Promise<void> {
  const expected = expectedDigests();
  expect(store.head).toBe(HEAD);
  expect(await store.digestAt('a', HEAD)).toBe(expected.get('a'));
  expect(await store.digestAt('b', HEAD)).toBe(expected.get('b'));
  // Its log entries keep no digest: what a collection was before its last change cannot be told.
  expect(await store.digestAt('a', HEAD - 10)).toBeUndefined();
  expect((await store.readLog(HEAD - 10, undefined, 100, Number.MAX_SAFE_INTEGER)).digests).toEqual({});
  expect(await store.verify()).toMatchObject({ documents: OLD.length, collections: 2, damaged: [], digests: [], ok: true });
  // A change now moves the backfilled digest.
  await commitGroup(store, [hubPut('a', 'new', 1)]);
  expect(await store.digestAt('a', store.head)).toBe(
    adjustDigest(expected.get('a')!, documentHash('a', 'new', HEAD + 1, false, encodeCbor(1))),
  );
  expect((await store.readLog(HEAD, undefined, 10, Number.MAX_SAFE_INTEGER)).digests).toEqual({
    a: await store.digestAt('a', store.head),
  });
}

describe('a SQLite hub database from before digests', () => {
  const create = (): string => {
    const dir = tempDir('hub-before-digests');
    const db = new Database(join(dir, 'hub.db'));
    for (const migration of HUB_MIGRATIONS.slice(0, SQLITE_BEFORE)) db.exec(migration);
    db.pragma(`user_version = ${SQLITE_BEFORE}`);
    const log = db.prepare(
      "INSERT INTO log (lsn, collection, key, op, value, hlc, origin, committed_at) VALUES (?, ?, ?, ?, ?, ?, 'hub', 0)",
    );
    const doc = db.prepare(
      "INSERT INTO documents (collection, key, value, deleted, version, hlc, origin) VALUES (?, ?, ?, ?, ?, ?, 'hub')",
    );
    db.transaction(() => {
      for (const d of OLD) {
        log.run(d.lsn, d.collection, d.key, d.value === null ? 'del' : 'put', d.value, hlcAt(d.lsn));
        doc.run(d.collection, d.key, d.value, d.value === null ? 1 : 0, d.lsn, hlcAt(d.lsn));
      }
      db.prepare('INSERT INTO collections (name, head_lsn) SELECT collection, max(version) FROM documents GROUP BY collection').run();
    })();
    db.close();
    return dir;
  };

  test('gets every document hashed and every collection summed when it opens', async () => {
    const dir = create();
    const store = new SqliteHubStore(dir);
    try {
      await expectBackfilled(store);
    } finally {
      await store.close();
    }
    const db = new Database(join(dir, 'hub.db'), { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM hub_meta WHERE name = 'digests_pending'").get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT count(*) AS n FROM documents WHERE hash IS NULL').get()).toEqual({ n: 0 });
    db.close();
  });

  test('a backfill cut short is finished at the next open', async () => {
    const dir = create();
    await new SqliteHubStore(dir).close();
    // As if the process stopped after hashing some documents, before summing collections.
    const db = new Database(join(dir, 'hub.db'));
    db.exec(`UPDATE documents SET hash = NULL WHERE key > 'k-1500'; UPDATE collections SET digest = 7;
      INSERT INTO hub_meta (name, value) VALUES ('digests_pending', '1')`);
    db.close();
    const store = new SqliteHubStore(dir);
    try {
      await expectBackfilled(store);
    } finally {
      await store.close();
    }
  });
});

describe.skipIf(NO_POSTGRES !== undefined)(`a PostgreSQL hub database from before digests${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`, () => {
  const create = async (): Promise<string> => {
    const url = await freshDatabase();
    await sql(url, 'CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
    for (const [i, migration] of PG_MIGRATIONS.slice(0, PG_BEFORE).entries()) {
      await sql(url, migration);
      await sql(url, 'INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)', [i + 1]);
    }
    const column = <T>(pick: (d: OldDocument) => T): T[] => OLD.map(pick);
    const rows = [
      column((d) => d.lsn),
      column((d) => d.collection),
      column((d) => d.key),
      column((d) => d.value),
      column((d) => d.value === null),
      column((d) => hlcAt(d.lsn)),
    ];
    await sql(
      url,
      `INSERT INTO log (lsn, collection, key, op, value, hlc, origin, committed_at)
       SELECT lsn, collection, key, CASE WHEN deleted THEN 'del' ELSE 'put' END, value, hlc, 'hub', 0
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::boolean[], $6::text[]) AS d(lsn, collection, key, value, deleted, hlc)`,
      rows,
    );
    await sql(
      url,
      `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin)
       SELECT collection, key, value, deleted, lsn, hlc, 'hub'
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::boolean[], $6::text[]) AS d(lsn, collection, key, value, deleted, hlc)`,
      rows,
    );
    await sql(url, 'INSERT INTO collections (name, head_lsn) SELECT collection, max(version) FROM documents GROUP BY collection');
    await sql(url, 'UPDATE leadership SET head_lsn = $1', [HEAD]);
    return url;
  };

  test('gets every document hashed and every collection summed when it opens', async () => {
    const url = await create();
    const store = await PostgresHubStore.open(url);
    try {
      await expectBackfilled(store);
    } finally {
      await store.close();
    }
    expect(await sql(url, "SELECT count(*)::int AS n FROM hub_meta WHERE name = 'digests_pending'")).toEqual([{ n: 0 }]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM documents WHERE hash IS NULL')).toEqual([{ n: 0 }]);
  });

  test('a backfill cut short is finished at the next open; hubs opening together wait for it', async () => {
    const url = await create();
    await (await PostgresHubStore.open(url)).close();
    await sql(url, "UPDATE documents SET hash = NULL WHERE key > 'k-1500'");
    await sql(url, 'UPDATE collections SET digest = 7');
    await sql(url, "INSERT INTO hub_meta (name, value) VALUES ('digests_pending', 1)");
    const stores = await Promise.all([PostgresHubStore.open(url), PostgresHubStore.open(url), PostgresHubStore.open(url)]);
    try {
      const expected = expectedDigests();
      for (const store of stores) expect(await store.digestAt('b', HEAD)).toBe(expected.get('b'));
      await expectBackfilled(stores[0]);
    } finally {
      for (const store of stores) await store.close();
    }
  });
});
