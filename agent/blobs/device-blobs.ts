import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { blobOf, DEFAULT_MAX_BLOB_BYTES, type BlobDescriptor } from '../../shared/blobs.js';
import { BlobUnavailableError } from '../../shared/blob-errors.js';
import { decodeCbor } from '../../shared/codec.js';
import { InvalidValueError } from '../../shared/errors.js';
import type { Hlc, HybridClock } from '../../shared/hlc.js';
import type { BlobDownMessage, Change, CollectionPolicy, UpMessage } from '../../shared/messages.js';
import { encodeValue } from '../../shared/value-bytes.js';
import type { AgentStore } from '../store/agent-store.js';
import type { BlobStatus } from '../types.js';
import type { PendingBlob } from '../store/blob-uploads.js';
import type { Rejection } from '../store/rejections.js';
import { keyRange, type AgentDocument } from '../store/replica.js';
import { validateWrite } from '../write-validation.js';
import { BlobFetcher } from './blob-fetcher.js';
import { BlobSender } from './blob-sender.js';
import { DEFAULT_BLOB_CACHE_BYTES, DeviceContent } from './device-content.js';

/** How often uploads and downloads look whether they may go on (after writes went, after a pause, a missing answer). */
const PUMP_EVERY_MS = 200;
/** The longest content type kept. */
const MAX_CONTENT_TYPE = 255;

/** A blob as a read finds it: its document's description, and its content, held whole on the device. */
export interface BlobHandle extends BlobDescriptor {
  /** Not yet uploaded: written on this device, its content on its way to the hub. */
  pending: boolean;
  /** The content, a chunk at a time. */
  stream(): Readable;
  /** The content in one buffer. */
  bytes(): Promise<Buffer>;
}

/** A blob's content as a put takes it: bytes, or a stream of them (a file, an HTTP body). */
export type BlobData = Uint8Array | AsyncIterable<Uint8Array>;

/** What a put of a blob returns: its description, and the HLC its document commits with. */
export interface BlobReceipt extends BlobDescriptor {
  hlc: string;
}

/** The range of a page of documents (ListOptions, with its limit settled). */
export interface PageRange {
  prefix?: string | undefined;
  after?: string | undefined;
  limit: number;
  confirmed?: boolean | undefined;
}

export interface DeviceBlobsOptions {
  dataDir: string;
  ackTimeoutMs: number;
  /** Bytes of content the device keeps (default DEFAULT_BLOB_CACHE_BYTES). */
  cacheBytes?: number;
  /** Largest content a put takes (default DEFAULT_MAX_BLOB_BYTES). */
  maxBlobBytes?: number;
}

export interface DeviceBlobsDelegate {
  /** Publishes on the `up` topic of a collection's partition; false when not connected. */
  send(collection: string, message: UpMessage): boolean;
  connected(): boolean;
  mayUpload(): boolean;
  /** Blob chunks may spend now, up or down (the transfer budget). */
  mayMoveChunks(): boolean;
  /** A batch of writes waits for its ack: blob chunks wait behind it. */
  documentsBusy(): boolean;
  partitionOf(collection: string): string;
  policy(collection: string): CollectionPolicy;
  /** The document as reads see it (pending writes over the replica). */
  read(collection: string, key: string): AgentDocument | undefined;
  /** A blob's document joined the outbox (as an app's write would). */
  onQueued(collection: string, dropped: Rejection[]): void;
  onRejected(rejections: Rejection[]): void;
}

/**
 * Blobs on the device: a put stores the content whole in the device's store and waits
 * (store.blobUploads) while BlobSender uploads it; once the hub holds it, the blob's document
 * joins the outbox and syncs like any write. A get reads content held here, or downloads it
 * first (BlobFetcher); documents of `eager` collections are downloaded as they replicate.
 */
