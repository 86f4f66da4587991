import type pg from 'pg';
import { DIGEST_MODULUS } from '../../shared/digest.js';
import { DIGEST_CHUNK, rowHash } from './digest-rows.js';
import type { PgPool } from './pg-pool.js';
import { MIGRATION_LOCK } from './pg-schema.js';
import type { DocumentRow } from './rows.js';

/** What a document's hash is computed from. */
const HASHED_COLUMNS = 'collection, key, value, deleted, version';

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
 * collection's digest at an LSN.
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
