import type { ContentStore } from '../../content/content-store.js';
import type { BucketJoins } from './bucket-joins.js';
import type { DigestReads } from './digest-reads.js';
import type { Lineage, LostDocument, LostReport, ReapplyOutcome } from './lineage-types.js';
import type { Hlc } from '../../shared/hlc.js';
import type { Change, OpResult } from '../../shared/messages.js';
import type { JsonValue } from '../../shared/values.js';

export type { Lineage, LostDocument, LostReport, LostVersion, ReapplyOutcome } from './lineage-types.js';

/** The hub's current state of one document. */
export interface StoredDocument {
  /** Decoded when first read (see toStoredDocument). */
  readonly value: JsonValue | undefined;
  /** The value's bytes as stored; null for a tombstone. */
  encoded: Buffer | null;
  deleted: boolean;
  version: number;
  hlc: Hlc;
  origin: string;
  /** Per-field timestamps, kept for collections with the merge policy. */
  fieldHlcs?: Record<string, Hlc>;
  /** A scoped collection's document: the ids of the buckets its current version is in. */
  buckets?: string[];
}

/** Where a change of a scoped collection belongs: bucket ids (hub/scope-rules.ts `bucketIdOf`). */
export interface ChangeBuckets {
  /** The buckets the document is in after the change (a delete: those it was in before). */
  in: readonly string[];
  /** The buckets it was in before and is not after: they hear only that it left (`out`). */
  left: readonly string[];
}

/**
 * The scope rules a hub serves a collection with now, and how they bucket its documents: what
 * `HubStore.rebucket` brings the stored index to. `rules` undefined: the collection is no longer
 * scoped.
 */
export interface ScopeRulesChange {
  /** The rules as the hub compares them from one start to the next (any stable text). */
  rules: string | undefined;
  /** The head when the rules were applied: recorded with them. */
  since: number;
  /** A document's buckets under the rules (a tombstone's value is undefined). */
  bucketsOf(key: string, value: JsonValue | undefined): string[];
  /**
   * The buckets through which devices already hold a document whose buckets change, given the
   * buckets it was stored in (undefined: none, the collection was unscoped); undefined: none.
   */
  prior(old: string[] | undefined): string[] | undefined;
}

/** The rules a scoped collection was last indexed with, and the head when that was done. */
export interface ServedScopeRules {
  rules: string;
  since: number;
}

/** A log entry's writer (an agent's with its incarnation and seq) and, for a scoped change, its buckets after it. */
export interface LoggedWrite {
  collection: string;
  origin: string;
  incarnation: string | null;
  seq: number | null;
  buckets?: string[];
}

/** A losing version, archived with the version that beat it. */
export interface ConflictRecord {
  id: number;
  collection: string;
  key: string;
  policy: string;
  reason: string;
  detail: string | null;
  loser: { origin: string; incarnation: string | null; seq: number | null; op: string; value: JsonValue | undefined; hlc: string };
  winner: { lsn: number; origin: string; hlc: string; value: JsonValue | undefined };
  at: number;
}

export interface LogEntry {
  collection: string;
  key: string;
  op: 'put' | 'del';
  value: JsonValue | undefined;
  hlc: Hlc;
  origin: string;
  incarnation: string | null;
  seq: number | null;
  fieldHlcs?: Record<string, Hlc>;
  /** `value` already CBOR-encoded, when the caller has it (a write's own bytes, stored as they came). */
  encoded?: Buffer;
  /** Digest of the op as the agent sent it, to tell a redelivery from a reused seq. */
  digest?: string;
  /** A scoped collection's change: its buckets, indexed so that each bucket's log and documents are read alone. */
  buckets?: ChangeBuckets;
}

/** A committed change: its LSN, size bound and digests right after it (a scoped one's buckets' too). */
export interface CommitResult {
  lsn: number;
  bytes: number;
  digest: number;
  /** A scoped change's: the digest of each bucket it is in or left (bucket-digests.ts). */
  bucketDigests?: Record<string, number>;
}

export interface RecordedOutcome {
  result: Omit<OpResult, 'seq'>;
  /** Digest of the op's content, while still known (gone once retention pruned its log entry). */
  digest?: string;
}

