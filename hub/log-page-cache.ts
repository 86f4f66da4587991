import type { HubStore, LogPage } from './store/hub-store.js';

/** What answering a pull reads from the store (hub/pull.ts). */
export type PullSource = Pick<HubStore, 'head' | 'prunedThrough' | 'logHolds' | 'readLog' | 'readDocuments'>;

/** Pages kept at once: a few cursors a fleet shares, each page at most half a message. */
const MAX_PAGES = 16;

/**
 * The store as pulls read it, with the log's pages shared while the log is unchanged. After a
 * hub restart a fleet reconnects and pulls from the same cursor, the head before the restart:
 * with this, 10,000 devices cost one read of the log, not 10,000.
 *
 * A page is read as a reader of every collection would read it, and served as it is only to a
 * pull that may read every collection in it: such a reader's own filtered read would have met
 * the same rows and kept them all. It might have gone on past the row the shared page stops at,
 * had that row been one it skips; with the shared page it pulls on from there, as after any
 * page, and gets the same changes in the same order. Any other pull is read for itself, as
 * before. Any commit or prune moves the head or the pruned mark, and that drops every page kept.
 */
export class LogPageCache implements PullSource {
  readonly #pages = new Map<string, Promise<SharedPage>>();
  /** `head|prunedThrough` of the log the kept pages were read from. */
  #logState = '';

  constructor(private readonly store: HubStore) {}

  get head(): number {
    return this.store.head;
  }

  get prunedThrough(): number {
    return this.store.prunedThrough;
  }

  logHolds(lsn: number): Promise<boolean> {
    return this.store.logHolds(lsn);
  }

  readDocuments(...args: Parameters<HubStore['readDocuments']>): ReturnType<HubStore['readDocuments']> {
    return this.store.readDocuments(...args);
  }

  async readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): Promise<LogPage> {
    const logState = `${this.store.head}|${this.store.prunedThrough}`;
    if (logState !== this.#logState) {
      this.#pages.clear();
      this.#logState = logState;
    }
    const key = JSON.stringify([from, collections ?? null, limit, maxBytes]);
    let shared = this.#pages.get(key);
    if (!shared) {
      shared = this.store
        .readLog(from, collections, limit, maxBytes)
        .then((page) => ({ page, collections: new Set(page.changes.map((c) => c.c)) }));
      this.#pages.set(key, shared);
      shared.catch(() => this.#pages.get(key) === shared && this.#pages.delete(key));
      if (this.#pages.size > MAX_PAGES) this.#pages.delete(this.#pages.keys().next().value!);
    }
    const { page, collections: inPage } = await shared;
    for (const collection of inPage) if (!include(collection)) return this.store.readLog(from, collections, limit, maxBytes, include);
    return page;
  }
}

interface SharedPage {
  page: LogPage;
  /** The collections its changes are of. */
  collections: Set<string>;
}
