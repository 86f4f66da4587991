import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOB_CHUNK_BYTES, chunkCount, chunkLength } from '../shared/blobs.js';
import { BlobTooLargeError } from '../shared/blob-errors.js';
import type { ContentStore } from './content-store.js';

/**
 * Content streamed in (a firmware image to the hub's HTTP API, a device's putBlob), stored whole
 * in the content store: its address is only known at its end. A store of files takes it as it
 * comes (FileContentStore.storeStream: each byte written once); any other is given it spooled to
 * a temporary file (in the store's spool directory) while it is hashed and counted, then chunk by
 * chunk, and completed (checked again against its address by the store). A body over `maxBytes`
 * stops being read at once and leaves nothing behind. Content the store already holds whole is
 * not stored again.
 */
export async function storeStreamed(
  content: ContentStore,
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
): Promise<{ sha256: string; size: number }> {
  if (content.storeStream) return content.storeStream(body, maxBytes);
  const spoolRoot = content.spoolDir ?? tmpdir();
  await mkdir(spoolRoot, { recursive: true });
  const dir = await mkdtemp(join(spoolRoot, 'blob-'));
  try {
    const spool = join(dir, 'content');
    const sha = createHash('sha256');
    let size = 0;
    const file = await open(spool, 'w');
    try {
      for await (const piece of body) {
        size += piece.length;
        if (size > maxBytes) throw new BlobTooLargeError(maxBytes);
        sha.update(piece);
        await file.write(piece);
      }
    } finally {
      await file.close();
    }
    const sha256 = sha.digest('hex');
    const missing = await content.begin(sha256, size);
    const spooled = await open(spool, 'r');
    try {
      for (const index of missing) {
        const chunk = Buffer.alloc(chunkLength(size, index));
        await spooled.read(chunk, 0, chunk.length, index * BLOB_CHUNK_BYTES);
        await content.putChunk(sha256, index, chunk);
      }
    } finally {
      await spooled.close();
    }
    // Also when nothing was missing: every chunk may be held by an upload never completed.
    await content.complete(sha256);
    return { sha256, size };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The chunks of complete content, in order, read as they are sent. */
export async function* contentChunks(content: ContentStore, sha256: string, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < chunkCount(size); i++) yield await content.readChunk(sha256, i);
}

/** Whether complete content still hashes to its address, read a chunk at a time. */
export async function contentMatches(content: ContentStore, sha256: string, size: number): Promise<boolean> {
  const sha = createHash('sha256');
  for await (const chunk of contentChunks(content, sha256, size)) sha.update(chunk);
  return sha.digest('hex') === sha256;
}
