import type { Logger } from 'pino';
import { blobOf, chunkCount, DEFAULT_MAX_BLOB_BYTES } from '../shared/blobs.js';
import { BlobIncompleteError, BlobMismatchError, BlobRefusedError, BlobTooLargeError } from '../shared/blob-errors.js';
import type { BlobChunkMessage, BlobDownMessage, BlobGetMessage, BlobHaveMessage, BlobPartMessage } from '../shared/blob-messages.js';
import { MAX_CHUNKS_NAMED } from '../shared/blob-messages.js';
import type { ContentStore } from '../content/content-store.js';
import { ErrorCode, OutpostError } from '../shared/errors.js';
import type { HybridClock } from '../shared/hlc.js';
import type { StoredDocument } from './store/hub-store.js';

/** A device's blob messages waiting to be handled, at most: more are dropped, and the device sends them again when no answer comes. */
const MAX_QUEUED_PER_AGENT = 8;
/** Fanned out, requests for a chunk are gathered this long, then it is published once for all of them. */
const FAN_OUT_GATHER_MS = 50;
/** A device that asked for chunks of a content is sent the content's chunks for this long after its last request. */
const WANTED_FOR_MS = 15_000;
/**
 * A chunk published for a device this recently is not published again when it asks: its request
 * crossed the chunk (devices in step ask for what another's request brought them a moment
 * later). One lost asks again after its own timeout, longer than this.
 */
const CROSSED_WITHIN_MS = 1_000;

type BlobUpMessage = BlobHaveMessage | BlobChunkMessage | BlobGetMessage;

/** What blob traffic may touch. */
export interface BlobRules {
  /** The collection belongs to this hub's partition. */
  owns(collection: string): boolean;
  /** The collection is declared to hold blobs (`blobs: eager | lazy`). */
  holdsBlobs(collection: string): boolean;
  mayWrite(agentId: string, collection: string): boolean;
  /** The device may read this document (its collection, and for a scoped one a bucket it holds). */
  mayRead(agentId: string, collection: string, document: StoredDocument): boolean;
}

export interface BlobIntakeDeps {
  content: ContentStore;
  document(collection: string, key: string): Promise<StoredDocument | undefined>;
  clock: HybridClock;
  rules: BlobRules;
  /** Default DEFAULT_MAX_BLOB_BYTES. */
  maxBlobBytes: number | undefined;
  sendDown(agentId: string, message: BlobDownMessage): void;
  /** Publishes a chunk once on the content's topic, for every device fetching it (see HubCoreOptions.fanOutBlobs); absent: chunks go down to each device. */
  fanOut?: (hash: string, message: BlobPartMessage) => void;
  /** A device's message dropped: it had too many waiting. */
  dropped(agentId: string): void;
  log: Logger;
}

/**
 * Blob content over MQTT, at the hub (shared/blob-messages.ts): takes the chunks devices upload
 * into the content store, answering each once it is durable, and says which chunks a content
 * still lacks (`bneed`); serves chunks of content that a document the device may read names.
 * Each device's messages are handled in turn, apart from the group commit: a chunk being
 * fsynced never holds up a batch. A device with too many waiting loses the newest; it asks
 * again when no answer comes.
 */
export class BlobIntake {
  readonly #queues = new Map<string, BlobUpMessage[]>();
  #stopped = false;
  /** Fanned out: the devices fetching each content, until when. */
  readonly #wanted = new Map<string, Map<string, number>>();
  /** Fanned out: chunks asked for and about to be published, by content, with its size. */
  readonly #gathering = new Map<string, { size: number; indexes: Set<number> }>();
  /** Fanned out: chunks just published (`hash:index`), when, and the devices they went to. */
  readonly #published = new Map<string, { at: number; to: ReadonlySet<string> }>();

  constructor(private readonly deps: BlobIntakeDeps) {}

