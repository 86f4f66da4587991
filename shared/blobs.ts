import { createHash } from 'node:crypto';

/**
 * Blob content, as hub and agents address and cut it. A blob is a document (its hash, size and
 * content type) plus content kept apart from the log: the content is addressed by the SHA-256
 * of its bytes and travels and rests in chunks, each acknowledged and stored on its own, so that
 * a transfer resumes at the first chunk missing and one store holds a content once however many
 * documents name it.
 */

/** Every chunk but the last is this long; the last holds the rest (a content of 0 bytes has one empty chunk). */
export const BLOB_CHUNK_BYTES = 256 * 1024;

/** A content's address: the lowercase hex SHA-256 of its bytes. */
export const CONTENT_HASH = /^[0-9a-f]{64}$/;

/** The address of these bytes. */
export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** How many chunks a content of `size` bytes travels in. */
export function chunkCount(size: number): number {
  return Math.max(1, Math.ceil(size / BLOB_CHUNK_BYTES));
}

/** How many bytes chunk `index` of a content of `size` bytes holds. */
export function chunkLength(size: number, index: number): number {
  return Math.min(BLOB_CHUNK_BYTES, size - index * BLOB_CHUNK_BYTES);
}

/** The largest content one blob may have unless configured otherwise. */
export const DEFAULT_MAX_BLOB_BYTES = 1024 ** 3;

/**
 * A blob's document: what replicates, conflicts and is scoped like any other document. Its
 * content is found by `sha256` and never travels in the log or a change set.
 */
export interface BlobDescriptor {
  sha256: string;
  size: number;
  contentType: string;
}

/** The blob a document's value describes, or undefined if it describes none. */
export function blobOf(value: unknown): BlobDescriptor | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { sha256, size, contentType } = value as Record<string, unknown>;
  if (typeof sha256 !== 'string' || !CONTENT_HASH.test(sha256)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  if (typeof contentType !== 'string') return undefined;
  return { sha256, size, contentType };
}
