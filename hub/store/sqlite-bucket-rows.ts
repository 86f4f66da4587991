import type { ChangeBuckets } from './hub-store.js';
import { parseBuckets } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import { documentBucketChanges, logBucketRows } from './write-rows.js';

/**
 * What a group commit writes of the scope bucket index on SQLite, inside the caller's
 * transaction: a scoped change's rows in each bucket's log, its document's current buckets, and
 * each bucket's head. Unscoped changes never come here.
 */
export class SqliteBucketRows {
  readonly #stmts;

  constructor(db: SqliteConnection) {
    this.#stmts = {
      stored: db.prepare<[string, string], { buckets: string | null }>('SELECT buckets FROM documents WHERE collection = ? AND key = ?'),
      logBucket: db.prepare('INSERT INTO log_buckets (bucket, lsn, left_bucket) VALUES (?, ?, ?)'),
      removeDocument: db.prepare('DELETE FROM document_buckets WHERE bucket = ? AND collection = ? AND key = ?'),
      // OR IGNORE: an unscoped write in between (the collection's scope dropped, then restored)
      // forgets the document's buckets but leaves its rows.
      addDocument: db.prepare('INSERT OR IGNORE INTO document_buckets (bucket, collection, key) VALUES (?, ?, ?)'),
      head: db.prepare<[string], { head_lsn: number }>('SELECT head_lsn FROM bucket_heads WHERE bucket = ?'),
      setHead: db.prepare(
        `INSERT INTO bucket_heads (bucket, head_lsn) VALUES (?, ?)
         ON CONFLICT (bucket) DO UPDATE SET head_lsn = excluded.head_lsn`,
      ),
    };
  }

  /** The buckets a document is stored in now: read before its new version replaces them. */
  stored(collection: string, key: string): string[] | undefined {
    const text = this.#stmts.stored.get(collection, key)?.buckets;
    return text == null ? undefined : parseBuckets(text);
  }

  /** Indexes the change at `lsn` in its buckets, and moves its document from the buckets it was in (`before`). */
  index(collection: string, key: string, lsn: number, buckets: ChangeBuckets, before: readonly string[] | undefined): void {
    for (const row of logBucketRows(buckets, lsn)) this.#stmts.logBucket.run(row.bucket, row.lsn, row.left ? 1 : 0);
    const { removed, added } = documentBucketChanges(before, buckets.in);
    for (const bucket of removed) this.#stmts.removeDocument.run(bucket, collection, key);
    for (const bucket of added) this.#stmts.addDocument.run(bucket, collection, key);
  }

  head(bucket: string): number {
    return this.#stmts.head.get(bucket)?.head_lsn ?? 0;
  }

  setHead(bucket: string, lsn: number): void {
    this.#stmts.setHead.run(bucket, lsn);
  }
}
