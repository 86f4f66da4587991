import type { AgentDb } from './agent-db.js';

/** How long held cursors wait for a write of their own (see `committed`; nothing is held today). */
export const CURSOR_SAVE_MS = 1_000;

/**
 * Per collection, the highest LSN of the hub's log applied to the replica (`cursors`), written in
 * the transaction that applied the changes. Holding a live change set's cursor in memory for a
 * second saved a page per write on a device's flash, but a killed process then showed an app
 * (and the hub) an applied LSN going backwards; it is not done.
 */
export class CollectionCursors {
  readonly #s;
  /** Cursors moved by committed applies, not yet written. */
  readonly #unsaved = new Map<string, number>();
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

  /** Moves cursors for a live change set, in the transaction under way (nothing is held: see the class). */
  advanceLive(newest: ReadonlyMap<string, number>): ReadonlyMap<string, number> | undefined {
    this.advance(newest);
    return undefined;
  }

  /** After the transaction `advance` or `advanceLive` ran in committed: what was written, or what is now held. */
  committed(held: ReadonlyMap<string, number> | undefined): void {
    if (held === undefined) {
      this.#unsaved.clear();
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
