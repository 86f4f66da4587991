import { faultPoint } from '../../shared/fault-points.js';
import type { PgPool } from './pg-pool.js';

const PRUNE_CHUNK = 10_000;

/**
 * Log retention on PostgreSQL: which entries to remove, recording the new bound, and removing
 * them, then the dedup state as old (see SqliteRetention, which does the same). The store keeps
 * `prunedThrough` and records it between the two steps.
 */
export class PgRetention {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  /** Where the log is cut: entries older than `maxAgeMs` and all but the newest `maxEntries` (0 disables either rule). */
  async cutoff(retention: { maxAgeMs: number; maxEntries: number }, head: number, prunedThrough: number, now: number): Promise<number> {
    let cutoff = prunedThrough;
    if (retention.maxEntries > 0) cutoff = Math.max(cutoff, head - retention.maxEntries);
    if (retention.maxAgeMs > 0) {
      const [old] = await this.#db.query<{ lsn: number | null }>('SELECT max(lsn) AS lsn FROM log WHERE committed_at < $1', [
        now - retention.maxAgeMs,
      ]);
      cutoff = Math.max(cutoff, old!.lsn ?? 0);
    }
    return cutoff;
  }

  /** Records that the log is pruned through `cutoff` (never lowering what is recorded). */
  async record(cutoff: number): Promise<void> {
    await this.#db.query("UPDATE hub_meta SET value = greatest(value, $1) WHERE name = 'pruned_through'", [cutoff], 'write to');
  }

  /**
   * Deletes the log through `cutoff` (and its rows in the bucket logs) in chunks, each its own
   * short transaction, so that group commits are not held up; then the committed runs it covers, and outcomes older than the
   * oldest entry the log keeps (if it keeps none, those the age rule covers). `signal` stops it
   * between chunks; the next prune finishes the work, found again from the log alone.
   */
  async deleteThrough(cutoff: number, maxAgeMs: number, now: number, signal?: AbortSignal): Promise<void> {
    let deleted = 0;
    const chunks = async (sql: string, params: unknown[]): Promise<boolean> => {
      do {
        if (signal?.aborted) return false;
        if (deleted > 0) faultPoint('hub.mid-prune');
        deleted = await this.#db.wrap('write to', async () => (await this.#db.pool.query(sql, params)).rowCount ?? 0);
      } while (deleted > 0);
      return true;
    };
    // One statement per chunk: its rows in the bucket logs go with the log entries.
    const log = `WITH chunk AS (SELECT lsn FROM log WHERE lsn <= $1 ORDER BY lsn LIMIT $2),
      bucket_rows AS (DELETE FROM log_buckets WHERE lsn IN (SELECT lsn FROM chunk))
      DELETE FROM log WHERE lsn IN (SELECT lsn FROM chunk)`;
    if (!(await chunks(log, [cutoff, PRUNE_CHUNK]))) return;
    const runs = `DELETE FROM committed_runs WHERE (agent_id, incarnation, first_seq) IN (
      SELECT agent_id, incarnation, first_seq FROM committed_runs WHERE first_lsn <= $1 AND first_lsn + (last_seq - first_seq) <= $1 LIMIT $2)`;
    if (!(await chunks(runs, [cutoff, PRUNE_CHUNK]))) return;
    const [kept] = await this.#db.query<{ committed_at: number }>('SELECT committed_at FROM log WHERE lsn > $1 ORDER BY lsn LIMIT 1', [
      cutoff,
    ]);
    const before = kept ? kept.committed_at : maxAgeMs > 0 ? now - maxAgeMs : 0;
    if (before === 0) return;
    // Rows from before outcomes were timed have no time: they are older still.
    const outcomes = `DELETE FROM outcomes WHERE (agent_id, incarnation, seq) IN (
      SELECT agent_id, incarnation, seq FROM outcomes WHERE at IS NULL OR at < $1 LIMIT $2)`;
    await chunks(outcomes, [before, PRUNE_CHUNK]);
  }
}
