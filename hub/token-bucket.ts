/**
 * A budget that refills at `rate` units a second up to `burst`, and may be spent into debt: a
 * cost is known only once the work is done (a page's bytes, a chunk just read), so the work is
 * allowed while the balance is not negative, and the next waits until the debt is paid off.
 * Time is monotonic: a wall clock stepped back would put every bucket in debt for the step.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#at = now();
  }

  /** Spends `cost`; returns how long until the balance is back to zero (0: not in debt). */
  spend(cost: number): number {
    this.#refill();
    this.#tokens -= cost;
    return this.waitMs;
  }

  /** How long until the balance is back to zero (0: not in debt). */
  get waitMs(): number {
    this.#refill();
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.rate) * 1000);
  }

  /** Whether nothing spent is still to refill: as good as a new bucket (one that may be forgotten). */
  get full(): boolean {
    this.#refill();
    return this.#tokens >= this.burst;
  }

  #refill(): void {
    const now = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
  }
}

/** Keys remembered before those with a full bucket (as good as new) are forgotten. */
const SWEEP_AT = 10_000;

/**
 * A bucket per key (an agent id), made on first use; past SWEEP_AT keys, those whose bucket is
 * full are forgotten, so a key's budget survives its reconnects yet the map stays bounded.
 */
export class TokenBuckets {
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly now?: () => number,
  ) {}

  of(key: string): TokenBucket {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= SWEEP_AT) for (const [k, b] of this.#buckets) if (b.full) this.#buckets.delete(k);
      this.#buckets.set(key, (bucket = new TokenBucket(this.rate, this.burst, this.now)));
    }
    return bucket;
  }
}
