import type { OpResult } from '../../shared/messages.js';
import type { LabelChange } from '../labels.js';
import type {
  Lineage,
  LostDocument,
  LostReport,
  ReapplyOutcome,
  ScopeRulesChange,
  ServedScopeRules,
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
  LoggedWrite,
  CommitResult,
} from './hub-store.js';
import { SqliteBucketReads } from './sqlite-bucket-reads.js';
import { SqliteConnection } from './sqlite-connection.js';
import { SqliteCredentials } from './sqlite-credentials.js';
import { SqliteDigests } from './sqlite-digests.js';
import { SqliteIngestRows } from './sqlite-ingest-rows.js';
import { SqliteLabels } from './sqlite-labels.js';
import { SqliteLineage } from './sqlite-lineage.js';
import { SqliteReads } from './sqlite-reads.js';
import { SqliteRebucket } from './sqlite-rebucket.js';
import { SqliteBucketJoins } from './bucket-joins.js';
import type { RebucketChunk } from './rebucket-rows.js';
import { SqliteRetention, type PrunePlan } from './sqlite-retention.js';

/**
 * The hub's primary store on SQLite: a gap-free log keyed by LSN, the current documents, the
 * head LSN of every collection, and per-agent sequence state with the outcome of every op.
 * All methods are synchronous; `SqliteHubStore` puts the `HubStore` contract over them, and
 * serves group commits (`IngestTx`) straight from here inside one transaction. This class keeps
 * the writer's bookkeeping (the head LSN, how far the log is pruned); the SQL lives in one part
 * per job, over one connection.
 */
export class SqliteHubDb implements IngestTx {
  readonly path: string;
  readonly #db: SqliteConnection;
  readonly #rows: SqliteIngestRows;
  readonly #reads: SqliteReads;
  readonly #bucketReads: SqliteBucketReads;
  readonly #retention: SqliteRetention;
  readonly #credentials: SqliteCredentials;
  readonly #labels: SqliteLabels;
  readonly #lineage: SqliteLineage;
  readonly #rebucket: SqliteRebucket;
  /** Where each device may read a bucket's log from (HubStore.bucketJoins). */
  readonly bucketJoins: SqliteBucketJoins;
  /** Content digests outside group commits (HubStore's DigestReads), given the head and prunedThrough. */
  readonly digests: SqliteDigests;
  #head: number;
  #prunedThrough: number;