  submit(agentId: string, message: BlobUpMessage): void {
    if (this.#stopped) return;
    let queue = this.#queues.get(agentId);
    if (!queue) {
      this.#queues.set(agentId, (queue = [message]));
      void this.#drain(agentId, queue);
      return;
    }
    if (queue.length >= MAX_QUEUED_PER_AGENT) return this.deps.dropped(agentId);
    queue.push(message);
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Whether a device is fetching content `hash` now (fanned out: the broker forwards its chunks to it). */
  wants(agentId: string, hash: string): boolean {
    return (this.#wanted.get(hash)?.get(agentId) ?? 0) > Date.now();
  }

  async #drain(agentId: string, queue: BlobUpMessage[]): Promise<void> {
    while (queue.length > 0 && !this.#stopped) {
      const message = queue[0]!;
      try {
        await this.#handle(agentId, message);
      } catch (error) {
        this.deps.log.error({ err: error, agentId, type: message[0] }, 'could not handle a blob message; the device asks again');
      }
      queue.shift();
    }
    this.#queues.delete(agentId);
  }

  #handle(agentId: string, message: BlobUpMessage): Promise<void> {
    switch (message[0]) {
      case 'bhave':
        return this.#have(agentId, message[1]);
      case 'bchunk':
        return this.#chunk(agentId, message[1]);
      case 'bget':
        return this.#get(agentId, message[1]);
    }
  }

  /** Why this device may not upload content of `n` bytes for `c`, if it may not. */
  #uploadRefusal(agentId: string, c: string, n: number): OutpostError | undefined {
    const { rules } = this.deps;
    if (!rules.owns(c) || !rules.holdsBlobs(c))
      return new BlobRefusedError(c, 'the collection is not declared to hold blobs (`blobs: eager | lazy`) here');
    if (!rules.mayWrite(agentId, c)) return new BlobRefusedError(c, 'this device may not write it');
    const max = this.deps.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES;
    if (n > max) return new BlobTooLargeError(max);
    return undefined;
  }

