import type { OpResult } from '../../shared/messages.js';
import type { ConflictRecord, IngestPlan, IngestTx, LogEntry, RecordedOutcome, StoredDocument } from './hub-store.js';
import { committedOutcome, explicitOutcome, type CommittedRun } from './outcome-rows.js';
import { toStoredDocument } from './rows.js';
import { committedRows, type DocumentWrite, type LogWrite } from './write-rows.js';

/** What a group commit may read, fetched before it runs: only what its plan named. */
export interface IngestPrefetch {
  /** By agentKey; an agent incarnation of the plan that is absent here has last seq 0. */
  lastSeqs: Map<string, number>;
  /** By documentKey; a planned document absent here does not exist. */
  documents: Map<string, StoredDocument>;
  /** By collection name; a planned collection absent here has head 0. */
  collectionHeads: Map<string, number>;
  /** By outcomeKey, for planned seqs at or below their incarnation's last seq (redeliveries). */
  outcomes: Map<string, RecordedOutcome>;
}

/** Everything one group commit wrote, as final rows: one multi-row statement per table. */
export interface GroupCommitWrites {
  log: LogWrite[];
  /** The last state of each written document (one row per key: ON CONFLICT may touch a row once). */
  documents: DocumentWrite[];
  collectionHeads: Array<{ name: string; headLsn: number }>;
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
 * transaction it stands in for.
 */
export class BufferedIngestTx implements IngestTx {
  #head: number;
  readonly #prefetch: IngestPrefetch;
  readonly #plannedAgents = new Set<string>();
  readonly #plannedSeqs = new Set<string>();
  readonly #plannedDocuments = new Set<string>();
  readonly #plannedCollections = new Set<string>();

  readonly #log: GroupCommitWrites['log'] = [];
  readonly #documents = new Map<string, GroupCommitWrites['documents'][number]>();
  readonly #collectionHeads = new Map<string, number>();
  readonly #lastSeqs = new Map<string, GroupCommitWrites['lastSeqs'][number]>();
  readonly #outcomes = new Map<string, GroupCommitWrites['outcomes'][number]>();
  readonly #committedRuns: GroupCommitWrites['committedRuns'] = [];
  readonly #conflicts: GroupCommitWrites['conflicts'] = [];

  constructor(plan: IngestPlan, prefetch: IngestPrefetch, head: number) {
    this.#head = head;
    this.#prefetch = prefetch;
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

  commit(entry: LogEntry): { lsn: number; bytes: number } {
    const lsn = this.#head + 1;
    const { log, document, bytes } = committedRows(entry, lsn);
    this.#log.push(log);
    this.#documents.set(documentKey(entry.collection, entry.key), document);
    this.#head = lsn;
    return { lsn, bytes };
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

  /** What to write; undefined when the group commit changed nothing (all redeliveries, say). */
  writes(): GroupCommitWrites | undefined {
    const writes: GroupCommitWrites = {
      log: this.#log,
      documents: [...this.#documents.values()],
      collectionHeads: [...this.#collectionHeads].map(([name, headLsn]) => ({ name, headLsn })),
      lastSeqs: [...this.#lastSeqs.values()],
      outcomes: [...this.#outcomes.values()],
      committedRuns: this.#committedRuns,
      conflicts: this.#conflicts,
    };
    return Object.values(writes).some((rows: unknown[]) => rows.length > 0) ? writes : undefined;
  }
}