export class DeviceBlobs {
  readonly content: DeviceContent;
  readonly #sender: BlobSender;
  readonly #fetcher: BlobFetcher;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AgentStore,
    private readonly clock: HybridClock,
    private readonly options: DeviceBlobsOptions,
    private readonly delegate: DeviceBlobsDelegate,
    private readonly log: Logger,
  ) {
    this.content = new DeviceContent(options.dataDir, store, options.cacheBytes ?? DEFAULT_BLOB_CACHE_BYTES, log);
    this.#sender = new BlobSender(
      store,
      this.content.files,
      {
        send: (c, m) => delegate.send(c, m),
        mayUpload: () => delegate.mayUpload(),
        maySendChunks: () => delegate.mayMoveChunks(),
        documentsBusy: () => delegate.documentsBusy(),
        onHeld: (pending) => this.#queueDocument(pending),
        onRefused: (pending, refusal) => {
          const rejection = store.blobUploads.giveUp(pending, delegate.partitionOf(pending.collection), refusal);
          this.log.warn(
            { collection: pending.collection, key: pending.key, code: refusal.code },
            'the hub refused a blob; its write is given up',
          );
          delegate.onRejected([rejection]);
        },
      },
      { ackTimeoutMs: options.ackTimeoutMs },
      log,
    );
    this.#fetcher = new BlobFetcher(
      this.content,
      { send: (c, m) => delegate.send(c, m), mayAsk: () => delegate.mayMoveChunks() },
      { ackTimeoutMs: options.ackTimeoutMs },
      log,
    );
  }

  start(): void {
    this.#timer = setInterval(() => this.#pump(), PUMP_EVERY_MS);
    this.#timer.unref?.();
    this.content.sweep().catch((error: unknown) => this.log.warn({ err: error }, 'could not sweep blob content nothing needs'));
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#sender.stop();
    await this.content.close();
  }

  /**
   * Stores a blob: its content whole on the device (hashed as it streams in, fsynced), then its
   * write, durably. It is uploaded in the background; its document commits once the hub holds
   * the content.
   */
  async put(collection: string, key: string, data: BlobData, contentType: string): Promise<BlobReceipt> {
    if (typeof contentType !== 'string' || contentType.length > MAX_CONTENT_TYPE) {
      throw new InvalidValueError(`a blob's content type is a string of at most ${MAX_CONTENT_TYPE} characters`);
    }
    validateWrite(collection, key, { sha256: '0'.repeat(64), size: 0, contentType });
    const body = data instanceof Uint8Array ? Readable.from([data]) : data;
    const { sha256, size } = await this.content.storeStreamed(body, this.options.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES);
    const hlc = this.clock.tick();
    this.store.blobUploads.add(collection, key, { sha256, size, contentType }, hlc);
    void this.content.evict().catch((error: unknown) => this.log.warn({ err: error }, 'could not evict blob content'));
    this.#pump();
    return { sha256, size, contentType, hlc };
  }

  /**
   * The blob a document holds, its content held whole on the device (downloaded first if need
   * be, within `timeoutMs`); undefined if there is no such document. A blob written here and not
   * yet uploaded is read as written, unless a later write to the document is pending.
   */
  async get(collection: string, key: string, timeoutMs: number): Promise<BlobHandle | undefined> {
    const pending = this.store.blobUploads.newestOf(collection, key);
    if (pending && !this.#laterWriteThan(pending)) return this.#handle(pending, true);
    const document = this.delegate.read(collection, key);
    if (!document) return undefined;
    const blob = blobOf(document.value);
    if (!blob) throw new InvalidValueError(`document ${collection}/${key} does not hold a blob`);
    if (!this.content.holdsWhole(blob.sha256, blob.size)) {
      if (!this.delegate.connected())
        throw new BlobUnavailableError(blob.sha256, 'this device does not hold it and is offline; read it again once connected');
      await this.#fetchWithin(collection, key, blob, timeoutMs);
    }
    return this.#handle(blob, document.pending);
  }

  /**
   * A document as reads see it, with a blob written here and not yet uploaded laid over it
   * (unless a later write to the document waits in the outbox); `confirmed`: as the hub has it.
   */
  laidOver(collection: string, key: string, document: AgentDocument | undefined, confirmed = false): AgentDocument | undefined {
    if (confirmed || this.store.blobUploads.empty) return document;
    const pending = this.store.blobUploads.newestOf(collection, key);
    if (!pending || this.#laterWriteThan(pending)) return document;
    const { sha256, size, contentType } = pending;
    return { collection, key, value: { sha256, size, contentType }, version: document?.version ?? 0, pending: true };
  }

  /**
   * A page of documents as reads see it (Replica.list), with blobs written here and not yet
   * uploaded laid over it: those of documents the page holds, and documents that exist so far
   * only as such a blob, in key order within the same range and limit.
   */
  laidOverPage(
    collection: string,
    page: AgentDocument[],
    range: PageRange,
    read: (key: string) => AgentDocument | undefined,
  ): AgentDocument[] {
    if (range.confirmed || this.store.blobUploads.empty) return page;
    const { limit } = range;
    const { from, inRange } = keyRange(range.prefix, range.after);
    const pending = this.store.blobUploads.keysFrom(collection, from, limit + 1).filter(inRange);
    if (pending.length === 0) return page;
    const listed = new Map(page.map((d) => [d.key, d]));
    const keys = [...new Set([...listed.keys(), ...pending])].sort();
    const docs: AgentDocument[] = [];
    for (const key of keys) {
      if (docs.length >= limit) break;
      const doc = this.laidOver(collection, key, listed.has(key) ? listed.get(key) : read(key));
      if (doc) docs.push(doc);
    }
    return docs;
  }

  onMessage(message: BlobDownMessage): void {
    switch (message[0]) {
      case 'bneed':
        return this.#sender.onNeed(message);
      case 'bgot':
        return this.#sender.onGot(message);
      case 'bpart':
        return void this.#fetcher.onPart(message);
      case 'bnone':
        return this.#fetcher.onNone(message);
    }
  }

  /** The link came back or dropped: what was asked will not be answered. */
  onLink(): void {
    this.#sender.reset();
    this.#fetcher.reset();
    this.#pump();
  }

  /** Changes applied to the replica: the blobs of `eager` collections are downloaded now. */
  onApplied(changes: readonly Change[]): void {
    for (const change of changes) {
      if (change.op !== 'put' || change.v === undefined || this.delegate.policy(change.c).blobs !== 'eager') continue;
      const blob = blobOf(decodeCbor(change.v));
      if (blob) this.#fetcher.prefetch(change.c, change.k, blob);
    }
  }

  /** What waits to go up and to come down, and what the cache holds. */
  status(): BlobStatus {
    const current = this.#sender.current;
    return {
      uploads: {
        ...this.store.blobUploads.count(),
        ...(current && { current: { collection: current.pending.collection, key: current.pending.key, missingChunks: current.missing } }),
      },
      downloads: this.#fetcher.queued,
      cache: { bytes: this.content.heldBytes, budget: this.options.cacheBytes ?? DEFAULT_BLOB_CACHE_BYTES },
    };
  }

  #pump(): void {
    if (!this.delegate.connected()) return;
    this.#sender.pump();
    this.#fetcher.pump();
  }

  /** A write to the pending blob's document made after it waits in the outbox. */
  #laterWriteThan(pending: PendingBlob): boolean {
    return this.store.outbox.overlayOf(pending.collection, pending.key, 0).some((w) => w.hlc > pending.hlc);
  }

  async #fetchWithin(collection: string, key: string, blob: BlobDescriptor, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new BlobUnavailableError(blob.sha256, `it did not arrive within ${timeoutMs} ms; read it again (the download goes on)`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#fetcher.fetch(collection, key, blob), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #handle(blob: BlobDescriptor, pending: boolean): BlobHandle {
    const { sha256, size, contentType } = blob;
    const chunks = (): AsyncGenerator<Buffer> => this.content.chunks(sha256, size);
    return {
      sha256,
      size,
      contentType,
      pending,
      stream: () => Readable.from(chunks()),
      bytes: async () => {
        const parts: Buffer[] = [];
        for await (const chunk of chunks()) parts.push(chunk);
        return Buffer.concat(parts);
      },
    };
  }

  /** The hub holds the content: the blob's document joins the outbox, with the HLC it was written at, in the transaction that forgets the upload. */
  #queueDocument(pending: PendingBlob): boolean {
    const { collection, key, sha256, size, contentType, hlc } = pending;
    const write = {
      partition: this.delegate.partitionOf(collection),
      collection,
      key,
      op: 'put' as const,
      value: encodeValue({ sha256, size, contentType }),
      hlc: hlc as Hlc,
    };
    let queued = false;
    const result = this.store.outbox.append(
      [write],
      this.clock.last,
      (c) => this.delegate.policy(c),
      (r) => {
        if (typeof r.seqs[0] !== 'number') return;
        this.store.blobUploads.remove(pending.id);
        queued = true;
      },
    );
    this.store.blobUploads.recount();
    if (!queued) {
      this.log.warn({ collection, key, error: String(result.seqs[0]) }, "a blob's document could not join the outbox yet; trying again");
      return false;
    }
    this.delegate.onQueued(collection, result.dropped);
    return true;
  }
}
