import { join } from 'node:path';
import { FileContentStore } from '../../content/file-content-store.js';
import { setImmediate } from 'node:timers/promises';
import { faultPoint } from '../../shared/fault-points.js';
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
import type { HubVerifyReport, RangeDigests, RangeDocuments, RangeDocumentsQuery } from './digest-reads.js';
import type { BucketDigest } from './bucket-digests.js';
import { rebucketInChunks } from './rebucket-rows.js';
import { SqliteHubDb } from './sqlite-db.js';
import type { BucketJoins } from './bucket-joins.js';

/**
 * The hub's store on one SQLite file (`<dataDir>/hub.db`): the embedded default. Every call
 * runs synchronously on `SqliteHubDb` and only wears the contract's promises; a group commit
 * runs its work straight on the database inside one IMMEDIATE transaction (the plan is not
 * needed: every read is a local index lookup).
 */
export class SqliteHubStore implements HubStore {
  readonly kind = 'sqlite';
  /** The synchronous engine, for tests and tools that run beside an idle hub. */
  readonly db: SqliteHubDb;

  /** Blob content: files under `<dataDir>/content` (FileContentStore). */
  readonly content: FileContentStore;

  constructor(dataDir: string) {
    this.db = new SqliteHubDb(dataDir);
    this.content = new FileContentStore(join(dataDir, 'content'));
  }

  get path(): string {
    return this.db.path;
  }

  get head(): number {
    return this.db.head;
  }

  get prunedThrough(): number {
    return this.db.prunedThrough;
  }

  get bucketJoins(): BucketJoins {
    return this.db.bucketJoins;
  }

  ingest<T>(plan: IngestPlan, work: (tx: IngestTx, heldWhole: HeldWhole) => T): Promise<T> {
    return settle(() => {
      // Read before the transaction: a file's size, not a row; touched, so that a collection keeps it.
      const whole = new Map((plan.contents ?? []).filter(([hash, size]) => this.content.keepIfWholeSync(hash, size)));
      return this.db.transaction(() => work(this.db, (hash, size) => whole.get(hash) === size));
    });
  }

  logHolds(lsn: number): Promise<boolean> {
    return settle(() => this.db.logHolds(lsn));
  }

  loggedWrites(lsns: readonly number[]): Promise<Map<number, LoggedWrite>> {
    return settle(() => this.db.loggedWrites(lsns));
  }

  readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<LogPage> {
    return settle(() => this.db.readLog(from, collections, limit, maxBytes, include));
  }

  readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<DocumentPage> {
    return settle(() => this.db.readDocuments(collections, after, limit, maxBytes, include));
  }

  readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): Promise<LogPage> {
    return settle(() => this.db.readBucketLog(bucket, from, limit, maxBytes));
  }

  readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): Promise<DocumentPage> {
    return settle(() => this.db.readBucketDocuments(bucket, after, limit, maxBytes, held));
  }

  bucketHeads(buckets: readonly string[]): Promise<Map<string, number>> {
    return settle(() => this.db.bucketHeads(buckets));
  }

  bucketSize(buckets: readonly string[]): Promise<{ documents: number; bytes: number }> {
    return settle(() => this.db.bucketSize(buckets));
  }

  bucketBacklog(cursors: ReadonlyMap<string, number>): Promise<number> {
    return settle(() => this.db.bucketBacklog(cursors));
  }

  document(collection: string, key: string): Promise<StoredDocument | undefined> {
    return settle(() => this.db.document(collection, key));
  }

  digestAt(collection: string, lsn: number): Promise<number | undefined> {
    return settle(() => this.db.digests.digestAt(collection, lsn, this.db.prunedThrough));
  }

  bucketDigests(buckets: readonly string[]): Promise<Map<string, BucketDigest>> {
    return settle(() => this.db.digests.buckets.read(buckets));
  }

  rangeDigests(collection: string, depth: number, parents: readonly number[], bits: number, bucket?: string): Promise<RangeDigests> {
    return settle(() => this.db.digests.rangeDigests(collection, depth, parents, bits, this.db.head, bucket));
  }

  rangeDocuments(query: RangeDocumentsQuery): Promise<RangeDocuments> {
    return settle(() => this.db.digests.rangeDocuments(query, this.db.head));
  }

  /** Synchronous, one transaction: the hub's event loop waits for the whole scrub (run it from the CLI). */
  verify(options: { repair?: boolean } = {}): Promise<HubVerifyReport> {
    return settle(() => this.db.digests.verify(options.repair ?? false));
  }

  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]> {
    return settle(() => this.db.listDocuments(collection, options));
  }

  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): Promise<ConflictRecord[]> {
    return settle(() => this.db.conflicts(query));
  }

  rejections(limit: number): Promise<Rejected[]> {
    return settle(() => this.db.rejections(limit));
  }

  collectionHeads(): Promise<Record<string, number>> {
    return settle(() => this.db.collectionHeads());
  }

  firstCommitAfter(collection: string, lsn: number): Promise<number | undefined> {
    return settle(() => this.db.firstCommitAfter(collection, lsn));
  }

  countAfter(collection: string, lsn: number, head: number): Promise<number> {
    return settle(() => this.db.countAfter(collection, lsn, head));
  }

  lastSeqs(agentId: string): Promise<Record<string, number>> {
    return settle(() => this.db.lastSeqs(agentId));
  }

  outcomeOf(agentId: string, incarnation: string, seq: number): Promise<RecordedOutcome | undefined> {
    return settle(() => this.db.outcome(agentId, incarnation, seq));
  }

  countCommitted(agentId: string, incarnation: string, seq: number): Promise<number> {
    return settle(() => this.db.countCommitted(agentId, incarnation, seq));
  }

  /**
   * Records the new bound first, then removes the log one chunk per turn of the event loop, so
   * that group commits and pulls run between the chunks instead of waiting for the whole prune.
   */
  async prune(retention: { maxAgeMs: number; maxEntries: number }, now?: number, signal?: AbortSignal): Promise<number> {
    const plan = await settle(() => this.db.startPrune(retention, now));
    while (!signal?.aborted && (await settle(() => this.db.pruneChunk(plan))) > 0) {
      faultPoint('hub.mid-prune');
      await setImmediate();
    }
    return plan.through;
  }

  /**
   * One chunk per transaction and per turn of the event loop, as prune does, so that group
   * commits and pulls run between them; the rules are recorded once the last one is done.
   */
  async rebucket(collection: string, change: ScopeRulesChange): Promise<number> {
    const changed = await rebucketInChunks(async (after) => {
      const chunk = await settle(() => this.db.rebucketChunk(collection, after, change));
      if (chunk.last !== undefined) await setImmediate();
      return chunk;
    });
    await settle(() => this.db.finishRebucket(collection, change));
    return changed;
  }

  scopeRulesServed(): Promise<Map<string, ServedScopeRules>> {
    return settle(() => this.db.scopeRulesServed());
  }

  unfinishedRebuckets(): Promise<Set<string>> {
    return settle(() => this.db.unfinishedRebuckets());
  }

  putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): Promise<void> {
    return settle(() => this.db.putCredential(agentId, tokenHash, mosquittoHash));
  }

  revokeCredential(agentId: string): Promise<boolean> {
    return settle(() => this.db.revokeCredential(agentId));
  }

  credential(agentId: string): Promise<Credential | undefined> {
    return settle(() => this.db.credential(agentId));
  }

  rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): Promise<void> {
    return settle(() => this.db.rememberVerifiedToken(agentId, tokenHash, fingerprint));
  }

  credentials(): Promise<CredentialListing[]> {
    return settle(() => this.db.credentials());
  }

  brokerCredentials(): Promise<Array<{ agentId: string; mosquittoHash: string | null }>> {
    return settle(() => this.db.brokerCredentials());
  }

  /** SQLite's data_version: changes whenever another connection (e.g. `outpost hub agents revoke`) commits. */
  credentialsVersion(): Promise<number> {
    return settle(() => this.db.dataVersion());
  }

  labels(agentId: string): Promise<Record<string, string>> {
    return settle(() => this.db.labels(agentId));
  }

  allLabels(): Promise<Map<string, Record<string, string>>> {
    return settle(() => this.db.allLabels());
  }

  setLabels(agentId: string, set: Readonly<Record<string, string>>, unset: readonly string[]): Promise<Record<string, string>> {
    return settle(() => this.db.setLabels(agentId, { set, unset }));
  }

  /** A counter bumped with every change of labels (migration 11), whichever connection made it. */
  labelsVersion(): Promise<number> {
    return settle(() => this.db.labelsVersion());
  }

  #lineage: Lineage | undefined;

  get lineage(): Lineage {
    return (this.#lineage ??= this.db.lineage());
  }

  markRestored(): Promise<Lineage> {
    return settle(() => (this.#lineage = this.db.markRestored()));
  }

  recordLost(report: LostReport, at?: number): Promise<void> {
    return settle(() => this.db.recordLost(report, at));
  }

  lostDocuments(query: { pending?: boolean; limit: number }): Promise<LostDocument[]> {
    return settle(() => this.db.lostDocuments(query));
  }

  markReapplied(outcomes: readonly ReapplyOutcome[], at?: number): Promise<void> {
    return settle(() => this.db.markReapplied(outcomes, at));
  }

  async close(): Promise<void> {
    await this.content.close();
    return settle(() => this.db.close());
  }
}

/** A synchronous call as a promise; a throw becomes a rejection, as from any other store. */
function settle<T>(call: () => T): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