export interface Rejected {
  agentId: string;
  incarnation: string;
  seq: number;
  reason: string | null;
  detail: string | null;
  at: number | null;
}
export interface Credential {
  tokenHash: string;
  revoked: boolean;
  /** SHA-256 fingerprint of the token last verified against `tokenHash` (null: none yet). */
  verifiedFingerprint: string | null;
}
export interface CredentialListing {
  agentId: string;
  createdAt: number;
  revokedAt: number | null;
}
export interface ListedDocument {
  key: string;
  value: JsonValue | undefined;
  version: number;
  origin: string;
}
export interface LogPage {
  changes: Change[];
  complete: boolean;
  through: number;
  /** What reading the page cost: the bytes of every row read, the reader's or not (see MAX_READ_FACTOR). */
  readBytes: number;
  /** Each collection's digest right after its last change in the page (none where that entry predates digests). */
  digests: Record<string, number>;
}
export interface DocumentPage {
  docs: Change[];
  next: [string, string] | undefined;
  readBytes: number;
}

/**
 * One group commit's view of the store: everything `Ingestor` reads and writes, synchronously.
 * The store runs it inside one transaction (SQLite), or serves it from rows fetched up front
 * and writes what it recorded in one transaction afterwards (PostgreSQL), so that the log,
 * dedup state and documents always change together.
 */
export interface IngestTx {
  readonly head: number;
  lastSeq(agentId: string, incarnation: string): number;
  setLastSeq(agentId: string, incarnation: string, seq: number): void;
  outcome(agentId: string, incarnation: string, seq: number): RecordedOutcome | undefined;
  putOutcome(agentId: string, incarnation: string, result: OpResult, digest: string): void;
  putCommittedRun(agentId: string, incarnation: string, first: number, last: number, firstLsn: number): void;
  document(collection: string, key: string): StoredDocument | undefined;
  archiveConflict(record: Omit<ConflictRecord, 'id' | 'at'>): void;
  /**
   * Appends to the log with the next LSN and updates the document (which then has no prior buckets:
   * see HubStore.rebucket); the size bound is for change sets, `digest` the collection's right after it.
   */
  commit(entry: LogEntry): CommitResult;
  collectionHead(collection: string): number;
  setCollectionHead(collection: string, lsn: number): void;
  /** The LSN of a bucket's newest change (0: none), kept through retention. */
  bucketHead(bucket: string): number;
  setBucketHead(bucket: string, lsn: number): void;
}

/**
 * What one group commit will touch, known before it runs, so that a store across a network
 * can fetch it in a few round trips instead of one per op.
 */
export interface IngestPlan {
  /** Each uploading agent incarnation and the seqs of its ops. */
  agents: Array<{ agentId: string; incarnation: string; seqs: number[] }>;
  /** Every document written. */
  documents: Array<[collection: string, key: string]>;
  /** Blob content the writes name (puts to collections that hold blobs): `ingest` says which the hub holds whole. */
  contents?: Array<[hash: string, size: number]>;
}

/** Whether the hub holds blob content whole at this size: asked only of content the IngestPlan names. */
export type HeldWhole = (hash: string, size: number) => boolean;

/**
 * The hub's primary store: a gap-free log keyed by LSN, the current documents, each
 * collection's head LSN, per-agent sequences with op outcomes, the conflict archive, device
 * credentials and labels. One hub process writes at a time (the leader); `head` and `prunedThrough` are
 * that writer's own bookkeeping. Every implementation passes the contract suite
 * (test/hub/store-contract.ts).
 */
export interface HubStore extends DigestReads {
  /** `sqlite` or `postgres`, for logs and health. */
  readonly kind: string;
  /** Highest LSN committed (or pruned through). */
  readonly head: number;
  /** Every log entry up to this LSN has been removed by retention (0 = none). */
  readonly prunedThrough: number;
  /** Where each device may read a bucket's log from (see BucketJoins). */
  readonly bucketJoins: BucketJoins;
  /** Blob content, kept apart from the log (hub/blobs/content-store.ts). */
  readonly content: ContentStore;

  /**
   * Runs `work` as one atomic group commit: all of what it wrote is committed, or none of it
   * (and then `head` is as before). Group commits run one at a time.
   */
  ingest<T>(plan: IngestPlan, work: (tx: IngestTx, heldWhole: HeldWhole) => T): Promise<T>;

