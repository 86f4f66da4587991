import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileContentStore } from '../../content/file-content-store.js';
import type { ContentStore } from '../../content/content-store.js';
import { ObjectChunks } from '../../hub/blobs/object-chunks.js';
import { PgContentStore } from '../../hub/blobs/pg-content-store.js';
import { S3Bucket, type ObjectStoreLocation } from '../../hub/blobs/s3-bucket.js';
import { PgPool } from '../../hub/store/pg-pool.js';
import { migrate } from '../../hub/store/pg-schema.js';
import { BLOB_CHUNK_BYTES, contentHash } from '../../shared/blobs.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { ageTree, tempDir } from '../helpers/temp.js';
import { TestS3Server } from '../helpers/s3-server.js';
import { contentStoreContract } from './content-store-contract.js';

contentStoreContract('files (SQLite hub)', {
  fresh: async () => tempDir('content'),
  open: async (dir) => new FileContentStore(dir),
  age: async (dir, ms) => ageTree(dir, ms),
});

/** A content store over a migrated database of its own; `objects`: chunks go to that bucket. */
async function pgContentStore(url: string, objects?: ObjectStoreLocation): Promise<ContentStore> {
  const pool = new PgPool(url, {});
  const client = await pool.pool.connect();
  try {
    await migrate(client);
  } finally {
    client.release();
  }
  const store = new PgContentStore(pool, objects && new ObjectChunks(pool, await S3Bucket.open(objects)));
  return Object.assign(store, {
    // A store does not own the hub's pool; here it is the store's alone.
    close: async () => {
      await PgContentStore.prototype.close.call(store);
      await pool.end();
    },
  });
}

const ageRows = async (url: string, ms: number): Promise<void> => {
  await sql(url, 'UPDATE blob_contents SET touched_at = touched_at - $1', [ms]);
  await sql(url, 'UPDATE blob_object_removals SET since = since - $1 WHERE since > 0', [ms]);
};

contentStoreContract('PostgreSQL', { fresh: freshDatabase, open: (url) => pgContentStore(url), age: ageRows }, NO_POSTGRES);

const s3 = NO_POSTGRES === undefined ? await TestS3Server.start() : undefined;
/** Each database's bucket. */
const buckets = new Map<string, ObjectStoreLocation>();
contentStoreContract(
  'PostgreSQL with an S3-compatible bucket',
  {
    fresh: async () => {
      const url = await freshDatabase();
      buckets.set(url, await s3!.bucket());
      return url;
    },
    open: (url) => pgContentStore(url, buckets.get(url)),
    age: ageRows,
  },
  NO_POSTGRES,
);

