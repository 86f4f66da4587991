/**
 * Bytes one client may send per second, with twice that saved up, as a token bucket. Past it,
 * the connection stops reading its socket until the bucket is back to zero: TCP flow control
 * slows the client down and nothing it sent is lost (the way EMQX and others limit a client's
 * incoming rate). Every message a client can send costs the hub work in proportion to its
 * bytes at most, so this bounds what one connection can make the hub do, whatever it sends.
 */
export class InboundBudget {
  #tokens: number;
  #at: number;

  constructor(
    readonly bytesPerSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.#tokens = 2 * bytesPerSecond;
    this.#at = now();
  }

  /** Spends `bytes` just received; returns how long to stop reading (0: go on). */
  spend(bytes: number): number {
    const now = this.now();
    this.#tokens = Math.min(2 * this.bytesPerSecond, this.#tokens + ((now - this.#at) / 1000) * this.bytesPerSecond) - bytes;
    this.#at = now;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.bytesPerSecond) * 1000);
  }
}
