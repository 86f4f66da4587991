import Database from 'better-sqlite3';
import { join } from 'node:path';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { hubStoreContract } from './store-contract.js';

hubStoreContract('SQLite', {
  fresh: async () => tempDir('hub-store'),
  open: async (dir) => new SqliteHubStore(dir),
  refuseLogDeletes: async (dir) => {
    const db = new Database(join(dir, 'hub.db'));
    db.exec("CREATE TRIGGER refuse_log_delete BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'the disk failed'); END");
    db.close();
  },
  rows: async (dir, table) => {
    const db = new Database(join(dir, 'hub.db'), { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  },
  priorBuckets: async (dir, collection, key) => {
    const db = new Database(join(dir, 'hub.db'), { readonly: true });
    try {
      const row = db.prepare('SELECT prior_buckets FROM documents WHERE collection = ? AND key = ?').get(collection, key) as
        { prior_buckets: string | null } | undefined;
      return row?.prior_buckets == null ? null : (JSON.parse(row.prior_buckets) as string[]);
    } finally {
      db.close();
    }
  },
  damageValue: async (dir, collection, key, value) => {
    const db = new Database(join(dir, 'hub.db'));
    db.prepare('UPDATE documents SET value = ? WHERE collection = ? AND key = ?').run(value, collection, key);
    db.close();
  },
  damageDigest: async (dir, collection, digest) => {
    const db = new Database(join(dir, 'hub.db'));
    db.prepare('UPDATE collections SET digest = ? WHERE name = ?').run(digest, collection);
    db.close();
  },
  damageBucketDigest: async (dir, bucket, digest) => {
    const db = new Database(join(dir, 'hub.db'));
    db.prepare('UPDATE bucket_heads SET digest = ? WHERE bucket = ?').run(digest, bucket);
    db.close();
  },
  forgetBucketDigests: async (dir, bucket) => {
    const db = new Database(join(dir, 'hub.db'));
    db.prepare('UPDATE bucket_heads SET digest = 0').run();
    db.prepare('DELETE FROM bucket_heads WHERE bucket = ?').run(bucket);
    db.prepare("INSERT INTO hub_meta (name, value) VALUES ('bucket_digests_pending', '1')").run();
    db.close();
  },
});

hubStoreContract(
  'PostgreSQL',
  {
    fresh: freshDatabase,
    open: (url) => PostgresHubStore.open(url),
    refuseLogDeletes: async (url) => {
      await sql(
        url,
        "CREATE FUNCTION refuse_log_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the disk failed'; END $$",
      );
      await sql(url, 'CREATE TRIGGER refuse_log_delete BEFORE DELETE ON log FOR EACH ROW EXECUTE FUNCTION refuse_log_delete()');
    },
    rows: async (url, table) => (await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n,
    priorBuckets: async (url, collection, key) => {
      const [row] = await sql<{ prior_buckets: string | null }>(
        url,
        'SELECT prior_buckets FROM documents WHERE collection = $1 AND key = $2',
        [collection, key],
      );
      return row?.prior_buckets == null ? null : (JSON.parse(row.prior_buckets) as string[]);
    },
    damageValue: async (url, collection, key, value) => {
      await sql(url, 'UPDATE documents SET value = $3 WHERE collection = $1 AND key = $2', [collection, key, value]);
    },
    damageDigest: async (url, collection, digest) => {
      await sql(url, 'UPDATE collections SET digest = $2 WHERE name = $1', [collection, digest]);
    },
    damageBucketDigest: async (url, bucket, digest) => {
      await sql(url, 'UPDATE bucket_heads SET digest = $2 WHERE bucket = $1', [bucket, digest]);
    },
    forgetBucketDigests: async (url, bucket) => {
      await sql(url, 'UPDATE bucket_heads SET digest = 0');
      await sql(url, 'DELETE FROM bucket_heads WHERE bucket = $1', [bucket]);
      await sql(url, "INSERT INTO hub_meta (name, value) VALUES ('bucket_digests_pending', 1)");
    },
  },
  NO_POSTGRES,
);
