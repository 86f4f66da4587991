import type { AgentDb } from './agent-db.js';

/** How long a cursor moved by live change sets may go unwritten (see CollectionCursors). */
export const CURSOR_SAVE_MS = 1_000;

/**
 * Per collection, the highest LSN of the hub's log applied to the replica (`cursors`). A live
 * change set moves its collection's cursor; under a steady stream of them (a sensor loop whose
 * own writes come back) the row is written at most once per CURSOR_SAVE_MS, not with every
 * change set, which takes a page per write off the device's flash (docs/EDGE.md). Until then
 * the cursor is held here, read through `of` and `all`. A cursor on disk behind the rows it
 * covers is safe, as a power cut or a crash may leave it: the changes above it are pulled and
 * applied again, idempotently. One ahead of its rows never happens: a cursor is held here only
 * once the transaction that applied its changes committed.
 */
export class CollectionCursors {
  readonly #s;
  /** Cursors moved by committed applies, not yet written. */
  readonly #unsaved = new Map<string, number>();
  #savedAt = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: AgentDb) {
    this.#s = {
      cursor: db.prepare<[string], { applied_lsn: number }>('SELECT applied_lsn FROM cursors WHERE collection = ?'),
      advance: db.prepare<[string, number]>(
        `INSERT INTO cursors (collection, applied_lsn) VALUES (?, ?)
         ON CONFLICT (collection) DO UPDATE SET applied_lsn = max(applied_lsn, excluded.applied_lsn)`,
      ),
      all: db.prepare<[], { collection: string; applied_lsn: number }>('SELECT collection, applied_lsn FROM cursors ORDER BY collection'),
      delete: db.prepare<[string]>('DELETE FROM cursors WHERE collection = ?'),
    };
  }

  /** Highest LSN applied for a collection (0 if none). */
  of(collection: string): number {
    return Math.max(this.#s.cursor.get(collection)?.applied_lsn ?? 0, this.#unsaved.get(collection) ?? 0);
  }

  /** Highest LSN applied, per collection. */
  all(): Record<string, number> {
    const cursors: Record<string, number> = Object.fromEntries(this.#s.all.all().map((r) => [r.collection, r.applied_lsn]));
    for (const [collection, lsn] of this.#unsaved) cursors[collection] = Math.max(cursors[collection] ?? 0, lsn);
    return Object.fromEntries(Object.entries(cursors).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Moves cursors now, in the transaction under way (a pull's page, a snapshot): with them go any held. */
  advance(newest: ReadonlyMap<string, number>): void {
    for (const [collection, lsn] of this.#unsaved) this.#s.advance.run(collection, lsn);
    for (const [collection, lsn] of newest) this.#s.advance.run(collection, lsn);
  }

  /**
   * Moves cursors for a live change set, in the transaction under way: written there if none
   * was written for CURSOR_SAVE_MS (a device writing now and then writes each, at once), else
   * returned to be held once that transaction commits (`hold`).
   */
  advanceLive(newest: ReadonlyMap<string, number>): ReadonlyMap<string, number> | undefined {
    if (Date.now() - this.#savedAt < CURSOR_SAVE_MS) return newest;
    this.advance(newest);
    return undefined;
  }

  /** After the transaction `advance` or `advanceLive` ran in committed: what was written, or what is now held. */
  committed(held: ReadonlyMap<string, number> | undefined): void {
    if (held === undefined) {
      this.#unsaved.clear();
      this.#savedAt = Date.now();
      clearTimeout(this.#timer);
      this.#timer = undefined;
      return;
    }
    for (const [collection, lsn] of held) this.#unsaved.set(collection, Math.max(this.#unsaved.get(collection) ?? 0, lsn));
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      try {
        this.save();
      } catch {
        // Held until the next apply or close: until then, a restart pulls from the cursor on disk.
      }
    }, CURSOR_SAVE_MS);
    this.#timer.unref?.();
  }

  /** Writes the cursors held, in a transaction of its own (not fsynced). */
  save(): void {
    if (this.#unsaved.size === 0) return;
    this.db.transaction(() => this.advance(new Map()));
    this.committed(undefined);
  }

  /**
   * Deletes a collection's cursor (a restored hub's log starts over). Held cursors are let go as
   * well: a cursor behind is safe, and one held from the old log must never be written later.
   */
  delete(collection: string): void {
    this.#unsaved.clear();
    this.#s.delete.run(collection);
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