  async #have(agentId: string, { c, h, n }: BlobHaveMessage[1]): Promise<void> {
    const refusal = this.#uploadRefusal(agentId, c, n);
    if (refusal) return this.#refuse(agentId, h, refusal);
    const { content } = this.deps;
    try {
      let missing = await content.begin(h, n);
      if (missing.length === 0) {
        try {
          await content.complete(h); // every chunk held: checked against the address once, then readable
        } catch (error) {
          // Dropped (its bytes did not match), or a chunk lost where it was kept: asked for again.
          if (!(error instanceof BlobMismatchError) && !(error instanceof BlobIncompleteError)) throw error;
          this.deps.log.warn(
            { agentId, hash: h, err: error },
            'blob content held at the hub could not be completed; what it lacks is asked for again',
          );
          missing = await content.begin(h, n);
        }
      }
      this.#send(agentId, [
        'bneed',
        { hlc: '', h, done: missing.length === 0, miss: missing.slice(0, MAX_CHUNKS_NAMED), left: missing.length },
      ]);
    } catch (error) {
      if (error instanceof OutpostError && error.code === ErrorCode.BLOB_INVALID_CHUNK) return this.#refuse(agentId, h, error);
      throw error;
    }
  }

  async #chunk(agentId: string, { c, h, n, i, d }: BlobChunkMessage[1]): Promise<void> {
    const refusal = this.#uploadRefusal(agentId, c, n);
    if (refusal) return this.#refuse(agentId, h, refusal);
    const { content } = this.deps;
    try {
      // The upload may have been begun before a restart, or collected since: begun again, it lacks what it lacks.
      if ((await content.info(h)) === undefined) await content.begin(h, n);
      await content.putChunk(h, i, d);
    } catch (error) {
      if (error instanceof OutpostError && error.code === ErrorCode.BLOB_INVALID_CHUNK) return this.#refuse(agentId, h, error);
      throw error;
    }
    this.#send(agentId, ['bgot', { hlc: '', h, i }]);
  }

  async #get(agentId: string, { c, k, h, i }: BlobGetMessage[1]): Promise<void> {
    const none = (code: string, message: string): void => this.#send(agentId, ['bnone', { hlc: '', h, code, message }]);
    const document = this.deps.rules.owns(c) ? await this.deps.document(c, k) : undefined;
    if (!document || document.deleted || !this.deps.rules.mayRead(agentId, c, document)) {
      return none(ErrorCode.BLOB_REFUSED, `no document ${c}/${k} this device may read at this hub`);
    }
    const blob = blobOf(document.value);
    if (blob?.sha256 !== h) return none(ErrorCode.NOT_FOUND, `document ${c}/${k} does not name content ${h} now`);
    const info = await this.deps.content.info(h);
    if (!info?.complete || info.size !== blob.size) return none(ErrorCode.BLOB_UNAVAILABLE, `the hub does not hold content ${h} whole`);
    const beyond = i.find((index) => index >= chunkCount(blob.size));
    if (beyond !== undefined) return none(ErrorCode.BLOB_INVALID_CHUNK, `content ${h} has ${chunkCount(blob.size)} chunks`);
    if (this.deps.fanOut) return this.#gather(agentId, h, blob.size, i);
    for (const index of i) {
      const d = await this.deps.content.readChunk(h, index);
      this.#send(agentId, ['bpart', { hlc: '', h, n: blob.size, i: index, d }]);
    }
  }

  /**
   * Fanned out: the device is sent the content's chunks for a while, and the chunks it asked for
   * are published once, after FAN_OUT_GATHER_MS, for it and every other device asking meanwhile
   * (devices fetching the same firmware ask in step). A device subscribes before it asks, so
   * none misses a chunk published for its request.
   */
  #gather(agentId: string, h: string, size: number, indexes: readonly number[]): void {
    let wanted = this.#wanted.get(h);
    if (!wanted) this.#wanted.set(h, (wanted = new Map<string, number>()));
    wanted.set(agentId, Date.now() + WANTED_FOR_MS);
    const now = Date.now();
    const wanting = indexes.filter((index) => {
      const published = this.#published.get(`${h}:${index}`);
      return !published || now - published.at > CROSSED_WITHIN_MS || !published.to.has(agentId);
    });
    if (wanting.length === 0) return;
    let gathering = this.#gathering.get(h);
    if (!gathering) {
      this.#gathering.set(h, (gathering = { size, indexes: new Set() }));
      setTimeout(() => void this.#publish(h), FAN_OUT_GATHER_MS).unref?.();
    }
    for (const index of wanting) gathering.indexes.add(index);
  }

  async #publish(h: string): Promise<void> {
    const gathering = this.#gathering.get(h);
    this.#gathering.delete(h);
    if (!gathering || this.#stopped) return;
    const now = Date.now();
    for (const [hash, wanted] of this.#wanted) {
      for (const [agentId, until] of wanted) if (until <= now) wanted.delete(agentId);
      if (wanted.size === 0) this.#wanted.delete(hash);
    }
    for (const [chunk, { at }] of this.#published) if (now - at > CROSSED_WITHIN_MS) this.#published.delete(chunk);
    const to = new Set(this.#wanted.get(h)?.keys());
    try {
      for (const index of [...gathering.indexes].sort((a, b) => a - b)) {
        const d = await this.deps.content.readChunk(h, index);
        this.deps.fanOut!(h, ['bpart', { hlc: this.deps.clock.tick(), h, n: gathering.size, i: index, d }]);
        this.#published.set(`${h}:${index}`, { at: Date.now(), to });
      }
    } catch (error) {
      this.deps.log.error({ err: error, hash: h }, 'could not publish blob chunks; the devices ask again');
    }
  }

  #refuse(agentId: string, h: string, error: OutpostError): void {
    this.deps.log.warn({ agentId, hash: h, code: error.code }, error.message);
    this.#send(agentId, [
      'bneed',
      { hlc: '', h, done: false, miss: [], left: 0, err: { code: error.code, message: error.message.slice(0, 1024) } },
    ]);
  }

  /** Stamps the hub's clock (its epoch is stamped on the way out, like every message). */
  #send(agentId: string, message: BlobDownMessage): void {
    message[1].hlc = this.deps.clock.tick();
    this.deps.sendDown(agentId, message);
  }
}
