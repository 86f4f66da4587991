import type { DocumentPage, LogPage } from './hub-store.js';
import { bucketDocumentPage, logPage, type DocumentRow, type LogRow } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/** A change read through a bucket: where the bucket left its document, neither its value nor its buckets are read. */
const BUCKET_LOG = `
SELECT l.lsn, l.collection, l.key, l.op, CASE WHEN b.left_bucket THEN NULL ELSE l.value END AS value, l.hlc, l.origin,
  CASE WHEN b.left_bucket THEN NULL ELSE l.buckets END AS buckets, b.left_bucket
FROM log_buckets b JOIN log l ON l.lsn = b.lsn
WHERE b.bucket = ? AND b.lsn > ? ORDER BY b.lsn LIMIT ?`;

function bucketDocumentsSql(after: boolean): string {
  return `
SELECT d.collection, d.key, d.value, d.deleted, d.version, d.hlc, d.origin, d.field_hlcs, d.buckets, d.prior_buckets
FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
WHERE b.bucket = ? ${after ? 'AND (b.collection, b.key) > (?, ?)' : ''} ORDER BY b.collection, b.key LIMIT ?`;
}

/** Bucket ids as one parameter (a JSON array), however many: one prepared statement for any number. */
const IN_BUCKETS = 'SELECT value FROM json_each(?)';

/**
 * What readers ask of one scope bucket on SQLite: its log and its documents, each read through
 * the bucket's own index in order (never by filtering a collection), with the paging and read
 * budget of the whole log and snapshot (rows.ts); its head and size.
 */
export class SqliteBucketReads {
  readonly #stmts;

  constructor(db: SqliteConnection) {
    this.#stmts = {
      log: db.prepare<[string, number, number], LogRow>(BUCKET_LOG),
      documents: db.prepare<[string, number], DocumentRow>(bucketDocumentsSql(false)),
      documentsAfter: db.prepare<[string, string, string, number], DocumentRow>(bucketDocumentsSql(true)),
      heads: db.prepare<[string], { bucket: string; head_lsn: number }>(
        // Head 0: a row that holds only a digest (a bucket given documents by a rebucket, never written).
        `SELECT bucket, head_lsn FROM bucket_heads WHERE bucket IN (${IN_BUCKETS}) AND head_lsn > 0`,
      ),
      backlog: db.prepare<[string, number], { n: number }>('SELECT count(*) AS n FROM log_buckets WHERE bucket = ? AND lsn > ?'),
      size: db.prepare<[string], { documents: number; bytes: number }>(
        `SELECT count(*) AS documents, coalesce(sum(length(d.value)), 0) AS bytes
         FROM (SELECT DISTINCT collection, key FROM document_buckets WHERE bucket IN (${IN_BUCKETS})) b
         JOIN documents d ON d.collection = b.collection AND d.key = b.key
         WHERE d.deleted = 0`,
      ),
    };
  }

  readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): LogPage {
    // Iterated, so that the rows after the page's read budget are never read.
    return logPage(this.#stmts.log.iterate(bucket, from, limit), from, limit, maxBytes, () => true);
  }

  readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): DocumentPage {
    const rows = after
      ? this.#stmts.documentsAfter.iterate(bucket, after[0], after[1], limit)
      : this.#stmts.documents.iterate(bucket, limit);
    return bucketDocumentPage(rows, limit, maxBytes, held);
  }

  bucketHeads(buckets: readonly string[]): Map<string, number> {
    if (buckets.length === 0) return new Map();
    return new Map(this.#stmts.heads.all(JSON.stringify(buckets)).map((r) => [r.bucket, r.head_lsn]));
  }

  bucketSize(buckets: readonly string[]): { documents: number; bytes: number } {
    if (buckets.length === 0) return { documents: 0, bytes: 0 };
    return this.#stmts.size.get(JSON.stringify(buckets))!;
  }

  bucketBacklog(cursors: ReadonlyMap<string, number>): number {
    let behind = 0;
    for (const [bucket, lsn] of cursors) behind += this.#stmts.backlog.get(bucket, lsn)!.n;
    return behind;
  }
}
