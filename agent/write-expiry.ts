import type { Logger } from 'pino';
import type { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';

/** How often pending writes are checked against their collection's TTL. */
const EXPIRY_CHECK_MS = 1_000;

/** Gives up pending writes past their collection's TTL, once a second; the app hears of each. */
export class WriteExpiry {
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AgentStore,
    private readonly ttlSecondsOf: (collection: string) => number,
    private readonly onExpired: (expired: Rejection[]) => void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#timer = setInterval(() => this.#expire(), EXPIRY_CHECK_MS);
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #expire(): void {
    if (!this.#timer) return;
    try {
      const expired = this.store.outbox.expire(this.ttlSecondsOf);
      if (expired.length === 0) return;
      this.log.warn({ count: expired.length }, 'pending writes expired before they could be uploaded');
      this.onExpired(expired);
    } catch (error) {
      this.log.error({ err: error }, 'could not expire pending writes');
    }
  }
}
