import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { chunkCount } from '../../shared/blobs.js';
import { BlobDamagedError } from '../../shared/blob-errors.js';
import { NotFoundError } from '../../shared/errors.js';
import { storeStreamed } from '../../content/content-transfer.js';
import { FileContentStore } from '../../content/file-content-store.js';
import type { AgentStore } from '../store/agent-store.js';

/** Content nothing counts or pins is removed once untouched this long (a download may resume within it). */
const SWEEP_AFTER_MS = 24 * 3600_000;

/** What a device keeps of blob content unless configured otherwise: 256 MiB. */
export const DEFAULT_BLOB_CACHE_BYTES = 256 * 1024 * 1024;

/**
 * The blob content a device holds (`content/` in its data directory, as the hub keeps it:
 * content/file-content-store.ts), within a cache budget. Content past the budget is
 * evicted least recently used first, except what can not be fetched again: content of a blob
 * written here whose upload has not finished (store.blobUploads), and content being read.
 */
export class DeviceContent {
  readonly files: FileContentStore;
  /** Reads under way, by hash: their content stays. */
  readonly #reading = new Map<string, number>();

  constructor(
    dataDir: string,
    private readonly store: AgentStore,
    private readonly budgetBytes: number,
    private readonly log: Logger,
  ) {
    this.files = new FileContentStore(join(dataDir, 'content'));
  }

  /** Stores streamed content whole (hashed and checked); its address and size. */
  async storeStreamed(data: AsyncIterable<Uint8Array>, maxBytes: number): Promise<{ sha256: string; size: number }> {
    const stored = await storeStreamed(this.files, data, maxBytes);
    this.store.blobCache.used(stored.sha256, stored.size);
    return stored;
  }

  /** The content is held here whole, at this size. */
  holdsWhole(sha256: string, size: number): boolean {
    return this.files.holdsWholeSync(sha256, size);
  }

  /** Marks content used now (held whole: a download completed, or a read). */
  used(sha256: string, size: number): void {
    this.store.blobCache.used(sha256, size);
  }

  /**
   * The chunks of content held whole, in order; it is not evicted while they are read. They are
   * checked against the content's address as they go: content the device's storage damaged
   * since (a rotting card) fails at its end with BlobDamagedError, and is dropped so that the
   * next read fetches it from the hub again, unless it is a blob written here that the hub does
   * not hold yet (its upload gives it up: nothing can fetch it again).
   */
  async *chunks(sha256: string, size: number): AsyncGenerator<Buffer> {
    this.#reading.set(sha256, (this.#reading.get(sha256) ?? 0) + 1);
    const sha = createHash('sha256');
    try {
      this.used(sha256, size);
      for (let i = 0; i < chunkCount(size); i++) {
        const chunk = await this.files.readChunk(sha256, i).catch((error: unknown) => {
          // A chunk's file lost under it: damaged like changed bytes (the hash below says so).
          if (error instanceof NotFoundError) return undefined;
          throw error;
        });
        if (!chunk) break;
        sha.update(chunk);
        yield chunk;
      }
    } finally {
      const left = this.#reading.get(sha256)! - 1;
      if (left === 0) this.#reading.delete(sha256);
      else this.#reading.set(sha256, left);
    }
    if (sha.digest('hex') === sha256) return;
    if (this.store.blobUploads.hashes().has(sha256)) {
      throw new BlobDamagedError(
        sha256,
        'it was written here and the hub does not hold it yet, so it cannot be fetched again: write it again',
      );
    }
    this.log.error({ sha256 }, 'blob content held on this device was damaged by its storage; dropped, to be fetched again');
    await this.files.remove(sha256);
    this.store.blobCache.remove(sha256);
    throw new BlobDamagedError(sha256, 'it was dropped: read it again to fetch it from the hub');
  }

  /** Bytes of content held (as the index counts them). */
  get heldBytes(): number {
    return this.store.blobCache.total().bytes;
  }

  /**
   * Evicts least recently used content until what is held fits the budget (with `room` more
   * bytes to come); content a pending upload needs, or being read, stays. The hashes evicted.
   */
  async evict(room = 0): Promise<string[]> {
    let held = this.heldBytes;
    if (held + room <= this.budgetBytes) return [];
    const pinned = this.store.blobUploads.hashes();
    const evicted: string[] = [];
    for (const { sha256, size } of this.store.blobCache.oldestFirst()) {
      if (held + room <= this.budgetBytes) break;
      if (pinned.has(sha256) || this.#reading.has(sha256)) continue;
      await this.files.remove(sha256);
      this.store.blobCache.remove(sha256);
      held -= size;
      evicted.push(sha256);
    }
    if (evicted.length > 0) this.log.info({ evicted: evicted.length, heldBytes: held }, 'evicted blob content past the cache budget');
    return evicted;
  }

  /**
   * Removes what nothing will finish or read: a download left partial and untouched for a day,
   * what a put killed halfway left in the spool, and content the cache no longer counts (its index
   * entry lost to a power cut: it is fetched again if read). Never a pending upload's content.
   */
  async sweep(now = Date.now()): Promise<string[]> {
    const pinned = this.store.blobUploads.hashes();
    const cached = new Set(this.store.blobCache.oldestFirst().map((c) => c.sha256));
    return this.files.collect((hash) => pinned.has(hash) || cached.has(hash) || this.#reading.has(hash), now - SWEEP_AFTER_MS);
  }

  close(): Promise<void> {
    return this.files.close();
  }
}
