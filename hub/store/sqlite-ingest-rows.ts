import { documentHash } from '../../shared/digest.js';
import type { OpResult } from '../../shared/messages.js';
import type { ConflictRecord, LogEntry, RecordedOutcome, StoredDocument } from './hub-store.js';
import { committedOutcome, explicitOutcome } from './outcome-rows.js';
import { toStoredDocument, type DocumentRow } from './rows.js';
import { SqliteBucketRows } from './sqlite-bucket-rows.js';
import type { SqliteConnection } from './sqlite-connection.js';
import { GroupDigests } from './sqlite-group-digests.js';
import { committedRows, conflictRow, type DigestsBefore } from './write-rows.js';

/** A document as a group commit reads it, with its collection's digest; `version` null: no such document. */
type DocumentReadRow = Omit<DocumentRow, 'collection' | 'key' | 'version'> & { version: number | null; collection_digest: number | null };

/**
 * What a group commit reads and writes on SQLite, one indexed statement each, prepared when the
 * database opens: sequences, outcomes and committed runs, documents, the log, collection heads
 * and the conflict archive, and (SqliteBucketRows) the scope bucket index. It runs inside the
 * caller's transaction (`group`) and hands out no LSNs: `SqliteHubDb` keeps the head. Digests
 * ride on those statements: a document's read brings its hash and its collection's digest, its
 * write the new ones, and a collection's digest is written with its head.
 */
export class SqliteIngestRows {
  readonly #stmts;
  readonly #buckets: SqliteBucketRows;
  readonly #digests = new GroupDigests();

  constructor(db: SqliteConnection) {
    this.#buckets = new SqliteBucketRows(db);
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
      document: db.prepare<[string, string], DocumentReadRow>(
        `SELECT d.value, d.deleted, d.version, d.hlc, d.origin, d.field_hlcs, d.buckets, d.hash, c.digest AS collection_digest
         FROM (SELECT ? AS collection, ? AS key) p
         LEFT JOIN documents d ON d.collection = p.collection AND d.key = p.key
         LEFT JOIN collections c ON c.name = p.collection`,
      ),
      upsertDocument: db.prepare(
        `INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, field_hlcs, buckets, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted,
           version = excluded.version, hlc = excluded.hlc, origin = excluded.origin, field_hlcs = excluded.field_hlcs,
           buckets = excluded.buckets, prior_buckets = NULL, hash = excluded.hash`,
      ),
      archiveConflict: db.prepare(
        `INSERT INTO conflicts (collection, key, policy, reason, detail, loser_origin, loser_incarnation, loser_seq, loser_op,
           loser_value, loser_hlc, winner_lsn, winner_origin, winner_hlc, winner_value, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      appendLog: db.prepare(
        `INSERT INTO log (lsn, collection, key, op, value, hlc, origin, incarnation, seq, committed_at, digest, buckets, collection_digest)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      collectionHead: db.prepare<[string], { head_lsn: number }>('SELECT head_lsn FROM collections WHERE name = ?'),
      // The digest comes twice (positional parameters bind fastest); NULL: none moved here, the stored one stands.
      setCollectionHead: db.prepare<[string, number, number | null, number | null]>(
        `INSERT INTO collections (name, head_lsn, digest) VALUES (?, ?, coalesce(?, 0))
         ON CONFLICT (name) DO UPDATE SET head_lsn = excluded.head_lsn, digest = coalesce(?, digest)`,
      ),
      setDigest: db.prepare(
        `INSERT INTO collections (name, head_lsn, digest) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET digest = excluded.digest`,
      ),
    };
  }

  /**
   * Runs `fn`, one group commit, inside the caller's transaction: then writes the digests of the
   * collections whose head was not set after their last change. What it knew of digests is
   * forgotten however it ends.
   */
  group<T>(fn: () => T): T {
    this.#digests.clear();
    try {
      const result = this.#buckets.group(fn);
      for (const { collection, lsn, digest } of this.#digests.unsaved()) this.#stmts.setDigest.run(collection, lsn, digest);
      return result;
    } finally {
      this.#digests.clear();
    }
  }

  /** The LSN of the newest entry in the log (0 when it is empty). */
  loggedHead(): number {
    return this.#stmts.head.get()?.lsn ?? 0;
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
    const row = this.#stmts.document.get(collection, key)!;
    const digest = row.collection_digest ?? 0;
    if (row.version === null) {
      this.#digests.read(collection, key, 0, digest);
      return undefined;
    }
    // The row as it is: copying a row object costs more than reading it.
    const stored = row as DocumentReadRow & { version: number };
    this.#digests.read(
      collection,
      key,
      stored.hash ?? documentHash(collection, key, stored.version, Boolean(stored.deleted), stored.value),
      digest,
    );
    return toStoredDocument(stored);
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

  /**
   * Appends a change to the log at `lsn` and updates the document, and indexes a scoped change
   * in its buckets (an unscoped one costs no statement more); returns the change's size bound, its
   * collection's digest after it and a scoped change's buckets' digests after it.
   */
  append(entry: LogEntry, lsn: number): { bytes: number; digest: number; bucketDigests?: Record<string, number> } {
    const from = this.#before(entry.collection, entry.key);
    const { log, document, bytes, digest } = committedRows(entry, lsn, from);
    const before = entry.buckets ? this.#buckets.stored(entry.collection, entry.key) : undefined;
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
      log.buckets,
      log.collection_digest,
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
      document.buckets,
      document.hash,
    );
    this.#digests.committed(entry.collection, entry.key, lsn, document.hash, digest);
    if (!entry.buckets) return { bytes, digest };
    const hashes = { old: from.hash, new: document.hash };
    return { bytes, digest, bucketDigests: this.#buckets.index(entry.collection, entry.key, lsn, entry.buckets, before, hashes) };
  }

  /** A document's stored hash and its collection's digest: known from its read just before, else read now. */
  #before(collection: string, key: string): DigestsBefore {
    const known = this.#digests.before(collection, key);
    if (known) return known;
    this.document(collection, key);
    return this.#digests.before(collection, key)!;
  }

  collectionHead(collection: string): number {
    return this.#stmts.collectionHead.get(collection)?.head_lsn ?? 0;
  }

  setCollectionHead(collection: string, lsn: number): void {
    const digest = this.#digests.save(collection) ?? null;
    this.#stmts.setCollectionHead.run(collection, lsn, digest, digest);
  }

  bucketHead(bucket: string): number {
    return this.#buckets.head(bucket);
  }

  setBucketHead(bucket: string, lsn: number): void {
    this.#buckets.setHead(bucket, lsn);
  }
}
