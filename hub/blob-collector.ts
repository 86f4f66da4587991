import type { Logger } from 'pino';
import { blobOf } from '../shared/blobs.js';
import { decodeValue } from '../shared/value-bytes.js';
import type { HubStore } from './store/hub-store.js';

/** How often content is collected, and how long content no document names is kept first. */
export interface BlobCollection {
  intervalMs: number;
  /**
   * Content is stored before the document that names it is committed (a device's upload may take
   * hours over a slow link), so what no document names is kept this long after it was last touched.
   */
  graceMs: number;
}

export const DEFAULT_BLOB_COLLECTION: BlobCollection = { intervalMs: 3_600_000, graceMs: 24 * 3_600_000 };

/** Documents (and log entries) read a page at a time while finding what is named. */
const PAGE = 1_000;
/** About this many bytes of log a page. */
const LOG_PAGE_BYTES = 4 << 20;
/** Lost versions waiting to be reapplied read at most (each names its content too). */
const LOST_LIMIT = 100_000;

/**
 * Removes blob content no document of the partition names (a blob overwritten, deleted, or an
 * upload never committed), on a timer and on demand: the store's `collect` with the hashes the
 * partition's live documents name, each content untouched for `graceMs`.
 */
export class BlobCollector {
  #timer: NodeJS.Timeout | undefined;
  #collecting: Promise<string[]> | undefined;

  constructor(
    private readonly store: HubStore,
    private readonly log: Logger,
    private readonly policy: BlobCollection = DEFAULT_BLOB_COLLECTION,
  ) {}

  start(): void {
    this.#timer = setInterval(() => {
      this.collect().catch((error: unknown) => this.log.error({ err: error }, 'blob content collection failed; will try again'));
    }, this.policy.intervalMs);
    this.#timer.unref();
  }

  /** Collects now; one asked for while another runs joins it. The hashes removed. */
  collect(now = Date.now()): Promise<string[]> {
    this.#collecting ??= this.#collect(now).finally(() => (this.#collecting = undefined));
    return this.#collecting;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#collecting?.catch(() => undefined);
  }

  async #collect(now: number): Promise<string[]> {
    const named = await this.#named();
    const removed = await this.store.content.collect((hash) => named.has(hash), now - this.policy.graceMs);
    if (removed.length > 0) this.log.info({ removed: removed.length }, 'blob content no document names was removed');
    return removed;
  }

  /**
   * The content hashes the partition's live documents name, and those that writes committed while
   * the documents were read and lost versions waiting to be reapplied name.
   */
  async #named(): Promise<Set<string>> {
    const named = new Set<string>();
    const name = (value: unknown): void => {
      const blob = blobOf(value);
      if (blob) named.add(blob.sha256);
    };
    // Writes go on while the documents are read a page at a time: a copy made into a page already
    // read, then the original deleted from a page not yet read, would leave content no page
    // showed named. Whatever was committed from here on is read from the log below.
    const from = this.store.head;
    for (const collection of Object.keys(await this.store.collectionHeads())) {
      for (let after: string | undefined; ;) {
        const page = await this.store.listDocuments(collection, { limit: PAGE, ...(after !== undefined && { after }) });
        for (const doc of page) name(doc.value);
        if (page.length < PAGE) break;
        after = page.at(-1)!.key;
      }
    }
    for (let after = from; ;) {
      const page = await this.store.readLog(after, undefined, PAGE, LOG_PAGE_BYTES);
      for (const change of page.changes) if (change.v !== undefined) name(decodeValue(change.v));
      if (page.complete || page.through <= after) break;
      after = page.through;
    }
    // `outpost hub restore reapply` may commit a lost version again: its content must still be there.
    for (const lost of await this.store.lostDocuments({ pending: true, limit: LOST_LIMIT })) name(lost.value);
    return named;
  }
}
