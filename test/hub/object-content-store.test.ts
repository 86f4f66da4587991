import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectChunks } from '../../hub/blobs/object-chunks.js';
import { parseHubConfig } from '../../hub/config.js';
import { PgContentStore } from '../../hub/blobs/pg-content-store.js';
import { S3Bucket, type ObjectStoreLocation } from '../../hub/blobs/s3-bucket.js';
import { PgPool } from '../../hub/store/pg-pool.js';
import { migrate } from '../../hub/store/pg-schema.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { BLOB_CHUNK_BYTES, chunkCount, contentHash } from '../../shared/blobs.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { TestS3Server } from '../helpers/s3-server.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

const s3 = NO_POSTGRES === undefined ? await TestS3Server.start() : undefined;

/** What the contract (content-store.test.ts) cannot see: where the bytes are, and what is left in the bucket. */
describe.skipIf(NO_POSTGRES !== undefined)(`PgContentStore with an S3-compatible bucket${NO_POSTGRES ? ` (${NO_POSTGRES})` : ''}`, () => {
  const pools: PgPool[] = [];
  let fleet: TestFleet | undefined;
  afterEach(async () => {
    await fleet?.close();
    fleet = undefined;
    for (const pool of pools.splice(0)) await pool.end();
  });

  async function pool(url: string): Promise<PgPool> {
    const opened = new PgPool(url, {});
    pools.push(opened);
    const client = await opened.pool.connect();
    try {
      await migrate(client);
    } finally {
      client.release();
    }
    return opened;
  }

  async function objectStore(db: PgPool, bucket: ObjectStoreLocation): Promise<{ store: PgContentStore; objects: ObjectChunks }> {
    const objects = new ObjectChunks(db, await S3Bucket.open(bucket));
    return { store: new PgContentStore(db, objects), objects };
  }

  function content(size: number): { hash: string; bytes: Buffer; chunks: Buffer[] } {
    const bytes = randomBytes(size);
    const chunks = Array.from({ length: chunkCount(size) }, (_, i) => bytes.subarray(i * BLOB_CHUNK_BYTES, (i + 1) * BLOB_CHUNK_BYTES));
    return { hash: contentHash(bytes), bytes, chunks };
  }

  async function upload(store: PgContentStore, c: { hash: string; bytes: Buffer; chunks: Buffer[] }): Promise<void> {
    await store.begin(c.hash, c.bytes.length);
    for (const [i, chunk] of c.chunks.entries()) await store.putChunk(c.hash, i, chunk);
    await store.complete(c.hash);
  }

  it('keeps the bytes in the bucket, one object a chunk under the prefix, none in the database; collecting removes them', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket('fleet-a/');
    const { store } = await objectStore(await pool(url), bucket);
    const c = content(2 * BLOB_CHUNK_BYTES + 10);
    await upload(store, c);
    const keys = await s3!.keys(bucket);
    expect(keys).toHaveLength(3);
    for (const key of keys) expect(key).toMatch(new RegExp(`^fleet-a/${c.hash}/[012]\\.[0-9a-f]{16}$`));
    expect(await sql(url, 'SELECT count(*)::int AS n FROM blob_chunks')).toEqual([{ n: 0 }]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM blob_object_removals')).toEqual([{ n: 0 }]);
    expect(await store.collect(() => true, Date.now() + 1000)).toEqual([]);
    expect(await s3!.keys(bucket)).toHaveLength(3);
    expect(await store.collect(() => false, Date.now() + 1000)).toEqual([c.hash]);
    expect(await s3!.keys(bucket), 'the objects go with the content').toEqual([]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM blob_object_removals')).toEqual([{ n: 0 }]);
  });

  it('removes an object a crash left written but not named, once it is as old as the grace for uploads', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const db = await pool(url);
    const { store, objects } = await objectStore(db, bucket);
    // What a hub killed between a chunk's PUT and the transaction naming it leaves: the object, listed.
    const key = `outpost/${'ab'.repeat(32)}/0.0123456789abcdef`;
    await sql(url, 'INSERT INTO blob_object_removals (object_key, since) VALUES ($1, $2)', [key, Date.now()]);
    await objects.bucket.put(key, Buffer.from('half an upload'));
    expect(await store.collect(() => false, Date.now() - 60_000)).toEqual([]);
    expect(await s3!.keys(bucket), 'too young: its upload may still be naming it').toEqual([key]);
    await sql(url, 'UPDATE blob_object_removals SET since = since - 120000');
    await store.collect(() => false, Date.now() - 60_000);
    expect(await s3!.keys(bucket)).toEqual([]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM blob_object_removals')).toEqual([{ n: 0 }]);
  });

  it('stores a chunk sent twice at once as one object; mismatched content leaves nothing in the bucket', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const { store } = await objectStore(await pool(url), bucket);
    const c = content(BLOB_CHUNK_BYTES + 5);
    await store.begin(c.hash, c.bytes.length);
    await Promise.all([
      store.putChunk(c.hash, 0, c.chunks[0]!),
      store.putChunk(c.hash, 0, c.chunks[0]!),
      store.putChunk(c.hash, 1, c.chunks[1]!),
    ]);
    await store.complete(c.hash);
    expect(await s3!.keys(bucket)).toHaveLength(2);
    // Content whose bytes are not its address: its objects go with its rows.
    const wrong = content(10);
    const address = contentHash(Buffer.from('something else entirely'));
    await store.begin(address, 10);
    await store.putChunk(address, 0, wrong.bytes);
    await expect(store.complete(address)).rejects.toMatchObject({ code: 'OUTPOST_BLOB_MISMATCH' });
    expect(await s3!.keys(bucket)).toHaveLength(2);
  });

  it('asks again for a chunk whose object the bucket lost, before or after the content completed, and is repaired by an upload', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const { store } = await objectStore(await pool(url), bucket);
    const c = content(3 * BLOB_CHUNK_BYTES);
    const keyOf = async (index: number): Promise<string> =>
      (
        await sql<{ object_key: string }>(url, 'SELECT object_key FROM blob_chunk_objects WHERE hash = $1 AND idx = $2', [c.hash, index])
      )[0]!.object_key;
    await store.begin(c.hash, c.bytes.length);
    for (const [i, chunk] of c.chunks.entries()) await store.putChunk(c.hash, i, chunk);
    // Before completing: the completion names the lost chunk, and the upload sends it again.
    await s3!.remove(bucket, await keyOf(1));
    await expect(store.complete(c.hash)).rejects.toMatchObject({ code: 'OUTPOST_BLOB_INCOMPLETE', missing: [1] });
    expect(await store.begin(c.hash, c.bytes.length)).toEqual([1]);
    await store.putChunk(c.hash, 1, c.chunks[1]!);
    await store.complete(c.hash);
    // After: a read says it is missing (never serves something else), and the content reads as incomplete until uploaded again.
    await s3!.remove(bucket, await keyOf(2));
    await expect(store.readChunk(c.hash, 2)).rejects.toMatchObject({
      code: 'OUTPOST_NOT_FOUND',
      message: expect.stringContaining('upload the content again') as unknown,
    });
    expect(await store.info(c.hash)).toEqual({ hash: c.hash, size: c.bytes.length, complete: false });
    expect(await store.begin(c.hash, c.bytes.length)).toEqual([2]);
    await store.putChunk(c.hash, 2, c.chunks[2]!);
    await store.complete(c.hash);
    const back = Buffer.concat(await Promise.all([0, 1, 2].map((i) => store.readChunk(c.hash, i))));
    expect(back.equals(c.bytes)).toBe(true);
  });

  it('lists for removal the object of a chunk named while the collector waited for the content it removes', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const db = await pool(url);
    const { store, objects } = await objectStore(db, bucket);
    const hash = contentHash(Buffer.from('an upload left for a day'));
    await store.begin(hash, 24);
    await sql(url, 'UPDATE blob_contents SET touched_at = touched_at - 120000');
    // A chunk being named, as ObjectChunks.store does: its object written, the content's row held.
    const late = `outpost/${hash}/0.00000000000000aa`;
    await objects.bucket.put(late, Buffer.from('an upload left for a day'));
    const naming = new pg.Client({ connectionString: url });
    await naming.connect();
    try {
      await naming.query('BEGIN');
      await naming.query('SELECT 1 FROM blob_contents WHERE hash = $1 FOR SHARE', [hash]);
      await naming.query('INSERT INTO blob_chunk_objects (hash, idx, object_key) VALUES ($1, 0, $2)', [hash, late]);
      const collected = store.collect(() => false, Date.now() - 60_000);
      await waitFor('the collector waiting for the content row', async () => {
        const waiting = await sql(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()");
        return waiting.length > 0;
      });
      await naming.query('COMMIT');
      expect(await collected).toEqual([hash]);
    } finally {
      await naming.end();
    }
    expect(await s3!.keys(bucket), 'the late object removed with its content').toEqual([]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM blob_object_removals')).toEqual([{ n: 0 }]);
  });

  it('asks a device at once for a chunk the bucket lost of its upload, not after the device gives up waiting', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const store = await PostgresHubStore.open(url, { objectStore: bucket });
    fleet = new TestFleet({
      store,
      config: parseHubConfig({ collections: { clips: { blobs: 'lazy' } }, access: { default: { read: ['*'], write: ['*'] } } }),
    });
    await fleet.startHub();
    const c = content(3 * BLOB_CHUNK_BYTES);
    // An earlier upload of the same content left every chunk named, not completed; then the bucket lost one.
    await store.content.begin(c.hash, c.bytes.length);
    for (const [i, chunk] of c.chunks.entries()) await store.content.putChunk(c.hash, i, chunk);
    const [lost] = await sql<{ object_key: string }>(url, 'SELECT object_key FROM blob_chunk_objects WHERE hash = $1 AND idx = 1', [
      c.hash,
    ]);
    await s3!.remove(bucket, lost!.object_key);
    // The device would ask again only after a minute without an answer.
    const camera = fleet.agent('cam-1', { ackTimeoutMs: 60_000 });
    await camera.putBlob('clips', 'c1', c.bytes, { contentType: 'video/mp4' });
    await waitFor('the clip committed', () => store.document('clips', 'c1'), 15_000);
    const back = Buffer.concat(await Promise.all([0, 1, 2].map((i) => store.content.readChunk(c.hash, i))));
    expect(back.equals(c.bytes)).toBe(true);
  });

  it('reads content kept in the database before the hub was given a bucket, and completes one begun there', async () => {
    const url = await freshDatabase();
    const db = await pool(url);
    const before = new PgContentStore(db);
    const old = content(BLOB_CHUNK_BYTES + 100);
    await upload(before, old);
    const half = content(2 * BLOB_CHUNK_BYTES);
    await before.begin(half.hash, half.bytes.length);
    await before.putChunk(half.hash, 0, half.chunks[0]!);

    const bucket = await s3!.bucket();
    const { store } = await objectStore(db, bucket);
    expect(Buffer.concat([await store.readChunk(old.hash, 0), await store.readChunk(old.hash, 1)]).equals(old.bytes)).toBe(true);
    expect(await store.begin(half.hash, half.bytes.length)).toEqual([1]);
    await store.putChunk(half.hash, 1, half.chunks[1]!);
    await store.complete(half.hash);
    expect(Buffer.concat([await store.readChunk(half.hash, 0), await store.readChunk(half.hash, 1)]).equals(half.bytes)).toBe(true);
    expect(await s3!.keys(bucket)).toHaveLength(1);
  });

  it('is refused by a hub started without the bucket that holds its content, and unreadable by name, not missing', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    const writer = await PostgresHubStore.open(url, { objectStore: bucket });
    const c = content(100);
    await upload(writer.content, c);
    await writer.close();
    await expect(PostgresHubStore.open(url, { epoch: 1 })).rejects.toMatchObject({
      code: 'OUTPOST_INVALID_CONFIG',
      message: expect.stringContaining('--blob-store') as unknown,
    });
    // Nor with a bucket that is not the one its content went to.
    await expect(PostgresHubStore.open(url, { epoch: 1, objectStore: await s3!.bucket() })).rejects.toMatchObject({
      code: 'OUTPOST_INVALID_CONFIG',
      message: expect.stringContaining('does not hold the blob content') as unknown,
    });
    // A tool that reads the database (no writer) opens it, and says why it cannot read the content.
    const reader = await PostgresHubStore.open(url);
    await expect(reader.content.readChunk(c.hash, 0)).rejects.toMatchObject({ code: 'OUTPOST_INVALID_CONFIG' });
    await reader.close();
    const again = await PostgresHubStore.open(url, { epoch: 1, objectStore: bucket });
    expect((await again.content.readChunk(c.hash, 0)).equals(c.bytes)).toBe(true);
    await again.close();
  });

  it('refuses to start on a bucket that does not exist, or a server that is not there or does not answer, saying which', async () => {
    const url = await freshDatabase();
    const bucket = await s3!.bucket();
    await expect(PostgresHubStore.open(url, { objectStore: { ...bucket, url: 's3://no-such-bucket-here/' } })).rejects.toMatchObject({
      code: 'OUTPOST_INVALID_CONFIG',
      message: expect.stringContaining('no-such-bucket-here does not exist') as unknown,
    });
    await expect(PostgresHubStore.open(url, { objectStore: { ...bucket, endpoint: 'http://127.0.0.1:9' } })).rejects.toMatchObject({
      code: 'OUTPOST_STORAGE_FAILED',
      message: expect.stringContaining('object store') as unknown,
    });
    // A server that takes the connection and never answers: the start fails, it does not hang.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      await expect(PostgresHubStore.open(url, { objectStore: { ...bucket, endpoint, requestTimeoutMs: 300 } })).rejects.toMatchObject({
        code: 'OUTPOST_STORAGE_FAILED',
      });
    } finally {
      silent.close();
    }
    await expect(PostgresHubStore.open(url, { objectStore: { ...bucket, url: 'https://bucket' } })).rejects.toMatchObject({
      code: 'OUTPOST_INVALID_CONFIG',
    });
  });
});
