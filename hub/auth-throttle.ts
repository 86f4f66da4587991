/** How much token checking (scrypt, ~50 ms of a core and 16 MiB each) logins may cost. */
export interface AuthLimits {
  /** Token checks running at once, for every client together. */
  concurrency: number;
  /** Longest an address waits after its failed logins before its next one is checked. */
  maxBackoffMs: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { concurrency: 2, maxBackoffMs: 60_000 };

/** Logins that may wait for a check slot; past this many, a login is refused at once and retried by its client. */
const MAX_WAITING = 64;
/** The wait after an address's first failed login; it doubles with each further failure. */
const FIRST_BACKOFF_MS = 500;
/** Addresses remembered before the expired ones are swept (a scan must not grow the map without bound). */
const SWEEP_AT = 10_000;

/**
 * Bounds the scrypt work logins cost: in total (a few checks at once, a short queue) and per
 * address (each failed login doubles the wait before the address's next check, up to a
 * maximum; a successful one clears it). A refused login costs nothing.
 */
export class AuthThrottle {
  #running = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #failures = new Map<string, { count: number; until: number }>();

  constructor(
    private readonly limits: AuthLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether `address` must wait before its next login is checked. */
  backingOff(address: string): boolean {
    const entry = this.#failures.get(address);
    return entry !== undefined && this.now() < entry.until;
  }

  /** A login from `address` failed: its next check waits longer. */
  failed(address: string): void {
    const now = this.now();
    const entry = this.#failures.get(address) ?? { count: 0, until: 0 };
    entry.count += 1;
    entry.until = now + Math.min(FIRST_BACKOFF_MS * 2 ** (entry.count - 1), this.limits.maxBackoffMs);
    this.#failures.set(address, entry);
    if (this.#failures.size > SWEEP_AT) {
      for (const [a, e] of this.#failures) if (e.until + this.limits.maxBackoffMs < now) this.#failures.delete(a);
    }
  }

  /** A login from `address` succeeded: it starts afresh. */
  succeeded(address: string): void {
    this.#failures.delete(address);
  }

  /** Runs `check` when a slot is free; `busy` (without running it) when too many already wait. */
  async run<T>(check: () => Promise<T>): Promise<T | 'busy'> {
    if (this.#running >= this.limits.concurrency) {
      if (this.#waiting.length >= MAX_WAITING) return 'busy';
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running += 1;
    }
    try {
      return await check();
    } finally {
      // Hand the slot straight to the next waiter, or free it.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}
