import { PgContentStore } from '../blobs/pg-content-store.js';
import type { ObjectChunks } from '../blobs/object-chunks.js';
import { OutpostError, StorageFailedError } from '../../shared/errors.js';
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
  HubStore,
  IngestPlan,
  HeldWhole,
  IngestTx,
  ListedDocument,
  LogPage,
  RecordedOutcome,
  Rejected,
  StoredDocument,
  LoggedWrite,
} from './hub-store.js';
import { PgBucketReads } from './pg-bucket-reads.js';
import type { PgBucketState } from './pg-bucket-state.js';
import { prefetchPlan, whyFenced, writeGroupCommit, type WriterPosition } from './pg-group-commit.js';
import { BufferedIngestTx } from './pg-ingest-tx.js';
import { PgCredentials } from './pg-credentials.js';
import { PgLabels } from './pg-labels.js';
import { PgBucketJoins, type BucketJoins } from './bucket-joins.js';
import { PgLineage } from './pg-lineage.js';
import { openContentObjects, openWriterState, type PostgresHubStoreOptions, type WriterState } from './pg-open.js';
import { PgPool } from './pg-pool.js';
import { PgReads } from './pg-reads.js';
import { PgRebucket } from './pg-rebucket.js';
import { rebucketInChunks } from './rebucket-rows.js';
import { PgRetention } from './pg-retention.js';
import { PgDigests } from './pg-digests.js';
import { verifyPg } from './pg-verify.js';
import type { HubVerifyReport, RangeDigests, RangeDocuments, RangeDocumentsQuery } from './digest-reads.js';
import type { BucketDigest } from './bucket-digests.js';
import { pgBucketDigests } from './pg-bucket-digests.js';

/**
 * The hub's primary store on PostgreSQL, with the SQLite store's semantics. A group commit reads
 * what its plan names in one parallel round of queries, runs `work` over those rows in memory,
 * and writes everything in one statement (one transaction) guarded by the leadership row.
 * `head` and `prunedThrough` are this writer's own bookkeeping, loaded when it opens; reads,
 * credentials, labels and retention's SQL live in parts of their own.
 */
export class PostgresHubStore implements HubStore {
  readonly kind = 'postgres';
  /** Blob content: `bytea` chunks in this database, or objects in a bucket (PgContentStore). */
  readonly content: PgContentStore;
  readonly #db: PgPool;
  readonly #reads: PgReads;
  readonly #bucketReads: PgBucketReads;
  readonly #digests: PgDigests;
  readonly #credentials: PgCredentials;
  readonly #labels: PgLabels;
  readonly bucketJoins: BucketJoins;
  readonly #retention: PgRetention;
  readonly #rebucket: PgRebucket;
  readonly #epoch: number;
  #head: number;
  #groupCommits: number;
  #prunedThrough: number;
  /** Every bucket's head and digest: the writer's own copy (see PgBucketState). */
  readonly #buckets: PgBucketState;
  /** Group commits run one after another: each starts from the head the previous one left. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #lineageRows: PgLineage;
  #lineage: Lineage;
  /** The partition whose log this is (from its schema): its leader lock is what a restore checks. */
  readonly #partition: string;

  private constructor(db: PgPool, state: WriterState, objects: ObjectChunks | undefined) {
    this.#db = db;
    this.#reads = new PgReads(db);
    this.#bucketReads = new PgBucketReads(db);
    this.#digests = new PgDigests(db);
    this.#credentials = new PgCredentials(db);
    this.#labels = new PgLabels(db);
    this.bucketJoins = new PgBucketJoins(db);
    this.content = new PgContentStore(db, objects);
    this.#retention = new PgRetention(db);
    this.#rebucket = new PgRebucket(db, state.buckets);
    this.#epoch = state.epoch;
    this.#head = state.head;
    this.#groupCommits = state.groupCommits;
    this.#prunedThrough = state.prunedThrough;
    this.#buckets = state.buckets;
    this.#lineageRows = new PgLineage(db);
    this.#lineage = state.lineage;
    this.#partition = state.partition;
  }

  /** Connects, migrates (under an advisory lock: hubs starting together take turns) and loads the writer's state. */
  static async open(url: string, options: PostgresHubStoreOptions = {}): Promise<PostgresHubStore> {
    const db = new PgPool(url, options);
    try {
      const state = await openWriterState(db, options);
      return new PostgresHubStore(db, state, await openContentObjects(db, options));
    } catch (cause) {
      await db.end().catch(() => undefined);
      // Not a storage failure: the software is too old for the database, or it is configured wrongly.
      if (cause instanceof OutpostError) throw cause;
      throw new StorageFailedError(db.where, 'open', { cause });
    }
  }

