/**
 * How long released writes wait for an append to take their rows out with it: long enough for a
 * sensor that writes once a minute, so each of its writes takes the one before out with it.
 */
export const RELEASE_DELAY_MS = 5 * 60_000;

/** How many released writes may wait at most (a backlog uploaded after days offline releases many at once). */
export const RELEASE_MAX_WAITING = 1_000;

/**
 * Writes the hub committed that may leave the outbox (the replica holds their version, or their
 * collection is not replicated here), by partition. Their rows are deleted in the next append's
 * transaction rather than in the ack's own: the outbox's last pages are then written once for
 * the write that leaves and the one that comes, which halves what a sensor loop writes to its
 * flash (docs/EDGE.md). Until then each is still a pending row on disk, which everything that
 * reads the outbox for a decision skips or deletes first; a power cut or a crash meanwhile
 * leaves it pending, and it goes up again and the hub answers it from its dedup state.
 */
export class ReleasedWrites {
  readonly #seqs = new Map<string, Set<number>>();
  #size = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `flush` deletes the rows now: RELEASE_DELAY_MS after a release when no append came first, or once RELEASE_MAX_WAITING wait. */
  constructor(private readonly flush: () => void) {}

  get empty(): boolean {
    return this.#seqs.size === 0;
  }

  get size(): number {
    return this.#size;
  }

  has(partition: string, seq: number): boolean {
    return this.#seqs.get(partition)?.has(seq) ?? false;
  }

  /** Per partition, its released seqs. */
  byPartition(): Iterable<[string, ReadonlySet<number>]> {
    return this.#seqs;
  }

  add(partition: string, seq: number): void {
    let seqs = this.#seqs.get(partition);
    if (!seqs) this.#seqs.set(partition, (seqs = new Set()));
    if (!seqs.has(seq)) this.#size += 1;
    seqs.add(seq);
    if (this.#size >= RELEASE_MAX_WAITING) {
      this.#flushNow();
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushNow();
    }, RELEASE_DELAY_MS);
    this.#timer.unref?.();
  }

  #flushNow(): void {
    try {
      this.flush();
    } catch {
      // Left for the next append or flush: until then they are pending rows the hub answers again.
    }
  }

  /** These writes are gone: called once the transaction that deleted them committed. */
  forget(gone: Iterable<[string, number]>): void {
    for (const [partition, seq] of gone) {
      const seqs = this.#seqs.get(partition);
      if (!seqs?.delete(seq)) continue;
      this.#size -= 1;
      if (seqs.size === 0) this.#seqs.delete(partition);
    }
    if (this.#seqs.size === 0) this.clear();
  }

  /** Their rows are gone: called once the transaction that deleted them committed. */
  clear(): void {
    this.#seqs.clear();
    this.#size = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
