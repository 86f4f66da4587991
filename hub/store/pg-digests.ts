import type pg from 'pg';
import { DIGEST_MODULUS, RangeTally } from '../../shared/digest.js';
import type { RangeDigests, RangeDocuments, RangeDocumentsQuery } from './digest-reads.js';
import { DIGEST_CHUNK, RangePage, rowHash } from './digest-rows.js';
import type { PgPool } from './pg-pool.js';
import { MIGRATION_LOCK } from './pg-schema.js';
import type { DocumentRow } from './rows.js';

/** What a document's hash is computed from. */
const HASHED_COLUMNS = 'collection, key, value, deleted, version';
const DOCUMENT_COLUMNS = 'collection, key, value, deleted, version, hlc, origin, field_hlcs, buckets';

/** Keys read at a time by a range scan (no values), and rows of the keys in range. */
const KEY_CHUNK = 10_000;
const ROW_BATCH = 100;

/**
 * A collection's digest at an LSN, from its row and its newest log entry at or before it, and how
 * far retention pruned: one statement, so one state.
 */
const DIGEST_AT = `
SELECT c.head_lsn, c.digest, l.lsn IS NOT NULL AS logged, l.collection_digest, m.value AS pruned_through
FROM (SELECT 1) one
LEFT JOIN collections c ON c.name = $1
LEFT JOIN LATERAL (SELECT lsn, collection_digest FROM log WHERE collection = $1 AND lsn <= $2 ORDER BY lsn DESC LIMIT 1) l ON true
LEFT JOIN hub_meta m ON m.name = 'pruned_through'`;

/**
 * Content digests on PostgreSQL outside group commits (which keep them: pg-ingest-tx.ts): a
 * collection's digest at an LSN, and its documents by key range, each read in one REPEATABLE
 * READ transaction, so that the head given with them (the leadership row's, written in the same
 * statement as every group commit) is the one they were read at. A range read scans the
 * collection's keys (no values) a chunk at a time and reads only the rows in range.
 */