  get head(): number {
    return this.#head;
  }

  get prunedThrough(): number {
    return this.#prunedThrough;
  }

  ingest<T>(plan: IngestPlan, work: (tx: IngestTx, heldWhole: HeldWhole) => T): Promise<T> {
    return this.#serially(() => this.#ingest(plan, work));
  }

  /** Runs `write` after the group commits (and rebucket transactions) before it: one writes at a time. */
  #serially<T>(write: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(write);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #ingest<T>(plan: IngestPlan, work: (tx: IngestTx, heldWhole: HeldWhole) => T): Promise<T> {
    const prefetch = await this.#db.wrap('read', () => prefetchPlan(this.#db.pool, plan));
    const tx = new BufferedIngestTx(plan, prefetch, this.#head, this.#buckets);
    const result = work(tx, (hash, size) => prefetch.contents.get(hash) === size); // a throw here has written nothing
    const writes = tx.writes();
    // Nothing written (only redeliveries re-acked from recorded outcomes): nothing to fence.
    if (!writes) return result;
    const from = this.#position();
    const committed = await this.#db.wrap('write to', () => writeGroupCommit(this.#db.pool, from, tx.head, writes));
    if (!committed) throw await whyFenced(this.#db, this.#epoch, this.#head);
    this.#head = tx.head;
    this.#groupCommits += 1;
    this.#buckets.committed(writes.bucketHeads);
    return result;
  }

  logHolds(lsn: number): Promise<boolean> {
    return this.#reads.logHolds(lsn);
  }

  loggedWrites(lsns: readonly number[]): Promise<Map<number, LoggedWrite>> {
    return this.#reads.loggedWrites(lsns);
  }

  readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<LogPage> {
    return this.#reads.readLog(from, collections, limit, maxBytes, include);
  }

  readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<DocumentPage> {
    return this.#reads.readDocuments(collections, after, limit, maxBytes, include);
  }

  readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): Promise<LogPage> {
    return this.#bucketReads.readBucketLog(bucket, from, limit, maxBytes);
  }

  readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): Promise<DocumentPage> {
    return this.#bucketReads.readBucketDocuments(bucket, after, limit, maxBytes, held);
  }

  bucketHeads(buckets: readonly string[]): Promise<Map<string, number>> {
    return this.#bucketReads.bucketHeads(buckets);
  }

  bucketSize(buckets: readonly string[]): Promise<{ documents: number; bytes: number }> {
    return this.#bucketReads.bucketSize(buckets);
  }

  bucketBacklog(cursors: ReadonlyMap<string, number>): Promise<number> {
    return this.#bucketReads.bucketBacklog(cursors);
  }

  document(collection: string, key: string): Promise<StoredDocument | undefined> {
    return this.#reads.document(collection, key);
  }

  digestAt(collection: string, lsn: number): Promise<number | undefined> {
    return this.#digests.digestAt(collection, lsn);
  }

  bucketDigests(buckets: readonly string[]): Promise<Map<string, BucketDigest>> {
    return pgBucketDigests(this.#db, buckets);
  }

  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number, bucket?: string): Promise<RangeDigests> {
    return this.#digests.rangeDigests(collection, depth, parents, bits, bucket);
  }

  rangeDocuments(query: RangeDocumentsQuery): Promise<RangeDocuments> {
    return this.#digests.rangeDocuments(query);
  }

  /** With `repair`, only while no hub leads or stands by for this partition (see verifyPg). */
  verify(options: { repair?: boolean } = {}): Promise<HubVerifyReport> {
    return verifyPg(this.#db, this.#partition, options.repair ?? false);
  }

  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]> {
    return this.#reads.listDocuments(collection, options);
  }

  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): Promise<ConflictRecord[]> {
    return this.#reads.conflicts(query);
  }

  rejections(limit: number): Promise<Rejected[]> {
    return this.#reads.rejections(limit);
  }

  collectionHeads(): Promise<Record<string, number>> {
    return this.#reads.collectionHeads();
  }

  firstCommitAfter(collection: string, lsn: number): Promise<number | undefined> {
    return this.#reads.firstCommitAfter(collection, lsn);
  }

  countAfter(collection: string, lsn: number, head: number): Promise<number> {
    return this.#reads.countAfter(collection, lsn, head, this.#prunedThrough);
  }

  lastSeqs(agentId: string): Promise<Record<string, number>> {
    return this.#reads.lastSeqs(agentId);
  }

  outcomeOf(agentId: string, incarnation: string, seq: number): Promise<RecordedOutcome | undefined> {
    return this.#reads.outcomeOf(agentId, incarnation, seq);
  }

  countCommitted(agentId: string, incarnation: string, seq: number): Promise<number> {
    return this.#reads.countCommitted(agentId, incarnation, seq);
  }

  /**
   * Records the new `prunedThrough` before deleting, so that a prune cut short never leaves a
   * reader trusting a log that has lost entries; then deletes in chunks, each its own short
   * transaction, so that group commits are not held up, and the dedup state as old (see PgRetention).
   */
  async prune(retention: { maxAgeMs: number; maxEntries: number }, now = Date.now(), signal?: AbortSignal): Promise<number> {
    const cutoff = await this.#retention.cutoff(retention, this.#head, this.#prunedThrough, now);
    if (cutoff > this.#prunedThrough) {
      await this.#retention.record(cutoff);
      this.#prunedThrough = cutoff;
    }
    await this.#retention.deleteThrough(cutoff, retention.maxAgeMs, now, signal);
    return cutoff;
  }

  /**
   * Each chunk is a transaction of its own, queued as a group commit is: group commits run
   * between chunks, never during one. Each is fenced as a group commit is (PgRebucket), so a
   * deposed leader or a second writer rebuckets nothing more.
   */
  async rebucket(collection: string, change: ScopeRulesChange): Promise<number> {
    const changed = await rebucketInChunks((after) =>
      this.#serially(async () => this.#counted(await this.#rebucket.chunk(this.#position(), collection, after, change))),
    );
    await this.#serially(async () => this.#counted(await this.#rebucket.finish(this.#position(), collection, change)));
    return changed;
  }

  scopeRulesServed(): Promise<Map<string, ServedScopeRules>> {
    return this.#rebucket.served();
  }

  unfinishedRebuckets(): Promise<Set<string>> {
    return this.#rebucket.unfinished();
  }

  #position(): WriterPosition {
    return { epoch: this.#epoch, head: this.#head, groupCommits: this.#groupCommits };
  }

  /** A fenced write outside a group commit: counted, as the fence counted it, or refused. */
  async #counted<T>(written: T | undefined): Promise<T> {
    if (written === undefined) throw await whyFenced(this.#db, this.#epoch, this.#head);
    this.#groupCommits += 1;
    return written;
  }

  putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): Promise<void> {
    return this.#credentials.put(agentId, tokenHash, mosquittoHash);
  }

  revokeCredential(agentId: string): Promise<boolean> {
    return this.#credentials.revoke(agentId);
  }

  credential(agentId: string): Promise<Credential | undefined> {
    return this.#credentials.get(agentId);
  }

  rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): Promise<void> {
    return this.#credentials.rememberVerifiedToken(agentId, tokenHash, fingerprint);
  }

  credentials(): Promise<CredentialListing[]> {
    return this.#credentials.list();
  }

  brokerCredentials(): Promise<Array<{ agentId: string; mosquittoHash: string | null }>> {
    return this.#credentials.brokerCredentials();
  }

  credentialsVersion(): Promise<number> {
    return this.#credentials.version();
  }

  labels(agentId: string): Promise<Record<string, string>> {
    return this.#labels.get(agentId);
  }

  allLabels(): Promise<Map<string, Record<string, string>>> {
    return this.#labels.all();
  }

  setLabels(agentId: string, set: Readonly<Record<string, string>>, unset: readonly string[]): Promise<Record<string, string>> {
    return this.#labels.set(agentId, { set, unset });
  }

  labelsVersion(): Promise<number> {
    return this.#labels.version();
  }

  get lineage(): Lineage {
    return this.#lineage;
  }

  async markRestored(): Promise<Lineage> {
    this.#lineage = await this.#lineageRows.markRestored(this.#partition);
    return this.#lineage;
  }

  recordLost(report: LostReport, at = Date.now()): Promise<void> {
    return this.#lineageRows.recordLost(report, at);
  }

  lostDocuments(query: { pending?: boolean; limit: number }): Promise<LostDocument[]> {
    return this.#lineageRows.lostDocuments(query);
  }

  markReapplied(outcomes: readonly ReapplyOutcome[], at = Date.now()): Promise<void> {
    return this.#lineageRows.markReapplied(outcomes, at);
  }

  /** Waits for the group commit in flight, then closes every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.content.close();
    await this.#db.end();
  }
}
