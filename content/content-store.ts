import { BLOB_CHUNK_BYTES, chunkCount, chunkLength, CONTENT_HASH } from '../shared/blobs.js';
import { BlobChunkError } from '../shared/blob-errors.js';
import { InvalidMessageError } from '../shared/errors.js';

/** What a store holds of one content. */
export interface ContentInfo {
  hash: string;
  size: number;
  /** Every chunk is held and the whole was checked against its address: readers may see it. */
  complete: boolean;
}

/**
 * Where the hub keeps blob content: content-addressed (SHA-256), in chunks, each durable before
 * it is acknowledged, apart from the log and the documents that name it. One contract
 * (test/hub/content-store-contract.ts) for every implementation: files under the data directory
 * for a SQLite hub (FileContentStore), `bytea` chunks in the database or objects in an
 * S3-compatible bucket for a PostgreSQL hub (PgContentStore).
 *
 *   begin(hash, size) ─► putChunk(i) … (any order, any number of times) ─► complete ─► readChunk
 *                                                         └─ bytes ≠ address: chunks dropped
 *
 * A content is stored once however many uploads of it run: `begin` of a content already held
 * (complete or not) lacks only what it lacks.
 */
export interface ContentStore {
  /**
   * Where content streamed in waits while its address is computed (shared/content/content-transfer.ts), on
   * the disk that will hold it; undefined: the system's temporary directory.
   */
  readonly spoolDir?: string;
  /**
   * Stores streamed content whole, each byte written once, when the store can (files: see
   * FileContentStore); `storeStreamed` spools it first otherwise.
   */
  storeStream?(body: AsyncIterable<Uint8Array>, maxBytes: number): Promise<{ sha256: string; size: number }>;
  /**
   * Announces content of `size` bytes at `hash` (again, after a dropped link or a restart):
   * the indexes of the chunks still missing, none if it is complete. A size other than the one
   * the content was begun with is refused (BlobChunkError).
   */
  begin(hash: string, size: number): Promise<number[]>;
  /** Stores chunk `index` durably: it survives a crash once this resolves. A chunk held already is not written again. */
  putChunk(hash: string, index: number, bytes: Uint8Array): Promise<void>;
  /**
   * Checks the whole content (its SHA-256 and size) once every chunk is held, and makes it
   * readable. BlobIncompleteError while chunks are missing; BlobMismatchError (and the chunks
   * dropped) if the bytes are not what the address says.
   */
  complete(hash: string): Promise<void>;
  /** What is held of `hash`, or undefined if nothing is. */
  info(hash: string): Promise<ContentInfo | undefined>;
  /** Chunk `index` of complete content; NotFoundError if the content is not complete here. */
  readChunk(hash: string, index: number): Promise<Buffer>;
  /**
   * Removes what no document names: content `named` says no to, complete or not, last
   * touched (begun, a chunk stored, completed) before `untouchedSince` (ms epoch), so that an
   * upload under way, whose document does not exist yet, is not collected. The hashes removed.
   */
  collect(named: (hash: string) => boolean, untouchedSince: number): Promise<string[]>;
  /** The content held whole (its address and size), in no set order: what a scrub reads (content/content-scrub.ts). */
  listComplete(): AsyncIterable<{ hash: string; size: number }>;
  /** Removes content whatever names it (a scrub dropping damaged content); false if nothing of it was held. */
  remove(hash: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Refuses an address that is not a lowercase hex SHA-256 (it would name a file). */
export function checkHash(hash: string): void {
  if (!CONTENT_HASH.test(hash)) {
    throw new InvalidMessageError('hash', `a blob content address is a lowercase hex SHA-256, not ${JSON.stringify(hash).slice(0, 80)}`);
  }
}

/** Refuses a size that is not a whole number of bytes. */
export function checkSize(hash: string, size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new BlobChunkError(hash, 0, `size ${size} is not a whole number of bytes`);
}

/** Refuses a chunk whose index or length does not fit content of `size` bytes. */
export function checkChunk(hash: string, size: number, index: number, length: number): void {
  const count = chunkCount(size);
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new BlobChunkError(hash, index, `content of ${size} bytes has chunks 0 to ${count - 1}`);
  }
  const expected = chunkLength(size, index);
  if (length !== expected) {
    throw new BlobChunkError(
      hash,
      index,
      `it holds ${length} bytes where ${expected} belong (chunks are ${BLOB_CHUNK_BYTES} bytes, the last the rest)`,
    );
  }
}

/** The indexes of content of `size` bytes that `held` lacks. */
export function missingChunks(size: number, held: ReadonlySet<number>): number[] {
  return Array.from({ length: chunkCount(size) }, (_, i) => i).filter((i) => !held.has(i));
}
