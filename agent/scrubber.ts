import type { Logger } from 'pino';
import type { AgentStore } from './store/agent-store.js';

/** Default scrub rate: 4 MiB of rows read a minute, a full pass over a 100,000-document replica every few minutes. */
export const DEFAULT_SCRUB_BYTES_PER_MINUTE = 4 * 1024 * 1024;
/** How often a scrub step runs: each reads a twelfth of the minute's budget, so the card never sees a burst. */
const STEP_MS = 5_000;

export interface ScrubStatus {
  bytesPerMinute: number;
  /** Full passes over the replica since the agent started. */
  passes: number;
  lastPassAt?: string;
  /** Rows found whose bytes no longer match their hash, since the agent started. */
  rotten: number;
}

/**
 * Re-reads the replica's rows a little at a time and recomputes each one's hash from the bytes as
 * they are on the card: rot under an unchanged version, which no digest comparison can see
 * (the stored hash, and so the digest, still says what the row was). It only reads: a scrub
 * writes nothing to flash. Where it stopped is kept in memory; after a restart it starts over.
 * Rotten rows go to their lane's verifier, which fetches them again from the hub.
 */
export class Scrubber {
  #after: [string, string] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #passes = 0;
  #lastPassAt: number | undefined;
  #rotten = 0;

  constructor(
    private readonly store: AgentStore,
    private readonly onRotten: (collection: string, keys: string[]) => void,
    private readonly bytesPerMinute: number,
    private readonly log: Logger,
    private readonly stepMs = STEP_MS,
  ) {}

  start(): void {
    if (this.bytesPerMinute <= 0 || this.#timer) return;
    this.#timer = setInterval(() => this.step(), this.stepMs);
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  get status(): ScrubStatus {
    return {
      bytesPerMinute: this.bytesPerMinute,
      passes: this.#passes,
      ...(this.#lastPassAt !== undefined && { lastPassAt: new Date(this.#lastPassAt).toISOString() }),
      rotten: this.#rotten,
    };
  }

  /** Reads the next slice of rows (a step's share of the minute's budget). */
  step(): void {
    try {
      const budget = Math.max(1, Math.floor((this.bytesPerMinute * this.stepMs) / 60_000));
      const { rotten, next } = this.store.replica.scrub(this.#after, budget);
      this.#after = next;
      if (!next) {
        this.#passes += 1;
        this.#lastPassAt = Date.now();
      }
      if (rotten.length === 0) return;
      this.#rotten += rotten.length;
      this.log.error(
        { rows: rotten.length, first: rotten[0] },
        "rows of the replica no longer match their hash (the card's bytes changed); fetching them again",
      );
      const byCollection = new Map<string, string[]>();
      for (const { collection, key } of rotten) byCollection.set(collection, [...(byCollection.get(collection) ?? []), key]);
      for (const [collection, keys] of byCollection) this.onRotten(collection, keys);
    } catch (error) {
      this.log.error({ err: error }, 'could not scrub the replica; trying again at the next step');
    }
  }
}
