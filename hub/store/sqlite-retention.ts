import type { SqliteConnection } from './sqlite-connection.js';

/**
 * Log retention on SQLite: which entries to remove, removing them, and remembering how far the
 * log was pruned (`hub_meta`), so that the head survives a log emptied by retention.
 */
export class SqliteRetention {
  readonly #db: SqliteConnection;

  constructor(db: SqliteConnection) {
    this.#db = db;
  }

  /** How far retention has pruned the log (0 = nothing yet), as recorded. */
  prunedThrough(): number {
    return Number(
      (this.#db.prepare("SELECT value FROM hub_meta WHERE name = 'pruned_through'").get() as { value: string } | undefined)?.value ?? '0',
    );
  }

  /**
   * Removes entries older than `maxAgeMs` and all but the newest `maxEntries` (0 disables either
   * rule), never fewer than `prunedThrough` already covers. Deletes in chunks, each its own
   * transaction, so that commits are not held up; records the new bound once they are gone.
   * Returns it.
   */
  prune(retention: { maxAgeMs: number; maxEntries: number }, head: number, prunedThrough: number, now: number): number {
    let cutoff = prunedThrough;
    if (retention.maxEntries > 0) cutoff = Math.max(cutoff, head - retention.maxEntries);
    if (retention.maxAgeMs > 0) {
      const old = this.#db.statement('SELECT max(lsn) AS lsn FROM log WHERE committed_at < ?').get(now - retention.maxAgeMs) as {
        lsn: number | null;
      };
      cutoff = Math.max(cutoff, old.lsn ?? 0);
    }
    const chunk = this.#db.statement('DELETE FROM log WHERE lsn IN (SELECT lsn FROM log WHERE lsn <= ? ORDER BY lsn LIMIT 10000)');
    const record = this.#db.statement(
      "INSERT INTO hub_meta (name, value) VALUES ('pruned_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    );
    let deleted: number;
    do deleted = this.#db.transaction(() => chunk.run(cutoff).changes);
    while (deleted > 0);
    if (cutoff > prunedThrough) this.#db.transaction(() => record.run(String(cutoff)));
    return cutoff;
  }
}
