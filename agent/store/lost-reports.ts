import { encodeCbor } from '../../shared/codec.js';
import type { LostDoc } from '../../shared/messages.js';
import { applyPatch, type JsonValue } from '../../shared/values.js';
import type { AgentDb } from './agent-db.js';
import type { CollectionCursors } from './collection-cursors.js';
import type { Outbox } from './outbox.js';
import type { Partitions } from './partitions.js';
import { decodeValue, type WriteKind } from './writes.js';

/** Documents read per page while reconciling. */
const RECONCILE_PAGE = 1_000;

/** What a restored hub's partition is now, from its status. */
export interface RestoredHub {
  lineage: string;
  /** Where its history parted from the one this device followed: versions above it are lost. */
  fork: number;
  /** The status that said so (its HLC): the same status heard again is not a new restore. */
  statusHlc: string;
}

/** What reconciling a partition with a restored hub did. */
export interface Reconciled {
  previousLineage: string;
  /** Where the hub's history parted from this device's. */
  fork: number;
  /** Replica documents and acknowledged writes recorded as lost, and taken out. */
  documents: number;
  writes: number;
  /** The partition's new incarnation, and each remaining write's old and new seq. */
  incarnation: string;
  renumbered: Array<{ from: number; to: number }>;
}

/** One chunk of the lost report, for the `lost` message: its id is the last row it holds. */
export interface LostChunk {
  id: number;
  lineage: string;
  fork: number;
  docs: LostDoc[];
}

interface DocumentRow {
  collection: string;
  key: string;
  value: Buffer | null;
  deleted: number;
  version: number;
  hlc: string;
  origin: string;
}

interface AckedRow {
  seq: number;
  collection: string;
  key: string;
  hlc: string;
  acked_lsn: number;
}

interface ReportRow {
  id: number;
  lineage: string;
  fork: number;
  collection: string;
  key: string;
  version: number;
  op: 'put' | 'del';
  value: Buffer | null;
  hlc: string;
  origin: string;
}

/**
 * What a restored hub lost, as this device held it (`lost_reports`), and the reconciliation that
 * finds it. After a restore the hub's history parts from the one this device followed at `fork`:
 * replica versions above it and this device's writes acknowledged above it exist nowhere at the
 * hub. They are recorded here, in the same transaction that takes them out of the replica and
 * the outbox, and stay until the hub has acknowledged the report.
 */
export class LostReports {
  readonly #s;

