/** How long released writes wait for an append to take their rows out with it. */
export const RELEASE_DELAY_MS = 1_000;

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
  #timer: NodeJS.Timeout | undefined;

  /** `flush` deletes the rows now; it runs a second after a release when no append came first. */
  constructor(private readonly flush: () => void) {}

  get empty(): boolean {
    return this.#seqs.size === 0;
  }

  get size(): number {
    let n = 0;
    for (const seqs of this.#seqs.values()) n += seqs.size;
    return n;
  }

  has(partition: string, seq: number): boolean {
    return this.#seqs.get(partition)?.has(seq) ?? false;
  }

  *entries(): Generator<[string, number]> {
    for (const [partition, seqs] of this.#seqs) for (const seq of seqs) yield [partition, seq];
  }

  /** Per partition, its released seqs. */
  byPartition(): Iterable<[string, ReadonlySet<number>]> {
    return this.#seqs;
  }

  add(partition: string, seq: number): void {
    let seqs = this.#seqs.get(partition);
    if (!seqs) this.#seqs.set(partition, (seqs = new Set()));
    seqs.add(seq);
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      try {
        this.flush();
      } catch {
        // Left for the next append or flush: until then they are pending rows the hub answers again.
      }
    }, RELEASE_DELAY_MS);
    this.#timer.unref?.();
  }

  /** Their rows are gone: called once the transaction that deleted them committed. */
  clear(): void {
    this.#seqs.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
