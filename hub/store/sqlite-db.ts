import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { OpResult } from '../../shared/messages.js';
import { DatabaseTooNewError, StorageFailedError } from '../../shared/errors.js';

import { HUB_MIGRATIONS } from './sqlite-schema.js';
import type {
  ConflictRecord,
  Credential,
  CredentialListing,
  DocumentPage,
  IngestTx,
  ListedDocument,
  LogEntry,
  LogPage,
  RecordedOutcome,
  Rejected,
  StoredDocument,
} from './hub-store.js';
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
  type DocumentRow as SharedDocumentRow,
  type ListedDocumentRow,
  type LogRow,
  type RejectedRow,
} from './rows.js';
import { committedRows, conflictRow } from './write-rows.js';
import { committedOutcome, explicitOutcome } from './outcome-rows.js';

/**
 * The hub's primary store on SQLite: a gap-free log keyed by LSN, the current documents, the
 * head LSN of every collection, and per-agent sequence state with the outcome of every op.
 * WAL with synchronous=FULL: a commit the hub has acknowledged survives power loss.
 * All methods are synchronous; `SqliteHubStore` puts the `HubStore` contract over them, and
 * serves group commits (`IngestTx`) straight from here inside one transaction.
 */
/**
 * Switches the database to WAL. While another process opens the same new database (the hub of
 * another partition, reading the registry), SQLite can refuse the switch with SQLITE_BUSY at
 * once, without waiting in the busy handler: try again for a few seconds.
 */
function enableWal(db: Database.Database): void {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); // the constructor is synchronous
    }
  }
}

