import type { SqliteConnection } from './sqlite-connection.js';

/** Log entries removed per transaction: a commit waits for at most one such delete. */
const PRUNE_CHUNK = 10_000;

/**
 * Log retention on SQLite: where to cut the log, recording how far it is pruned (`hub_meta`,
 * so that the head survives a log emptied by retention), and removing the entries. The bound is
 * recorded before anything is removed: a prune cut short (a crash, a full disk) leaves entries
 * the bound already covers, never a hole that readers would trust.
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
   * Where the log is cut: entries older than `maxAgeMs` and all but the newest `maxEntries` (0
   * disables either rule), never below `prunedThrough`.
   */
  cutoff(retention: { maxAgeMs: number; maxEntries: number }, head: number, prunedThrough: number, now: number): number {
    let cutoff = prunedThrough;
    if (retention.maxEntries > 0) cutoff = Math.max(cutoff, head - retention.maxEntries);
    if (retention.maxAgeMs > 0) {
      const old = this.#db.statement('SELECT max(lsn) AS lsn FROM log WHERE committed_at < ?').get(now - retention.maxAgeMs) as {
        lsn: number | null;
      };
      cutoff = Math.max(cutoff, old.lsn ?? 0);
    }
    return cutoff;
  }

  /** Records that the log is pruned through `cutoff` (durably, before any entry goes). */
  record(cutoff: number): void {
    const record = this.#db.statement(
      "INSERT INTO hub_meta (name, value) VALUES ('pruned_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    );
    this.#db.transaction(() => record.run(String(cutoff)));
  }

  /** Removes up to one chunk of entries through `cutoff`, in one transaction; how many went (0: none are left). */
  deleteChunk(cutoff: number): number {
    const chunk = this.#db.statement('DELETE FROM log WHERE lsn IN (SELECT lsn FROM log WHERE lsn <= ? ORDER BY lsn LIMIT ?)');
    return this.#db.transaction(() => chunk.run(cutoff, PRUNE_CHUNK).changes);
  }
}
