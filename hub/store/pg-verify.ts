import type pg from 'pg';
import { HubRunningError } from '../../shared/errors.js';
import { leaderLockKey } from '../leadership.js';
import type { DigestMismatch, HubVerifyReport } from './digest-reads.js';
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
 * standing by for it, makes it fail with HubRunningError. Then the engine's own check: amcheck's
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
  return { finish: (engine) => tally.report(stored, digests, engine) };
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
