import pg from 'pg';
import { StorageFailedError } from '../../shared/errors.js';
import type {
  ConflictRecord,
  Credential,
  CredentialListing,
  DocumentPage,
  HubStore,
  IngestPlan,
  IngestTx,
  ListedDocument,
  LogPage,
  RecordedOutcome,
  Rejected,
  StoredDocument,
} from './hub-store.js';
import { ConcurrentWriterError, WriterFencedError } from './writer-errors.js';
import { OUTCOMES_OF_OPS, prefetchPlan, writeGroupCommit } from './pg-group-commit.js';
import { BufferedIngestTx } from './pg-ingest-tx.js';
import {
  documentPage,
  logPage,
  toBrokerCredential,
  toConflictRecord,
  toCredential,
  toCredentialListing,
  toListedDocument,
  toRejected,
  toStoredDocument,
  type ConflictRow,
  type DocumentRow,
  type ListedDocumentRow,
  type LogRow,
  type RejectedRow,
} from './rows.js';
import { toRecordedOutcome, type OutcomeRow } from './outcome-rows.js';
import { migrate, schemaConnectionOptions } from './pg-schema.js';

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
}

/** bigint columns (LSNs, seqs, ms times, counts) as numbers: they stay far below 2^53. */
const INT8_OID = 20;
const types: pg.CustomTypesConfig = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    return oid === INT8_OID ? Number : (pg.types.getTypeParser(oid, format) as (value: string) => unknown);
  },
};

/** Arbitrary, fixed: what the server shows for our connections. */
const APPLICATION_NAME = 'outpost-hub';
const PRUNE_CHUNK = 10_000;

/**
 * The hub's primary store on PostgreSQL, with the SQLite store's semantics. A group commit reads
 * what its plan names in one parallel round of queries, runs `work` over those rows in memory,
 * and writes everything in one statement (one transaction) guarded by the leadership row.
 * `head` and `prunedThrough` are this writer's own bookkeeping, loaded when it opens.
 */
