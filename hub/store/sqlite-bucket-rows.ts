import { movedBucketDigests } from './bucket-digests.js';
import type { ChangeBuckets } from './hub-store.js';
import { parseBuckets } from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import { documentBucketChanges, logBucketRows } from './write-rows.js';

/**
 * What a group commit writes of the scope bucket index on SQLite, inside the caller's
 * transaction: a scoped change's rows in each bucket's log, its document's current buckets, and
 * each bucket's head and digest. Unscoped changes never come here. Each bucket's digest is read
 * once per group commit and moved here (as GroupDigests does a collection's), written with the
 * bucket's head, or as the group commit ends where no head was set after it moved; forgotten
 * however the group commit ends.
 */
export class SqliteBucketRows {
  readonly #stmts;
  /** Each bucket's digest as this group commit's changes moved it (or read it). */
  readonly #digests = new Map<string, number>();
  /** Buckets whose digest moved and is not written yet. */
  readonly #unsaved = new Set<string>();

  constructor(db: SqliteConnection) {
    this.#stmts = {
      stored: db.prepare<[string, string], { buckets: string | null }>('SELECT buckets FROM documents WHERE collection = ? AND key = ?'),
      logBucket: db.prepare('INSERT INTO log_buckets (bucket, lsn, left_bucket) VALUES (?, ?, ?)'),
      removeDocument: db.prepare('DELETE FROM document_buckets WHERE bucket = ? AND collection = ? AND key = ?'),
      // OR IGNORE: an unscoped write in between (the collection's scope dropped, then restored)
      // forgets the document's buckets but leaves its rows.
      addDocument: db.prepare('INSERT OR IGNORE INTO document_buckets (bucket, collection, key) VALUES (?, ?, ?)'),
      head: db.prepare<[string], { head_lsn: number; digest: number }>('SELECT head_lsn, digest FROM bucket_heads WHERE bucket = ?'),
      // The digest comes twice (positional parameters bind fastest); NULL: not moved here, the stored one stands.
      setHead: db.prepare<[string, number, number | null, number | null]>(
        `INSERT INTO bucket_heads (bucket, head_lsn, digest) VALUES (?, ?, coalesce(?, 0))
         ON CONFLICT (bucket) DO UPDATE SET head_lsn = excluded.head_lsn, digest = coalesce(?, digest)`,
      ),
      setDigest: db.prepare<[string, number]>(
        `INSERT INTO bucket_heads (bucket, head_lsn, digest) VALUES (?, 0, ?)
         ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest`,
      ),
    };
  }

  /** The buckets a document is stored in now: read before its new version replaces them. */
  stored(collection: string, key: string): string[] | undefined {
    const text = this.#stmts.stored.get(collection, key)?.buckets;
    return text == null ? undefined : parseBuckets(text);
  }

  /**
   * Indexes the change at `lsn` in its buckets, moves its document from the buckets it was in
   * (`before`), and moves those buckets' digests by its old and new hash; returns them.
   */
  index(
    collection: string,
    key: string,
    lsn: number,
    buckets: ChangeBuckets,
    before: readonly string[] | undefined,
    hashes: { old: number; new: number },
  ): Record<string, number> {
    for (const row of logBucketRows(buckets, lsn)) this.#stmts.logBucket.run(row.bucket, row.lsn, row.left ? 1 : 0);
    const { removed, added } = documentBucketChanges(before, buckets.in);
    for (const bucket of removed) this.#stmts.removeDocument.run(bucket, collection, key);
    for (const bucket of added) this.#stmts.addDocument.run(bucket, collection, key);
    const moved = movedBucketDigests(before, buckets.in, hashes.old, hashes.new, (bucket) => this.#digest(bucket));
    for (const [bucket, digest] of Object.entries(moved)) {
      this.#digests.set(bucket, digest);
      this.#unsaved.add(bucket);
    }
    return moved;
  }

  head(bucket: string): number {
    return this.#stmts.head.get(bucket)?.head_lsn ?? 0;
  }

  /** Sets a bucket's head, with its digest if this group commit moved it. */
  setHead(bucket: string, lsn: number): void {
    const digest = this.#unsaved.delete(bucket) ? this.#digests.get(bucket)! : null;
    this.#stmts.setHead.run(bucket, lsn, digest, digest);
  }

  /** Writes the digests moved and not written with a head, as the group commit ends; forgets them all however it ends. */
  group<T>(fn: () => T): T {
    this.#clear();
    try {
      const result = fn();
      for (const bucket of this.#unsaved) this.#stmts.setDigest.run(bucket, this.#digests.get(bucket)!);
      return result;
    } finally {
      this.#clear();
    }
  }

  /** A bucket's digest: as moved here, else as stored (read once per group commit). */
  #digest(bucket: string): number {
    let digest = this.#digests.get(bucket);
    if (digest === undefined) this.#digests.set(bucket, (digest = this.#stmts.head.get(bucket)?.digest ?? 0));
    return digest;
  }

  #clear(): void {
    this.#digests.clear();
    this.#unsaved.clear();
  }
}
