import { createHash } from 'node:crypto';
import type pg from 'pg';
import { chunkCount } from '../../shared/blobs.js';
import { BlobChunkError, BlobIncompleteError, BlobMismatchError } from '../../shared/blob-errors.js';
import { ConfigError, NotFoundError } from '../../shared/errors.js';
import type { PgPool } from '../store/pg-pool.js';
import { checkChunk, checkHash, checkSize, missingChunks, type ContentInfo, type ContentStore } from '../../content/content-store.js';
import { ObjectMissingError, type ObjectChunks } from './object-chunks.js';
import { contentRow, inTransaction } from './pg-transaction.js';

/** Chunks the completion check reads ahead while it hashes: an object store answers each after a round trip. */
const READ_AHEAD = 4;

/**
 * A PostgreSQL hub's blob content. Which content it holds, and how complete, is always in the
 * database (`blob_contents`, PostgreSQL migration 12), where a group commit checks it; the
 * chunks are `bytea` rows beside it (`blob_chunks`), or, given `objects`, objects of an
 * S3-compatible bucket (ObjectChunks). Chunks written before a hub was given a bucket stay
 * readable in the database. A chunk is durable once its row (or its object's name) committed.
 * Completing runs in a transaction that holds the content's row, so that a chunk arriving
 * meanwhile waits for it (it references the row).
 */
