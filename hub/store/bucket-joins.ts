import type { PgPool } from './pg-pool.js';
import type { SqliteConnection } from './sqlite-connection.js';

/**
 * Where each device may read a bucket's log from: the LSN of the snapshot through which it last
 * joined the bucket (a relabel, a rule change, a catch-up past retention or a restore joins it
 * anew). A bucket's log before that may hold versions of documents that have since left the
 * bucket, which the device never held and may not read; a pull from below it is answered with a
 * snapshot of the bucket as it is.
 */
export interface BucketJoins {
  /** The LSN the device last joined the bucket at, or undefined if it never did (as far as this store knows). */
  joinedAt(agentId: string, bucket: string): Promise<number | undefined>;
  /** The device joins the bucket through a snapshot of it at `lsn`. */
  record(agentId: string, bucket: string, lsn: number): Promise<void>;
}

const UPSERT = `INSERT INTO bucket_joins (agent_id, bucket, lsn) VALUES ($1, $2, $3)
  ON CONFLICT (agent_id, bucket) DO UPDATE SET lsn = excluded.lsn`;

export class SqliteBucketJoins implements BucketJoins {
  readonly #stmts;

  constructor(db: SqliteConnection) {
    this.#stmts = {
      get: db.prepare<[string, string], { lsn: number }>('SELECT lsn FROM bucket_joins WHERE agent_id = ? AND bucket = ?'),
      record: db.prepare<[string, string, number]>(UPSERT.replace(/\$\d/g, '?')),
    };
  }

  async joinedAt(agentId: string, bucket: string): Promise<number | undefined> {
    return this.#stmts.get.get(agentId, bucket)?.lsn;
  }

  async record(agentId: string, bucket: string, lsn: number): Promise<void> {
    this.#stmts.record.run(agentId, bucket, lsn);
  }
}

export class PgBucketJoins implements BucketJoins {
  constructor(private readonly db: PgPool) {}

  async joinedAt(agentId: string, bucket: string): Promise<number | undefined> {
    const [row] = await this.db.query<{ lsn: string }>('SELECT lsn FROM bucket_joins WHERE agent_id = $1 AND bucket = $2', [
      agentId,
      bucket,
    ]);
    return row === undefined ? undefined : Number(row.lsn);
  }

  async record(agentId: string, bucket: string, lsn: number): Promise<void> {
    await this.db.query(UPSERT, [agentId, bucket, lsn], 'write to');
  }
}
