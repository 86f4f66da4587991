import { HubRunningError } from '../../shared/errors.js';
import type { BucketDigestMismatch, DigestMismatch, HubVerifyReport } from './digest-reads.js';
import { DIGEST_CHUNK, restoredRow, restoresRow, VerifyTally, type CheckedRow } from './digest-rows.js';
import type { LogRow } from './rows.js';
import type { SqliteBucketDigests } from './sqlite-bucket-digests.js';
import type { SqliteConnection } from './sqlite-connection.js';

const COLUMNS = 'collection, key, value, deleted, version, hlc, origin, field_hlcs, hash';

/**
 * The SQLite hub database's scrub (DigestReads.verify): documents a chunk at a time in key order,
 * all in one read transaction, so that collections are summed over one state while a hub keeps
 * committing; with `repair`, one exclusive transaction instead, which refuses a database a hub
 * has open (HubRunningError). Each scope bucket's digest is recounted from its documents'
 * hashes once they are checked (and repaired). Then SQLite's own integrity check.
 */
export class SqliteVerify {
  readonly #db: SqliteConnection;
  readonly #buckets: SqliteBucketDigests;

  constructor(db: SqliteConnection, buckets: SqliteBucketDigests) {
    this.#db = db;
    this.#buckets = buckets;
  }

  verify(repair: boolean): HubVerifyReport {
    if (!repair) return this.#db.reading(() => this.#scrub(false));
    try {
      return this.#db.exclusively(() => this.#scrub(true));
    } catch (error) {
      throw error instanceof HubRunningError ? new HubRunningError(error.where, 'repair') : error;
    }
  }

  #scrub(repair: boolean): HubVerifyReport {
    const first = this.#db.prepare<[number], CheckedRow>(`SELECT ${COLUMNS} FROM documents ORDER BY collection, key LIMIT ?`);
    const next = this.#db.prepare<[string, string, number], CheckedRow>(
      `SELECT ${COLUMNS} FROM documents WHERE (collection, key) > (?, ?) ORDER BY collection, key LIMIT ?`,
    );
    const logged = this.#db.prepare<[number], LogRow>('SELECT lsn, collection, key, op, value, hlc, origin FROM log WHERE lsn = ?');
    const restore = this.#db.prepare(
      'UPDATE documents SET value = ?, deleted = ?, hlc = ?, origin = ?, hash = ? WHERE collection = ? AND key = ?',
    );
    const tally = new VerifyTally();
    for (let after: CheckedRow | undefined; ;) {
      const rows = after ? next.all(after.collection, after.key, DIGEST_CHUNK) : first.all(DIGEST_CHUNK);
      if (rows.length === 0) break;
      for (const row of tally.check(rows)) {
        const entry = logged.get(row.version);
        const restorable = restoresRow(row, entry);
        if (!repair || !restorable) {
          tally.damage(row, restorable, undefined);
          continue;
        }
        const fixed = restoredRow(row, entry);
        restore.run(fixed.value, fixed.deleted ? 1 : 0, fixed.hlc, fixed.origin, fixed.hash, row.collection, row.key);
        tally.damage(row, true, fixed.hash);
      }
      after = rows.at(-1);
    }
    const stored = new Map(this.#db.prepare<[], [string, number]>('SELECT name, digest FROM collections').raw().all());
    const rewrite = this.#db.prepare(
      'INSERT INTO collections (name, head_lsn, digest) VALUES (?, 0, ?) ON CONFLICT (name) DO UPDATE SET digest = excluded.digest',
    );
    const digests: DigestMismatch[] = tally.mismatches(stored).map((m) => {
      if (repair) rewrite.run(m.collection, m.computed);
      return { ...m, rewritten: repair };
    });
    return tally.report(stored, digests, this.#recountBuckets(repair), this.#integrity());
  }

  /** Every bucket (with a row, or with documents) recounted against its stored digest; with `repair`, rewritten where they differ. */
  #recountBuckets(repair: boolean): { checked: number; mismatches: BucketDigestMismatch[] } {
    const buckets = this.#db
      .prepare<[], [string, number | null]>(
        `SELECT k.bucket, h.digest FROM (SELECT bucket FROM bucket_heads UNION SELECT bucket FROM document_buckets) k
         LEFT JOIN bucket_heads h ON h.bucket = k.bucket ORDER BY k.bucket`,
      )
      .raw()
      .all();
    const rewrite = this.#db.prepare(
      'INSERT INTO bucket_heads (bucket, head_lsn, digest) VALUES (?, 0, ?) ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest',
    );
    const mismatches: BucketDigestMismatch[] = [];
    for (const [bucket, digest] of buckets) {
      const stored = digest ?? 0;
      const computed = this.#buckets.recount(bucket);
      if (computed === stored) continue;
      if (repair) rewrite.run(bucket, computed);
      mismatches.push({ bucket, stored, computed, rewritten: repair });
    }
    return { checked: buckets.length, mismatches };
  }

  /** SQLite's integrity check: every page, index and constraint (the first problems it finds, if any). */
  #integrity(): HubVerifyReport['engine'] {
    const found = this.#db.prepare<[], string>('PRAGMA integrity_check(20)').pluck().all();
    const ok = found.length === 1 && found[0] === 'ok';
    return { check: 'sqlite integrity_check', ok, ...(!ok && { detail: found.join('; ') }) };
  }
}
