import { createHash } from 'node:crypto';
import type pg from 'pg';
import { chunkCount } from '../../shared/blobs.js';
import { BlobChunkError, BlobIncompleteError, BlobMismatchError } from '../../shared/blob-errors.js';
import { NotFoundError, OutpostError, StorageFailedError } from '../../shared/errors.js';
import type { PgPool } from '../store/pg-pool.js';
import { checkChunk, checkHash, checkSize, missingChunks, type ContentInfo, type ContentStore } from '../../content/content-store.js';

/**
 * A PostgreSQL hub's blob content, in its database (`blob_contents`, `blob_chunks`: PostgreSQL
 * migration 12): a chunk is durable once its insert committed. Completing runs in a transaction
 * that holds the content's row, so that a chunk arriving meanwhile waits for it (its insert
 * references the row). An object store behind the same contract is for later.
 */
export class PgContentStore implements ContentStore {
  constructor(private readonly db: PgPool) {}

  async begin(hash: string, size: number): Promise<number[]> {
    checkHash(hash);
    checkSize(hash, size);
    const [row] = await this.db.query<{ size: number; complete: boolean }>(
      `INSERT INTO blob_contents (hash, size, touched_at) VALUES ($1, $2, $3)
       ON CONFLICT (hash) DO UPDATE SET touched_at = excluded.touched_at
       RETURNING size, complete`,
      [hash, size, Date.now()],
      'write to',
    );
    if (row!.size !== size) throw new BlobChunkError(hash, 0, `its upload was begun with ${row!.size} bytes, not ${size}`);
    return row!.complete ? [] : missingChunks(size, await this.#held(this.db.pool, hash));
  }

  async putChunk(hash: string, index: number, bytes: Uint8Array): Promise<void> {
    checkHash(hash);
    await this.#transaction('write to', async (client) => {
      const row = await contentRow(client, hash, 'FOR SHARE');
      if (!row) throw new BlobChunkError(hash, index, 'its upload was not begun; begin it with the content size first');
      checkChunk(hash, row.size, index, bytes.length);
      if (row.complete) return; // held whole already: nothing to add
      await client.query('INSERT INTO blob_chunks (hash, idx, bytes) VALUES ($1, $2, $3) ON CONFLICT (hash, idx) DO NOTHING', [
        hash,
        index,
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      ]);
    });
    // Touched apart from the chunk's transaction: chunks of one content arriving at once must not queue on its row.
    await this.db.query('UPDATE blob_contents SET touched_at = $2 WHERE hash = $1', [hash, Date.now()], 'write to');
  }

  async complete(hash: string): Promise<void> {
    checkHash(hash);
    await this.#transaction('write to', async (client) => {
      const row = await contentRow(client, hash, 'FOR UPDATE');
      if (!row) throw new NotFoundError(`no upload of content ${hash} at the hub; begin it first`);
      if (row.complete) return;
      const missing = missingChunks(row.size, await this.#held(client, hash));
      if (missing.length > 0) throw new BlobIncompleteError(hash, missing);
      // A chunk at a time: content may be far larger than the hub's memory allows at once.
      const sha = createHash('sha256');
      let size = 0;
      for (let i = 0; i < chunkCount(row.size); i++) {
        const { bytes } = (await client.query<{ bytes: Buffer }>('SELECT bytes FROM blob_chunks WHERE hash = $1 AND idx = $2', [hash, i]))
          .rows[0]!;
        sha.update(bytes);
        size += bytes.length;
      }
      const actual = sha.digest('hex');
      if (actual !== hash || size !== row.size) {
        await client.query('DELETE FROM blob_contents WHERE hash = $1', [hash]);
        return new BlobMismatchError(hash, actual !== hash ? `its bytes hash to ${actual}` : `it holds ${size} bytes, not ${row.size}`);
      }
      await client.query('UPDATE blob_contents SET complete = true, touched_at = $2 WHERE hash = $1', [hash, Date.now()]);
      return undefined;
    }).then((mismatch) => {
      // The chunks are dropped in the transaction, which commits; only then is the upload told.
      if (mismatch) throw mismatch;
    });
  }

  async info(hash: string): Promise<ContentInfo | undefined> {
    checkHash(hash);
    const [row] = await this.db.query<{ size: number; complete: boolean }>('SELECT size, complete FROM blob_contents WHERE hash = $1', [
      hash,
    ]);
    return row && { hash, size: row.size, complete: row.complete };
  }

  async readChunk(hash: string, index: number): Promise<Buffer> {
    checkHash(hash);
    const [content] = await this.db.query<{ size: number }>('SELECT size FROM blob_contents WHERE hash = $1 AND complete', [hash]);
    if (!content) throw new NotFoundError(`no complete content ${hash} at the hub`);
    const [row] = await this.db.query<{ bytes: Buffer }>('SELECT bytes FROM blob_chunks WHERE hash = $1 AND idx = $2', [hash, index]);
    if (!row) throw new NotFoundError(`content ${hash} has no chunk ${index} (it has ${chunkCount(content.size)})`);
    return row.bytes;
  }

  async collect(named: (hash: string) => boolean, untouchedSince: number): Promise<string[]> {
    const stale = await this.db.query<{ hash: string }>('SELECT hash FROM blob_contents WHERE touched_at < $1', [untouchedSince]);
    const unnamed = stale.map((r) => r.hash).filter((hash) => !named(hash));
    if (unnamed.length === 0) return [];
    // Touched since it was listed (an upload began again): kept.
    const removed = await this.db.query<{ hash: string }>(
      'DELETE FROM blob_contents WHERE hash = ANY($1) AND touched_at < $2 RETURNING hash',
      [unnamed, untouchedSince],
      'write to',
    );
    return removed.map((r) => r.hash);
  }

  async close(): Promise<void> {
    // The pool is the hub's: it closes it.
  }

  async #held(client: pg.Pool | pg.PoolClient, hash: string): Promise<Set<number>> {
    const rows = await this.db.wrap(
      'read',
      async () => (await client.query<{ idx: number }>('SELECT idx FROM blob_chunks WHERE hash = $1', [hash])).rows,
    );
    return new Set(rows.map((r) => r.idx));
  }

  /** Runs `fn` in a transaction on one connection; a failure rolls back, an Outpost error passing as it is, any other as StorageFailedError. */
  async #transaction<T>(action: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.db.wrap(action, () => this.db.pool.connect());
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error instanceof OutpostError ? error : new StorageFailedError(this.db.where, action, { cause: error });
    } finally {
      client.release();
    }
  }
}

/** A content's row, locked for the transaction under way (`FOR SHARE` to add to it, `FOR UPDATE` to complete it). */
async function contentRow(
  client: pg.PoolClient,
  hash: string,
  lock: 'FOR SHARE' | 'FOR UPDATE',
): Promise<{ size: number; complete: boolean } | undefined> {
  return (
    await client.query<{ size: number; complete: boolean }>(`SELECT size, complete FROM blob_contents WHERE hash = $1 ${lock}`, [hash])
  ).rows[0];
}
