import { rebucketedDigests } from './bucket-digests.js';
import type { ScopeRulesChange, ServedScopeRules } from './hub-store.js';
import { chunkEnd, REBUCKET_CHUNK, rebucketWrites, type RebucketChunk, type RebucketRow } from './rebucket-rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/** A chunk of a collection's documents in key order; their values only where the rules read them. */
function chunkSql(after: boolean, values: boolean): string {
  return `SELECT key, ${values ? 'value' : 'NULL AS value'}, deleted, buckets, prior_buckets, hash FROM documents
    WHERE collection = ? ${after ? 'AND key > ?' : ''} ORDER BY key LIMIT ${REBUCKET_CHUNK}`;
}

/**
 * Scope rules on SQLite: bringing a collection's bucket index to the rules the hub now serves,
 * one chunk of documents per transaction (HubStore.rebucket), the digests of the buckets its
 * documents leave and join moved in the same transaction, and the rules each collection was
 * last indexed with.
 */
export class SqliteRebucket {
  readonly #db: SqliteConnection;
  readonly #stmts;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#stmts = {
      first: db.prepare<[string], RebucketRow>(chunkSql(false, true)),
      after: db.prepare<[string, string], RebucketRow>(chunkSql(true, true)),
      firstBuckets: db.prepare<[string], RebucketRow>(chunkSql(false, false)),
      afterBuckets: db.prepare<[string, string], RebucketRow>(chunkSql(true, false)),
      update: db.prepare('UPDATE documents SET buckets = ?, prior_buckets = ? WHERE collection = ? AND key = ?'),
      removeRow: db.prepare('DELETE FROM document_buckets WHERE bucket = ? AND collection = ? AND key = ?'),
      // OR IGNORE: rows an unscoped write left behind (see SqliteBucketRows) may be there already.
      addRow: db.prepare('INSERT OR IGNORE INTO document_buckets (bucket, collection, key) VALUES (?, ?, ?)'),
      digest: db.prepare<[string], number>('SELECT digest FROM bucket_heads WHERE bucket = ?').pluck(),
      // A bucket given its first documents here has no head yet: its row starts at head 0.
      setDigest: db.prepare<[string, number]>(
        'INSERT INTO bucket_heads (bucket, head_lsn, digest) VALUES (?, 0, ?) ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest',
      ),
      record: db.prepare(
        `INSERT INTO scope_rules (collection, rules, since) VALUES (?, ?, ?)
         ON CONFLICT (collection) DO UPDATE SET rules = excluded.rules, since = excluded.since`,
      ),
      forget: db.prepare('DELETE FROM scope_rules WHERE collection = ?'),
      served: db.prepare<[], { collection: string; rules: string; since: number }>('SELECT collection, rules, since FROM scope_rules'),
      begin: db.prepare(
        `INSERT INTO scope_rebuckets (collection, rules) VALUES (?, ?)
         ON CONFLICT (collection) DO UPDATE SET rules = excluded.rules`,
      ),
      end: db.prepare('DELETE FROM scope_rebuckets WHERE collection = ?'),
      unfinished: db.prepare<[], { collection: string }>('SELECT collection FROM scope_rebuckets'),
    };
  }

  /**
   * Rebuckets the documents of a chunk after `after` (from the first: undefined), in one
   * transaction. The first chunk records the rebucket as under way.
   */
  chunk(collection: string, after: string | undefined, change: ScopeRulesChange): RebucketChunk {
    return this.#db.transaction(() => {
      if (after === undefined) this.#stmts.begin.run(collection, change.rules ?? null);
      const values = change.rules !== undefined; // unscoping reads no value
      const rows =
        after === undefined
          ? (values ? this.#stmts.first : this.#stmts.firstBuckets).all(collection)
          : (values ? this.#stmts.after : this.#stmts.afterBuckets).all(collection, after);
      const writes = rebucketWrites(rows, change);
      for (const write of writes) {
        this.#stmts.update.run(write.buckets, write.prior_buckets, collection, write.key);
        for (const bucket of write.removed) this.#stmts.removeRow.run(bucket, collection, write.key);
        for (const bucket of write.added) this.#stmts.addRow.run(bucket, collection, write.key);
      }
      const digests = rebucketedDigests(writes, (bucket) => this.#stmts.digest.get(bucket) ?? 0);
      for (const [bucket, digest] of digests) this.#stmts.setDigest.run(bucket, digest);
      return chunkEnd(writes.length, rows);
    });
  }

  /**
   * Records the rules a collection is now indexed with, or forgets them (unscoped), once every
   * chunk is done; in the same transaction, the rebucket is no longer under way.
   */
  finish(collection: string, change: ScopeRulesChange): void {
    this.#db.transaction(() => {
      if (change.rules === undefined) this.#stmts.forget.run(collection);
      else this.#stmts.record.run(collection, change.rules, change.since);
      this.#stmts.end.run(collection);
    });
  }

  served(): Map<string, ServedScopeRules> {
    return new Map(this.#stmts.served.all().map((r) => [r.collection, { rules: r.rules, since: r.since }]));
  }

  unfinished(): Set<string> {
    return new Set(this.#stmts.unfinished.all().map((r) => r.collection));
  }
}