export class PostgresHubStore implements HubStore {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;
  /** The server and database, without credentials: for error messages. */
  readonly #where: string;
  readonly #epoch: number;
  #head: number;
  #groupCommits: number;
  #prunedThrough: number;
  /** Group commits run one after another: each starts from the head the previous one left. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(pool: pg.Pool, where: string, state: { epoch: number; head: number; groupCommits: number; prunedThrough: number }) {
    this.#pool = pool;
    this.#where = where;
    this.#epoch = state.epoch;
    this.#head = state.head;
    this.#groupCommits = state.groupCommits;
    this.#prunedThrough = state.prunedThrough;
  }

  /** Connects, migrates (under an advisory lock: hubs starting together take turns) and loads the writer's state. */
  static async open(url: string, options: PostgresHubStoreOptions = {}): Promise<PostgresHubStore> {
    const where = describe(url) + (options.schema === undefined ? '' : ` (schema ${options.schema})`);
    const pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 8,
      types,
      application_name: APPLICATION_NAME,
      ...schemaConnectionOptions(options.schema),
      // A half-open connection (a NAT or load balancer that dropped it) must fail, not hang a
      // group commit that every later one waits behind: bounded connects and queries, keepalive.
      connectionTimeoutMillis: 10_000,
      query_timeout: 60_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // A connection that breaks while idle is discarded by the pool; the next query reports it.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await migrate(client, options.schema);
        const {
          rows: [leader],
        } = await client.query<{ epoch: number; head_lsn: number; group_commits: number }>(
          'SELECT epoch, head_lsn, group_commits FROM leadership',
        );
        const {
          rows: [pruned],
        } = await client.query<{ value: number }>("SELECT value FROM hub_meta WHERE name = 'pruned_through'");
        return new PostgresHubStore(pool, where, {
          epoch: options.epoch ?? leader!.epoch,
          head: leader!.head_lsn,
          groupCommits: leader!.group_commits,
          prunedThrough: pruned!.value,
        });
      } finally {
        client.release();
      }
    } catch (cause) {
      await pool.end().catch(() => undefined);
      throw new StorageFailedError(where, 'open', { cause });
    }
  }

  get head(): number {
    return this.#head;
  }

  get prunedThrough(): number {
    return this.#prunedThrough;
  }

  ingest<T>(plan: IngestPlan, work: (tx: IngestTx) => T): Promise<T> {
    const run = this.#queue.then(() => this.#ingest(plan, work));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #ingest<T>(plan: IngestPlan, work: (tx: IngestTx) => T): Promise<T> {
    const prefetch = await this.#wrap('read', () => prefetchPlan(this.#pool, plan));
    const tx = new BufferedIngestTx(plan, prefetch, this.#head);
    const result = work(tx); // a throw here has written nothing
    const writes = tx.writes();
    // Nothing written (only redeliveries re-acked from recorded outcomes): nothing to fence.
    if (!writes) return result;
    const from = { epoch: this.#epoch, head: this.#head, groupCommits: this.#groupCommits };
    const committed = await this.#wrap('write to', () => writeGroupCommit(this.#pool, from, tx.head, writes));
    if (!committed) throw await this.#whyFenced();
    this.#head = tx.head;
    this.#groupCommits += 1;
    return result;
  }

  async #whyFenced(): Promise<StorageFailedError> {
    const [row] = await this.#query<{ epoch: number; head_lsn: number }>('SELECT epoch, head_lsn FROM leadership');
    return row!.epoch !== this.#epoch
      ? new WriterFencedError(this.#where, this.#epoch, row!.epoch)
      : new ConcurrentWriterError(this.#where, this.#head, row!.head_lsn);
  }

  async readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): Promise<LogPage> {
    const rows = await this.#query<LogRow>(
      `SELECT lsn, collection, key, op, value, hlc, origin FROM log
       WHERE lsn > $1 ${collections ? 'AND collection = ANY($3::text[])' : ''} ORDER BY lsn LIMIT $2`,
      [from, limit, ...(collections ? [collections] : [])],
    );
    return logPage(rows, from, limit, maxBytes, include);
  }

  async readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): Promise<DocumentPage> {
    const where: string[] = [];
    const params: unknown[] = [limit];
    if (after) where.push(`(collection, key) > ($${params.push(after[0])}, $${params.push(after[1])})`);
    if (collections) where.push(`collection = ANY($${params.push(collections)}::text[])`);
    const rows = await this.#query<DocumentRow>(
      `SELECT collection, key, value, deleted, version, hlc, origin, field_hlcs FROM documents
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY collection, key LIMIT $1`,
      params,
    );
    return documentPage(rows, limit, maxBytes, include);
  }

  async document(collection: string, key: string): Promise<StoredDocument | undefined> {
    const [row] = await this.#query<DocumentRow>(
      'SELECT value, deleted, version, hlc, origin, field_hlcs FROM documents WHERE collection = $1 AND key = $2',
      [collection, key],
    );
    return row && toStoredDocument(row);
  }

  async listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]> {
    const prefix = options.prefix ?? '';
    const params: unknown[] = [collection, prefix, options.limit];
    // Keys with the prefix are one contiguous range from the prefix on, in byte order.
    const rows = await this.#query<ListedDocumentRow>(
      `SELECT key, value, version, origin FROM documents WHERE collection = $1 AND key >= $2
       ${options.after !== undefined ? `AND key > $${params.push(options.after)}` : ''} AND NOT deleted ORDER BY key LIMIT $3`,
      params,
    );
    return rows.filter((r) => r.key.startsWith(prefix)).map(toListedDocument);
  }

  async conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): Promise<ConflictRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [query.limit];
    if (query.collection !== undefined) where.push(`collection = $${params.push(query.collection)}`);
    if (query.key !== undefined) where.push(`key = $${params.push(query.key)}`);
    if (query.before !== undefined) where.push(`id < $${params.push(query.before)}`);
    const rows = await this.#query<ConflictRow>(
      `SELECT * FROM conflicts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $1`,
      params,
    );
    return rows.map(toConflictRecord);
  }

  async rejections(limit: number): Promise<Rejected[]> {
    const rows = await this.#query<RejectedRow>(
      "SELECT agent_id, incarnation, seq, reason, detail, at FROM outcomes WHERE outcome = 'rejected' ORDER BY at DESC LIMIT $1",
      [limit],
    );
    return rows.map(toRejected);
  }

  async collectionHeads(): Promise<Record<string, number>> {
    const rows = await this.#query<{ name: string; head_lsn: number }>('SELECT name, head_lsn FROM collections ORDER BY name');
    return Object.fromEntries(rows.map((r) => [r.name, r.head_lsn]));
  }

  async firstCommitAfter(collection: string, lsn: number): Promise<number | undefined> {
    const [row] = await this.#query<{ committed_at: number }>(
      'SELECT committed_at FROM log WHERE collection = $1 AND lsn > $2 ORDER BY lsn LIMIT 1',
      [collection, lsn],
    );
    return row?.committed_at;
  }

  async countAfter(collection: string, lsn: number, head: number): Promise<number> {
    if (head <= lsn) return 0;
    if (lsn < this.#prunedThrough) return head - lsn; // estimated from LSNs once pruned
    const [row] = await this.#query<{ n: number }>('SELECT count(*) AS n FROM log WHERE collection = $1 AND lsn > $2', [collection, lsn]);
    return row!.n;
  }

  async lastSeqs(agentId: string): Promise<Record<string, number>> {
    const rows = await this.#query<{ incarnation: string; last_seq: number }>(
      'SELECT incarnation, last_seq FROM agent_sequences WHERE agent_id = $1 ORDER BY updated_at DESC',
      [agentId],
    );
    return Object.fromEntries(rows.map((r) => [r.incarnation, r.last_seq]));
  }

  async outcomeOf(agentId: string, incarnation: string, seq: number): Promise<RecordedOutcome | undefined> {
    const [row] = await this.#query<OutcomeRow>(OUTCOMES_OF_OPS, [[agentId], [incarnation], [seq]]);
    return row && toRecordedOutcome(row);
  }

  async countCommitted(agentId: string, incarnation: string, seq: number): Promise<number> {
    const [row] = await this.#query<{ n: number }>('SELECT count(*) AS n FROM log WHERE origin = $1 AND incarnation = $2 AND seq = $3', [
      agentId,
      incarnation,
      seq,
    ]);
    return row!.n;
  }

  /**
   * Records the new `prunedThrough` before deleting, so that a prune cut short never leaves a
   * reader trusting a log that has lost entries; then deletes in chunks, each its own short
   * transaction, so that group commits are not held up.
   */
  async prune(retention: { maxAgeMs: number; maxEntries: number }, now = Date.now()): Promise<number> {
    let cutoff = this.#prunedThrough;
    if (retention.maxEntries > 0) cutoff = Math.max(cutoff, this.#head - retention.maxEntries);
    if (retention.maxAgeMs > 0) {
      const [old] = await this.#query<{ lsn: number | null }>('SELECT max(lsn) AS lsn FROM log WHERE committed_at < $1', [
        now - retention.maxAgeMs,
      ]);
      cutoff = Math.max(cutoff, old!.lsn ?? 0);
    }
    if (cutoff > this.#prunedThrough) {
      await this.#query("UPDATE hub_meta SET value = greatest(value, $1) WHERE name = 'pruned_through'", [cutoff], 'write to');
      this.#prunedThrough = cutoff;
    }
    let deleted: number;
    do {
      deleted = await this.#wrap(
        'write to',
        async () =>
          (
            await this.#pool.query('DELETE FROM log WHERE lsn IN (SELECT lsn FROM log WHERE lsn <= $1 ORDER BY lsn LIMIT $2)', [
              cutoff,
              PRUNE_CHUNK,
            ])
          ).rowCount ?? 0,
      );
    } while (deleted > 0);
    return cutoff;
  }

  /** Stores or replaces a credential and bumps the credentials version, in one statement. */
  async putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): Promise<void> {
    await this.#query(
      `WITH stored AS (
         INSERT INTO agent_credentials (agent_id, token_hash, created_at, revoked_at, mosquitto_hash) VALUES ($1, $2, $3, NULL, $4)
         ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at, revoked_at = NULL,
           mosquitto_hash = excluded.mosquitto_hash
         RETURNING 1)
       UPDATE hub_meta SET value = value + 1 WHERE name = 'credentials_version' AND EXISTS (SELECT FROM stored)`,
      [agentId, tokenHash, Date.now(), mosquittoHash ?? null],
      'write to',
    );
  }

  async revokeCredential(agentId: string): Promise<boolean> {
    const [row] = await this.#query<{ revoked: boolean }>(
      `WITH revoked AS (
         UPDATE agent_credentials SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL RETURNING 1
       ), bump AS (
         UPDATE hub_meta SET value = value + 1 WHERE name = 'credentials_version' AND EXISTS (SELECT FROM revoked)
       )
       SELECT EXISTS (SELECT FROM revoked) AS revoked`,
      [Date.now(), agentId],
      'write to',
    );
    return row!.revoked;
  }

  async credential(agentId: string): Promise<Credential | undefined> {
    const [row] = await this.#query<{ token_hash: string; revoked_at: number | null }>(
      'SELECT token_hash, revoked_at FROM agent_credentials WHERE agent_id = $1',
      [agentId],
    );
    return row && toCredential(row);
  }

  async credentials(): Promise<CredentialListing[]> {
    const rows = await this.#query<{ agent_id: string; created_at: number; revoked_at: number | null }>(
      'SELECT agent_id, created_at, revoked_at FROM agent_credentials ORDER BY agent_id',
    );
    return rows.map(toCredentialListing);
  }

  async brokerCredentials(): Promise<Array<{ agentId: string; mosquittoHash: string | null }>> {
    const rows = await this.#query<{ agent_id: string; mosquitto_hash: string | null }>(
      'SELECT agent_id, mosquitto_hash FROM agent_credentials WHERE revoked_at IS NULL ORDER BY agent_id',
    );
    return rows.map(toBrokerCredential);
  }

  async credentialsVersion(): Promise<number> {
    const [row] = await this.#query<{ value: number }>("SELECT value FROM hub_meta WHERE name = 'credentials_version'");
    return row!.value;
  }

  /** Waits for the group commit in flight, then closes every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.#pool.end();
  }

  async #query<R extends pg.QueryResultRow>(text: string, values?: unknown[], action = 'read'): Promise<R[]> {
    return this.#wrap(action, async () => (await this.#pool.query<R>(text, values)).rows);
  }

  async #wrap<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw new StorageFailedError(this.#where, action, { cause });
    }
  }
}

/** The URL without its password, for messages. */
function describe(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    return parsed.toString();
  } catch {
    return 'the PostgreSQL URL given';
  }
}