  /**
   * Committed changes after `from` in LSN order, at most `limit`, no more than `maxBytes` of
   * them (at least one); `collections` undefined means all, `include` filters what a reader may
   * see (skipped entries still count as covered). `complete`: nothing after them existed.
   */
  readLog(
    from: number,
    collections: readonly string[] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<LogPage>;
  /**
   * Whether the log holds the entry at `lsn`. The log is gap-free from `prunedThrough` to the
   * head by construction; pulls check it anyway before serving a page, so that a log damaged
   * underneath (an interrupted prune of an older version, a file edited or restored by hand) is
   * answered with a snapshot rather than paged across a hole.
   */
  logHolds(lsn: number): Promise<boolean>;
  /** Who wrote the log entries at these LSNs, and a scoped change's buckets, by LSN: those still in the log. */
  loggedWrites(lsns: readonly number[]): Promise<Map<number, LoggedWrite>>;
  /** One snapshot page: current documents (tombstones included) in (collection, key) order after `after`. */
  readDocuments(
    collections: readonly string[] | undefined,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    include?: (collection: string) => boolean,
  ): Promise<DocumentPage>;
  /**
   * A bucket's changes after `from` in LSN order, read through its index (never by filtering a
   * collection), with the limits of `readLog`. A change the bucket's document is in after it
   * comes whole with `bk`; one it left comes as `out` (no value, no buckets). Complete as far
   * back as the log reaches: a caller checks `prunedThrough` first.
   */
  readBucketLog(bucket: string, from: number, limit: number, maxBytes: number): Promise<LogPage>;
  /**
   * One snapshot page of a bucket: the documents in it now (tombstones included) in (collection,
   * key) order after `after`, at their current version, with `bk`. A document one of the `held`
   * buckets (applied up to an LSN) already brought at its current version is left out, yet
   * `next` moves past it. One that a held bucket it was in before the rules last changed
   * (`rebucket`'s prior buckets) brought at its current version comes as `tag`: its buckets
   * without its value, counted at that small size toward `maxBytes`.
   */
  readBucketDocuments(
    bucket: string,
    after: readonly [string, string] | undefined,
    limit: number,
    maxBytes: number,
    held: ReadonlyMap<string, number>,
  ): Promise<DocumentPage>;
  /**
   * Brings a collection's bucket index to the rules the hub now serves it with, before the hub
   * serves them: every document (tombstones included) in key order, about REBUCKET_CHUNK
   * (hub/store/rebucket-rows.ts) to a transaction, so that neither a long transaction nor the
   * whole collection is ever held. A document whose buckets differ (as a set; none stored
   * differs from any list) gets the new ones, its bucket index rows follow, and its prior
   * buckets become `change.prior(old)`, until it is next written (`commit` clears them). Then
   * the rules are recorded (`scopeRulesServed`). `rules` undefined unscopes the collection: its
   * documents keep no buckets, prior or current, nor index rows, and its rules are forgotten.
   * Returns how many documents changed. Adds no log entries and moves no bucket heads; run
   * again after a failure, it leaves the documents already done alone and finishes the rest. A
   * throw from `change` fails it, keeping the chunks before. The collection is listed in
   * `unfinishedRebuckets` from its first chunk's transaction to the one recording the rules. Only the writer rebuckets: on PostgreSQL each transaction is fenced and counted
   * as a group commit is.
   */
  rebucket(collection: string, change: ScopeRulesChange): Promise<number>;
  /** The rules each scoped collection was last indexed with (`rebucket`), by collection. */
  scopeRulesServed(): Promise<Map<string, ServedScopeRules>>;
  /**
   * The collections whose last `rebucket` was cut short (the process stopped, or it failed): part
   * of each may be indexed by rules that are not served, whatever `scopeRulesServed` says.
   */
  unfinishedRebuckets(): Promise<Set<string>>;
  /** The newest LSN of each of these buckets (absent: none yet). */
  bucketHeads(buckets: readonly string[]): Promise<Map<string, number>>;
  /** The live documents (tombstones not counted) in any of these buckets, and their values' bytes. */
  bucketSize(buckets: readonly string[]): Promise<{ documents: number; bytes: number }>;
  /**
   * How many changes of these buckets come after the given LSN of each (a device's lag within its
   * scope), counted through the bucket index; a change in two of them counts in each.
   */
  bucketBacklog(cursors: ReadonlyMap<string, number>): Promise<number>;
  document(collection: string, key: string): Promise<StoredDocument | undefined>;
  /** Live documents of a collection in key order, after `after`, starting with `prefix`. */
  listDocuments(collection: string, options: { prefix?: string; after?: string; limit: number }): Promise<ListedDocument[]>;
  /** Archived conflicts, newest first; optionally of one collection or document. */
  conflicts(query: { collection?: string; key?: string; before?: number; limit: number }): Promise<ConflictRecord[]>;
  /** The newest rejected ops. */
  rejections(limit: number): Promise<Rejected[]>;
  collectionHeads(): Promise<Record<string, number>>;
  /** When the first change of a collection after `lsn` was committed (ms epoch), if still in the log. */
  firstCommitAfter(collection: string, lsn: number): Promise<number | undefined>;
  /** Log entries of a collection in (lsn, head]. */
  countAfter(collection: string, lsn: number, head: number): Promise<number>;
  /** The last seq of each of an agent's incarnations. */
  lastSeqs(agentId: string): Promise<Record<string, number>>;
  /** The outcome recorded for an op (outside a group commit: the admin API and tests). */
  outcomeOf(agentId: string, incarnation: string, seq: number): Promise<RecordedOutcome | undefined>;
  /** How many log entries one agent op identity produced (0 or 1, unless something is wrong). */
  countCommitted(agentId: string, incarnation: string, seq: number): Promise<number>;

  /**
   * Applies log retention (0 disables either rule); returns the new `prunedThrough`. The bound is
   * recorded before any entry is removed, so `signal` may stop the removal between chunks: the
   * next prune removes what is left.
   */
  prune(retention: { maxAgeMs: number; maxEntries: number }, now?: number, signal?: AbortSignal): Promise<number>;

  /** Stores (or replaces) an agent's credential; `mosquittoHash` is the same token in Mosquitto's format. */
  putCredential(agentId: string, tokenHash: string, mosquittoHash?: string): Promise<void>;
  /** Revokes an agent's credential; false if it had none. */
  revokeCredential(agentId: string): Promise<boolean>;
  credential(agentId: string): Promise<Credential | undefined>;
  /**
   * Remembers the fingerprint of a token just verified against `tokenHash`, if that is still the
   * agent's unrevoked credential (a replacement meanwhile wins). Not a change other hubs watch.
   */
  rememberVerifiedToken(agentId: string, tokenHash: string, fingerprint: string): Promise<void>;
  credentials(): Promise<CredentialListing[]>;
  /** Unrevoked agents with their Mosquitto hash (null: provisioned before the hub stored one). */
  brokerCredentials(): Promise<Array<{ agentId: string; mosquittoHash: string | null }>>;
  /** Changes whenever credentials change, from any process: the hub polls it to close revoked connections. */
  credentialsVersion(): Promise<number>;

  /** An agent's labels, names in order (none: an empty object). Any agent id may have labels, provisioned or not. */
  labels(agentId: string): Promise<Record<string, string>>;
  /** Every agent that has labels, with them. */
  allLabels(): Promise<Map<string, Record<string, string>>>;
  /**
   * Sets the labels in `set` and removes those named in `unset`, atomically; returns the labels
   * after. Refuses (ConfigError, nothing written) an invalid name or value, or a result of more
   * than MAX_LABELS labels (hub/labels.ts), whatever other writers did meanwhile.
   */
  setLabels(agentId: string, set: Readonly<Record<string, string>>, unset: readonly string[]): Promise<Record<string, string>>;
  /** Changes whenever labels change, from any process: the hub polls it to reload its copy of every agent's labels. */
  labelsVersion(): Promise<number>;

  /** This database's lineage, as it was when the store opened (a restore happens with the hub stopped). */
  readonly lineage: Lineage;
  /**
   * Marks the database as restored from a backup: a new lineage whose fork is the head. Only with
   * no hub running on it: refuses (HubRunningError) where another process is seen to hold it.
   */
  markRestored(): Promise<Lineage>;
  /** Stores an agent's report of lost versions: each once per (lineage, collection, key, version), with every reporter. */
  recordLost(report: LostReport, at?: number): Promise<void>;
  /** Lost versions in report order; `pending`: only those not reapplied yet. */
  lostDocuments(query: { pending?: boolean; limit: number }): Promise<LostDocument[]>;
  /** Records what reapplying did with lost versions (once: a version already reapplied is left as it is). */
  markReapplied(outcomes: readonly ReapplyOutcome[], at?: number): Promise<void>;

  close(): Promise<void>;
}
