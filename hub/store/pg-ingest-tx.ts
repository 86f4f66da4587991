import type { OpResult } from '../../shared/messages.js';
import { movedBucketDigests } from './bucket-digests.js';
import type {
  ChangeBuckets,
  CommitResult,
  ConflictRecord,
  IngestPlan,
  IngestTx,
  LogEntry,
  RecordedOutcome,
  StoredDocument,
} from './hub-store.js';
import { committedOutcome, explicitOutcome, type CommittedRun } from './outcome-rows.js';
import { parseBuckets, toStoredDocument } from './rows.js';
import {
  committedRows,
  documentBucketChanges,
  logBucketRows,
  type DigestsBefore,
  type DocumentWrite,
  type LogBucketWrite,
  type LogWrite,
} from './write-rows.js';

/** What a group commit may read, fetched before it runs: only what its plan named. */
export interface IngestPrefetch {
  /** By agentKey; an agent incarnation of the plan that is absent here has last seq 0. */
  lastSeqs: Map<string, number>;
  /** By documentKey; a planned document absent here does not exist. */
  documents: Map<string, StoredDocument>;
  /** Each of those documents' stored hash, by documentKey. */
  hashes: Map<string, number>;
  /** By collection name; a planned collection absent here has head 0. */
  collectionHeads: Map<string, number>;
  /** By collection name; a planned collection absent here has digest 0. */
  collectionDigests: Map<string, number>;
  /** By outcomeKey, for planned seqs at or below their incarnation's last seq (redeliveries). */
  outcomes: Map<string, RecordedOutcome>;
  /** Blob content of the plan held whole: its size, by hash. */
  contents: Map<string, number>;
}

/** Everything one group commit wrote, as final rows: one multi-row statement per table. */
export interface GroupCommitWrites {
  log: LogWrite[];
  /** The last state of each written document (one row per key: ON CONFLICT may touch a row once). */
  documents: DocumentWrite[];
  /** Each collection whose head was set or whose digest moved, with both. */
  collectionHeads: Array<{ name: string; headLsn: number; digest: number }>;
  lastSeqs: Array<{ agentId: string; incarnation: string; lastSeq: number; updatedAt: number }>;
  outcomes: Array<{
    agentId: string;
    incarnation: string;
    seq: number;
    outcome: string;
    lsn: number | null;
    reason: string | null;
    detail: string | null;
    digest: string;
    at: number;
  }>;
  committedRuns: Array<CommittedRun & { agentId: string; incarnation: string }>;
  /** In archive order: their ids are assigned in this order. */
  conflicts: Array<Omit<ConflictRecord, 'id'>>;
  logBuckets: LogBucketWrite[];
  /** Rows of document_buckets to remove and to add: disjoint, each once. */
  removedDocumentBuckets: DocumentBucketRow[];
  addedDocumentBuckets: DocumentBucketRow[];
  /** Each bucket whose head was set or whose digest moved, with both. */
  bucketHeads: Array<{ bucket: string; headLsn: number; digest: number }>;
}

/** The store's own copy of every bucket's head and digest (see PgBucketState). */
export interface StoredBucketState {
  readonly heads: ReadonlyMap<string, number>;
  readonly digests: ReadonlyMap<string, number>;
}

export interface DocumentBucketRow {
  bucket: string;
  collection: string;
  key: string;
}

/**
 * A group commit read something its IngestPlan did not declare. Answering "absent" could
 * apply a write twice or lose a conflict silently, so the whole group commit fails instead.
 */
export class UnplannedReadError extends Error {
  constructor(what: string) {
    super(`the group commit read ${what}, which its IngestPlan does not name; the plan must list every agent, seq and document it touches`);
    this.name = new.target.name;
  }
}

export const agentKey = (agentId: string, incarnation: string): string => JSON.stringify([agentId, incarnation]);
export const documentKey = (collection: string, key: string): string => JSON.stringify([collection, key]);
export const outcomeKey = (agentId: string, incarnation: string, seq: number): string => JSON.stringify([agentId, incarnation, seq]);

/**
 * The IngestTx of the PostgreSQL store: serves reads from the prefetched rows, laid under what
 * this group commit already wrote (the same key written twice, the same agent in two batches),
 * and records writes to be sent in one transaction afterwards. Synchronous, like the SQLite
 * transaction it stands in for. Bucket heads and digests come from the store's own copy of them
 * all; a document's hash and its collection's digest come with the rows prefetched, or written here.
 */
export class BufferedIngestTx implements IngestTx {
  #head: number;
  readonly #prefetch: IngestPrefetch;
  readonly #storedBuckets: StoredBucketState;
  readonly #plannedAgents = new Set<string>();
  readonly #plannedSeqs = new Set<string>();
  readonly #plannedDocuments = new Set<string>();
  readonly #plannedCollections = new Set<string>();

