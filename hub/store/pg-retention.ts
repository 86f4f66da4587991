import { faultPoint } from '../fault-points.js';
import type { PgPool } from './pg-pool.js';

const PRUNE_CHUNK = 10_000;

/**
 * Log retention on PostgreSQL: which entries to remove, recording the new bound, and removing
 * them. The store keeps `prunedThrough` and records it between the two steps.
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
   * Deletes the log through `cutoff` in chunks, each its own short transaction, so that group
   * commits are not held up; `signal` stops it between chunks.
   */
  async deleteThrough(cutoff: number, signal?: AbortSignal): Promise<void> {
    let deleted = 0;
    do {
      if (signal?.aborted) return;
      if (deleted > 0) faultPoint('hub.mid-prune');
      deleted = await this.#db.wrap(
        'write to',
        async () =>
          (
            await this.#db.pool.query('DELETE FROM log WHERE lsn IN (SELECT lsn FROM log WHERE lsn <= $1 ORDER BY lsn LIMIT $2)', [
              cutoff,
              PRUNE_CHUNK,
            ])
          ).rowCount ?? 0,
      );
    } while (deleted > 0);
  }
}
