/** A budget per agent: `rate` units a second, up to `burst` saved up. */
export interface Pace {
  rate: number;
  burst: number;
}

interface AgentState<T> {
  /** Units the agent may still spend; below zero, its next message waits until refilled. */
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
  busy: boolean;
  next: T | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** Agents remembered before those with a full budget (as good as new) are swept. */
const SWEEP_AT = 10_000;

/**
 * Per agent, a kind of message whose newest supersedes the older (a pull, a status report):
 * one is handled at a time, at most one waits behind it (a newer one replaces it), and what
 * handling costs (a page's bytes, a report) is paid from a budget that refills at a steady
 * rate. A device never notices: it has one pull outstanding and reports a few times a second.
 * A client that floods gets one answer per answer it could use, and no more than its budget,
 * however fast it reads; the hub's work for it is bounded, and its event loop stays free for
 * everyone else.
 */
export class PacedQueue<T> {
  readonly #agents = new Map<string, AgentState<T>>();
  #stopped = false;

  constructor(
    /** Handles one message; returns what it cost, in the budget's units. */
    private readonly handle: (agentId: string, message: T) => Promise<number> | number,
    private readonly pace: Pace,
    /** A message was replaced by a newer one before it was handled. */
    private readonly superseded: (agentId: string) => void,
    // Monotonic: a wall clock stepped back would starve every agent's budget for the step.
    private readonly now: () => number = () => performance.now(),
  ) {}

  submit(agentId: string, message: T): void {
    if (this.#stopped) return;
    let state = this.#agents.get(agentId);
    if (state?.busy) {
      if (state.next !== undefined) this.superseded(agentId);
      state.next = message;
      return;
    }
    if (!state) {
      if (this.#agents.size >= SWEEP_AT) this.#sweep();
      state = { tokens: this.pace.burst, at: this.now(), busy: false, next: undefined, timer: undefined };
      this.#agents.set(agentId, state);
    }
    state.busy = true;
    state.next = message;
    this.#drain(agentId, state);
  }

  /** Handles nothing more; what waits is dropped (its senders ask again, as after a lost message). */
  stop(): void {
    this.#stopped = true;
    for (const state of this.#agents.values()) clearTimeout(state.timer);
    this.#agents.clear();
  }

  #drain(agentId: string, state: AgentState<T>): void {
    if (this.#stopped) return; // a handler that finished after stop(): nothing more
    this.#refill(state);
    if (state.tokens < 0) {
      // Over budget: wait until it is back to zero; a newer message may replace this one meanwhile.
      const waitMs = Math.ceil((-state.tokens / this.pace.rate) * 1000);
      state.timer = setTimeout(() => {
        state.timer = undefined;
        this.#drain(agentId, state);
      }, waitMs).unref();
      return;
    }
    const message = state.next;
    state.next = undefined;
    if (message === undefined || this.#stopped) {
      state.busy = false;
      return;
    }
    let spent: Promise<number> | number;
    try {
      spent = this.handle(agentId, message);
    } catch {
      spent = 0; // handlers report their own failures; the budget is not charged for one
    }
    void Promise.resolve(spent).then(
      (cost) => this.#pay(agentId, state, cost),
      () => this.#pay(agentId, state, 0),
    );
  }

  #pay(agentId: string, state: AgentState<T>, cost: number): void {
    this.#refill(state);
    state.tokens -= cost;
    this.#drain(agentId, state);
  }

  #refill(state: AgentState<T>): void {
    const now = this.now();
    state.tokens = Math.min(this.pace.burst, state.tokens + ((now - state.at) / 1000) * this.pace.rate);
    state.at = now;
  }

  #sweep(): void {
    for (const [agentId, state] of this.#agents) {
      if (state.busy) continue;
      this.#refill(state);
      if (state.tokens >= this.pace.burst) this.#agents.delete(agentId);
    }
  }
}
