import type { Logger } from 'pino';
import { BLOB_CHUNK_BYTES, type BlobDescriptor } from '../../shared/blobs.js';
import { BlobMismatchError, BlobUnavailableError } from '../../shared/blob-errors.js';
import type { BlobNoneMessage, BlobPartMessage, UpMessage } from '../../shared/messages.js';
import type { DeviceContent } from './device-content.js';

/** Chunks asked for and not yet received, at most. */
const CHUNK_WINDOW = 4;
/** A download whose bytes do not match their address is tried this many times in all. */
const MAX_ATTEMPTS = 3;

export interface BlobFetcherDelegate {
  /** Publishes on the `up` topic of a collection's partition; false when not connected. */
  send(collection: string, message: UpMessage): boolean;
  /** Chunks may be asked for now (the transfer budget allows blobs). */
  mayAsk(): boolean;
}

interface Download extends BlobDescriptor {
  collection: string;
  key: string;
  /** Reads waiting for it (none for a download started as a document replicated: `eager`). */
  waiters: Array<{ resolve: () => void; reject: (error: Error) => void }>;
  /** The device's store was asked what it lacks; these chunks are still missing, in order. */
  missing: number[] | undefined;
  /** Chunks asked of the hub and not yet received, with when they were asked for. */
  asked: Map<number, number>;
  attempts: number;
  busy: boolean;
}

/**
 * Downloads blob content from the hub into the device's store (DeviceContent), one content at a
 * time, reads waiting for theirs before downloads nobody waits for: it asks for chunks
 * (`bget`, CHUNK_WINDOW at a time), stores each as it comes (durably: a download resumes at its
 * first missing chunk after a dropped link or a restart), and checks the whole against its
 * address before anyone reads it. Content whose bytes do not match is dropped and fetched again.
 */
export class BlobFetcher {
  readonly #downloads = new Map<string, Download>();

  constructor(
    private readonly content: DeviceContent,
    private readonly delegate: BlobFetcherDelegate,
    private readonly options: { ackTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  /** Resolves once the content is held whole on the device. */
  fetch(collection: string, key: string, blob: BlobDescriptor): Promise<void> {
    if (this.content.holdsWhole(blob.sha256, blob.size)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const download = this.#downloadOf(collection, key, blob);
      download.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  /** Downloads content in the background (a document of an `eager` collection replicated). */
  prefetch(collection: string, key: string, blob: BlobDescriptor): void {
    if (this.content.holdsWhole(blob.sha256, blob.size)) return;
    this.#downloadOf(collection, key, blob);
    this.pump();
  }

  /** Downloads waiting or under way, and the bytes they still lack. */
  get queued(): { blobs: number; bytes: number } {
    let bytes = 0;
    for (const d of this.#downloads.values()) bytes += d.missing ? d.missing.length * BLOB_CHUNK_BYTES : d.size;
    return { blobs: this.#downloads.size, bytes };
  }

  /** The link dropped or came back: nothing asked will come; ask again. */
  reset(): void {
    for (const download of this.#downloads.values()) download.asked.clear();
  }

  pump(): void {
    const download = this.#active();
    if (!download || download.busy) return;
    void this.#advance(download);
  }

  async onPart([, part]: BlobPartMessage): Promise<void> {
    const download = this.#downloads.get(part.h);
    // A chunk another device asked for, fanned out to every device fetching the content, is taken too.
    if (!download || part.n !== download.size || !download.missing?.includes(part.i)) return;
    download.asked.delete(part.i);
    try {
      await this.content.files.putChunk(part.h, part.i, part.d);
      download.missing = download.missing?.filter((i) => i !== part.i);
    } catch (error) {
      this.log.warn({ err: error, sha256: part.h, index: part.i }, 'could not store a downloaded blob chunk; it is asked for again');
    }
    this.pump();
  }

  onNone([, none]: BlobNoneMessage): void {
    const download = this.#downloads.get(none.h);
    if (!download) return;
    this.#finish(download, new BlobUnavailableError(none.h, `the hub answered ${none.code}: ${none.message}`));
  }

  /** Reads wait first; then downloads in the order they were asked for. */
  #active(): Download | undefined {
    let first: Download | undefined;
    for (const download of this.#downloads.values()) {
      if (download.waiters.length > 0) return download;
      first ??= download;
    }
    return first;
  }

  #downloadOf(collection: string, key: string, blob: BlobDescriptor): Download {
    let download = this.#downloads.get(blob.sha256);
    if (!download) {
      download = { ...blob, collection, key, waiters: [], missing: undefined, asked: new Map(), attempts: 0, busy: false };
      this.#downloads.set(blob.sha256, download);
    }
    return download;
  }

  async #advance(download: Download): Promise<void> {
    download.busy = true;
    try {
      if (download.missing === undefined) {
        await this.content.evict(download.size);
        download.missing = await this.content.files.begin(download.sha256, download.size);
      }
      if (download.missing.length === 0) return await this.#complete(download);
      const now = Date.now();
      for (const [index, at] of download.asked) if (now - at > this.options.ackTimeoutMs) download.asked.delete(index);
      const ask = download.missing.filter((i) => !download.asked.has(i)).slice(0, CHUNK_WINDOW - download.asked.size);
      if (ask.length === 0 || !this.delegate.mayAsk()) return;
      const { collection: c, key: k, sha256: h } = download;
      if (this.delegate.send(c, ['bget', { c, k, h, i: ask }])) for (const i of ask) download.asked.set(i, now);
    } catch (error) {
      this.#finish(download, error as Error);
    } finally {
      download.busy = false;
    }
  }

  async #complete(download: Download): Promise<void> {
    try {
      await this.content.files.complete(download.sha256);
    } catch (error) {
      if (!(error instanceof BlobMismatchError) || ++download.attempts >= MAX_ATTEMPTS) return this.#finish(download, error as Error);
      this.log.warn({ sha256: download.sha256 }, 'downloaded blob content did not match its address; fetching it again');
      download.missing = undefined;
      queueMicrotask(() => this.pump());
      return;
    }
    this.content.used(download.sha256, download.size);
    this.#finish(download);
  }

  #finish(download: Download, error?: Error): void {
    this.#downloads.delete(download.sha256);
    if (error) this.log.warn({ err: error, sha256: download.sha256 }, 'a blob download failed');
    for (const { resolve, reject } of download.waiters)
      if (error) reject(error);
      else resolve();
    queueMicrotask(() => this.pump());
  }
}
