import type { Logger } from 'pino';
import { BlobDamagedError } from '../../shared/blob-errors.js';
import { ErrorCode, NotFoundError } from '../../shared/errors.js';
import { contentMatches } from '../../content/content-transfer.js';
import type { BlobGotMessage, BlobNeedMessage, UpMessage } from '../../shared/messages.js';
import type { FileContentStore } from '../../content/file-content-store.js';
import type { AgentStore } from '../store/agent-store.js';
import type { PendingBlob } from '../store/blob-uploads.js';

/** Chunks sent and not yet acknowledged, at most: all a write published meanwhile waits behind on the link. */
const CHUNK_WINDOW = 2;

export interface BlobSenderDelegate {
  /** Publishes on the `up` topic of a collection's partition; false when not connected. */
  send(collection: string, message: UpMessage): boolean;
  /** Uploading is allowed now (sync windows, and the hub's assignment of partitions is known). */
  mayUpload(): boolean;
  /** Chunks may spend now (the transfer budget allows blobs); asking what the hub lacks, a few bytes, may go regardless. */
  maySendChunks(): boolean;
  /** Writes are on their way (a batch waits for its ack): chunks wait behind them. */
  documentsBusy(): boolean;
  /** The hub holds the content whole: queue the document. False if it could not be queued now (tried again later). */
  onHeld(pending: PendingBlob): boolean;
  /** The hub will not take the content: the write is given up. */
  onRefused(pending: PendingBlob, refusal: { code: string; message: string }): void;
}

interface Upload {
  pending: PendingBlob;
  /** Asked the hub what it lacks (`bhave`), at this time; undefined: ask next. */
  askedAt: number | undefined;
  /** Chunks to send, in order. */
  missing: number[];
  /** Chunks sent and not yet acknowledged, with when they were sent. */
  inFlight: Map<number, number>;
  /** A chunk is being read from the device's store (or the whole content checked). */
  reading: boolean;
  /** The content was checked against its address since this upload (re)started. */
  checked: boolean;
  /** Chunks the hub acknowledged as durable. */
  acked: Set<number>;
}

/**
 * Uploads the content of blobs written on this device (store.blobUploads), oldest first, one at
 * a time: it asks the hub which chunks it lacks (`bhave`), sends those, each answered once
 * durable at the hub (`bgot`), and asks again until the hub says it holds the content whole.
 * Only then does the blob's document join the outbox (`onHeld`). It is the device's lowest
 * lane: at most CHUNK_WINDOW chunks are on the link, and no new one goes while a batch of
 * writes waits for its ack. Anything unclear (a dropped link, a restart, a missing answer)
 * starts again with `bhave`: the hub answers with what it still lacks, so an upload resumes at
 * its first missing chunk.
 */
export class BlobSender {
  #upload: Upload | undefined;
  /** Not before this time (the outbox was full when the document was to be queued). */
  #pausedUntil = 0;

