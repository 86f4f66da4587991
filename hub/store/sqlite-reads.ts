import type { ConflictRecord, DocumentPage, ListedDocument, LogPage, LoggedWrite, Rejected } from './hub-store.js';
import {
  documentPage,
  logPage,
  toConflictRecord,
  toListedDocument,
  toRejected,
  type ConflictRow,
  type DocumentRow,
  type ListedDocumentRow,
  type LogRow,
  type RejectedRow,
  toLoggedWrites,
  type LoggedWriteRow,
} from './rows.js';
import type { SqliteConnection } from './sqlite-connection.js';

/**
 * What readers ask of the SQLite hub database outside group commits: log and snapshot pages for
 * agents, listings and counts for the HTTP API, the fleet view and the dashboard. Statements
 * whose SQL is fixed are prepared once; those built per call (collection lists, optional
 * filters) are prepared per call.
 */
export class SqliteReads {
  readonly #db: SqliteConnection;
  readonly #readLogAll;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#readLogAll = db.prepare<[number, number], LogRow>(
      'SELECT lsn, collection, key, op, value, hlc, origin, collection_digest FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?',
    );
  }

  /**
   * Committed changes after `from`, in LSN order, at most `limit`, and only as many as fit in
   * `maxBytes` of values (at least one). `collections` undefined means all. `complete` says
   * that nothing after the returned changes existed when read.
   */
  readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): LogPage {
    const rows = collections
      ? this.#db
          .prepare<unknown[], LogRow>(
            `SELECT lsn, collection, key, op, value, hlc, origin, collection_digest FROM log
             WHERE lsn > ? AND collection IN (${collections.map(() => '?').join(',')}) ORDER BY lsn LIMIT ?`,
          )
          .iterate(from, ...collections, limit)
      : this.#readLogAll.iterate(from, limit);
    // Iterated, so that the rows after the page's read budget are never read.
    return logPage(rows, from, limit, maxBytes, include);
  }

  logHolds(lsn: number): boolean {
    return this.#db.statement('SELECT 1 FROM log WHERE lsn = ?').get(lsn) !== undefined;
  }

  loggedWrites(lsns: readonly number[]): Map<number, LoggedWrite> {
    const rows = this.#db
      .statement<[string], LoggedWriteRow>(
        'SELECT lsn, collection, origin, incarnation, seq, buckets FROM log WHERE lsn IN (SELECT value FROM json_each(?))',
      )
      .all(JSON.stringify(lsns));
    return toLoggedWrites(rows);
  }

  /**
   * Current documents (tombstones included) in (collection, key) order after `after`, as changes
   * at their current version: one snapshot page. `next` is set when more may follow.
   */
  readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include: (collection: string) => boolean = () => true,
  ): DocumentPage {
    const where: string[] = [];
    const params: unknown[] = [];
    if (after) {
      where.push('(collection, key) > (?, ?)');
      params.push(after[0], after[1]);
    }
    if (collections) {
      where.push(`collection IN (${collections.map(() => '?').join(',')})`);
      params.push(...collections);
    }
    const rows = this.#db
      .prepare<unknown[], DocumentRow>(
        `SELECT collection, key, value, deleted, version, hlc, origin, field_hlcs FROM documents
         ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY collection, key LIMIT ?`,
      )
      .iterate(...params, limit);
    return documentPage(rows, limit, maxBytes, (row) => include(row.collection));
  }

  /** Live documents of a collection in key order, after `after`, starting with `prefix`. */
  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): ListedDocument[] {
    const from = options.after !== undefined && options.after > (options.prefix ?? '') ? options.after : (options.prefix ?? '');
    return this.#db
      .statement<[string, string, number], ListedDocumentRow>(
        'SELECT key, value, version, origin FROM documents WHERE collection = ? AND key >= ? AND deleted = 0 ORDER BY key LIMIT ?',
      )
      .all(collection, from, options.limit + 1)
      .filter((r) => r.key.startsWith(options.prefix ?? '') && (options.after === undefined || r.key > options.after))
      .slice(0, options.limit)
      .map(toListedDocument);
  }

  /** Archived conflicts, newest first; optionally of one collection or document. */
  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): ConflictRecord[] {
    const filters: Array<[string, unknown]> = [];
    if (query.collection !== undefined) filters.push(['collection = ?', query.collection]);
    if (query.key !== undefined) filters.push(['key = ?', query.key]);
    if (query.before !== undefined) filters.push(['id < ?', query.before]);
    const where = filters.map(([clause]) => clause);
    const params = filters.map(([, param]) => param);
    const rows = this.#db
      .prepare<unknown[], ConflictRow>(
        `SELECT * FROM conflicts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`,
      )
      .all(...params, query.limit);
    return rows.map(toConflictRecord);
  }

  /** When the first change of a collection after `lsn` was committed (ms epoch), if still in the log. */
  firstCommitAfter(collection: string, lsn: number): number | undefined {
    return this.#db
      .statement<[string, number], { committed_at: number }>(
        'SELECT committed_at FROM log WHERE collection = ? AND lsn > ? ORDER BY lsn LIMIT 1',
      )
      .get(collection, lsn)?.committed_at;
  }

  /** Changes of a collection after `lsn` up to `head` (estimated from LSNs once pruned through `prunedThrough`). */
  countAfter(collection: string, lsn: number, head: number, prunedThrough: number): number {
    if (head <= lsn) return 0;
    if (lsn < prunedThrough) return head - lsn;
    return this.#db
      .statement<[string, number], { n: number }>('SELECT count(*) AS n FROM log WHERE collection = ? AND lsn > ?')
      .get(collection, lsn)!.n;
  }

  /** Highest seq processed per incarnation of an agent. */
  lastSeqs(agentId: string): Record<string, number> {
    return Object.fromEntries(
      this.#db
        .statement<[string], { incarnation: string; last_seq: number }>(
          'SELECT incarnation, last_seq FROM agent_sequences WHERE agent_id = ? ORDER BY updated_at DESC',
        )
        .all(agentId)
        .map((r) => [r.incarnation, r.last_seq]),
    );
  }

  /** The most recent rejected ops, newest first. */
  rejections(limit: number): Rejected[] {
    return this.#db
      .statement<[number], RejectedRow>(
        "SELECT agent_id, incarnation, seq, reason, detail, at FROM outcomes WHERE outcome = 'rejected' ORDER BY at DESC LIMIT ?",
      )
      .all(limit)
      .map(toRejected);
  }

  collectionHeads(): Record<string, number> {
    const rows = this.#db.statement<[], { name: string; head_lsn: number }>('SELECT name, head_lsn FROM collections ORDER BY name').all();
    return Object.fromEntries(rows.map((r) => [r.name, r.head_lsn]));
  }

  /** Count of log entries written by one agent op identity; used by tests and the checker. */
  countCommitted(agentId: string, incarnation: string, seq: number): number {
    return (
      this.#db
        .statement('SELECT count(*) AS n FROM log WHERE origin = ? AND incarnation = ? AND seq = ?')
        .get(agentId, incarnation, seq) as {
        n: number;
      }
    ).n;
  }
}
