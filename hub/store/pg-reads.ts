import type {
  ConflictRecord,
  DocumentPage,
  ListedDocument,
  LogPage,
  LoggedWrite,
  RecordedOutcome,
  Rejected,
  StoredDocument,
} from './hub-store.js';
import { toRecordedOutcome, type OutcomeRow } from './outcome-rows.js';
import { OUTCOMES_OF_OPS } from './pg-group-commit.js';
import type { PgPool } from './pg-pool.js';
import {
  documentPage,
  logPage,
  MAX_READ_FACTOR,
  pgWithinReadBudget,
  toConflictRecord,
  toListedDocument,
  toRejected,
  toStoredDocument,
  type ConflictRow,
  type DocumentRow,
  type ListedDocumentRow,
  type LogRow,
  type RejectedRow,
  toLoggedWrites,
  type LoggedWriteRow,
} from './rows.js';

/**
 * What readers ask of the PostgreSQL hub database outside group commits: log and snapshot pages
 * for agents, documents, listings and counts for the HTTP API, the fleet view and the dashboard.
 * Each is one query on the pool, beside the group commits.
 */
export class PgReads {
  readonly #db: PgPool;

  constructor(db: PgPool) {
    this.#db = db;
  }

  async logHolds(lsn: number): Promise<boolean> {
    return (await this.#db.query('SELECT 1 FROM log WHERE lsn = $1', [lsn])).length > 0;
  }

  async loggedWrites(lsns: readonly number[]): Promise<Map<number, LoggedWrite>> {
    return toLoggedWrites(
      await this.#db.query<LoggedWriteRow>(
        'SELECT lsn, collection, origin, incarnation, seq, buckets FROM log WHERE lsn = ANY($1::bigint[])',
        [lsns],
      ),
    );
  }

  async readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): Promise<LogPage> {
    // Rows past the page's read budget are not sent (see pgReadBudget).
    const columns = 'lsn, collection, key, op, value, hlc, origin, collection_digest';
    const rows = await this.#db.query<LogRow & { rows_in_query: string }>(
      pgWithinReadBudget(
        columns,
        `SELECT ${columns} FROM log WHERE lsn > $1 ${collections ? 'AND collection = ANY($4::text[])' : ''} ORDER BY lsn LIMIT $2`,
        'lsn',
        '$3',
      ),
      [from, limit, MAX_READ_FACTOR * maxBytes, ...(collections ? [collections] : [])],
    );
    return logPage(rows, from, limit, maxBytes, include, rows.length < Number(rows[0]?.rows_in_query ?? 0));
  }

  async readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): Promise<DocumentPage> {
    const where: string[] = [];
    const params: unknown[] = [limit, MAX_READ_FACTOR * maxBytes];
    if (after) where.push(`(collection, key) > ($${params.push(after[0])}, $${params.push(after[1])})`);
    if (collections) where.push(`collection = ANY($${params.push(collections)}::text[])`);
    const columns = 'collection, key, value, deleted, version, hlc, origin, field_hlcs';
    const rows = await this.#db.query<DocumentRow & { rows_in_query: string }>(
      pgWithinReadBudget(
        columns,
        `SELECT ${columns} FROM documents ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY collection, key LIMIT $1`,
        'collection, key',
        '$2',
      ),
      params,
    );
    return documentPage(rows, limit, maxBytes, (row) => include(row.collection), rows.length < Number(rows[0]?.rows_in_query ?? 0));
  }

  async document(collection: string, key: string): Promise<StoredDocument | undefined> {
    const [row] = await this.#db.query<DocumentRow>(
      'SELECT value, deleted, version, hlc, origin, field_hlcs, buckets FROM documents WHERE collection = $1 AND key = $2',
      [collection, key],
    );
    return row && toStoredDocument(row);
  }

  async listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]> {
    const prefix = options.prefix ?? '';
    const params: unknown[] = [collection, prefix, options.limit];
    // Keys with the prefix are one contiguous range from the prefix on, in byte order.
    const rows = await this.#db.query<ListedDocumentRow>(
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
    const rows = await this.#db.query<ConflictRow>(
      `SELECT * FROM conflicts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $1`,
      params,
    );
    return rows.map(toConflictRecord);
  }

  async rejections(limit: number): Promise<Rejected[]> {
    const rows = await this.#db.query<RejectedRow>(
      "SELECT agent_id, incarnation, seq, reason, detail, at FROM outcomes WHERE outcome = 'rejected' ORDER BY at DESC LIMIT $1",
      [limit],
    );
    return rows.map(toRejected);
  }

  async collectionHeads(): Promise<Record<string, number>> {
    const rows = await this.#db.query<{ name: string; head_lsn: number }>('SELECT name, head_lsn FROM collections ORDER BY name');
    return Object.fromEntries(rows.map((r) => [r.name, r.head_lsn]));
  }

  async firstCommitAfter(collection: string, lsn: number): Promise<number | undefined> {
    const [row] = await this.#db.query<{ committed_at: number }>(
      'SELECT committed_at FROM log WHERE collection = $1 AND lsn > $2 ORDER BY lsn LIMIT 1',
      [collection, lsn],
    );
    return row?.committed_at;
  }

  /** Log entries of a collection in (lsn, head], estimated from LSNs once pruned through `prunedThrough`. */
  async countAfter(collection: string, lsn: number, head: number, prunedThrough: number): Promise<number> {
    if (head <= lsn) return 0;
    if (lsn < prunedThrough) return head - lsn;
    const [row] = await this.#db.query<{ n: number }>('SELECT count(*) AS n FROM log WHERE collection = $1 AND lsn > $2', [
      collection,
      lsn,
    ]);
    return row!.n;
  }

  async lastSeqs(agentId: string): Promise<Record<string, number>> {
    const rows = await this.#db.query<{ incarnation: string; last_seq: number }>(
      'SELECT incarnation, last_seq FROM agent_sequences WHERE agent_id = $1 ORDER BY updated_at DESC',
      [agentId],
    );
    return Object.fromEntries(rows.map((r) => [r.incarnation, r.last_seq]));
  }

  async outcomeOf(agentId: string, incarnation: string, seq: number): Promise<RecordedOutcome | undefined> {
    const [row] = await this.#db.query<OutcomeRow>(OUTCOMES_OF_OPS, [[agentId], [incarnation], [seq]]);
    return row && toRecordedOutcome(row);
  }

  async countCommitted(agentId: string, incarnation: string, seq: number): Promise<number> {
    const [row] = await this.#db.query<{ n: number }>('SELECT count(*) AS n FROM log WHERE origin = $1 AND incarnation = $2 AND seq = $3', [
      agentId,
      incarnation,
      seq,
    ]);
    return row!.n;
  }
}
