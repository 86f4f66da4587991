import type { Logger } from 'pino';
import { blobOf } from '../shared/blobs.js';
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

/** Documents read a page at a time while finding what is named. */
const PAGE = 1_000;

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

  /** The content hashes the partition's live documents name. */
  async #named(): Promise<Set<string>> {
    const named = new Set<string>();
    for (const collection of Object.keys(await this.store.collectionHeads())) {
      for (let after: string | undefined; ;) {
        const page = await this.store.listDocuments(collection, { limit: PAGE, ...(after !== undefined && { after }) });
        for (const doc of page) {
          const blob = blobOf(doc.value);
          if (blob) named.add(blob.sha256);
        }
        if (page.length < PAGE) break;
        after = page.at(-1)!.key;
      }
    }
    return named;
  }
}
