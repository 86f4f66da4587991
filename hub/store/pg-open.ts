import { ConfigError } from '../../shared/errors.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { ObjectChunks } from '../blobs/object-chunks.js';
import type { ObjectStoreLocation } from '../blobs/s3-bucket.js';
import type { Lineage } from './hub-store.js';
import { countBucketDigests } from './pg-bucket-digests.js';
import { PgBucketState } from './pg-bucket-state.js';
import { backfillDigests } from './pg-digests.js';
import { PgLineage } from './pg-lineage.js';
import type { PgPool } from './pg-pool.js';
import { migrate } from './pg-schema.js';

/** How a PostgreSQL store opens (PostgresHubStore.open). */
export interface PostgresHubStoreOptions {
  /**
   * The leadership epoch this hub writes as. Every group commit checks, in its own transaction,
   * that the database still holds it, and fails with WriterFencedError once a newer leader has
   * raised it. Default: the epoch stored when the store opens.
   */
  epoch?: number;
  /** Connections in the pool: a group commit reads over up to four at once. */
  maxConnections?: number;
  /**
   * The schema holding this store's tables (a partition's: see partitionSchema), created if
   * missing; default the connection's own (`public`), where the default partition lives.
   */
  schema?: string;
  /**
   * Keep blob content in this S3-compatible bucket, not in the database. A writer (given an
   * epoch) without one refuses a database whose content is held in one.
   */
  objectStore?: ObjectStoreLocation;
}

/** What a PostgreSQL store's writer starts from: its bookkeeping as stored when it opens. */
export interface WriterState {
  epoch: number;
  head: number;
  groupCommits: number;
  prunedThrough: number;
  /** Every bucket's head and digest (the writer's copy of them). */
  buckets: PgBucketState;
  lineage: Lineage;
  /** The partition whose log this is (from its schema): its leader lock is what a restore checks. */
  partition: string;
}

/**
 * Brings the database up to date (migrations, then what a migration left to backfill: digests,
 * then buckets' digests, which sum documents' hashes),
 * then reads the writer's state, on one connection. `epoch`: the one to write as (default the
 * stored one).
 */
export async function openWriterState(db: PgPool, options: { epoch?: number; schema?: string }): Promise<WriterState> {
  const client = await db.pool.connect();
  try {
    await migrate(client, options.schema);
    await backfillDigests(client);
    await countBucketDigests(client);
    const {
      rows: [leader],
    } = await client.query<{ epoch: number; head_lsn: number; group_commits: number }>(
      'SELECT epoch, head_lsn, group_commits FROM leadership',
    );
    const {
      rows: [pruned],
    } = await client.query<{ value: number }>("SELECT value FROM hub_meta WHERE name = 'pruned_through'");
    const { rows: buckets } = await client.query<{ bucket: string; head_lsn: number; digest: number }>(
      'SELECT bucket, head_lsn, digest FROM bucket_heads',
    );
    return {
      epoch: options.epoch ?? leader!.epoch,
      head: leader!.head_lsn,
      groupCommits: leader!.group_commits,
      prunedThrough: pruned!.value,
      buckets: new PgBucketState(buckets),
      lineage: await new PgLineage(db).read(),
      partition: options.schema?.replace(/^outpost_p_/, '') ?? DEFAULT_PARTITION,
    };
  } finally {
    client.release();
  }
}

/**
 * The bucket blob content goes to, if the hub was given one. A writer (given an epoch) checks
 * that its content can be served: without a bucket, it refuses a database whose content is held
 * in one; with one, it looks for an object the database names, since a bucket that exists but is
 * not the one the content went to would read as every chunk lost. A tool reading (`hub verify`)
 * goes on, and names the content whose objects are missing.
 */
export async function openContentObjects(db: PgPool, options: PostgresHubStoreOptions): Promise<ObjectChunks | undefined> {
  const [named] =
    options.epoch === undefined ? [] : await db.query<{ object_key: string }>('SELECT object_key FROM blob_chunk_objects LIMIT 1');
  if (options.objectStore === undefined) {
    if (named) {
      throw new ConfigError(
        `blob content in ${db.where} is held in an object store: start the hub with --blob-store naming its bucket (without it, that content cannot be read)`,
      );
    }
    return undefined;
  }
  const { S3Bucket } = await import('../blobs/s3-bucket.js');
  const bucket = await S3Bucket.open(options.objectStore);
  try {
    if (named && !(await bucket.has(named.object_key))) {
      throw new ConfigError(
        `${bucket.where} does not hold the blob content ${db.where} names (no object ${named.object_key}): start the hub with the --blob-store it wrote to`,
      );
    }
  } catch (error) {
    bucket.close();
    throw error;
  }
  return new ObjectChunks(db, bucket);
}
