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
    // Monotonic: a wall clock stepped back would make every connection's budget negative for the step.
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = 2 * bytesPerSecond;
    this.#at = now();
  }

  /** Whether nothing has been spent that has not been refilled: as good as a new one. */
  get full(): boolean {
    return this.#tokens + ((this.now() - this.#at) / 1000) * this.bytesPerSecond >= 2 * this.bytesPerSecond;
  }

  /** Spends `bytes` just received; returns how long to stop reading (0: go on). */
  spend(bytes: number): number {
    const now = this.now();
    this.#tokens = Math.min(2 * this.bytesPerSecond, this.#tokens + ((now - this.#at) / 1000) * this.bytesPerSecond) - bytes;
    this.#at = now;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.bytesPerSecond) * 1000);
  }
}

/** Agents remembered before those with a full budget (as good as new) are forgotten. */
const SWEEP_AT = 10_000;

/**
 * Each logged-in agent's budget, kept across its connections: a client that reconnects would
 * otherwise start each connection with a fresh budget saved up, and could send at the rate it
 * reconnects times that.
 */
export class InboundBudgets {
  readonly #budgets = new Map<string, InboundBudget>();

  constructor(readonly bytesPerSecond: number) {}

  of(agentId: string): InboundBudget {
    let budget = this.#budgets.get(agentId);
    if (!budget) {
      if (this.#budgets.size >= SWEEP_AT) for (const [id, b] of this.#budgets) if (b.full) this.#budgets.delete(id);
      this.#budgets.set(agentId, (budget = new InboundBudget(this.bytesPerSecond)));
    }
    return budget;
  }
}
