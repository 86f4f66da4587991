import type { HubStore } from './store/hub-store.js';

/** The first retry of a failed load comes this soon; each next one twice as late, up to the maximum. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/**
 * The collections an agent's status may name: those this partition's log has committed to, and
 * those the config declares. Anything else in a report is made up (or a typo) and is not kept:
 * a device could otherwise grow the hub's memory, and every fleet listing, by naming millions.
 *
 * Until the log's collections are loaded (a load that fails is retried, with backoff, until it
 * succeeds), only declared collections and those committed since start are known: a report
 * naming another is not kept then, and its agent's next report is, once loaded.
 */
export class KnownCollections {
  readonly #names: Set<string>;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(declared: Iterable<string>) {
    this.#names = new Set(declared);
  }

  /** Learns the collections the log holds, trying again after `onError` until it succeeds or `stop()`. */
  load(store: HubStore, onError: (error: unknown, retryMs: number) => void, retryMs = RETRY_FIRST_MS): void {
    store.collectionHeads().then(
      (heads) => {
        for (const name of Object.keys(heads)) this.#names.add(name);
      },
      (error: unknown) => {
        if (this.#stopped) return;
        onError(error, retryMs);
        this.#retry = setTimeout(() => this.load(store, onError, Math.min(retryMs * 2, RETRY_MAX_MS)), retryMs);
        this.#retry.unref();
      },
    );
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
  }

  /** A collection has just been committed to. */
  committed(name: string): void {
    this.#names.add(name);
  }

  /** The entries of a report that name known collections the agent may read. */
  filter(applied: Record<string, number>, mayRead: (collection: string) => boolean): Record<string, number> {
    return Object.fromEntries(Object.entries(applied).filter(([name]) => this.#names.has(name) && mayRead(name)));
  }
}
