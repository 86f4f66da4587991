/**
 * How many writes wait to go up, per collection, and how many given-up writes (skips) wait for
 * the hub to take note, kept in memory: status reports, the scheduler, TTL expiry and buffering
 * policies ask often, and a device back from a week offline holds hundreds of thousands of rows
 * that counting in SQL would read every time. Loaded once when the store opens. Changes are
 * staged by the transaction that makes them and count only once it commits, so a transaction
 * rolled back (a full disk) leaves the tally as true as the rows.
 */
export class PendingTally {
  /** Rows with `acked_lsn IS NULL AND skipped IS NULL`, by collection. */
  readonly #pending = new Map<string, number>();
  /** Rows with `acked_lsn IS NULL AND skipped IS NOT NULL`. */
  #skips: number;
  #staged: { pending: Map<string, number>; skips: number } | undefined;

  constructor(pending: ReadonlyArray<{ collection: string; n: number }>, skips: number) {
    // A collection may come more than once (counted in each of the outbox's forms): the counts add up.
    for (const { collection, n } of pending) this.#pending.set(collection, (this.#pending.get(collection) ?? 0) + n);
    this.#skips = skips;
  }

  /** Runs `transaction` (which must run its body synchronously, as one SQLite transaction) with changes staged, counting them once it returns. */
  within<T>(transaction: () => T): T {
    // Not nested: an inner savepoint rolled back under an outer transaction that commits would
    // count changes that never happened.
    if (this.#staged) throw new Error('tallied transactions do not nest');
    this.#staged = { pending: new Map(), skips: 0 };
    try {
      const result = transaction();
      for (const [collection, delta] of this.#staged.pending) {
        const n = (this.#pending.get(collection) ?? 0) + delta;
        if (n > 0) this.#pending.set(collection, n);
        else this.#pending.delete(collection);
      }
      this.#skips += this.#staged.skips;
      return result;
    } finally {
      this.#staged = undefined;
    }
  }

  /** A write of `collection` joined (+1) or left (-1) the pending ones, in the transaction under way. */
  pendingChanged(collection: string, delta: number): void {
    const staged = this.#stagedOrThrow();
    staged.pending.set(collection, (staged.pending.get(collection) ?? 0) + delta);
  }

  /** A skip was made (+1) or the hub took note of one (-1), in the transaction under way. */
  skipsChanged(delta: number): void {
    this.#stagedOrThrow().skips += delta;
  }

  /** Pending writes of a collection, counting what the transaction under way has staged. */
  pendingIn(collection: string): number {
    return (this.#pending.get(collection) ?? 0) + (this.#staged?.pending.get(collection) ?? 0);
  }

  /** Collections with pending writes, in name order. */
  collections(): string[] {
    return [...this.#pending.keys()].sort();
  }

  /** Every row the hub has not acknowledged: pending writes and skips. */
  get unacknowledged(): number {
    let n = this.#skips;
    for (const count of this.#pending.values()) n += count;
    return n;
  }

  #stagedOrThrow(): { pending: Map<string, number>; skips: number } {
    if (!this.#staged) throw new Error('the outbox tally changes only inside a transaction');
    return this.#staged;
  }
}