  constructor(
    private readonly store: AgentStore,
    private readonly files: FileContentStore,
    private readonly delegate: BlobSenderDelegate,
    private readonly options: { ackTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  stop(): void {
    this.#upload = undefined;
  }

  /** The blob whose content is being uploaded, and the chunks the hub still lacks (as last told). */
  get current(): { pending: PendingBlob; missing: number } | undefined {
    const upload = this.#upload;
    return upload && { pending: upload.pending, missing: upload.missing.length + upload.inFlight.size };
  }

  /** The link dropped or came back: nothing in flight will be answered; ask again. */
  reset(): void {
    const upload = this.#upload;
    if (!upload) return;
    upload.askedAt = undefined;
    upload.missing = [];
    upload.inFlight.clear();
  }

  pump(): void {
    if (Date.now() < this.#pausedUntil || !this.delegate.mayUpload()) return;
    let upload = this.#upload;
    if (!upload) {
      const pending = this.store.blobUploads.oldest();
      if (!pending) return;
      upload = this.#upload = {
        pending,
        askedAt: undefined,
        missing: [],
        inFlight: new Map(),
        reading: false,
        checked: false,
        acked: new Set(),
      };
    }
    const now = Date.now();
    const oldestSent = Math.min(upload.askedAt ?? Infinity, ...upload.inFlight.values());
    if (now - oldestSent > this.options.ackTimeoutMs) {
      this.log.info({ sha256: upload.pending.sha256 }, 'no answer from the hub about blob content; asking again what it lacks');
      this.reset();
    }
    if (upload.askedAt !== undefined) return; // the hub's answer is awaited
    if (upload.missing.length === 0 && upload.inFlight.size === 0 && !upload.reading) {
      // Checked first: content the device's storage damaged would be refused by the hub, sent
      // again and refused again for good.
      if (!upload.checked) return void this.#check(upload);
      // Nothing named is left to send: ask what the hub lacks now (at first, after a reset, or past the chunks it named).
      const { collection: c, sha256: h, size: n } = upload.pending;
      if (this.delegate.send(c, ['bhave', { c, h, n }])) upload.askedAt = now;
      return;
    }
    void this.#sendChunk(upload);
  }

  onNeed([, need]: BlobNeedMessage): void {
    const upload = this.#upload;
    if (upload?.pending.sha256 !== need.h || upload.askedAt === undefined) return;
    upload.askedAt = undefined;
    if (need.err) {
      this.#upload = undefined;
      this.delegate.onRefused(upload.pending, need.err);
    } else if (need.done) {
      if (!this.delegate.onHeld(upload.pending)) {
        this.#pausedUntil = Date.now() + this.options.ackTimeoutMs;
        this.reset();
        return;
      }
      this.#upload = undefined;
    } else {
      // The hub lacks a chunk it acknowledged: it dropped the content (its bytes did not match
      // their address). Checked again before anything more is sent.
      if (need.miss.some((i) => upload.acked.has(i))) {
        upload.checked = false;
        upload.acked.clear();
        upload.inFlight.clear();
        upload.missing = [];
        this.pump();
        return;
      }
      upload.missing = need.miss.filter((i) => !upload.inFlight.has(i));
    }
    this.pump();
  }

  onGot([, got]: BlobGotMessage): void {
    const upload = this.#upload;
    if (upload?.pending.sha256 !== got.h || !upload.inFlight.delete(got.i)) return;
    upload.acked.add(got.i);
    this.pump();
  }

  /** Reads the whole content against its address; damaged, the write is given up (nothing can repair it). */
  async #check(upload: Upload): Promise<void> {
    upload.reading = true;
    const { sha256, size } = upload.pending;
    // Gone (a chunk's file lost) counts as damaged; any other failure to read is tried again later.
    const matches = await contentMatches(this.files, sha256, size).catch((error: unknown) => {
      if (error instanceof NotFoundError) return false;
      this.log.warn({ err: error, sha256 }, 'could not read the content of a blob written here to check it; trying again');
      return undefined;
    });
    upload.reading = false;
    if (this.#upload !== upload || matches === undefined) return;
    if (matches) {
      upload.checked = true;
      return this.pump();
    }
    this.#upload = undefined;
    this.log.error(
      { sha256 },
      'the content of a blob written here was damaged by the storage before the hub held it; its write is given up',
    );
    const damaged = new BlobDamagedError(sha256, 'it was written here and the hub does not hold it: write it again');
    this.delegate.onRefused(upload.pending, { code: damaged.code, message: damaged.message });
  }

  /** Sends the next missing chunk if the window and the writes ahead allow; once none is left, asks again. */
  async #sendChunk(upload: Upload): Promise<void> {
    if (upload.reading || upload.inFlight.size >= CHUNK_WINDOW || this.delegate.documentsBusy() || !this.delegate.maySendChunks()) return;
    const index = upload.missing[0];
    if (index === undefined) return; // the last acknowledgement asks what is left (pump)
    upload.reading = true;
    let d: Buffer;
    try {
      d = await this.files.readChunk(upload.pending.sha256, index);
    } catch (error) {
      upload.reading = false;
      if (this.#upload !== upload) return;
      this.#upload = undefined;
      this.log.error(
        { err: error, sha256: upload.pending.sha256 },
        'the content of a blob written here can no longer be read; its write is given up',
      );
      this.delegate.onRefused(upload.pending, {
        code: ErrorCode.BLOB_UNAVAILABLE,
        message: `its content can no longer be read on this device: ${(error as Error).message}`,
      });
      return;
    }
    upload.reading = false;
    if (this.#upload !== upload || upload.missing[0] !== index) return; // reset meanwhile
    const { collection: c, sha256: h, size: n } = upload.pending;
    if (!this.delegate.send(c, ['bchunk', { c, h, n, i: index, d }])) return;
    upload.missing.shift();
    upload.inFlight.set(index, Date.now());
    void this.#sendChunk(upload);
  }
}
