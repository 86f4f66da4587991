import type pg from 'pg';
import { DIGEST_MODULUS } from '../../shared/digest.js';
import type { BucketDigest } from './bucket-digests.js';
import { DIGEST_CHUNK } from './digest-rows.js';
import type { PgPool } from './pg-pool.js';
import { MIGRATION_LOCK } from './pg-schema.js';

/** Sets the digests of the buckets `$1` to the sum of their documents' hashes. */
const RECOUNT = `
UPDATE bucket_heads h SET digest = coalesce((
  SELECT sum(d.hash) % ${DIGEST_MODULUS} FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
  WHERE b.bucket = h.bucket), 0)::bigint
WHERE h.bucket = ANY($1::text[])`;

/**
 * Counts every bucket's digest from its documents' hashes, for a database from before bucket
 * digests (the mark migration 10 left): first a row (head 0) for each bucket with documents and
 * no head yet, then the digests a chunk of buckets per statement, and only then the mark goes.
 * Each count is absolute: cut short, it is done again at the next open. After the documents'
 * own hashes (backfillDigests), under the migration lock as that is.
 */
export async function countBucketDigests(client: pg.ClientBase): Promise<void> {
  const pending = async (): Promise<boolean> =>
    (await client.query("SELECT 1 FROM hub_meta WHERE name = 'bucket_digests_pending'")).rows.length > 0;
  if (!(await pending())) return;
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    if (!(await pending())) return; // another process finished it while this one waited
    await client.query(
      'INSERT INTO bucket_heads (bucket, head_lsn) SELECT DISTINCT bucket, 0 FROM document_buckets ON CONFLICT DO NOTHING',
    );
    for (let after: string | undefined; ;) {
      const { rows } = await client.query<{ bucket: string }>(
        `SELECT bucket FROM bucket_heads ${after === undefined ? '' : 'WHERE bucket > $2'} ORDER BY bucket LIMIT $1`,
        after === undefined ? [DIGEST_CHUNK] : [DIGEST_CHUNK, after],
      );
      if (rows.length === 0) break;
      await client.query(RECOUNT, [rows.map((r) => r.bucket)]);
      after = rows.at(-1)!.bucket;
    }
    await client.query("DELETE FROM hub_meta WHERE name = 'bucket_digests_pending'");
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}

/** Each bucket's head and digest, read from the table (one row each: one state), so that any process sees what the writer committed. */
export async function pgBucketDigests(db: PgPool, buckets: readonly string[]): Promise<Map<string, BucketDigest>> {
  if (buckets.length === 0) return new Map();
  const rows = await db.query<{ bucket: string; head_lsn: number; digest: number }>(
    'SELECT bucket, head_lsn, digest FROM bucket_heads WHERE bucket = ANY($1::text[])',
    [buckets],
  );
  return new Map(rows.map((r) => [r.bucket, { head: r.head_lsn, digest: r.digest }]));
}
