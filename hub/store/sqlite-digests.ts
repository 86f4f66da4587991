import { RangeTally } from '../../shared/digest.js';
import type { HubVerifyReport, RangeDigests, RangeDocuments, RangeDocumentsQuery } from './digest-reads.js';
import { SqliteBucketDigests } from './sqlite-bucket-digests.js';
import { DIGEST_CHUNK, digestOfHalves, HASH_HALVES, RangePage, rowHash } from './digest-rows.js';
import type { DocumentRow } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import { SqliteVerify } from './sqlite-verify.js';

/** What a document's hash is computed from. */
const HASHED_COLUMNS = 'collection, key, value, deleted, version';
const DOCUMENT_COLUMNS = 'collection, key, value, deleted, version, hlc, origin, field_hlcs, buckets';

/**
 * Content digests on SQLite outside group commits (which keep them: SqliteIngestRows): the
 * backfill of a database from before them, a collection's digest at an LSN, its documents by key
 * range, and the scrub (SqliteVerify). Synchronous like every read here, so each answer is of one
 * state, at the head the caller passes. A range read scans the collection's keys (no values) and
 * reads only the rows in range.
 */
export class SqliteDigests {
  readonly #db: SqliteConnection;
  readonly #verify: SqliteVerify;
  /** Scope buckets' digests: counted at open where never counted, read, recounted by the scrub. */
  readonly buckets: SqliteBucketDigests;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.buckets = new SqliteBucketDigests(db);
    this.#verify = new SqliteVerify(db, this.buckets);
  }

  /** Brings digests up to date where migrations left them to count: documents' and collections', then buckets'. */
  backfill(): void {
    this.#hashDocuments();
    this.buckets.count();
  }

  /**
   * Gives every document written before digests its hash, a chunk per transaction, then each
   * collection its digest, a transaction each, and only then drops the mark migration 16 left:
   * cut short, it is done again at the next open (hashes already set are kept).
   */
  #hashDocuments(): void {
    if (!this.#pending()) return;
    const first = this.#db.prepare<[number], DocumentRow>(
      `SELECT ${HASHED_COLUMNS} FROM documents WHERE hash IS NULL ORDER BY collection, key LIMIT ?`,
    );
    const next = this.#db.prepare<[string, string, number], DocumentRow>(
      `SELECT ${HASHED_COLUMNS} FROM documents WHERE hash IS NULL AND (collection, key) > (?, ?) ORDER BY collection, key LIMIT ?`,
    );
    const setHash = this.#db.prepare('UPDATE documents SET hash = ? WHERE collection = ? AND key = ?');
    for (let after: DocumentRow | undefined; ;) {
      const chunk = this.#db.transaction(() => {
        const rows = after ? next.all(after.collection, after.key, DIGEST_CHUNK) : first.all(DIGEST_CHUNK);
        for (const row of rows) setHash.run(rowHash(row), row.collection, row.key);
        return rows;
      });
      if (chunk.length === 0) break;
      after = chunk.at(-1);
    }
    const sum = this.#db.prepare<[string], { high: number | null; low: number | null }>(
      `SELECT ${HASH_HALVES} FROM documents WHERE collection = ?`,
    );
    const setDigest = this.#db.prepare('UPDATE collections SET digest = ? WHERE name = ?');
    const names = this.#db.prepare<[], string>('SELECT name FROM collections').pluck().all();
    for (const name of names) {
      this.#db.transaction(() => {
        const { high, low } = sum.get(name)!;
        setDigest.run(digestOfHalves(high ?? 0, low ?? 0), name);
      });
    }
    this.#db.prepare("DELETE FROM hub_meta WHERE name = 'digests_pending'").run();
  }

  #pending(): boolean {
    return this.#db.prepare("SELECT 1 FROM hub_meta WHERE name = 'digests_pending'").get() !== undefined;
  }

  /** See DigestReads.digestAt; `prunedThrough` says whether the log still reaches back to the first change. */
  digestAt(collection: string, lsn: number, prunedThrough: number): number | undefined {
    const stored = this.#db
      .statement<[string], { head_lsn: number; digest: number }>('SELECT head_lsn, digest FROM collections WHERE name = ?')
      .get(collection);
    if (!stored) return 0;
    if (stored.head_lsn <= lsn) return stored.digest;
    const entry = this.#db
      .statement<[string, number], { collection_digest: number | null }>(
        'SELECT collection_digest FROM log WHERE collection = ? AND lsn <= ? ORDER BY lsn DESC LIMIT 1',
      )
      .get(collection, lsn);
    // No change at or before `lsn` in the log: there was none, if the log was never pruned.
    if (!entry) return prunedThrough === 0 ? 0 : undefined;
    return entry.collection_digest ?? undefined;
  }

  /** With `bucket`, of the collection's documents in that bucket only, read through its index. */
  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number, head: number, bucket?: string): RangeDigests {
    const tally = new RangeTally(depth, parents, bits);
    const rows =
      bucket === undefined
        ? this.#db
            .statement<[string], [string, number | null]>('SELECT key, hash FROM documents WHERE collection = ?')
            .raw()
            .iterate(collection)
        : this.#db
            .statement<[string, string], [string, number | null]>(
              `SELECT b.key, d.hash FROM document_buckets b JOIN documents d ON d.collection = b.collection AND d.key = b.key
               WHERE b.bucket = ? AND b.collection = ?`,
            )
            .raw()
            .iterate(bucket, collection);
    for (const [key, hash] of rows) tally.add(key, hash ?? 0);
    return { lsn: head, digests: tally.digests, counts: tally.counts };
  }

  rangeDocuments(query: RangeDocumentsQuery, head: number): RangeDocuments {
    const { collection, depth, ranges, after, limit, maxBytes, bucket } = query;
    const page = new RangePage(depth, ranges, limit, maxBytes);
    // A bucket's keys come from its index, in order: its collection is never filtered whole.
    const source = bucket === undefined ? 'documents WHERE' : 'document_buckets WHERE bucket = ? AND';
    const keys = this.#db
      .statement<string[], string>(`SELECT key FROM ${source} collection = ? ${after === undefined ? '' : 'AND key > ?'} ORDER BY key`)
      .pluck()
      .iterate(...[bucket, collection, after].filter((p) => p !== undefined));
    const row = this.#db.statement<[string, string], DocumentRow>(
      `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE collection = ? AND key = ?`,
    );
    // Reads beside the scan of keys, which stops (and is reset) where the page does.
    for (const key of keys) {
      if (!page.covers(key)) continue;
      if (page.full) {
        page.more();
        break;
      }
      if (!page.add(row.get(collection, key)!)) break;
    }
    return page.result(head);
  }

  verify(repair: boolean): HubVerifyReport {
    return this.#verify.verify(repair);
  }
}