  constructor(dataDir: string) {
    this.#db = new SqliteConnection(dataDir);
    this.path = this.#db.path;
    this.#rows = new SqliteIngestRows(this.#db);
    this.#reads = new SqliteReads(this.#db);
    this.#bucketReads = new SqliteBucketReads(this.#db);
    this.#retention = new SqliteRetention(this.#db);
    this.#credentials = new SqliteCredentials(this.#db);
    this.#labels = new SqliteLabels(this.#db);
    this.#lineage = new SqliteLineage(this.#db);
    this.#rebucket = new SqliteRebucket(this.#db);
    this.bucketJoins = new SqliteBucketJoins(this.#db);
    this.digests = new SqliteDigests(this.#db);
    this.digests.backfill();
    this.#prunedThrough = this.#retention.prunedThrough();
    this.#head = Math.max(this.#rows.loggedHead(), this.#prunedThrough);
  }

  /** The LSN of the last committed change (0 when the log is empty). */
  get head(): number {
    return this.#head;
  }

  /** Every log entry up to this LSN has been removed by retention (0 = none). */
  get prunedThrough(): number {
    return this.#prunedThrough;
  }

  /** Runs `fn`, a group commit, in one write transaction (BEGIN IMMEDIATE). `fn` must be synchronous. */
  transaction<T>(fn: () => T): T {
    const head = this.#head;
    try {
      return this.#db.transaction(() => this.#rows.group(fn));
    } catch (error) {
      this.#head = head; // the LSNs handed out inside the rolled-back transaction are free again
      throw error;
    }
  }

  // The group commit's reads and writes (IngestTx).

  lastSeq(agentId: string, incarnation: string): number {
    return this.#rows.lastSeq(agentId, incarnation);
  }

  setLastSeq(agentId: string, incarnation: string, seq: number): void {
    this.#rows.setLastSeq(agentId, incarnation, seq);
  }

  /** The outcome recorded for an op, and the digest of the op's content (while still known). */
  outcome(agentId: string, incarnation: string, seq: number): RecordedOutcome | undefined {
    return this.#rows.outcome(agentId, incarnation, seq);
  }

  /** Ops `first..last` of an incarnation committed at consecutive LSNs from `firstLsn`. */
  putCommittedRun(agentId: string, incarnation: string, first: number, last: number, firstLsn: number): void {
    this.#rows.putCommittedRun(agentId, incarnation, first, last, firstLsn);
  }

  putOutcome(agentId: string, incarnation: string, result: OpResult, digest: string): void {
    this.#rows.putOutcome(agentId, incarnation, result, digest);
  }

  document(collection: string, key: string): StoredDocument | undefined {
    return this.#rows.document(collection, key);
  }

  archiveConflict(record: Omit<ConflictRecord, 'id' | 'at'>): void {
    this.#rows.archiveConflict(record);
  }

  /**
   * Appends a change to the log and updates the document. Returns its LSN, an upper bound of its
   * size as an encoded Change (from the value bytes just encoded: no second encoding), and its
   * collection's digest after it.
   */
  commit(entry: LogEntry): CommitResult {
    const lsn = this.#head + 1;
    const appended = this.#rows.append(entry, lsn);
    this.#head = lsn;
    return { lsn, ...appended };
  }

  collectionHead(collection: string): number {
    return this.#rows.collectionHead(collection);
  }

  setCollectionHead(collection: string, lsn: number): void {
    this.#rows.setCollectionHead(collection, lsn);
  }

  bucketHead(bucket: string): number {
    return this.#rows.bucketHead(bucket);
  }

  setBucketHead(bucket: string, lsn: number): void {
    this.#rows.setBucketHead(bucket, lsn);
  }

  // Reads outside group commits.

  /** Whether the log holds the entry at `lsn` (see HubStore.logHolds). */
  logHolds(lsn: number): boolean {
    return this.#reads.logHolds(lsn);
  }

  loggedWrites(lsns: readonly number[]): Map<number, LoggedWrite> {
    return this.#reads.loggedWrites(lsns);
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
    include?: (collection: string) => boolean,
  ): LogPage {
    return this.#reads.readLog(from, collections, limit, maxBytes, include);
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
    include?: (collection: string) => boolean,
  ): DocumentPage {
    return this.#reads.readDocuments(collections, after, limit, maxBytes, include);
  }

  /** A bucket's changes after `from`, through its index (see HubStore.readBucketLog). */
  readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): LogPage {
    return this.#bucketReads.readBucketLog(bucket, from, limit, maxBytes);
  }

  /** One snapshot page of a bucket, without what `held` already brought (see HubStore.readBucketDocuments). */
  readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): DocumentPage {
    return this.#bucketReads.readBucketDocuments(bucket, after, limit, maxBytes, held);
  }

  bucketHeads(buckets: readonly string[]): Map<string, number> {
    return this.#bucketReads.bucketHeads(buckets);
  }

  bucketSize(buckets: readonly string[]): { documents: number; bytes: number } {
    return this.#bucketReads.bucketSize(buckets);
  }

  bucketBacklog(cursors: ReadonlyMap<string, number>): number {
    return this.#bucketReads.bucketBacklog(cursors);
  }

