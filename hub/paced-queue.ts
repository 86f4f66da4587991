import { TokenBuckets } from './token-bucket.js';

/** A budget per agent: `rate` units a second, up to `burst` saved up. */
export interface Pace {
  rate: number;
  burst: number;
}

/** An agent with a message being handled (or waiting for its budget); an idle one has none. */
interface AgentState<T> {
  next: T | undefined;
  timer: NodeJS.Timeout | undefined;
}

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
  /** Each agent's budget, kept while it is idle (else waiting for an answer would refill it). */
  readonly #budgets: TokenBuckets;
  #stopped = false;

  constructor(
    /** Handles one message; returns what it cost, in the budget's units. */
    private readonly handle: (agentId: string, message: T) => Promise<number> | number,
    pace: Pace,
    /** A message was replaced by a newer one before it was handled. */
    private readonly superseded: (agentId: string) => void,
    now?: () => number,
  ) {
    this.#budgets = new TokenBuckets(pace.rate, pace.burst, now);
  }

  submit(agentId: string, message: T): void {
    if (this.#stopped) return;
    const busy = this.#agents.get(agentId);
    if (busy) {
      if (busy.next !== undefined) this.superseded(agentId);
      busy.next = message;
      return;
    }
    const state: AgentState<T> = { next: message, timer: undefined };
    this.#agents.set(agentId, state);
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
    const waitMs = this.#budgets.of(agentId).waitMs;
    if (waitMs > 0) {
      // Over budget: wait until it is back to zero; a newer message may replace this one meanwhile.
      state.timer = setTimeout(() => {
        state.timer = undefined;
        this.#drain(agentId, state);
      }, waitMs).unref();
      return;
    }
    const message = state.next;
    state.next = undefined;
    if (message === undefined) {
      // Idle: its budget lives on in #budgets until it is full again.
      this.#agents.delete(agentId);
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
    this.#budgets.of(agentId).spend(cost);
    this.#drain(agentId, state);
  }
}