export class SqliteHubDb implements IngestTx {
  readonly path: string;
  readonly #db: Database.Database;
  #head: number;
  #prunedThrough: number;
  readonly #stmts;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'hub.db');
    try {
      mkdirSync(dataDir, { recursive: true });
      this.#db = new Database(this.path);
      this.#db.pragma('busy_timeout = 5000');
      enableWal(this.#db);
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('foreign_keys = ON');
      this.#migrate();
    } catch (cause) {
      throw new StorageFailedError(this.path, 'open', { cause });
    }
    const db = this.#db;
    this.#stmts = {
      head: db.prepare<[], { lsn: number | null }>('SELECT max(lsn) AS lsn FROM log'),
      lastSeq: db.prepare<[string, string], { last_seq: number }>(
        'SELECT last_seq FROM agent_sequences WHERE agent_id = ? AND incarnation = ?',
      ),
      setLastSeq: db.prepare(
        `INSERT INTO agent_sequences (agent_id, incarnation, last_seq, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (agent_id, incarnation) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at`,
      ),
      outcome: db.prepare<
        [string, string, number],
        { outcome: string; lsn: number | null; reason: string | null; detail: string | null; digest: string | null }
      >('SELECT outcome, lsn, reason, detail, digest FROM outcomes WHERE agent_id = ? AND incarnation = ? AND seq = ?'),
      putOutcome: db.prepare(
        'INSERT INTO outcomes (agent_id, incarnation, seq, outcome, lsn, reason, detail, digest, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      putCommittedRun: db.prepare(
        'INSERT INTO committed_runs (agent_id, incarnation, first_seq, last_seq, first_lsn) VALUES (?, ?, ?, ?, ?)',
      ),
      committedRun: db.prepare<[string, string, number], { last_seq: number; first_seq: number; first_lsn: number }>(
        'SELECT first_seq, last_seq, first_lsn FROM committed_runs WHERE agent_id = ? AND incarnation = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1',
      ),
      loggedDigest: db.prepare<[number], { digest: string | null }>('SELECT digest FROM log WHERE lsn = ?'),
      document: db.prepare<[string, string], DocumentRow>(
        'SELECT value, deleted, version, hlc, origin, field_hlcs FROM documents WHERE collection = ? AND key = ?',
      ),
      upsertDocument: db.prepare(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, field_hlcs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted,
           version = excluded.version, hlc = excluded.hlc, origin = excluded.origin, field_hlcs = excluded.field_hlcs`,
      ),
      archiveConflict: db.prepare(
        `INSERT INTO conflicts (collection, key, policy, reason, detail, loser_origin, loser_incarnation, loser_seq, loser_op,
           loser_value, loser_hlc, winner_lsn, winner_origin, winner_hlc, winner_value, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      appendLog: db.prepare(
        `INSERT INTO log (lsn, collection, key, op, value, hlc, origin, incarnation, seq, committed_at, digest)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      collectionHead: db.prepare<[string], { head_lsn: number }>('SELECT head_lsn FROM collections WHERE name = ?'),
      setCollectionHead: db.prepare(
        `INSERT INTO collections (name, head_lsn) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET head_lsn = excluded.head_lsn`,
      ),
      readLogAll: db.prepare<[number, number], LogRow>(
        'SELECT lsn, collection, key, op, value, hlc, origin FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?',
      ),
    };
    this.#prunedThrough = Number(
      (db.prepare("SELECT value FROM hub_meta WHERE name = 'pruned_through'").get() as { value: string } | undefined)?.value ?? '0',
    );
    this.#head = Math.max(this.#stmts.head.get()?.lsn ?? 0, this.#prunedThrough);
  }

  readonly #statements = new Map<string, Database.Statement>();

  /** A prepared statement, prepared once: the fleet view and dashboard ask every few seconds. */
  #statement<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement as unknown as Database.Statement<P, R>;
  }

  /** Every log entry up to this LSN has been removed by retention (0 = none). */
  get prunedThrough(): number {
    return this.#prunedThrough;
  }

  /**
   * Applies log retention: removes entries older than `maxAgeMs` and all but the newest
   * `maxEntries` (0 disables either rule). Deletes in chunks so that commits are not held up.
   * Returns the new `prunedThrough`.
   */
  prune(retention: { maxAgeMs: number; maxEntries: number }, now = Date.now()): number {
    let cutoff = this.#prunedThrough;
    if (retention.maxEntries > 0) cutoff = Math.max(cutoff, this.#head - retention.maxEntries);
    if (retention.maxAgeMs > 0) {
      const old = this.#statement('SELECT max(lsn) AS lsn FROM log WHERE committed_at < ?').get(now - retention.maxAgeMs) as {
        lsn: number | null;
      };
      cutoff = Math.max(cutoff, old.lsn ?? 0);
    }
    const chunk = this.#statement('DELETE FROM log WHERE lsn IN (SELECT lsn FROM log WHERE lsn <= ? ORDER BY lsn LIMIT 10000)');
    const record = this.#statement(
      "INSERT INTO hub_meta (name, value) VALUES ('pruned_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    );
    let deleted: number;
    do deleted = this.transaction(() => chunk.run(cutoff).changes);
    while (deleted > 0);
    if (cutoff > this.#prunedThrough) {
      this.transaction(() => record.run(String(cutoff)));
      this.#prunedThrough = cutoff;
    }
    return cutoff;
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
      .prepare<unknown[], DocumentRow & { collection: string; key: string }>(
        `SELECT collection, key, value, deleted, version, hlc, origin, field_hlcs FROM documents
         ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY collection, key LIMIT ?`,
      )
      .all(...params, limit);
    return documentPage(rows, limit, maxBytes, include);
  }

  #migrate(): void {
    // The version is read inside the write transaction: two processes opening one database at
    // once (hubs of two partitions sharing the registry) take turns, and the second finds the
    // work done instead of running the migrations again.
    this.#db
      .transaction(() => {
        const version = this.#db.pragma('user_version', { simple: true }) as number;
        if (version > HUB_MIGRATIONS.length) {
          throw new DatabaseTooNewError('the hub database', version, HUB_MIGRATIONS.length);
        }
        for (let v = version; v < HUB_MIGRATIONS.length; v++) this.#db.exec(HUB_MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${HUB_MIGRATIONS.length}`);
      })
      .immediate();
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE). `fn` must be synchronous. */
  transaction<T>(fn: () => T): T {
    const head = this.#head;
    try {
      return this.#db.transaction(fn).immediate();
    } catch (error) {
      this.#head = head; // the LSNs handed out inside the rolled-back transaction are free again
      throw error;
    }
  }

  /** The LSN of the last committed change (0 when the log is empty). */
  get head(): number {
    return this.#head;
  }

  lastSeq(agentId: string, incarnation: string): number {
    return this.#stmts.lastSeq.get(agentId, incarnation)?.last_seq ?? 0;
  }

  setLastSeq(agentId: string, incarnation: string, seq: number): void {
    this.#stmts.setLastSeq.run(agentId, incarnation, seq, Date.now());
  }

