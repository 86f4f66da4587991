import type { SqliteConnection } from './sqlite-connection.js';

/** Log entries removed per transaction: a commit waits for at most one such delete. */
const PRUNE_CHUNK = 10_000;

/**
 * Where one prune cuts: the log through `through`, and with it the dedup state as old: committed
 * runs whose every LSN is at or below `through`, and other outcomes recorded before
 * `outcomesBefore` (ms; 0 = none).
 */
export interface PrunePlan {
  through: number;
  outcomesBefore: number;
}

/**
 * Log retention on SQLite: where to cut the log, recording how far it is pruned (`hub_meta`,
 * so that the head survives a log emptied by retention), and removing the entries. The bound is
 * recorded before anything is removed: a prune cut short (a crash, a full disk) leaves entries
 * the bound already covers, never a hole that readers would trust.
 *
 * The dedup state (`committed_runs`, `outcomes`) goes with the log: exactly-once needs only each
 * incarnation's `lastSeq` (kept for good), so an op redelivered after its outcome is gone is
 * still never applied again; it is re-acked as a plain `duplicate`. It is removed after the log
 * entries, and found again from the log alone, so a prune cut short there is finished by the next.
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

  /**
   * What a prune through `cutoff` removes of the dedup state: runs through the same LSN, and
   * outcomes older than the oldest entry the log keeps (if it keeps none, everything the age
   * rule covers; with neither, none).
   */
  plan(cutoff: number, maxAgeMs: number, now: number): PrunePlan {
    const kept = this.#db.statement('SELECT committed_at FROM log WHERE lsn > ? ORDER BY lsn LIMIT 1').get(cutoff) as
      { committed_at: number } | undefined;
    return { through: cutoff, outcomesBefore: kept?.committed_at ?? (maxAgeMs > 0 ? now - maxAgeMs : 0) };
  }

  /** Records that the log is pruned through `cutoff` (durably, before any entry goes). */
  record(cutoff: number): void {
    const record = this.#db.statement(
      "INSERT INTO hub_meta (name, value) VALUES ('pruned_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    );
    this.#db.transaction(() => record.run(String(cutoff)));
  }

  /**
   * Removes up to one chunk, in one transaction: log entries through the plan's bound first
   * (with their rows in the bucket logs), then the committed runs they cover, then older
   * outcomes. How many rows went (0: none are left).
   */
  deleteChunk(plan: PrunePlan): number {
    return this.#db.transaction(() => {
      const chunk = 'SELECT lsn FROM log WHERE lsn <= ? ORDER BY lsn LIMIT ?';
      this.#db.statement(`DELETE FROM log_buckets WHERE lsn IN (${chunk})`).run(plan.through, PRUNE_CHUNK);
      const entries = this.#db.statement(`DELETE FROM log WHERE lsn IN (${chunk})`).run(plan.through, PRUNE_CHUNK).changes;
      if (entries > 0) return entries;
      // A run covers LSNs first_lsn .. first_lsn + (last_seq - first_seq); the index finds first_lsn.
      const runs = this.#db.statement(
        `DELETE FROM committed_runs WHERE (agent_id, incarnation, first_seq) IN (
           SELECT agent_id, incarnation, first_seq FROM committed_runs
           WHERE first_lsn <= @through AND first_lsn + (last_seq - first_seq) <= @through LIMIT @limit)`,
      );
      const runsGone = runs.run({ through: plan.through, limit: PRUNE_CHUNK }).changes;
      if (runsGone > 0 || plan.outcomesBefore === 0) return runsGone;
      // Rows from before outcomes were timed (migration 5) have no time: they are older still.
      const outcomes = this.#db.statement(
        `DELETE FROM outcomes WHERE (agent_id, incarnation, seq) IN (
           SELECT agent_id, incarnation, seq FROM outcomes WHERE at IS NULL OR at < ? LIMIT ?)`,
      );
      return outcomes.run(plan.outcomesBefore, PRUNE_CHUNK).changes;
    });
  }
}
