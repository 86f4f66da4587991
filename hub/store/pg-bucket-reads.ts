import type { DocumentPage, LogPage } from './hub-store.js';
import type { PgPool } from './pg-pool.js';
import { bucketDocumentPage, logPage, MAX_READ_FACTOR, pgWithinReadBudget, type DocumentRow, type LogRow } from './rows.js';

const LOG_COLUMNS = 'lsn, collection, key, op, value, hlc, origin, buckets, left_bucket';

/** A change read through a bucket: where the bucket left its document, neither its value nor its buckets are read. */
const BUCKET_LOG = `
SELECT l.lsn, l.collection, l.key, l.op, CASE WHEN b.left_bucket THEN NULL ELSE l.value END AS value, l.hlc, l.origin,
  CASE WHEN b.left_bucket THEN NULL ELSE l.buckets END AS buckets, b.left_bucket
FROM log_buckets b JOIN log l ON l.lsn = b.lsn
WHERE b.bucket = $4 AND b.lsn > $1 ORDER BY b.lsn LIMIT $2`;

const DOCUMENT_COLUMNS = 'collection, key, value, deleted, version, hlc, origin, field_hlcs, buckets, prior_buckets';

function bucketDocumentsSql(after: boolean): string {
  return `
SELECT d.collection, d.key, d.value, d.deleted, d.version, d.hlc, d.origin, d.field_hlcs, d.buckets, d.prior_buckets
FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
WHERE b.bucket = $3 ${after ? 'AND (b.collection, b.key) > ($4, $5)' : ''} ORDER BY b.collection, b.key LIMIT $1`;
}

/**
 * What readers ask of one scope bucket on PostgreSQL: its log and its documents, each read
 * through the bucket's own index in order (never by filtering a collection), with the paging and
 * read budget of the whole log and snapshot (rows.ts); its head and size. One query each, on the
 * pool; heads are read from the table, so that any process sees what the writer committed.
 */
export class PgBucketReads {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  async readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): Promise<LogPage> {
    const rows = await this.#db.query<LogRow & { rows_in_query: string }>(pgWithinReadBudget(LOG_COLUMNS, BUCKET_LOG, 'lsn', '$3'), [
      from,
      limit,
      MAX_READ_FACTOR * maxBytes,
      bucket,
    ]);
    return logPage(rows, from, limit, maxBytes, () => true, rows.length < Number(rows[0]?.rows_in_query ?? 0));
  }

  async readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): Promise<DocumentPage> {
    const rows = await this.#db.query<DocumentRow & { rows_in_query: string }>(
      pgWithinReadBudget(DOCUMENT_COLUMNS, bucketDocumentsSql(after !== undefined), 'collection, key', '$2'),
      [limit, MAX_READ_FACTOR * maxBytes, bucket, ...(after ?? [])],
    );
    return bucketDocumentPage(rows, limit, maxBytes, held, rows.length < Number(rows[0]?.rows_in_query ?? 0));
  }

  async bucketHeads(buckets: readonly string[]): Promise<Map<string, number>> {
    if (buckets.length === 0) return new Map();
    const rows = await this.#db.query<{ bucket: string; head_lsn: number }>(
      // Head 0: a row that holds only a digest (a bucket given documents by a rebucket, never written).
      'SELECT bucket, head_lsn FROM bucket_heads WHERE bucket = ANY($1::text[]) AND head_lsn > 0',
      [buckets],
    );
    return new Map(rows.map((r) => [r.bucket, r.head_lsn]));
  }

  async bucketSize(buckets: readonly string[]): Promise<{ documents: number; bytes: number }> {
    if (buckets.length === 0) return { documents: 0, bytes: 0 };
    const [size] = await this.#db.query<{ documents: number; bytes: number }>(
      `SELECT count(*) AS documents, coalesce(sum(octet_length(d.value)), 0) AS bytes
       FROM (SELECT DISTINCT collection, key FROM document_buckets WHERE bucket = ANY($1::text[])) b
       JOIN documents d ON d.collection = b.collection AND d.key = b.key
       WHERE NOT d.deleted`,
      [buckets],
    );
    return size!;
  }

  async bucketBacklog(cursors: ReadonlyMap<string, number>): Promise<number> {
    if (cursors.size === 0) return 0;
    const [row] = await this.#db.query<{ n: string }>(
      `SELECT count(*) AS n FROM log_buckets l JOIN unnest($1::text[], $2::bigint[]) AS c(bucket, after)
         ON l.bucket = c.bucket AND l.lsn > c.after`,
      [[...cursors.keys()], [...cursors.values()]],
    );
    return Number(row!.n);
  }
}