describe('FileContentStore on disk', () => {
  it('takes streamed content writing each chunk once, whatever the pieces, and adds only what an upload under way lacks', async () => {
    const dir = tempDir('content');
    const store = new FileContentStore(dir);
    const bytes = Buffer.from(Array.from({ length: 2 * BLOB_CHUNK_BYTES + 1000 }, (_, i) => (i * 7) % 251));
    const sha256 = contentHash(bytes);
    // Pieces that straddle chunk boundaries, as a network stream gives them.
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < bytes.length; at += 100_003) yield bytes.subarray(at, at + 100_003);
    }
    // An upload of the same content under way, with its middle chunk only.
    await store.begin(sha256, bytes.length);
    await store.putChunk(sha256, 1, bytes.subarray(BLOB_CHUNK_BYTES, 2 * BLOB_CHUNK_BYTES));
    expect(await store.storeStream(pieces(), 10 * BLOB_CHUNK_BYTES)).toEqual({ sha256, size: bytes.length });
    expect(await store.info(sha256)).toEqual({ hash: sha256, size: bytes.length, complete: true });
    const read = Buffer.concat(await Promise.all([0, 1, 2].map((i) => store.readChunk(sha256, i))));
    expect(read.equals(bytes)).toBe(true);
    expect(readdirSync(join(dir, 'spool')), 'nothing left in the spool').toEqual([]);
    // Again, held whole: nothing changes; empty content is one empty chunk.
    expect(await store.storeStream(pieces(), 10 * BLOB_CHUNK_BYTES)).toEqual({ sha256, size: bytes.length });
    const empty = await store.storeStream((async function* () {})(), 10);
    expect(empty).toEqual({ sha256: contentHash(Buffer.alloc(0)), size: 0 });
    expect((await store.readChunk(empty.sha256, 0)).length).toBe(0);
    // Over the limit: refused, nothing kept.
    await expect(store.storeStream(pieces(), BLOB_CHUNK_BYTES)).rejects.toMatchObject({ code: 'OUTPOST_BLOB_TOO_LARGE' });
    expect(readdirSync(join(dir, 'spool'))).toEqual([]);
    expect(readdirSync(join(dir, 'uploads'))).toEqual([]);
  });

  it('ignores what a crash left half written: a chunk is whole under its name or absent', async () => {
    const root = tempDir('content');
    const bytes = Buffer.alloc(BLOB_CHUNK_BYTES + 5, 7);
    const hash = contentHash(bytes);
    const store = new FileContentStore(root);
    await store.begin(hash, bytes.length);
    await store.putChunk(hash, 0, bytes.subarray(0, BLOB_CHUNK_BYTES));
    // A process killed while writing chunk 1 leaves its temporary file, never the chunk's name.
    writeFileSync(join(root, 'uploads', hash, '.1.0123456789ab.tmp'), bytes.subarray(BLOB_CHUNK_BYTES, BLOB_CHUNK_BYTES + 2));
    const restarted = new FileContentStore(root);
    expect(await restarted.begin(hash, bytes.length)).toEqual([1]);
    await restarted.putChunk(hash, 1, bytes.subarray(BLOB_CHUNK_BYTES));
    await restarted.complete(hash);
    expect(Buffer.concat([await restarted.readChunk(hash, 0), await restarted.readChunk(hash, 1)]).equals(bytes)).toBe(true);
  });

  it('clears what a hub killed while content streamed in left in its spool, once it is old', async () => {
    const root = tempDir('content');
    const store = new FileContentStore(root);
    mkdirSync(join(store.spoolDir, 'blob-left'), { recursive: true });
    writeFileSync(join(store.spoolDir, 'blob-left', 'content'), 'half a firmware');
    expect(await store.collect(() => false, Date.now() - 60_000)).toEqual([]);
    expect(readdirSync(store.spoolDir), 'too young: an upload may be streaming in').toEqual(['blob-left']);
    ageTree(store.spoolDir, 120_000);
    await store.collect(() => false, Date.now() - 60_000);
    expect(readdirSync(store.spoolDir), 'its file was written to lately: still streaming in').toEqual(['blob-left']);
    const long = new Date(Date.now() - 120_000);
    utimesSync(join(store.spoolDir, 'blob-left', 'content'), long, long);
    await store.collect(() => false, Date.now() - 60_000);
    expect(readdirSync(store.spoolDir)).toEqual([]);
  });

  it('removes content by moving it out first, and clears what a crash left in the middle of a removal', async () => {
    const root = tempDir('content');
    const store = new FileContentStore(root);
    const bytes = Buffer.from('old model');
    const hash = contentHash(bytes);
    await store.begin(hash, bytes.length);
    await store.putChunk(hash, 0, bytes);
    await store.complete(hash);
    // A removal the hub was killed in the middle of: the content already out of objects/.
    mkdirSync(join(root, 'trash', 'cafe01'), { recursive: true });
    writeFileSync(join(root, 'trash', 'cafe01', 'size'), '9');
    ageTree(root, 120_000);
    expect(await store.collect(() => false, Date.now() - 60_000)).toEqual([hash]);
    expect(await store.info(hash)).toBeUndefined();
    expect(readdirSync(join(root, 'trash'))).toEqual([]);
  });

  it('keeps complete content under objects/, sharded by the first byte of its address', async () => {
    const root = tempDir('content');
    const bytes = Buffer.from('firmware');
    const hash = contentHash(bytes);
    const store = new FileContentStore(root);
    await store.begin(hash, bytes.length);
    await store.putChunk(hash, 0, bytes);
    await store.complete(hash);
    expect(readdirSync(join(root, 'objects', hash.slice(0, 2), hash)).sort()).toEqual(['0', 'size']);
    expect(readdirSync(join(root, 'uploads'))).toEqual([]);
  });
});
