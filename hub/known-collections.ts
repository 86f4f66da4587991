import type { HubStore } from './store/hub-store.js';

/** At most this many names of one status report are looked at before the log's collections are loaded. */
const UNLOADED_REPORT_NAMES = 256;

/**
 * The collections an agent's status may name: those this partition's log has committed to, and
 * those the config declares. Anything else in a report is made up (or a typo) and is not kept:
 * a device could otherwise grow the hub's memory, and every fleet listing, by naming millions.
 */
export class KnownCollections {
  readonly #names: Set<string>;
  #loaded = false;

  constructor(declared: Iterable<string>) {
    this.#names = new Set(declared);
  }

  /** Learns the collections the log holds (once, at start). */
  async load(store: HubStore): Promise<void> {
    for (const name of Object.keys(await store.collectionHeads())) this.#names.add(name);
    this.#loaded = true;
  }

  /** A collection has just been committed to. */
  committed(name: string): void {
    this.#names.add(name);
  }

  /** The entries of a report that name known collections (before loading, the first few of any). */
  filter(applied: Record<string, number>, mayRead: (collection: string) => boolean): Record<string, number> {
    const entries = Object.entries(applied);
    const known = this.#loaded ? entries.filter(([name]) => this.#names.has(name)) : entries.slice(0, UNLOADED_REPORT_NAMES);
    return Object.fromEntries(known.filter(([name]) => mayRead(name)));
  }
}