  /** The outcome recorded for an op, and the digest of the op's content (while still known). */
  outcome(agentId: string, incarnation: string, seq: number): RecordedOutcome | undefined {
    const row = this.#stmts.outcome.get(agentId, incarnation, seq);
    if (row) return explicitOutcome(row);
    const run = this.#stmts.committedRun.get(agentId, incarnation, seq);
    if (!run) return undefined;
    return committedOutcome(
      { firstSeq: run.first_seq, lastSeq: run.last_seq, firstLsn: run.first_lsn },
      seq,
      (lsn) => this.#stmts.loggedDigest.get(lsn)?.digest,
    );
  }

  /** Ops `first..last` of an incarnation committed at consecutive LSNs from `firstLsn`. */
  putCommittedRun(agentId: string, incarnation: string, first: number, last: number, firstLsn: number): void {
    this.#stmts.putCommittedRun.run(agentId, incarnation, first, last, firstLsn);
  }

  putOutcome(agentId: string, incarnation: string, result: OpResult, digest: string): void {
    this.#stmts.putOutcome.run(
      agentId,
      incarnation,
      result.seq,
      result.outcome,
      result.lsn ?? null,
      result.reason ?? null,
      result.detail ?? null,
      digest,
      Date.now(),
    );
  }

  document(collection: string, key: string): StoredDocument | undefined {
    const row = this.#stmts.document.get(collection, key);
    return row && toStoredDocument(row);
  }

  archiveConflict(record: Omit<ConflictRecord, 'id' | 'at'>): void {
    const r = conflictRow({ ...record, at: Date.now() });
    this.#stmts.archiveConflict.run(
      r.collection,
      r.key,
      r.policy,
      r.reason,
      r.detail,
      r.loser_origin,
      r.loser_incarnation,
      r.loser_seq,
      r.loser_op,
      r.loser_value,
      r.loser_hlc,
      r.winner_lsn,
      r.winner_origin,
      r.winner_hlc,
      r.winner_value,
      r.at,
    );
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

  /**
   * Appends a change to the log and updates the document. Returns its LSN and an upper bound of
   * its size as an encoded Change (from the value bytes just encoded: no second encoding).
   */
  commit(entry: LogEntry): { lsn: number; bytes: number } {
    const lsn = this.#head + 1;
    const { log, document, bytes } = committedRows(entry, lsn);
    this.#stmts.appendLog.run(
      log.lsn,
      log.collection,
      log.key,
      log.op,
      log.value,
      log.hlc,
      log.origin,
      log.incarnation,
      log.seq,
      log.committed_at,
      log.digest,
    );
    this.#stmts.upsertDocument.run(
      document.collection,
      document.key,
      document.value,
      document.deleted ? 1 : 0,
      document.version,
      document.hlc,
      document.origin,
      document.field_hlcs,
    );
    this.#head = lsn;
    return { lsn, bytes };
  }

  collectionHead(collection: string): number {
    return this.#stmts.collectionHead.get(collection)?.head_lsn ?? 0;
  }

  /** Live documents of a collection in key order, after `after`, starting with `prefix`. */
  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): ListedDocument[] {
    const from = options.after !== undefined && options.after > (options.prefix ?? '') ? options.after : (options.prefix ?? '');
    return this.#statement<[string, string, number], ListedDocumentRow>(
      'SELECT key, value, version, origin FROM documents WHERE collection = ? AND key >= ? AND deleted = 0 ORDER BY key LIMIT ?',
    )
      .all(collection, from, options.limit + 1)
      .filter((r) => r.key.startsWith(options.prefix ?? '') && (options.after === undefined || r.key > options.after))
      .slice(0, options.limit)
      .map(toListedDocument);
  }

  /** When the first change of a collection after `lsn` was committed (ms epoch), if still in the log. */
  firstCommitAfter(collection: string, lsn: number): number | undefined {
    return this.#statement<[string, number], { committed_at: number }>(
      'SELECT committed_at FROM log WHERE collection = ? AND lsn > ? ORDER BY lsn LIMIT 1',
    ).get(collection, lsn)?.committed_at;
  }

  /** Changes of a collection after `lsn` up to `head` (estimated from LSNs once pruned). */
  countAfter(collection: string, lsn: number, head: number): number {
    if (head <= lsn) return 0;
    if (lsn < this.#prunedThrough) return head - lsn;
    return this.#statement<[string, number], { n: number }>('SELECT count(*) AS n FROM log WHERE collection = ? AND lsn > ?').get(
      collection,
      lsn,
    )!.n;
  }

  /** Highest seq processed per incarnation of an agent. */
  lastSeqs(agentId: string): Record<string, number> {
    return Object.fromEntries(
      this.#statement<[string], { incarnation: string; last_seq: number }>(
        'SELECT incarnation, last_seq FROM agent_sequences WHERE agent_id = ? ORDER BY updated_at DESC',
      )
        .all(agentId)
        .map((r) => [r.incarnation, r.last_seq]),
    );
  }

  /** The most recent rejected ops, newest first. */
  rejections(limit: number): Rejected[] {
    return this.#statement<[number], RejectedRow>(
      "SELECT agent_id, incarnation, seq, reason, detail, at FROM outcomes WHERE outcome = 'rejected' ORDER BY at DESC LIMIT ?",
    )
      .all(limit)
      .map(toRejected);
  }

  collectionHeads(): Record<string, number> {
    const rows = this.#statement<[], { name: string; head_lsn: number }>('SELECT name, head_lsn FROM collections ORDER BY name').all();
    return Object.fromEntries(rows.map((r) => [r.name, r.head_lsn]));
  }

  setCollectionHead(collection: string, lsn: number): void {
    this.#stmts.setCollectionHead.run(collection, lsn);
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
            `SELECT lsn, collection, key, op, value, hlc, origin FROM log
             WHERE lsn > ? AND collection IN (${collections.map(() => '?').join(',')}) ORDER BY lsn LIMIT ?`,
          )
          .all(from, ...collections, limit)
      : this.#stmts.readLogAll.all(from, limit);
    return logPage(rows, from, limit, maxBytes, include);
  }

  /** Count of log entries written by one agent op identity; used by tests and the checker. */
  countCommitted(agentId: string, incarnation: string, seq: number): number {
    return (
      this.#statement('SELECT count(*) AS n FROM log WHERE origin = ? AND incarnation = ? AND seq = ?').get(agentId, incarnation, seq) as {
        n: number;
      }
    ).n;
  }

  /**
   * Stores (or replaces) an agent's credential; a replaced one stops working at once.
   * `mosquittoHash` is the same token in Mosquitto's password-file format, for an external broker.
   */
  putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): void {
    this.#statement(
      `INSERT INTO agent_credentials (agent_id, token_hash, created_at, revoked_at, mosquitto_hash) VALUES (?, ?, ?, NULL, ?)
       ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at, revoked_at = NULL,
         mosquitto_hash = excluded.mosquitto_hash`,
    ).run(agentId, tokenHash, Date.now(), mosquittoHash ?? null);
  }

  /** Unrevoked agents with their Mosquitto hash (null: provisioned before the hub stored one). */
  brokerCredentials(): Array<{ agentId: string; mosquittoHash: string | null }> {
    return this.#statement<[], { agent_id: string; mosquitto_hash: string | null }>(
      'SELECT agent_id, mosquitto_hash FROM agent_credentials WHERE revoked_at IS NULL ORDER BY agent_id',
    )
      .all()
      .map(toBrokerCredential);
  }

  /** Revokes an agent's credential; false if it had none. */
  revokeCredential(agentId: string): boolean {
    return (
      this.#statement('UPDATE agent_credentials SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL').run(Date.now(), agentId)
        .changes > 0
    );
  }

  credential(agentId: string): Credential | undefined {
    const row = this.#statement<[string], { token_hash: string; revoked_at: number | null }>(
      'SELECT token_hash, revoked_at FROM agent_credentials WHERE agent_id = ?',
    ).get(agentId);
    return row && toCredential(row);
  }

  credentials(): CredentialListing[] {
    return this.#statement<[], { agent_id: string; created_at: number; revoked_at: number | null }>(
      'SELECT agent_id, created_at, revoked_at FROM agent_credentials ORDER BY agent_id',
    )
      .all()
      .map(toCredentialListing);
  }

  /** Changes when another connection (e.g. `outpost hub agents revoke`) commits to this database. */
  dataVersion(): number {
    return this.#db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

type DocumentRow = Omit<SharedDocumentRow, 'collection' | 'key'>;