export class PgContentStore implements ContentStore {
  constructor(
    private readonly db: PgPool,
    private readonly objects?: ObjectChunks,
  ) {}

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
    if (this.objects) await this.#putObject(hash, index, bytes);
    else await this.#putRow(hash, index, bytes);
    // Touched apart from the chunk's transaction: chunks of one content arriving at once must not queue on its row.
    await this.db.query('UPDATE blob_contents SET touched_at = $2 WHERE hash = $1', [hash, Date.now()], 'write to');
  }

  async #putRow(hash: string, index: number, bytes: Uint8Array): Promise<void> {
    await inTransaction(this.db, 'write to', async (client) => {
      const row = await contentRow(client, hash, 'FOR SHARE');
      if (!row) throw notBegun(hash, index);
      checkChunk(hash, row.size, index, bytes.length);
      if (row.complete) return; // held whole already: nothing to add
      await client.query('INSERT INTO blob_chunks (hash, idx, bytes) VALUES ($1, $2, $3) ON CONFLICT (hash, idx) DO NOTHING', [
        hash,
        index,
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      ]);
    });
  }

  async #putObject(hash: string, index: number, bytes: Uint8Array): Promise<void> {
    const [row] = await this.db.query<{ size: number; complete: boolean; held: boolean }>(
      `SELECT size, complete,
              EXISTS (SELECT 1 FROM blob_chunk_objects WHERE hash = $1 AND idx = $2)
              OR EXISTS (SELECT 1 FROM blob_chunks WHERE hash = $1 AND idx = $2) AS held
         FROM blob_contents WHERE hash = $1`,
      [hash, index],
    );
    if (!row) throw notBegun(hash, index);
    checkChunk(hash, row.size, index, bytes.length);
    if (row.complete || row.held) return; // held already: not written again
    if ((await this.objects!.store(hash, index, bytes)) === 'gone') throw notBegun(hash, index);
  }

  async complete(hash: string): Promise<void> {
    checkHash(hash);
    const mismatch = await inTransaction(this.db, 'write to', async (client) => {
      const row = await contentRow(client, hash, 'FOR UPDATE');
      if (!row) throw new NotFoundError(`no upload of content ${hash} at the hub; begin it first`);
      if (row.complete) return undefined;
      const missing = missingChunks(row.size, await this.#held(client, hash));
      if (missing.length > 0) throw new BlobIncompleteError(hash, missing);
      // A chunk at a time from the database, a few at once from a bucket (each a round trip):
      // content may be far larger than the hub's memory allows at once.
      const sha = createHash('sha256');
      let size = 0;
      const count = chunkCount(row.size);
      const keys = await this.#objectKeys(client, hash);
      const ahead = new Map<number, Promise<Buffer>>();
      const readAhead = (i: number): void => {
        const key = keys.get(i);
        if (i >= count || key === undefined) return;
        const read = this.#bucketFor(hash).read(hash, i, key);
        read.catch(() => undefined); // awaited in turn; a read ahead of a failure must not go unhandled
        ahead.set(i, read);
      };
      for (let i = 0; i < READ_AHEAD; i++) readAhead(i);
      for (let i = 0; i < count; i++) {
        readAhead(i + READ_AHEAD);
        const bytes = await (ahead.get(i) ?? chunkRow(client, hash, i)).catch((error: unknown) => {
          if (error instanceof ObjectMissingError) return error;
          throw error;
        });
        if (bytes instanceof ObjectMissingError) return bytes;
        ahead.delete(i);
        sha.update(bytes);
        size += bytes.length;
      }
      const actual = sha.digest('hex');
      if (actual !== hash || size !== row.size) {
        await dropContent(client, [hash]);
        return new BlobMismatchError(hash, actual !== hash ? `its bytes hash to ${actual}` : `it holds ${size} bytes, not ${row.size}`);
      }
      await client.query('UPDATE blob_contents SET complete = true, touched_at = $2 WHERE hash = $1', [hash, Date.now()]);
      return undefined;
    });
    if (mismatch instanceof ObjectMissingError) {
      // The bucket lost a chunk: forgotten, it is asked for again like any other missing one.
      await this.objects!.forget(hash, mismatch.index, mismatch.key);
      throw new BlobIncompleteError(hash, [mismatch.index]);
    }
    // The chunks are dropped in the transaction, which commits; only then is the upload told.
    if (mismatch) {
      await this.objects?.removeListed(1).catch(() => undefined); // else the collector removes them
      throw mismatch;
    }
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
    const key = await this.objects?.keyOf(hash, index);
    if (key !== undefined) {
      return this.objects!.read(hash, index, key).catch(async (error: unknown) => {
        // Lost from the bucket: the content reads as incomplete from now on, until an upload of it repairs it.
        if (error instanceof ObjectMissingError) await this.objects!.forget(hash, index, key);
        throw error;
      });
    }
    const [row] = await this.db.query<{ bytes: Buffer }>('SELECT bytes FROM blob_chunks WHERE hash = $1 AND idx = $2', [hash, index]);
    if (row) return row.bytes;
    if (!this.objects && (await this.db.query('SELECT 1 FROM blob_chunk_objects WHERE hash = $1 LIMIT 1', [hash])).length > 0) {
      throw noBucket(hash);
    }
    throw new NotFoundError(`content ${hash} has no chunk ${index} (it has ${chunkCount(content.size)})`);
  }

  async collect(named: (hash: string) => boolean, untouchedSince: number): Promise<string[]> {
    // Objects whose removal a crash interrupted, and writes a crash left unnamed once as old as
    // the grace: a failure to reach the bucket does not hold up collecting (retried next time).
    const failures: unknown[] = [];
    await this.objects?.removeListed(untouchedSince).catch((error: unknown) => failures.push(error));
    const stale = await this.db.query<{ hash: string }>('SELECT hash FROM blob_contents WHERE touched_at < $1', [untouchedSince]);
    const unnamed = stale.map((r) => r.hash).filter((hash) => !named(hash));
    const removed = unnamed.length === 0 ? [] : await this.#removeRows(unnamed, untouchedSince);
    await this.objects?.removeListed(1).catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw failures[0]; // what was collected stays collected; its objects stay listed
    return removed;
  }

  async *listComplete(): AsyncGenerator<{ hash: string; size: number }> {
    let after = '';
    for (;;) {
      const page = await this.db.query<{ hash: string; size: number }>(
        'SELECT hash, size FROM blob_contents WHERE complete AND hash > $1 ORDER BY hash LIMIT 500',
        [after],
      );
      yield* page;
      if (page.length < 500) return;
      after = page.at(-1)!.hash;
    }
  }

  async remove(hash: string): Promise<boolean> {
    checkHash(hash);
    const removed = await this.#removeRows([hash], Number.MAX_SAFE_INTEGER);
    await this.objects?.removeListed(1);
    return removed.length > 0;
  }

  /**
   * Removes the rows of `hashes` still untouched since `untouchedSince` (an upload begun again
   * meanwhile keeps its content), listing their objects for removal, in one transaction. The
   * rows are locked first: a chunk being named holds its content's row, so it is named before
   * this goes on, and each statement after the lock sees it, so its object is listed with the rest.
   */
  #removeRows(hashes: string[], untouchedSince: number): Promise<string[]> {
    return inTransaction(this.db, 'write to', async (client) => {
      const { rows } = await client.query<{ hash: string }>(
        'SELECT hash FROM blob_contents WHERE hash = ANY($1) AND touched_at < $2 FOR UPDATE',
        [hashes, untouchedSince],
      );
      const gone = rows.map((r) => r.hash);
      await dropContent(client, gone);
      return gone;
    });
  }

  async close(): Promise<void> {
    // The pool is the hub's: it closes it.
    this.objects?.bucket.close();
  }

  /** The chunks held, in the database or named in the bucket. */
  async #held(client: pg.Pool | pg.PoolClient, hash: string): Promise<Set<number>> {
    const rows = await this.db.wrap(
      'read',
      async () =>
        (
          await client.query<{ idx: number }>(
            'SELECT idx FROM blob_chunks WHERE hash = $1 UNION ALL SELECT idx FROM blob_chunk_objects WHERE hash = $1',
            [hash],
          )
        ).rows,
    );
    return new Set(rows.map((r) => r.idx));
  }

  /** Which object holds each of the content's chunks held in a bucket. */
  async #objectKeys(client: pg.PoolClient, hash: string): Promise<Map<number, string>> {
    const { rows } = await client.query<{ idx: number; object_key: string }>(
      'SELECT idx, object_key FROM blob_chunk_objects WHERE hash = $1',
      [hash],
    );
    return new Map(rows.map((r) => [r.idx, r.object_key]));
  }

  #bucketFor(hash: string): ObjectChunks {
    if (!this.objects) throw noBucket(hash);
    return this.objects;
  }
}