export class PgDigests {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  async digestAt(collection: string, lsn: number): Promise<number | undefined> {
    const [row] = await this.#db.query<{
      head_lsn: number | null;
      digest: number | null;
      logged: boolean;
      collection_digest: number | null;
      pruned_through: number;
    }>(DIGEST_AT, [collection, lsn]);
    if (row!.head_lsn === null) return 0;
    if (row!.head_lsn <= lsn) return row!.digest!;
    // No change at or before `lsn` in the log: there was none, if the log was never pruned.
    if (!row!.logged) return row!.pruned_through === 0 ? 0 : undefined;
    return row!.collection_digest ?? undefined;
  }

  async rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number, bucket?: string): Promise<RangeDigests> {
    const tally = new RangeTally(depth, parents, bits);
    return this.#snapshot(async (query) => {
      for (let after: string | undefined; ;) {
        const rows = await query<{ key: string; hash: number | null }>(...keysQuery(collection, after, bucket, true));
        for (const { key, hash } of rows) tally.add(key, hash ?? 0);
        if (rows.length < KEY_CHUNK) break;
        after = rows.at(-1)!.key;
      }
      return { digests: tally.digests, counts: tally.counts };
    });
  }

  async rangeDocuments(query: RangeDocumentsQuery): Promise<RangeDocuments> {
    const { collection, depth, ranges, after, limit, maxBytes, bucket } = query;
    const page = new RangePage(depth, ranges, limit, maxBytes);
    const { lsn } = await this.#snapshot(async (query) => {
      for (let from = after; ;) {
        const keys = (await query<{ key: string }>(...keysQuery(collection, from, bucket, false))).map((r) => r.key);
        const wanted = keys.filter((key) => page.covers(key));
        for (let i = 0; i < wanted.length;) {
          if (page.full) {
            page.more();
            return {};
          }
          const batch = wanted.slice(i, i + Math.min(page.room, ROW_BATCH));
          const rows = await query<DocumentRow>(
            `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE collection = $1 AND key = ANY($2::text[]) ORDER BY key`,
            [collection, batch],
          );
          for (const row of rows) if (!page.add(row)) return {};
          i += batch.length;
        }
        if (keys.length < KEY_CHUNK) return {};
        from = keys.at(-1);
      }
    });
    return page.result(lsn);
  }

  /** Runs `read` in one REPEATABLE READ transaction, with the head that state is at. */
  async #snapshot<T extends object>(
    read: (query: <R extends pg.QueryResultRow>(text: string, values: unknown[]) => Promise<R[]>) => Promise<T>,
  ): Promise<T & { lsn: number }> {
    const client = await this.#db.wrap('read', () => this.#db.pool.connect());
    const query = <R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<R[]> =>
      this.#db.wrap('read', async () => (await client.query<R>(text, values)).rows);
    try {
      await query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', []);
      const [leader] = await query<{ head_lsn: number }>('SELECT head_lsn FROM leadership', []);
      const result = await read(query);
      await query('COMMIT', []);
      return { ...result, lsn: leader!.head_lsn };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}

/**
 * A chunk of a collection's keys in order (with their hashes: `hashes`), after `after` if given;
 * with `bucket`, those of the documents in that bucket, from its index.
 */
function keysQuery(collection: string, after: string | undefined, bucket: string | undefined, hashes: boolean): [string, unknown[]] {
  const from =
    bucket === undefined
      ? `SELECT key${hashes ? ', hash' : ''} FROM documents WHERE collection = $1`
      : hashes
        ? `SELECT b.key, d.hash FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
           WHERE b.bucket = $4 AND b.collection = $1`
        : 'SELECT b.key FROM document_buckets b WHERE b.bucket = $4 AND b.collection = $1';
  const key = bucket === undefined ? 'key' : 'b.key';
  const sql = `${from} ${after === undefined ? 'AND $3::text IS NULL' : `AND ${key} > $3`} ORDER BY ${key} LIMIT $2`;
  return [sql, bucket === undefined ? [collection, KEY_CHUNK, after] : [collection, KEY_CHUNK, after, bucket]];
}

/**
 * Gives every document written before digests its hash, a chunk per statement, then each
 * collection its digest, a statement each, and only then drops the mark migration 9 left: cut
 * short, it is done again at the next open. Under the migration lock, held for the session: a hub
 * opening meanwhile waits for it in `migrate`, so that none commits before digests are whole.
 */
export async function backfillDigests(client: pg.ClientBase): Promise<void> {
  const pending = async (): Promise<boolean> =>
    (await client.query("SELECT 1 FROM hub_meta WHERE name = 'digests_pending'")).rows.length > 0;
  if (!(await pending())) return;
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    if (!(await pending())) return; // another process finished it while this one waited
    for (let after: DocumentRow | undefined; ;) {
      const { rows } = await client.query<DocumentRow>(
        `SELECT ${HASHED_COLUMNS} FROM documents WHERE hash IS NULL ${after ? 'AND (collection, key) > ($2, $3)' : ''}
         ORDER BY collection, key LIMIT $1`,
        after ? [DIGEST_CHUNK, after.collection, after.key] : [DIGEST_CHUNK],
      );
      if (rows.length === 0) break;
      await client.query(
        `UPDATE documents d SET hash = u.hash FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(collection, key, hash)
         WHERE d.collection = u.collection AND d.key = u.key`,
        [rows.map((r) => r.collection), rows.map((r) => r.key), rows.map(rowHash)],
      );
      after = rows.at(-1);
    }
    const { rows: names } = await client.query<{ name: string }>('SELECT name FROM collections');
    for (const { name } of names) {
      await client.query(
        `UPDATE collections SET digest = coalesce((SELECT sum(hash) % ${DIGEST_MODULUS} FROM documents WHERE collection = $1), 0)::bigint
         WHERE name = $1`,
        [name],
      );
    }
    await client.query("DELETE FROM hub_meta WHERE name = 'digests_pending'");
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}
