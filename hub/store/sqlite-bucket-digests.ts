import type { BucketDigest } from './bucket-digests.js';
import { DIGEST_CHUNK, digestOfHalves, HASH_HALVES } from './digest-rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/** The sum of a bucket's documents' hashes, in halves (see digestOfHalves). */
const BUCKET_SUM = `SELECT ${HASH_HALVES} FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
  WHERE b.bucket = ?`;

/**
 * Scope buckets' digests on SQLite outside group commits (which keep them: SqliteBucketRows):
 * counting them for a database from before them, reading them, and recounting one (the scrub).
 */
export class SqliteBucketDigests {
  readonly #db: SqliteConnection;

  constructor(db: SqliteConnection) {
    this.#db = db;
  }

  /**
   * Counts every bucket's digest from its documents' hashes, for a database from before bucket
   * digests (the mark migration 17 left): first a row (head 0) for each bucket with documents
   * and no head yet, then the digests a chunk of buckets per transaction, and only then the mark
   * goes. Each count is absolute: cut short, it is done again at the next open. After the
   * documents' own hashes (SqliteDigests.backfill).
   */
  count(): void {
    if (this.#db.prepare("SELECT 1 FROM hub_meta WHERE name = 'bucket_digests_pending'").get() === undefined) return;
    this.#db.transaction(() =>
      this.#db
        .prepare(
          'INSERT INTO bucket_heads (bucket, head_lsn) SELECT DISTINCT bucket, 0 FROM document_buckets WHERE true ON CONFLICT DO NOTHING',
        )
        .run(),
    );
    const chunk = this.#db
      .prepare<[string, number], string>('SELECT bucket FROM bucket_heads WHERE bucket > ? ORDER BY bucket LIMIT ?')
      .pluck();
    const set = this.#db.prepare<[number, string]>('UPDATE bucket_heads SET digest = ? WHERE bucket = ?');
    for (let after = ''; ;) {
      const buckets = chunk.all(after, DIGEST_CHUNK);
      if (buckets.length === 0) break;
      this.#db.transaction(() => {
        for (const bucket of buckets) set.run(this.recount(bucket), bucket);
      });
      after = buckets.at(-1)!;
    }
    this.#db.prepare("DELETE FROM hub_meta WHERE name = 'bucket_digests_pending'").run();
  }

  /** A bucket's digest summed from its documents' hashes now. */
  recount(bucket: string): number {
    const { high, low } = this.#db.statement<[string], { high: number | null; low: number | null }>(BUCKET_SUM).get(bucket)!;
    return digestOfHalves(high ?? 0, low ?? 0);
  }

  /** Each bucket's head and digest (one row each: one state); a bucket without a row is left out. */
  read(buckets: readonly string[]): Map<string, BucketDigest> {
    if (buckets.length === 0) return new Map();
    const rows = this.#db
      .statement<[string], { bucket: string; head_lsn: number; digest: number }>(
        'SELECT bucket, head_lsn, digest FROM bucket_heads WHERE bucket IN (SELECT value FROM json_each(?))',
      )
      .all(JSON.stringify(buckets));
    return new Map(rows.map((r) => [r.bucket, { head: r.head_lsn, digest: r.digest }]));
  }
}
