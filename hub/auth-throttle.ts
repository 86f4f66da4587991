/** How much token checking (scrypt, ~50 ms of a core and 16 MiB each) logins may cost. */
export interface AuthLimits {
  /** Token checks running at once, for every client together. */
  concurrency: number;
  /** Longest a source waits after its failed logins before its next one is checked. */
  maxBackoffMs: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { concurrency: 2, maxBackoffMs: 60_000 };

/** Logins that may wait for a check slot; past this many, a login is refused at once and retried by its client. */
const MAX_WAITING = 64;
/**
 * Logins of one source being checked or waiting at once. Without it, one source could fill the
 * queue, and all its concurrent attempts would be checked before the first failure started
 * its backoff. Devices behind one NAT share it: those refused retry with their backoff.
 */
const MAX_PER_SOURCE = 4;
/** The wait after a source's first failed login; it doubles with each further failure. */
const FIRST_BACKOFF_MS = 500;
/** Sources remembered before the expired ones are swept (a scan must not grow the map without bound). */
const SWEEP_AT = 10_000;

/**
 * Bounds the scrypt work logins cost: in total (a few checks at once, a short queue) and per
 * source (see hub/address-source.ts): a few logins at a time, and each failed login doubles
 * the wait before the source's next check, up to a maximum; a successful one clears it. A
 * refused login costs nothing.
 */
export class AuthThrottle {
  #running = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #failures = new Map<string, { count: number; until: number }>();
  readonly #inFlight = new Map<string, number>();

  constructor(
    private readonly limits: AuthLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether `source` must wait before its next login is checked. */
  backingOff(source: string): boolean {
    const entry = this.#failures.get(source);
    return entry !== undefined && this.now() < entry.until;
  }

  /** A login from `source` failed: its next check waits longer. */
  failed(source: string): void {
    const now = this.now();
    const entry = this.#failures.get(source) ?? { count: 0, until: 0 };
    entry.count += 1;
    entry.until = now + Math.min(FIRST_BACKOFF_MS * 2 ** (entry.count - 1), this.limits.maxBackoffMs);
    this.#failures.set(source, entry);
    if (this.#failures.size > SWEEP_AT) {
      for (const [s, e] of this.#failures) if (e.until + this.limits.maxBackoffMs < now) this.#failures.delete(s);
    }
  }

  /** A login from `source` succeeded: it starts afresh. */
  succeeded(source: string): void {
    this.#failures.delete(source);
  }

  /**
   * Runs `check` (whether the login is good) when a slot is free, and records its verdict for
   * `source` before the slot passes on, so logins queued behind a failure are not checked.
   * Without running it: `backoff` when `source` is backing off (asked again when the slot comes),
   * `busy` when too many logins wait, or too many of this source's. `source` undefined: only the
   * total is bounded (the broker asking over HTTP does not say where a login comes from).
   */
  async run(source: string | undefined, check: () => Promise<boolean>): Promise<boolean | 'busy' | 'backoff'> {
    if (source !== undefined && this.backingOff(source)) return 'backoff';
    const mine = source === undefined ? 0 : (this.#inFlight.get(source) ?? 0);
    if (mine >= MAX_PER_SOURCE) return 'busy';
    if (this.#running >= this.limits.concurrency && this.#waiting.length >= MAX_WAITING) return 'busy';
    if (source !== undefined) this.#inFlight.set(source, mine + 1);
    try {
      if (this.#running >= this.limits.concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      else this.#running += 1;
      try {
        if (source !== undefined && this.backingOff(source)) return 'backoff';
        const good = await check();
        if (source !== undefined) {
          if (good) this.succeeded(source);
          else this.failed(source);
        }
        return good;
      } finally {
        // Hand the slot straight to the next waiter, or free it.
        const next = this.#waiting.shift();
        if (next) next();
        else this.#running -= 1;
      }
    } finally {
      if (source !== undefined) {
        const left = this.#inFlight.get(source)! - 1;
        if (left === 0) this.#inFlight.delete(source);
        else this.#inFlight.set(source, left);
      }
    }
  }
}
