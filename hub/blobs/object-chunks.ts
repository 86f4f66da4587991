import { randomBytes } from 'node:crypto';
import { NotFoundError } from '../../shared/errors.js';
import type { PgPool } from '../store/pg-pool.js';
import { contentRow, inTransaction } from './pg-transaction.js';
import { ObjectStoreFailedError, type S3Bucket } from './s3-bucket.js';

/** A chunk named in the database whose object the bucket does not have. */
export class ObjectMissingError extends NotFoundError {
  constructor(
    readonly hash: string,
    readonly index: number,
    readonly key: string,
    where: string,
  ) {
    super(`chunk ${index} of content ${hash} is missing from ${where}; upload the content again to repair it`);
  }
}

/** What became of a chunk written to the object store (see ObjectChunks.store). */
export type ObjectOutcome = 'named' | 'unneeded' | 'gone';

/**
 * Chunks of blob content as objects of a bucket, named in PostgreSQL (`blob_chunk_objects`,
 * migration 13), for PgContentStore. Each write goes to a key of its own, so that an object is
 * never overwritten, and no object is removed while a row names it:
 *
 *   listed for removal (since = now) ─► PUT ─► named, struck off the list (one transaction)
 *
 * An object a crash left after its PUT stays listed, and the collector removes it once it is as
 * old as the grace for uploads. Removing claims a listed key first (`since` = -1), so that a
 * slow upload cannot name an object being removed; a removal a crash interrupted is redone.
 */
export class ObjectChunks {
  constructor(
    private readonly db: PgPool,
    readonly bucket: S3Bucket,
  ) {}

  /**
   * Writes chunk `index` of `hash` as a new object and names it, unless the content is complete
   * meanwhile or another write of that chunk was named first ('unneeded': the object goes), or the
   * content was collected meanwhile ('gone').
   */
  async store(hash: string, index: number, bytes: Uint8Array): Promise<ObjectOutcome> {
    const key = `${this.bucket.prefix}${hash}/${index}.${randomBytes(8).toString('hex')}`;
    await this.db.query('INSERT INTO blob_object_removals (object_key, since) VALUES ($1, $2)', [key, Date.now()], 'write to');
    await this.bucket.put(key, bytes);
    const outcome = await inTransaction(this.db, 'write to', async (client): Promise<ObjectOutcome> => {
      const row = await contentRow(client, hash, 'FOR SHARE');
      const named =
        row !== undefined &&
        !row.complete &&
        (
          await client.query('INSERT INTO blob_chunk_objects (hash, idx, object_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
            hash,
            index,
            key,
          ])
        ).rowCount === 1;
      // Named: struck off the list; not needed: listed for removal at once.
      const listed = named
        ? await client.query('DELETE FROM blob_object_removals WHERE object_key = $1 AND since >= 0', [key])
        : await client.query('UPDATE blob_object_removals SET since = 0 WHERE object_key = $1 AND since >= 0', [key]);
      if (named && listed.rowCount === 0) {
        // Its write outlasted the grace for uploads and the collector is removing it: the naming
        // rolls back, and the chunk is to be sent again.
        throw new ObjectStoreFailedError(this.bucket.where, 'write to', {
          cause: new Error(`chunk ${index} of ${hash} took too long to store`),
        });
      }
      return named ? 'named' : row ? 'unneeded' : 'gone';
    });
    if (outcome !== 'named') await this.removeListed(1).catch(() => undefined); // else the collector does
    return outcome;
  }

  /** The object naming chunk `index` of `hash`, undefined if none does (it may be a `bytea` chunk). */
  async keyOf(hash: string, index: number): Promise<string | undefined> {
    const [row] = await this.db.query<{ object_key: string }>('SELECT object_key FROM blob_chunk_objects WHERE hash = $1 AND idx = $2', [
      hash,
      index,
    ]);
    return row?.object_key;
  }

  /** An object's bytes; ObjectMissingError if the bucket no longer has it (removed behind the hub's back). */
  async read(hash: string, index: number, key: string): Promise<Buffer> {
    const bytes = await this.bucket.get(key);
    if (!bytes) throw new ObjectMissingError(hash, index, key, this.bucket.where);
    return bytes;
  }

  /**
   * Forgets a chunk whose object `key` the bucket lost, so that the content reads as lacking it
   * (not complete): an upload of the same content, from a device or the hub's API, sends it
   * again. Only while `key` still names it: a read that met the loss late must not forget the
   * chunk sent again since. The key is not listed for removal: there is nothing to remove, and
   * if the loss was the bucket's mistake, leaking the object beats deleting it.
   */
  async forget(hash: string, index: number, key: string): Promise<void> {
    await inTransaction(this.db, 'write to', async (client) => {
      const forgotten = await client.query('DELETE FROM blob_chunk_objects WHERE hash = $1 AND idx = $2 AND object_key = $3', [
        hash,
        index,
        key,
      ]);
      if (forgotten.rowCount === 1) await client.query('UPDATE blob_contents SET complete = false WHERE hash = $1', [hash]);
    });
  }

  /**
   * Removes the objects listed since before `before` (ms epoch): those whose content was
   * removed (listed at 0), those a removal a crash interrupted claimed (-1), and writes a crash
   * left unnamed (listed when written). Objects already gone count as removed.
   */
  async removeListed(before: number): Promise<void> {
    for (;;) {
      const claimed = await this.db.query<{ object_key: string }>(
        `UPDATE blob_object_removals SET since = -1 WHERE object_key IN (
           SELECT object_key FROM blob_object_removals WHERE since < $1 ORDER BY object_key LIMIT 1000 FOR UPDATE SKIP LOCKED
         ) RETURNING object_key`,
        [before],
        'write to',
      );
      if (claimed.length === 0) return;
      const keys = claimed.map((r) => r.object_key);
      await this.bucket.remove(keys);
      await this.db.query('DELETE FROM blob_object_removals WHERE object_key = ANY($1)', [keys], 'write to');
      if (claimed.length < 1000) return;
    }
  }
}
