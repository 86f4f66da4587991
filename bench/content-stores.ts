/**
 * Blob content stores, one upload's way: `begin`, every chunk in turn with `putChunk` (each
 * durable when it resolves), then `complete` (the whole read back and hashed) for N MiB (32;
 * quick 8), on a PostgreSQL hub's stores, `bytea` rows and an S3-compatible bucket (s3rver on
 * loopback: the S3 REST API over files), against the SQLite hub's files in the same run.
 * Skipped where PostgreSQL is not reachable.
 *
 * Standalone: tsx bench/content-stores.ts [--quick]
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import S3rver from 's3rver';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { ContentStore } from '../content/content-store.js';
import { FileContentStore } from '../content/file-content-store.js';
import { ObjectChunks } from '../hub/blobs/object-chunks.js';
import { PgContentStore } from '../hub/blobs/pg-content-store.js';
import { S3Bucket } from '../hub/blobs/s3-bucket.js';
import { PgPool } from '../hub/store/pg-pool.js';
import { migrate } from '../hub/store/pg-schema.js';
import { BLOB_CHUNK_BYTES, chunkCount, contentHash } from '../shared/blobs.js';
import { PG_ADMIN_URL, postgresUnavailable } from '../test/helpers/postgres-server.js';
import { tempDir } from './temp.js';

export interface ContentStoresResult {
  bytes: number;
  /** MB/s (10^6 bytes) from begin to complete, per store. */
  filesMBps: number;
  pgMBps: number;
  bucketMBps: number;
}

/** Seconds to store `content` whole, a chunk at a time as one device's upload sends them. */
async function upload(store: ContentStore, content: Buffer): Promise<number> {
  const hash = contentHash(content);
  const started = performance.now();
  await store.begin(hash, content.length);
  for (let i = 0; i < chunkCount(content.length); i++) {
    await store.putChunk(hash, i, content.subarray(i * BLOB_CHUNK_BYTES, (i + 1) * BLOB_CHUNK_BYTES));
  }
  await store.complete(hash);
  return (performance.now() - started) / 1000;
}

/** A new database on the local server, and how to drop it. */
async function scratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `outpost_bench_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const client = new pg.Client({ connectionString: PG_ADMIN_URL });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

export async function benchContentStores(quick: boolean): Promise<ContentStoresResult | undefined> {
  if ((await postgresUnavailable()) !== undefined) return undefined;
  const content = randomBytes((quick ? 8 : 32) * 1024 * 1024);
  const mbps = (seconds: number): number => content.length / seconds / 1e6;

  const filesMBps = mbps(await upload(new FileContentStore(tempDir('bench-content')), content));

  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: tempDir('bench-s3') });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: 'outpost-bench' }));
  s3.destroy();

  const measured: number[] = [];
  for (const withBucket of [false, true]) {
    const database = await scratchDatabase();
    const db = new PgPool(database.url, {});
    try {
      const client = await db.pool.connect();
      await migrate(client).finally(() => client.release());
      const objects = withBucket
        ? new ObjectChunks(db, await S3Bucket.open({ url: 's3://outpost-bench/hub/', endpoint, credentials }))
        : undefined;
      const store = new PgContentStore(db, objects);
      measured.push(mbps(await upload(store, content)));
      await store.close();
    } finally {
      await db.end();
      await database.drop();
    }
  }
  await server.close();
  return { bytes: content.length, filesMBps, pgMBps: measured[0]!, bucketMBps: measured[1]! };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchContentStores(process.argv.includes('--quick')));
}