  readonly #log: GroupCommitWrites['log'] = [];
  readonly #documents = new Map<string, GroupCommitWrites['documents'][number]>();
  readonly #collectionHeads = new Map<string, number>();
  /** Each collection's digest as this group commit's changes moved it. */
  readonly #digests = new Map<string, number>();
  readonly #lastSeqs = new Map<string, GroupCommitWrites['lastSeqs'][number]>();
  readonly #outcomes = new Map<string, GroupCommitWrites['outcomes'][number]>();
  readonly #committedRuns: GroupCommitWrites['committedRuns'] = [];
  readonly #conflicts: GroupCommitWrites['conflicts'] = [];
  readonly #logBuckets: LogBucketWrite[] = [];
  /** By documentKey: how each scoped document's bucket rows change, net of every commit of it here. */
  readonly #documentBuckets = new Map<string, { collection: string; key: string; removed: Set<string>; added: Set<string> }>();
  readonly #bucketHeads = new Map<string, number>();
  /** Each bucket's digest as this group commit's changes moved it. */
  readonly #bucketDigests = new Map<string, number>();

  constructor(plan: IngestPlan, prefetch: IngestPrefetch, head: number, buckets: StoredBucketState) {
    this.#head = head;
    this.#prefetch = prefetch;
    this.#storedBuckets = buckets;
    for (const { agentId, incarnation, seqs } of plan.agents) {
      this.#plannedAgents.add(agentKey(agentId, incarnation));
      for (const seq of seqs) this.#plannedSeqs.add(outcomeKey(agentId, incarnation, seq));
    }
    for (const [collection, key] of plan.documents) {
      this.#plannedDocuments.add(documentKey(collection, key));
      this.#plannedCollections.add(collection);
    }
  }

  get head(): number {
    return this.#head;
  }

