import type pg from 'pg';
import { rebucketedDigests } from './bucket-digests.js';
import type { ScopeRulesChange, ServedScopeRules } from './hub-store.js';
import type { PgBucketState } from './pg-bucket-state.js';
import type { WriterPosition } from './pg-group-commit.js';
import type { PgPool } from './pg-pool.js';
import { chunkEnd, REBUCKET_CHUNK, rebucketWrites, type RebucketChunk, type RebucketRow } from './rebucket-rows.js';

/**
 * The group commit's fence (pg-group-commit.ts), taken first by every rebucket transaction: it
 * goes on only if the leadership row still holds this writer's epoch, head and count of writes,
 * and counts itself as one, so that a second writer that read the same position is refused as
 * after a group commit. The row stays locked until the transaction ends: a new leader raising
 * the epoch waits for it, and the next transaction of this one is then refused.
 */
const FENCE = `UPDATE leadership SET group_commits = group_commits + 1 WHERE epoch = $1 AND head_lsn = $2 AND group_commits = $3`;

/** A chunk of a collection's documents in key order; their values only where the rules read them. */
function chunkSql(after: boolean, values: boolean): string {
  return `SELECT key, ${values ? 'value' : 'NULL::bytea AS value'}, deleted, buckets, prior_buckets, hash FROM documents
    WHERE collection = $1 ${after ? 'AND key > $2' : ''} ORDER BY key LIMIT ${REBUCKET_CHUNK}`;
}

/**
 * A chunk's writes as one statement: each changed document's buckets and prior buckets, its
 * bucket index rows removed and added (disjoint: sibling statements see the same snapshot), and
 * the digests of the buckets they left or joined, as absolute values from the writer's copy (a
 * bucket without a head yet gets a row at head 0).
 */
const WRITE_CHUNK = `
WITH digest_rows AS (
  INSERT INTO bucket_heads (bucket, head_lsn, digest)
  SELECT g.bucket, 0, g.digest FROM unnest($9::text[], $10::bigint[]) AS g(bucket, digest)
  ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest
), document_rows AS (
  UPDATE documents d SET buckets = u.buckets, prior_buckets = u.prior_buckets
  FROM unnest($2::text[], $3::text[], $4::text[]) AS u(key, buckets, prior_buckets)
  WHERE d.collection = $1::text AND d.key = u.key
), removed_rows AS (
  DELETE FROM document_buckets b
  USING unnest($5::text[], $6::text[]) AS r(bucket, key)
  WHERE b.bucket = r.bucket AND b.collection = $1::text AND b.key = r.key
)
INSERT INTO document_buckets (bucket, collection, key)
SELECT a.bucket, $1::text, a.key FROM unnest($7::text[], $8::text[]) AS a(bucket, key)
ON CONFLICT DO NOTHING`;

const RECORD_RULES = `INSERT INTO scope_rules (collection, rules, since) VALUES ($1, $2, $3)
  ON CONFLICT (collection) DO UPDATE SET rules = excluded.rules, since = excluded.since`;

const BEGIN_REBUCKET = `INSERT INTO scope_rebuckets (collection, rules) VALUES ($1, $2)
  ON CONFLICT (collection) DO UPDATE SET rules = excluded.rules`;

/**
 * Scope rules on PostgreSQL: bringing a collection's bucket index to the rules the hub now
 * serves, one chunk of documents per transaction (HubStore.rebucket), each fenced as a group
 * commit is, moving the digests of the buckets its documents leave and join (in the writer's copy
 * too, once the chunk is committed); and the rules each collection was last indexed with.
 */
export class PgRebucket {
  readonly #db: PgPool;
  readonly #buckets: PgBucketState;

  constructor(db: PgPool, buckets: PgBucketState) {
    this.#db = db;
    this.#buckets = buckets;
  }

  /**
   * Rebuckets the documents of a chunk after `after` (from the first: undefined), in one
   * transaction; undefined if the fence refused it (nothing written). The first chunk records
   * the rebucket as under way.
   */
  async chunk(
    from: WriterPosition,
    collection: string,
    after: string | undefined,
    change: ScopeRulesChange,
  ): Promise<RebucketChunk | undefined> {
    let digests = new Map<string, number>();
    const done = await this.#fenced(from, async (client) => {
      if (after === undefined) await this.#db.wrap('write to', () => client.query(BEGIN_REBUCKET, [collection, change.rules ?? null]));
      const values = change.rules !== undefined; // unscoping reads no value
      const { rows } = await this.#db.wrap('read', () =>
        client.query<RebucketRow>(chunkSql(after !== undefined, values), after === undefined ? [collection] : [collection, after]),
      );
      const writes = rebucketWrites(rows, change); // a throw of the rules' own is not the database's failure
      const indexRows = (side: 'removed' | 'added'): [string[], string[]] => {
        const pairs = writes.flatMap((w) => w[side].map((bucket) => [bucket, w.key] as const));
        return [pairs.map(([bucket]) => bucket), pairs.map(([, key]) => key)];
      };
      digests = rebucketedDigests(writes, (bucket) => this.#buckets.digests.get(bucket) ?? 0);
      if (writes.length > 0) {
        await this.#db.wrap('write to', () =>
          client.query(WRITE_CHUNK, [
            collection,
            writes.map((w) => w.key),
            writes.map((w) => w.buckets),
            writes.map((w) => w.prior_buckets),
            ...indexRows('removed'),
            ...indexRows('added'),
            [...digests.keys()],
            [...digests.values()],
          ]),
        );
      }
      return chunkEnd(writes.length, rows);
    });
    if (done) this.#buckets.rebucketed(digests); // committed
    return done;
  }

  /**
   * Records the rules a collection is now indexed with, or forgets them (unscoped), and that its
   * rebucket is no longer under way; undefined if fenced.
   */
  finish(from: WriterPosition, collection: string, change: ScopeRulesChange): Promise<true | undefined> {
    return this.#fenced(from, async (client) => {
      await this.#db.wrap('write to', async () => {
        await (change.rules === undefined
          ? client.query('DELETE FROM scope_rules WHERE collection = $1', [collection])
          : client.query(RECORD_RULES, [collection, change.rules, change.since]));
        await client.query('DELETE FROM scope_rebuckets WHERE collection = $1', [collection]);
      });
      return true as const;
    });
  }

  async served(): Promise<Map<string, ServedScopeRules>> {
    const rows = await this.#db.query<{ collection: string; rules: string; since: number }>(
      'SELECT collection, rules, since FROM scope_rules',
    );
    return new Map(rows.map((r) => [r.collection, { rules: r.rules, since: r.since }]));
  }

  async unfinished(): Promise<Set<string>> {
    const rows = await this.#db.query<{ collection: string }>('SELECT collection FROM scope_rebuckets');
    return new Set(rows.map((r) => r.collection));
  }

  /** Runs `work` in one transaction behind the fence; undefined if the fence refused it. */
  async #fenced<T>(from: WriterPosition, work: (client: pg.PoolClient) => Promise<T>): Promise<T | undefined> {
    const client = await this.#db.wrap('write to', () => this.#db.pool.connect());
    try {
      const fence = await this.#db.wrap('write to', async () => {
        await client.query('BEGIN');
        return client.query(FENCE, [from.epoch, from.head, from.groupCommits]);
      });
      if (fence.rowCount === 0) {
        await this.#db.wrap('write to', () => client.query('ROLLBACK'));
        return undefined;
      }
      const result = await work(client);
      await this.#db.wrap('write to', () => client.query('COMMIT'));
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}