/** Deletes contents' rows (their chunks' with them), their objects listed for removal in the same transaction. */
async function dropContent(client: pg.PoolClient, hashes: string[]): Promise<void> {
  await client.query(
    `INSERT INTO blob_object_removals (object_key, since)
     SELECT object_key, 0 FROM blob_chunk_objects WHERE hash = ANY($1) ON CONFLICT (object_key) DO NOTHING`,
    [hashes],
  );
  await client.query('DELETE FROM blob_contents WHERE hash = ANY($1)', [hashes]);
}

/** A chunk held in the database, read within the completing transaction. */
async function chunkRow(client: pg.PoolClient, hash: string, index: number): Promise<Buffer> {
  const { rows } = await client.query<{ bytes: Buffer }>('SELECT bytes FROM blob_chunks WHERE hash = $1 AND idx = $2', [hash, index]);
  if (!rows[0]) throw new NotFoundError(`content ${hash} has no chunk ${index}`);
  return rows[0].bytes;
}

function notBegun(hash: string, index: number): BlobChunkError {
  return new BlobChunkError(hash, index, 'its upload was not begun; begin it with the content size first');
}

/** Content held in a bucket, read by a hub given none: said plainly, never as missing. */
function noBucket(hash: string): ConfigError {
  return new ConfigError(
    `content ${hash} is held in an object store, and this hub was started without one: start it with its --blob-store`,
  );
}
