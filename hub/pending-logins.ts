import { sourceOf } from './address-source.js';

/** How many connections may be waiting to log in, in all and per source. */
export interface PendingLoginLimits {
  total: number;
  perSource: number;
}

/**
 * Enough for a fleet reconnecting at once (those refused retry within seconds) and small next
 * to the file descriptors a hub has: an anonymous client holding sockets open without logging
 * in (a TLS handshake never finished, a CONNECT never sent) cannot exhaust them.
 */
export const DEFAULT_PENDING_LOGIN_LIMITS: PendingLoginLimits = { total: 1024, perSource: 128 };

interface Pending {
  source: string;
  /** Closes the connection (it is released first). */
  close: () => void;
}

/**
 * Counts connections from accept until their login is accepted or they close: the only
 * connections not tied to a provisioned agent id (one connection per id), so the only ones
 * an anonymous client can multiply. Per source as in hub/address-source.ts.
 *
 * When the total is reached, a newcomer takes the place of the oldest waiting connection of the
 * source that holds the most, as long as that source holds more than the newcomer's would: a
 * few sources filling the total with connections that never log in cannot lock every device
 * out, since each new source still gets its share.
 */
export class PendingLogins {
  /** Per source, its waiting connections, oldest first. */
  readonly #bySource = new Map<string, Set<Pending>>();
  #total = 0;

  constructor(readonly limits: PendingLoginLimits) {}

  /**
   * A connection from `address` starts. Undefined when it must be refused; else a release to call
   * once it logs in or closes (idempotent). `close` closes it, should a newcomer need its place;
   * `evicted` hears of that.
   */
  enter(address: string | undefined, close: () => void, evicted: (source: string) => void = () => undefined): (() => void) | undefined {
    const source = sourceOf(address);
    const mine = this.#bySource.get(source)?.size ?? 0;
    if (mine >= this.limits.perSource) return undefined;
    if (this.#total >= this.limits.total) {
      const [largest, held] = this.#largest();
      if (largest === undefined || held!.size <= mine + 1) return undefined;
      const oldest = held!.values().next().value as Pending;
      this.#release(oldest);
      evicted(largest);
      oldest.close();
    }
    const entry: Pending = { source, close };
    let set = this.#bySource.get(source);
    if (!set) this.#bySource.set(source, (set = new Set()));
    set.add(entry);
    this.#total += 1;
    return () => this.#release(entry);
  }

  /** Closes every waiting connection (the hub is stopping: nothing waits for their connect timeout). */
  closeAll(): void {
    for (const set of [...this.#bySource.values()]) {
      for (const entry of [...set]) {
        this.#release(entry);
        entry.close();
      }
    }
  }

  get pending(): number {
    return this.#total;
  }

  #release(entry: Pending): void {
    const set = this.#bySource.get(entry.source);
    if (!set?.delete(entry)) return;
    this.#total -= 1;
    if (set.size === 0) this.#bySource.delete(entry.source);
  }

  #largest(): [string | undefined, Set<Pending> | undefined] {
    let best: [string | undefined, Set<Pending> | undefined] = [undefined, undefined];
    for (const [source, set] of this.#bySource) if (!best[1] || set.size > best[1].size) best = [source, set];
    return best;
  }
}