  lastSeq(agentId: string, incarnation: string): number {
    const key = agentKey(agentId, incarnation);
    const written = this.#lastSeqs.get(key);
    if (written) return written.lastSeq;
    if (!this.#plannedAgents.has(key)) throw new UnplannedReadError(`the last seq of ${agentId}/${incarnation}`);
    return this.#prefetch.lastSeqs.get(key) ?? 0;
  }

  setLastSeq(agentId: string, incarnation: string, seq: number): void {
    this.#lastSeqs.set(agentKey(agentId, incarnation), { agentId, incarnation, lastSeq: seq, updatedAt: Date.now() });
  }

  outcome(agentId: string, incarnation: string, seq: number): RecordedOutcome | undefined {
    const key = outcomeKey(agentId, incarnation, seq);
    const written = this.#outcomes.get(key);
    if (written) return explicitOutcome(written);
    const run = this.#committedRuns.find(
      (r) => r.agentId === agentId && r.incarnation === incarnation && r.firstSeq <= seq && seq <= r.lastSeq,
    );
    if (run) {
      // Runs recorded here point at LSNs committed here.
      return committedOutcome(run, seq, (lsn) => {
        const first = this.#log[0];
        return first && this.#log[lsn - first.lsn]?.digest;
      });
    }
    if (!this.#plannedSeqs.has(key)) throw new UnplannedReadError(`the outcome of ${agentId}/${incarnation} seq ${seq}`);
    return this.#prefetch.outcomes.get(key);
  }

  putOutcome(agentId: string, incarnation: string, result: OpResult, digest: string): void {
    this.#outcomes.set(outcomeKey(agentId, incarnation, result.seq), {
      agentId,
      incarnation,
      seq: result.seq,
      outcome: result.outcome,
      lsn: result.lsn ?? null,
      reason: result.reason ?? null,
      detail: result.detail ?? null,
      digest,
      at: Date.now(),
    });
  }

  putCommittedRun(agentId: string, incarnation: string, first: number, last: number, firstLsn: number): void {
    this.#committedRuns.push({ agentId, incarnation, firstSeq: first, lastSeq: last, firstLsn });
  }

  document(collection: string, key: string): StoredDocument | undefined {
    const id = documentKey(collection, key);
    const written = this.#documents.get(id);
    // Decoded from the bytes that will be stored, so it reads exactly as it will from the table.
    if (written) return toStoredDocument(written);
    if (!this.#plannedDocuments.has(id)) throw new UnplannedReadError(`document ${collection}/${key}`);
    return this.#prefetch.documents.get(id);
  }

  archiveConflict(record: Omit<ConflictRecord, 'id' | 'at'>): void {
    this.#conflicts.push({ ...record, at: Date.now() });
  }

  commit(entry: LogEntry): CommitResult {
    const lsn = this.#head + 1;
    const from = this.#before(entry.collection, entry.key);
    const { log, document, bytes, digest } = committedRows(entry, lsn, from);
    // Read before the document's new version is recorded: its buckets before this change.
    const bucketDigests = entry.buckets && this.#indexBuckets(entry.collection, entry.key, lsn, entry.buckets, from.hash, document.hash);
    this.#log.push(log);
    this.#documents.set(documentKey(entry.collection, entry.key), document);
    this.#digests.set(entry.collection, digest);
    this.#head = lsn;
    return bucketDigests ? { lsn, bytes, digest, bucketDigests } : { lsn, bytes, digest };
  }

  /** A document's hash and its collection's digest before the change being committed: as written here, else as stored. */
  #before(collection: string, key: string): DigestsBefore {
    const id = documentKey(collection, key);
    const written = this.#documents.get(id);
    if (!written && !this.#plannedDocuments.has(id)) throw new UnplannedReadError(`the hash of document ${collection}/${key}`);
    return { hash: written ? written.hash : (this.#prefetch.hashes.get(id) ?? 0), digest: this.#digest(collection) };
  }

  /** A collection's digest: as moved here, else as stored. */
  #digest(collection: string): number {
    const moved = this.#digests.get(collection);
    if (moved !== undefined) return moved;
    if (!this.#plannedCollections.has(collection)) throw new UnplannedReadError(`the digest of collection ${collection}`);
    return this.#prefetch.collectionDigests.get(collection) ?? 0;
  }

  collectionHead(collection: string): number {
    const written = this.#collectionHeads.get(collection);
    if (written !== undefined) return written;
    if (!this.#plannedCollections.has(collection)) throw new UnplannedReadError(`the head of collection ${collection}`);
    return this.#prefetch.collectionHeads.get(collection) ?? 0;
  }

  setCollectionHead(collection: string, lsn: number): void {
    this.#collectionHeads.set(collection, lsn);
  }

  bucketHead(bucket: string): number {
    return this.#bucketHeads.get(bucket) ?? this.#storedBuckets.heads.get(bucket) ?? 0;
  }

  setBucketHead(bucket: string, lsn: number): void {
    this.#bucketHeads.set(bucket, lsn);
  }

  /** A bucket's digest: as moved here, else as stored. */
  #bucketDigest(bucket: string): number {
    return this.#bucketDigests.get(bucket) ?? this.#storedBuckets.digests.get(bucket) ?? 0;
  }

  /**
   * Indexes a scoped change in its buckets' logs, moves its document from the buckets it was in
   * (before this commit) and those buckets' digests by its old and new hash; returns them.
   */
  #indexBuckets(
    collection: string,
    key: string,
    lsn: number,
    buckets: ChangeBuckets,
    oldHash: number,
    newHash: number,
  ): Record<string, number> {
    this.#logBuckets.push(...logBucketRows(buckets, lsn));
    const before = this.#bucketsBefore(collection, key);
    const moved = movedBucketDigests(before, buckets.in, oldHash, newHash, (bucket) => this.#bucketDigest(bucket));
    for (const [bucket, digest] of Object.entries(moved)) this.#bucketDigests.set(bucket, digest);
    const { removed, added } = documentBucketChanges(before, buckets.in);
    const id = documentKey(collection, key);
    let rows = this.#documentBuckets.get(id);
    if (!rows) this.#documentBuckets.set(id, (rows = { collection, key, removed: new Set(), added: new Set() }));
    for (const bucket of removed) {
      rows.added.delete(bucket);
      rows.removed.add(bucket);
    }
    for (const bucket of added) {
      rows.removed.delete(bucket);
      rows.added.add(bucket);
    }
    return moved;
  }

  /** The buckets a document is in before the change being committed: as written here, else as stored. */
  #bucketsBefore(collection: string, key: string): readonly string[] | undefined {
    const id = documentKey(collection, key);
    const written = this.#documents.get(id);
    if (written) return written.buckets === null ? undefined : parseBuckets(written.buckets);
    if (!this.#plannedDocuments.has(id)) throw new UnplannedReadError(`the buckets of document ${collection}/${key}`);
    return this.#prefetch.documents.get(id)?.buckets;
  }

  /** What to write; undefined when the group commit changed nothing (all redeliveries, say). */
  writes(): GroupCommitWrites | undefined {
    const writes: GroupCommitWrites = {
      log: this.#log,
      documents: [...this.#documents.values()],
      collectionHeads: [...new Set([...this.#collectionHeads.keys(), ...this.#digests.keys()])].map((name) => ({
        name,
        headLsn: this.collectionHead(name),
        digest: this.#digest(name),
      })),
      lastSeqs: [...this.#lastSeqs.values()],
      outcomes: [...this.#outcomes.values()],
      committedRuns: this.#committedRuns,
      conflicts: this.#conflicts,
      logBuckets: this.#logBuckets,
      removedDocumentBuckets: this.#bucketRows('removed'),
      addedDocumentBuckets: this.#bucketRows('added'),
      bucketHeads: [...new Set([...this.#bucketHeads.keys(), ...this.#bucketDigests.keys()])].map((bucket) => ({
        bucket,
        headLsn: this.bucketHead(bucket),
        digest: this.#bucketDigest(bucket),
      })),
    };
    return Object.values(writes).some((rows: unknown[]) => rows.length > 0) ? writes : undefined;
  }

  #bucketRows(change: 'removed' | 'added'): DocumentBucketRow[] {
    return [...this.#documentBuckets.values()].flatMap((rows) =>
      [...rows[change]].map((bucket) => ({ bucket, collection: rows.collection, key: rows.key })),
    );
  }
}
