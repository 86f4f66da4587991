import type pg from 'pg';
import { HubRunningError } from '../../shared/errors.js';
import { leaderLockKey } from '../leadership.js';
import { DIGEST_MODULUS } from '../../shared/digest.js';
import type { BucketDigestMismatch, DigestMismatch, HubVerifyReport } from './digest-reads.js';
import { DIGEST_CHUNK, restoredRow, restoresRow, VerifyTally, type CheckedRow } from './digest-rows.js';
import type { PgPool } from './pg-pool.js';
import type { LogRow } from './rows.js';

const COLUMNS = 'collection, key, value, deleted, version, hlc, origin, field_hlcs, hash';

/** The indexes every read and group commit goes through: what amcheck checks. */
const MAIN_INDEXES = ['log_pkey', 'log_by_collection', 'documents_pkey', 'collections_pkey'];

/**
 * The PostgreSQL hub database's scrub (DigestReads.verify): documents a chunk at a time in key
 * order, in one REPEATABLE READ transaction, so that collections are summed over one state while
 * a hub keeps committing. With `repair`, one read-write transaction taken while holding the
 * partition's leader lock, as `outpost hub restore mark` does: a hub leading the partition, or
 * standing by for it, makes it fail with HubRunningError. Each scope bucket's digest is recounted
 * from its documents' hashes once they are checked (and repaired), a chunk of buckets per query.
 * Then the engine's own check: amcheck's
 * B-tree check of the main indexes, where the extension can be had.
 */
export async function verifyPg(db: PgPool, partition: string, repair: boolean): Promise<HubVerifyReport> {
  const client = await db.wrap('read', () => db.pool.connect());
  const key = leaderLockKey(partition);
  const params = key.length === 1 ? '$1' : '$1::int4, $2::int4';
  try {
    if (repair) {
      const { rows } = await db.wrap('read', () =>
        client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${params}) AS locked`, [...key]),
      );
      if (!rows[0]!.locked) throw new HubRunningError(`${db.where}, partition ${partition}`, 'repair');
    }
    try {
      await client.query(repair ? 'BEGIN' : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const report = await db.wrap(repair ? 'write to' : 'read', () => scrub(client, repair));
      await client.query('COMMIT');
      return report.finish(await engineCheck(client));
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      if (repair) await client.query(`SELECT pg_advisory_unlock(${params})`, [...key]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

async function scrub(client: pg.ClientBase, repair: boolean): Promise<{ finish: (engine: HubVerifyReport['engine']) => HubVerifyReport }> {
  const tally = new VerifyTally();
  for (let after: CheckedRow | undefined; ;) {
    const { rows } = await client.query<CheckedRow>(
      `SELECT ${COLUMNS} FROM documents ${after ? 'WHERE (collection, key) > ($2, $3)' : ''} ORDER BY collection, key LIMIT $1`,
      after ? [DIGEST_CHUNK, after.collection, after.key] : [DIGEST_CHUNK],
    );
    if (rows.length === 0) break;
    const damaged = tally.check(rows);
    const { rows: entries } =
      damaged.length === 0
        ? { rows: [] }
        : await client.query<LogRow>('SELECT lsn, collection, key, op, value, hlc, origin FROM log WHERE lsn = ANY($1::bigint[])', [
            damaged.map((r) => r.version),
          ]);
    const logged = new Map(entries.map((e) => [e.lsn, e]));
    for (const row of damaged) {
      const entry = logged.get(row.version);
      const restorable = restoresRow(row, entry);
      if (!repair || !restorable) {
        tally.damage(row, restorable, undefined);
        continue;
      }
      const fixed = restoredRow(row, entry);
      await client.query(
        'UPDATE documents SET value = $3, deleted = $4, hlc = $5, origin = $6, hash = $7 WHERE collection = $1 AND key = $2',
        [row.collection, row.key, fixed.value, fixed.deleted, fixed.hlc, fixed.origin, fixed.hash],
      );
      tally.damage(row, true, fixed.hash);
    }
    after = rows.at(-1);
  }
  const { rows: collections } = await client.query<{ name: string; digest: number }>('SELECT name, digest FROM collections');
  const stored = new Map(collections.map((c) => [c.name, c.digest]));
  const digests: DigestMismatch[] = [];
  for (const mismatch of tally.mismatches(stored)) {
    if (repair) {
      await client.query(
        'INSERT INTO collections (name, head_lsn, digest) VALUES ($1, 0, $2) ON CONFLICT (name) DO UPDATE SET digest = excluded.digest',
        [mismatch.collection, mismatch.computed],
      );
    }
    digests.push({ ...mismatch, rewritten: repair });
  }
  const buckets = await recountBuckets(client, repair);
  return { finish: (engine) => tally.report(stored, digests, buckets, engine) };
}

/** Each chunk of buckets (with a row, or with documents) with its stored digest and its documents' sum. */
const BUCKET_SUMS = `
SELECT k.bucket, coalesce(h.digest, 0)::bigint AS stored,
  coalesce((SELECT sum(d.hash) % ${DIGEST_MODULUS} FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
    WHERE b.bucket = k.bucket), 0)::bigint AS computed
FROM (SELECT bucket FROM bucket_heads UNION SELECT bucket FROM document_buckets) k
LEFT JOIN bucket_heads h ON h.bucket = k.bucket
WHERE k.bucket > $2 ORDER BY k.bucket LIMIT $1`;

/** Every bucket recounted against its stored digest; with `repair`, rewritten where they differ. */
async function recountBuckets(client: pg.ClientBase, repair: boolean): Promise<{ checked: number; mismatches: BucketDigestMismatch[] }> {
  const mismatches: BucketDigestMismatch[] = [];
  let checked = 0;
  for (let after = ''; ;) {
    const { rows } = await client.query<{ bucket: string; stored: number; computed: number }>(BUCKET_SUMS, [DIGEST_CHUNK, after]);
    if (rows.length === 0) break;
    checked += rows.length;
    for (const { bucket, stored, computed } of rows) {
      if (stored === computed) continue;
      if (repair) {
        await client.query(
          'INSERT INTO bucket_heads (bucket, head_lsn, digest) VALUES ($1, 0, $2) ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest',
          [bucket, computed],
        );
      }
      mismatches.push({ bucket, stored, computed, rewritten: repair });
    }
    after = rows.at(-1)!.bucket;
  }
  return { checked, mismatches };
}

/**
 * amcheck's bt_index_check on the main indexes (a shared lock each: commits go on), the extension
 * created if missing. Where it cannot be (not installed on the server, no privilege), the report
 * says so and passes: the scrub itself does not depend on it.
 */
async function engineCheck(client: pg.ClientBase): Promise<HubVerifyReport['engine']> {
  const check = 'amcheck bt_index_check';
  let schema: string;
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS amcheck');
    const { rows } = await client.query<{ schema: string }>(
      "SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'",
    );
    schema = rows[0]!.schema;
  } catch (error) {
    return { check, ok: true, detail: `not available: ${(error as Error).message}` };
  }
  try {
    const quoted = `"${schema.replace(/"/g, '""')}"`;
    await client.query(`SELECT ${quoted}.bt_index_check(to_regclass(name)) FROM unnest($1::text[]) AS i(name)`, [MAIN_INDEXES]);
    return { check, ok: true, detail: MAIN_INDEXES.join(', ') };
  } catch (error) {
    return { check, ok: false, detail: (error as Error).message };
  }
}
