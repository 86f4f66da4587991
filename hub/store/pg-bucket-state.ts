import type { StoredBucketState } from './pg-ingest-tx.js';

/**
 * The PostgreSQL writer's copy of every bucket's head and digest, loaded when the store opens: a
 * group commit's IngestTx is synchronous and cannot fetch one its plan does not name (a change's
 * buckets are known only once it is resolved). A copy is sound because this process is the
 * database's one writer (the fence refuses any other), so nothing else moves them; it changes
 * only once a group commit or rebucket chunk is written, so one that fails leaves it as it was.
 */
export class PgBucketState implements StoredBucketState {
  readonly heads: Map<string, number>;
  readonly digests: Map<string, number>;

  constructor(rows: ReadonlyArray<{ bucket: string; head_lsn: number; digest: number }>) {
    this.heads = new Map(rows.map((r) => [r.bucket, r.head_lsn]));
    this.digests = new Map(rows.map((r) => [r.bucket, r.digest]));
  }

  /** What a group commit wrote, once it was. */
  committed(rows: ReadonlyArray<{ bucket: string; headLsn: number; digest: number }>): void {
    for (const { bucket, headLsn, digest } of rows) {
      this.heads.set(bucket, headLsn);
      this.digests.set(bucket, digest);
    }
  }

  /** The digests a rebucket chunk wrote, once it was. */
  rebucketed(digests: ReadonlyMap<string, number>): void {
    for (const [bucket, digest] of digests) this.digests.set(bucket, digest);
  }
}
