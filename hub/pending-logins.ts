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

/**
 * Counts connections from accept until their login is accepted or they close: the only
 * connections not tied to a provisioned agent id (one connection per id), so the only ones
 * an anonymous client can multiply. Per source as in hub/address-source.ts.
 */
export class PendingLogins {
  #total = 0;
  readonly #bySource = new Map<string, number>();

  constructor(readonly limits: PendingLoginLimits) {}

  /** A connection from `address` starts; undefined when over a limit, else a release to call once it logs in or closes (idempotent). */
  enter(address: string | undefined): (() => void) | undefined {
    const source = sourceOf(address);
    const mine = this.#bySource.get(source) ?? 0;
    if (this.#total >= this.limits.total || mine >= this.limits.perSource) return undefined;
    this.#total += 1;
    this.#bySource.set(source, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total -= 1;
      const left = this.#bySource.get(source)! - 1;
      if (left === 0) this.#bySource.delete(source);
      else this.#bySource.set(source, left);
    };
  }

  get pending(): number {
    return this.#total;
  }
}
