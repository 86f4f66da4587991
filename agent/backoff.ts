/**
 * Capped exponential backoff with full jitter. A fleet that lost its hub at the same moment
 * spreads its reconnects over the whole window instead of arriving as one storm.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  random?: () => number;
}

export class Backoff {
  #attempt = 0;
  constructor(private readonly options: BackoffOptions) {}

  /** The delay before the next attempt; each call widens the window until the cap. */
  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.#attempt);
    this.#attempt += 1;
    return Math.round((this.options.random ?? Math.random)() * ceiling);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