  /** Live documents of a collection in key order, after `after`, starting with `prefix`. */
  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): ListedDocument[] {
    return this.#reads.listDocuments(collection, options);
  }

  /** Archived conflicts, newest first; optionally of one collection or document. */
  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): ConflictRecord[] {
    return this.#reads.conflicts(query);
  }

  /** When the first change of a collection after `lsn` was committed (ms epoch), if still in the log. */
  firstCommitAfter(collection: string, lsn: number): number | undefined {
    return this.#reads.firstCommitAfter(collection, lsn);
  }

  /** Changes of a collection after `lsn` up to `head` (estimated from LSNs once pruned). */
  countAfter(collection: string, lsn: number, head: number): number {
    return this.#reads.countAfter(collection, lsn, head, this.#prunedThrough);
  }

  /** Highest seq processed per incarnation of an agent. */
  lastSeqs(agentId: string): Record<string, number> {
    return this.#reads.lastSeqs(agentId);
  }

  /** The most recent rejected ops, newest first. */
  rejections(limit: number): Rejected[] {
    return this.#reads.rejections(limit);
  }

  collectionHeads(): Record<string, number> {
    return this.#reads.collectionHeads();
  }

  /** Count of log entries written by one agent op identity; used by tests and the checker. */
  countCommitted(agentId: string, incarnation: string, seq: number): number {
    return this.#reads.countCommitted(agentId, incarnation, seq);
  }

  /**
   * Applies log retention at once: removes entries older than `maxAgeMs` and all but the newest
   * `maxEntries` (0 disables either rule). Returns the new `prunedThrough`. The hub prunes through
   * SqliteHubStore instead, which lets commits run between the chunks.
   */
  prune(retention: { maxAgeMs: number; maxEntries: number }, now = Date.now()): number {
    const plan = this.startPrune(retention, now);
    while (this.pruneChunk(plan) > 0);
    return plan.through;
  }

  /**
   * The first step of retention: where the log is cut, recorded as `prunedThrough` before any
   * entry is removed (see SqliteRetention), with the dedup state as old. Returns the plan;
   * `pruneChunk` then removes the rows.
   */
  startPrune(retention: { maxAgeMs: number; maxEntries: number }, now = Date.now()): PrunePlan {
    const cutoff = this.#retention.cutoff(retention, this.#head, this.#prunedThrough, now);
    if (cutoff > this.#prunedThrough) {
      this.#retention.record(cutoff);
      this.#prunedThrough = cutoff;
    }
    return this.#retention.plan(cutoff, retention.maxAgeMs, now);
  }

  /** Removes one chunk of what `plan` prunes (a transaction of its own); how many rows went. */
  pruneChunk(plan: PrunePlan): number {
    return this.#retention.deleteChunk(plan);
  }

  // Scope rules that changed while the hub was stopped (see HubStore.rebucket).

  /** Rebuckets one chunk of a collection's documents after `after` (undefined: from the first), in one transaction. */
  rebucketChunk(collection: string, after: string | undefined, change: ScopeRulesChange): RebucketChunk {
    return this.#rebucket.chunk(collection, after, change);
  }

  /** Records the rules a collection is indexed with (or forgets them), once every chunk is rebucketed. */
  finishRebucket(collection: string, change: ScopeRulesChange): void {
    this.#rebucket.finish(collection, change);
  }

  scopeRulesServed(): Map<string, ServedScopeRules> {
    return this.#rebucket.served();
  }

  unfinishedRebuckets(): Set<string> {
    return this.#rebucket.unfinished();
  }

  // Agents' credentials.

  /** Stores (or replaces) an agent's credential (SqliteCredentials.put). */
  putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): void {
    this.#credentials.put(agentId, tokenHash, mosquittoHash);
  }

  /** Unrevoked agents with their Mosquitto hash (null: provisioned before the hub stored one). */
  brokerCredentials(): Array<{ agentId: string; mosquittoHash: string | null }> {
    return this.#credentials.brokerCredentials();
  }

  /** Revokes an agent's credential; false if it had none. */
  revokeCredential(agentId: string): boolean {
    return this.#credentials.revoke(agentId);
  }

  credential(agentId: string): Credential | undefined {
    return this.#credentials.get(agentId);
  }

  rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): void {
    this.#credentials.rememberVerifiedToken(agentId, tokenHash, fingerprint);
  }

  credentials(): CredentialListing[] {
    return this.#credentials.list();
  }

  /** Changes when another connection (e.g. `outpost hub agents revoke`) commits to this database. */
  dataVersion(): number {
    return this.#db.dataVersion();
  }

  // Agents' labels.

  labels(agentId: string): Record<string, string> {
    return this.#labels.get(agentId);
  }

  allLabels(): Map<string, Record<string, string>> {
    return this.#labels.all();
  }

  labelsVersion(): number {
    return this.#labels.version();
  }

  /** Sets and removes labels in one transaction; the labels after (ConfigError if refused, nothing written). */
  setLabels(agentId: string, change: LabelChange): Record<string, string> {
    return this.#labels.set(agentId, change);
  }

  // Lineage, and what restores lost.

  lineage(): Lineage {
    return this.#lineage.read();
  }

  /** A new lineage parting at the head; HubRunningError if another connection has the database open. */
  markRestored(): Lineage {
    return this.#lineage.markRestored(this.#head);
  }

  recordLost(report: LostReport, at = Date.now()): void {
    this.#lineage.recordLost(report, at);
  }

  lostDocuments(query: { pending?: boolean; limit: number }): LostDocument[] {
    return this.#lineage.lostDocuments(query);
  }

  markReapplied(outcomes: readonly ReapplyOutcome[], at = Date.now()): void {
    this.#lineage.markReapplied(outcomes, at);
  }

  close(): void {
    this.#db.close();
  }
}
