import { DEFAULT_PARTITION } from '../../shared/topics.js';
import type { Lineage } from './hub-store.js';
import { countBucketDigests } from './pg-bucket-digests.js';
import { PgBucketState } from './pg-bucket-state.js';
import { backfillDigests } from './pg-digests.js';
import { PgLineage } from './pg-lineage.js';
import type { PgPool } from './pg-pool.js';
import { migrate } from './pg-schema.js';

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
