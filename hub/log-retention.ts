import type { Logger } from 'pino';
import type { HubConfig } from './config.js';
import type { HubStore } from './store/hub-store.js';

/**
 * The log's retention (`retention` in the config): prunes on a timer, and on demand. Agents
 * behind the pruned part catch up by snapshot.
 */
export class LogRetention {
  #timer: NodeJS.Timeout | undefined;
  #pruning: Promise<number> | undefined;
  readonly #stop = new AbortController();

  constructor(
    private readonly store: HubStore,
    private readonly policy: HubConfig['retention'],
    private readonly log: Logger,
  ) {}

  /** Prunes every `intervalMs`, if the policy bounds the log at all. */
  start(intervalMs: number): void {
    if (this.policy.maxAgeHours <= 0 && this.policy.maxEntries <= 0) return;
    this.#timer = setInterval(() => {
      this.prune().catch((error: unknown) => this.log.error({ err: error }, 'log retention failed; will try again'));
    }, intervalMs);
    this.#timer.unref();
  }

  /**
   * Prunes now. A prune takes several turns of the event loop (commits run between its
   * chunks): one asked for while another is under way joins it.
   */
  prune(): Promise<number> {
    this.#pruning ??= this.#prune().finally(() => (this.#pruning = undefined));
    return this.#pruning;
  }

  /**
   * Prunes no more. The store closes next: retention stops after the chunk under way (its bound
   * is recorded, the next prune removes the rest), rather than holding the stop for the whole prune.
   */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#stop.abort();
    await this.#pruning?.catch(() => undefined);
  }

  async #prune(): Promise<number> {
    const { maxAgeHours, maxEntries } = this.policy;
    const before = this.store.prunedThrough;
    const through = await this.store.prune({ maxAgeMs: maxAgeHours * 3_600_000, maxEntries }, undefined, this.#stop.signal);
    if (through > before) this.log.info({ prunedThrough: through }, 'log retention applied');
    return through;
  }
}
