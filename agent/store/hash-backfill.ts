import type { AgentDb } from './agent-db.js';
import { rowHash, type HashedColumns } from './replica-digests.js';

/** Rows hashed per transaction: a large replica is not held in one transaction, nor in memory. */
const BACKFILL_CHUNK = 1000;

/**
 * Gives every held document without a hash its hash (those written before the replica kept
 * hashes, or put into the file by hand), a chunk per transaction; the digest triggers bring the
 * collections' digests along. Interrupted, it goes on at the next open from what is still
 * unhashed. The partial index finds those rows at once, so an open with none costs nothing.
 * Returns how many rows it hashed.
 */
export function backfillHashes(db: AgentDb): number {
  const unhashed = db.prepare<[number], HashedColumns>(
    `SELECT collection, key, value, deleted, version FROM documents INDEXED BY documents_unhashed
     WHERE hash IS NULL AND evicted = 0 LIMIT ?`,
  );
  const setHash = db.prepare<[number, string, string]>('UPDATE documents SET hash = ? WHERE collection = ? AND key = ?');
  let hashed = 0;
  for (;;) {
    // Read in the transaction that writes: a hash is of the row as it is when stored.
    const n = db.transaction(() => {
      const rows = unhashed.all(BACKFILL_CHUNK);
      for (const row of rows) setHash.run(rowHash(row), row.collection, row.key);
      return rows.length;
    });
    if (n === 0) return hashed;
    hashed += n;
  }
}
