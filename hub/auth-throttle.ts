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
/** The wait after the first failed login; it doubles with each further failure. */
const FIRST_BACKOFF_MS = 500;
/**
 * Failing agent ids from one source before the whole source backs off. One device with a wrong
 * or revoked token backs off alone, and does not hold up the devices behind the same NAT; a
 * client trying many ids (guessing, or enumerating) makes its whole source wait.
 */
const IDS_BEFORE_SOURCE_BACKOFF = 3;
/** Entries remembered before the expired ones are swept (a scan must not grow the maps without bound). */
const SWEEP_AT = 10_000;

interface Backoff {
  count: number;
  until: number;
}

/**
 * Bounds the scrypt work logins cost: in total (a few checks at once, a short queue) and per
 * source (see hub/address-source.ts): a few logins at a time. Each failed login doubles the
 * wait before that id's next check from that source, up to a maximum; a successful one clears
 * it; once several ids have failed from one source, the whole source waits likewise. A refused
 * login costs nothing.
 */
export class AuthThrottle {
  #running = 0;
  readonly #waiting: Array<() => void> = [];
  /** Per source and agent id. */
  readonly #failures = new Map<string, Backoff>();
  /** Per source, once IDS_BEFORE_SOURCE_BACKOFF ids have failed from it; `count` counts failing ids. */
  readonly #sources = new Map<string, Backoff>();
  readonly #inFlight = new Map<string, number>();

  constructor(
    private readonly limits: AuthLimits,
    // Monotonic: a wall clock stepped forward would end every backoff, stepped back prolong it.
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether a login of `agentId` from `source` must wait before it is checked. */
  backingOff(source: string, agentId: string): boolean {
    const now = this.now();
    const mine = this.#failures.get(key(source, agentId));
    const all = this.#sources.get(source);
    return (mine !== undefined && now < mine.until) || (all !== undefined && now < all.until);
  }

  /** A login of `agentId` from `source` failed: its next check waits longer, and a source failing with many ids waits too. */
  failed(source: string, agentId: string): void {
    const now = this.now();
    const id = key(source, agentId);
    const known = this.#failures.has(id);
    this.#failures.set(id, this.#longer(this.#failures.get(id), now));
    if (!known) {
      this.#sources.set(source, this.#longer(this.#sources.get(source), now, IDS_BEFORE_SOURCE_BACKOFF));
    }
    if (this.#failures.size > SWEEP_AT || this.#sources.size > SWEEP_AT) {
      for (const map of [this.#failures, this.#sources]) {
        for (const [k, e] of map) if (e.until + this.limits.maxBackoffMs < now) map.delete(k);
      }
    }
  }

  /** A login of `agentId` from `source` succeeded: that id starts afresh (the source's count stays, so a stolen token cannot reset it). */
  succeeded(source: string, agentId: string): void {
    this.#failures.delete(key(source, agentId));
  }

  /** One more failure: the wait doubles from the `from`th failure on (none before). */
  #longer(entry: Backoff | undefined, now: number, from = 1): Backoff {
    const count = (entry?.count ?? 0) + 1;
    const until = count < from ? 0 : now + Math.min(FIRST_BACKOFF_MS * 2 ** (count - from), this.limits.maxBackoffMs);
    return { count, until };
  }

  /**
   * Runs `check` (whether the login is good) when a slot is free, and records its verdict
   * before the slot passes on, so logins queued behind a failure are not checked. Without
   * running it: `backoff` when the login must wait (asked again when the slot comes), `busy`
   * when too many logins wait, or too many of this source's. `source` undefined: only the total
   * is bounded (the broker asking over HTTP does not say where a login comes from).
   */
  async run(source: string | undefined, agentId: string, check: () => Promise<boolean>): Promise<boolean | 'busy' | 'backoff'> {
    if (source !== undefined && this.backingOff(source, agentId)) return 'backoff';
    const mine = source === undefined ? 0 : (this.#inFlight.get(source) ?? 0);
    if (mine >= MAX_PER_SOURCE) return 'busy';
    if (this.#running >= this.limits.concurrency && this.#waiting.length >= MAX_WAITING) return 'busy';
    if (source !== undefined) this.#inFlight.set(source, mine + 1);
    try {
      if (this.#running >= this.limits.concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      else this.#running += 1;
      try {
        if (source !== undefined && this.backingOff(source, agentId)) return 'backoff';
        const good = await check();
        if (source !== undefined) {
          if (good) this.succeeded(source, agentId);
          else this.failed(source, agentId);
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

const key = (source: string, agentId: string): string => `${source}\n${agentId}`;
