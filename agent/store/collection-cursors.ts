import type { AgentDb } from './agent-db.js';

/**
 * Per collection, the highest LSN of the hub's log applied to the replica, written in the
 * transaction that applied the changes. It shares its row of `collections` with the collection's
 * digest (migration 12), which the same applies move, so a change set applied writes one page
 * for both. (Holding a live change set's cursor in memory to write it less often saved the same
 * page, but a killed process then showed an applied LSN going backwards.)
 */
export class CollectionCursors {
  readonly #s;

  constructor(db: AgentDb) {
    this.#s = {
      cursor: db.prepare<[string], { applied_lsn: number | null }>('SELECT applied_lsn FROM collections WHERE collection = ?'),
      advance: db.prepare<[string, number, string | null]>(
        `INSERT INTO collections (collection, applied_lsn, heard_hlc) VALUES (?, ?, ?)
         ON CONFLICT (collection) DO UPDATE SET
           applied_lsn = max(coalesce(applied_lsn, 0), excluded.applied_lsn),
           heard_hlc = CASE WHEN excluded.applied_lsn > coalesce(applied_lsn, 0) THEN excluded.heard_hlc ELSE heard_hlc END`,
      ),
      learnedBefore: db.prepare<[number, string], { collection: string }>(
        `SELECT collection FROM collections WHERE applied_lsn > ? AND coalesce(heard_hlc, '') < ?`,
      ),
      all: db.prepare<[], { collection: string; applied_lsn: number }>(
        'SELECT collection, applied_lsn FROM collections WHERE applied_lsn IS NOT NULL ORDER BY collection',
      ),
      delete: db.prepare<[string]>('UPDATE collections SET applied_lsn = NULL, heard_hlc = NULL WHERE collection = ?'),
    };
  }

  /** Highest LSN applied for a collection (0 if none). */
  of(collection: string): number {
    return this.#s.cursor.get(collection)?.applied_lsn ?? 0;
  }

  /** Highest LSN applied, per collection that has a cursor. */
  all(): Record<string, number> {
    return Object.fromEntries(this.#s.all.all().map((r) => [r.collection, r.applied_lsn]));
  }

  /**
   * Moves cursors up (never down), in the transaction under way. `heard`: the hub clock of the
   * message that brought the changes, kept in the same row with the LSN it raised it to (a
   * cursor not raised keeps the clock of the message that did).
   */
  advance(newest: ReadonlyMap<string, number>, heard?: string): void {
    for (const [collection, lsn] of newest) this.#s.advance.run(collection, lsn, heard ?? null);
  }

  /** The collections whose cursor is above `lsn` and was raised there by a message older than `hlc` (or of unknown age). */
  learnedBefore(lsn: number, hlc: string): string[] {
    return this.#s.learnedBefore.all(lsn, hlc).map((r) => r.collection);
  }

  /** Forgets a collection's cursor (a restored hub's log starts over); its digest stays. */
  delete(collection: string): void {
    this.#s.delete.run(collection);
  }
}