  constructor(
    private readonly db: AgentDb,
    private readonly partitions: Partitions,
    private readonly outbox: Outbox,
    private readonly cursors: CollectionCursors,
  ) {
    this.#s = {
      insert: db.prepare<[string, string, number, string, string, number, string, Buffer | null, string, string, number]>(
        `INSERT INTO lost_reports (lane, lineage, fork, collection, key, version, op, value, hlc, origin, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      // A page at a time after (collection, key): a device may hold far more than its memory.
      docsAbove: db.prepare<[number, string, string, number], DocumentRow>(
        // An evicted stub is no version the device held: it only keeps older changes out.
        `SELECT collection, key, value, deleted, version, hlc, origin FROM documents
         WHERE version > ? AND (collection, key) > (?, ?) AND evicted = 0 ORDER BY collection, key LIMIT ?`,
      ),
      deleteDoc: db.prepare<[string, string]>('DELETE FROM documents WHERE collection = ? AND key = ?'),
      confirmedDoc: db.prepare<[string, string], { value: Buffer | null; deleted: number; version: number }>(
        'SELECT value, deleted, version FROM documents WHERE collection = ? AND key = ?',
      ),
      ackedAbove: db.prepare<[string, number], AckedRow>(
        'SELECT seq, collection, key, hlc, acked_lsn FROM outbox WHERE lane = ? AND acked_lsn > ? ORDER BY seq',
      ),
      writesUpTo: db.prepare<[string, string, number, string, number], { op: WriteKind; value: Buffer | null }>(
        `SELECT op, value FROM outbox WHERE collection = ? AND key = ? AND skipped IS NULL AND (acked_lsn IS NULL OR acked_lsn > ?)
         AND lane = ? AND seq <= ? ORDER BY seq`,
      ),
      deleteAcked: db.prepare<[string, number]>('DELETE FROM outbox WHERE lane = ? AND acked_lsn > ?'),
      clampBase: db.prepare<[number, string, number]>('UPDATE outbox SET base = ? WHERE lane = ? AND base > ?'),
      // Scope buckets are joined again (-1): a document taken out above the fork has its restored
      // version at or below it, which the bucket's log from the fork would never bring back.
      rejoinBuckets: db.prepare<[string]>('UPDATE scope_buckets SET cursor = -1, snapshot = NULL WHERE lane = ?'),
      deleteStubsAbove: db.prepare<[number]>('DELETE FROM documents WHERE evicted = 1 AND version > ?'),
      maxAcked: db.prepare<[string], { lsn: number | null }>('SELECT max(acked_lsn) AS lsn FROM outbox WHERE lane = ?'),
      ackedBefore: db.prepare<[string, number, string], { one: number }>(
        `SELECT 1 AS one FROM outbox WHERE lane = ? AND acked_lsn > ? AND coalesce(acked_hlc, '') < ? LIMIT 1`,
      ),
      pending: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM lost_reports WHERE lane = ?'),
      first: db.prepare<[string], { lineage: string; fork: number }>(
        'SELECT lineage, fork FROM lost_reports WHERE lane = ? ORDER BY id LIMIT 1',
      ),
      chunk: db.prepare<[string, string, number, number], ReportRow>(
        `SELECT id, lineage, fork, collection, key, version, op, value, hlc, origin FROM lost_reports
         WHERE lane = ? AND lineage = ? AND fork = ? ORDER BY id LIMIT ?`,
      ),
      acknowledge: db.prepare<[string, number, string]>('DELETE FROM lost_reports WHERE lane = ? AND id <= ? AND lineage = ?'),
    };
  }

  /**
   * The highest LSN of the partition this device has seen applied or acknowledged: a hub whose
   * head is below it (in a status it had not heard) was restored without being marked.
   */
  appliedOf(partition: string, inPartition: (collection: string) => boolean, cursors: Record<string, number>): number {
    const applied = Object.entries(cursors)
      .filter(([c]) => inPartition(c))
      .map(([, lsn]) => lsn);
    return Math.max(this.partitions.watermarkOf(partition), this.#s.maxAcked.get(partition)?.lsn ?? 0, ...applied);
  }

  /**
   * Whether this device learned of an LSN of the partition above `head` (an applied cursor, the
   * watermark, an acknowledged write) from a message older than `hlc`, or of unknown age: a hub
   * status of that clock and head then says the hub lost what it had committed. Knowledge above
   * `head` that came only after the status is what that same hub committed since (a status
   * delivered late). Each LSN is judged by the clock stored with it (migration 13), which a
   * restart keeps.
   */
  learnedAboveBefore(partition: string, inPartition: (collection: string) => boolean, head: number, hlc: string): boolean {
    if (this.partitions.watermarkOf(partition) > head && this.partitions.watermarkHeardOf(partition) < hlc) return true;
    if (this.#s.ackedBefore.get(partition, head, hlc)) return true;
    return this.cursors.learnedBefore(head, hlc).some(inPartition);
  }

  /**
   * Reconciles a partition with its restored hub, in one transaction: records every replica
   * document of the partition above `fork` and every write of its outbox acknowledged above it,
   * takes them out (a version above `fork` means something else now, and only a version above a
   * document's is applied: the restored one must be able to come back), starts the partition's
   * log over from 0 (the hub answers with its log or a snapshot) and joins each bucket of the
   * device's scope again (fetched as a snapshot, as when first joined), clamps the base of the writes
   * still pending to `fork`, renumbers them under a new incarnation (the hub's sequence state is
   * the backup's) and adopts the hub's lineage.
   */
  reconcile(
    partition: string,
    hub: RestoredHub,
    agentId: string,
    inPartition: (collection: string) => boolean,
    now = Date.now(),
  ): Reconciled {
    this.outbox.onlyRows(); // read in SQL below; writes the hub committed and this device let go are not pending
    // Durable: what the restored hub lost may exist nowhere else but in this report.
    return this.db.durableTransaction(() => {
      const previousLineage = this.partitions.hubLineageOf(partition)?.lineage ?? hub.lineage;
      const record = (d: { collection: string; key: string; version: number; value: JsonValue | undefined; hlc: string; origin: string }) =>
        this.#s.insert.run(
          partition,
          previousLineage,
          hub.fork,
          d.collection,
          d.key,
          d.version,
          d.value === undefined ? 'del' : 'put',
          d.value === undefined ? null : encodeCbor(d.value),
          d.hlc,
          d.origin,
          now,
        );
      // This device's acknowledged writes first, while the replica still holds what they were laid over.
      const acked = this.#s.ackedAbove.all(partition, hub.fork);
      for (const row of acked) record({ ...row, version: row.acked_lsn, value: this.#valueAfter(partition, row), origin: agentId });
      let documents = 0;
      let after: [string, string] = ['', ''];
      for (;;) {
        const page = this.#s.docsAbove.all(hub.fork, after[0], after[1], RECONCILE_PAGE);
        for (const doc of page) {
          if (!inPartition(doc.collection)) continue;
          record({ ...doc, value: doc.deleted || doc.value === null ? undefined : decodeValue(doc.value) });
          this.#s.deleteDoc.run(doc.collection, doc.key);
          documents += 1;
        }
        if (page.length < RECONCILE_PAGE) break;
        after = [page[page.length - 1]!.collection, page[page.length - 1]!.key];
      }
      this.#s.deleteAcked.run(partition, hub.fork);
      this.#s.clampBase.run(hub.fork, partition, hub.fork);
      this.#s.rejoinBuckets.run(partition);
      this.#s.deleteStubsAbove.run(hub.fork);
      for (const collection of Object.keys(this.cursors.all())) if (inPartition(collection)) this.cursors.delete(collection);
      this.partitions.resetLog(partition);
      const { incarnation, renumbered } = this.outbox.reincarnate(partition);
      this.partitions.setHubLineage(partition, hub.lineage, hub.statusHlc);
      return { previousLineage, fork: hub.fork, documents, writes: acked.length, incarnation, renumbered };
    });
  }

  /** The document as this device saw it once its write `row` was made: the confirmed version with its writes up to `row` laid over. */
  #valueAfter(partition: string, row: AckedRow): JsonValue | undefined {
    const confirmed = this.#s.confirmedDoc.get(row.collection, row.key);
    let value = confirmed && !confirmed.deleted ? decodeValue(confirmed.value) : undefined;
    for (const w of this.#s.writesUpTo.all(row.collection, row.key, confirmed?.version ?? 0, partition, row.seq)) {
      const v = decodeValue(w.value);
      value = w.op === 'del' ? undefined : w.op === 'put' ? v : applyPatch(value, v as { [f: string]: JsonValue });
    }
    return value;
  }

  /** Lost documents of a partition not yet acknowledged by the hub. */
  pendingOf(partition: string): number {
    return this.#s.pending.get(partition)!.n;
  }

  /** The next chunk to report: the oldest rows, all of one lineage, up to `maxDocs` and about `maxBytes` (at least one). */
  nextChunk(partition: string, maxDocs: number, maxBytes: number): LostChunk | undefined {
    const first = this.#s.first.get(partition);
    if (!first) return undefined;
    const docs: LostDoc[] = [];
    let id = 0;
    let bytes = 0;
    for (const row of this.#s.chunk.all(partition, first.lineage, first.fork, maxDocs)) {
      bytes += 64 + row.key.length + (row.value?.length ?? 0);
      if (docs.length > 0 && bytes > maxBytes) break;
      docs.push({
        c: row.collection,
        k: row.key,
        ver: row.version,
        op: row.op,
        ...(row.value !== null && { v: row.value }),
        hlc: row.hlc,
        o: row.origin,
      });
      id = row.id;
    }
    return { id, lineage: first.lineage, fork: first.fork, docs };
  }

  /** The hub stored the chunk `id` of `lineage`: its rows go. */
  acknowledge(partition: string, lineage: string, id: number): void {
    this.db.durableTransaction(() => this.#s.acknowledge.run(partition, id, lineage));
  }
}
