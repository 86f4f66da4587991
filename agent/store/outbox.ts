import { OutboxFullError } from '../../shared/errors.js';
import type { Hlc } from '../../shared/hlc.js';
import type { OpResult, WriteOp } from '../../shared/messages.js';
import type { AgentDb } from './agent-db.js';
import type { Partitions } from './partitions.js';
import { PendingTally } from './pending-tally.js';
import { ReleasedWrites } from './released-writes.js';
import { MAX_BATCHED, OutboxBatches, type BatchedWrite, type WriteBatch } from './outbox-batches.js';
import { OutboxForms } from './outbox-forms.js';
import { OutboxMoves } from './outbox-moves.js';
import { OutboxReads } from './outbox-reads.js';
import { ROW, type OutboxRow } from './outbox-rows.js';
import type { Rejection, Rejections } from './rejections.js';
import type { Settings } from './settings.js';
import type { BatchedWriteFields } from './write-batch-codec.js';
import type { NewWrite, WriteKind } from './writes.js';
import type { MovedWrite } from './outbox-moves.js';

export type { MovedWrite } from './outbox-moves.js';

/** What the agent does with a collection's writes while it cannot upload them (from the hub's policies). */
export interface Buffering {
  maxPending: number;
  overflow: 'reject' | 'drop-oldest';
}

/** Per write, its seq or why it was refused; and the writes dropped to make room. */
export interface AppendResult {
  seqs: Array<number | OutboxFullError>;
  dropped: Rejection[];
}

const GIVE_UP_DETAIL = {
  expired: "not uploaded within the collection's TTL",
  dropped: 'dropped to make room (overflow policy drop-oldest)',
} as const;

/**
 * The durable outbox of the device's own writes, one sequence per partition of the hub, each
 * contiguous from 1 in its incarnation (the hub requires it). A write stays until the hub has
 * answered for it: committed writes the replica does not hold yet stay to keep reads from going
 * backwards (`acked_lsn`); a write given up before upload (TTL, overflow policy, moved to
 * another partition) keeps its seq as a `skip`, without its value.
 *
 * Two forms, one sequence: new writes go in as batches (`OutboxBatches`, one row per append),
 * and a write that needs state of its own, or that has waited while newer ones filled the
 * batches (a device offline), goes to the `outbox` table's rows, indexed for lookups by document
 * and by age. Every read here merges the two in seq order.
 */
export class Outbox {
  readonly #s;
  readonly #tally: PendingTally;
  readonly #batches: OutboxBatches;
  readonly #forms: OutboxForms;
  readonly #reads: OutboxReads;
  readonly #moves: OutboxMoves;
  /** Committed writes whose rows go with the next append. */
  readonly #released = new ReleasedWrites(() => this.flushReleased());

  constructor(
    private readonly db: AgentDb,
    private readonly partitions: Partitions,
    private readonly settings: Settings,
    private readonly rejections: Rejections,
    /** The replica's version of a document (0 if it holds none). */
    private readonly versionOf: (collection: string, key: string) => number,
  ) {
    this.#s = {
      row: db.prepare<[string, number], OutboxRow>(`SELECT ${ROW} FROM outbox WHERE lane = ? AND seq = ?`),
      olderThan: db.prepare<[string, number], OutboxRow>(
        `SELECT ${ROW} FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL AND created_at < ? ORDER BY seq`,
      ),
      markAcked: db.prepare<[number, string | null, string, number]>(
        'UPDATE outbox SET acked_lsn = ?, acked_hlc = ? WHERE lane = ? AND seq = ?',
      ),
      anyConfirmed: db.prepare<[], { one: number }>('SELECT 1 AS one FROM outbox WHERE acked_lsn IS NOT NULL LIMIT 1'),
      releaseConfirmed: db.prepare<[string, string, number]>(
        'DELETE FROM outbox WHERE collection = ? AND key = ? AND acked_lsn IS NOT NULL AND acked_lsn <= ?',
      ),
    };
    this.#batches = new OutboxBatches(db);
    this.#forms = new OutboxForms(db, this.#batches, this.#released);
    this.#reads = new OutboxReads(db, this.#batches, this.#released);
    // Counted once, when the store opens; from then on every change to pending writes is tallied.
    this.#tally = new PendingTally(
      [
        ...db
          .prepare<[], { collection: string; n: number }>(
            'SELECT collection, count(*) AS n FROM outbox WHERE acked_lsn IS NULL AND skipped IS NULL GROUP BY collection',
          )
          .all(),
        ...this.#batches.countsByCollection(),
      ],
      db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox WHERE acked_lsn IS NULL AND skipped IS NOT NULL').get()!.n,
    );
    this.#moves = new OutboxMoves(db, partitions, settings, this.#tally, this.#forms, this.#released);
  }

  /**
   * Appends writes in one transaction (group commit), each at the end of its partition's
   * sequence, under the collections' buffering policies: a write over its collection's
   * `maxPending` is refused (OutboxFullError in its place) or makes the oldest pending write of
   * that collection give way (`drop-oldest`, reported in `dropped`). Throws StorageFullError
   * when the disk or the storage budget is exhausted; nothing is half-written.
   */
  append(
    writes: readonly NewWrite[],
    clockNow: Hlc,
    policyFor?: (collection: string) => Buffering,
    /** Runs in the append's transaction, once the writes are in it: what must be stored with them or not at all. */
    within?: (result: AppendResult) => void,
  ): AppendResult {
    // Batches count at their row size: they are stored compressed, and may become rows in this very append.
    this.settings.assertRoomFor(writes, this.#batches.rowBytes - this.#batches.bytes);
    const result: AppendResult = { seqs: [], dropped: [] };
    const gone = this.#forms.guarded(() =>
      this.#tally.within(() =>
        this.db.appTransaction(() => {
          // Released writes go first, so that the new batch takes the pages they free (a page freed
          // and filled again in one commit is written once); each partition's last goes after the
          // new one, so that it is not the partition's last when it leaves (see Partitions.nextSeqOf).
          const released = this.#forms.deleteReleased('all but the last');
          const now = Date.now();
          const next = new Map<string, number>();
          // Each partition's writes of this append, stored as a batch at the end (or before a drop-oldest looks for the oldest).
          const batched = new Map<string, { first: number; writes: BatchedWriteFields[] }>();
          const store = (): void => {
            for (const [partition, { first, writes: fields }] of batched) this.#batches.add(partition, first, now, fields);
            batched.clear();
          };
          for (const w of writes) {
            let seq = next.get(w.partition);
            if (seq === undefined) {
              this.partitions.incarnationOf(w.partition); // a partition first written to is born in this transaction
              seq = this.partitions.nextSeqOf(w.partition);
            }
            const policy = policyFor?.(w.collection);
            if (policy && policy.maxPending > 0 && this.#tally.pendingIn(w.collection) >= policy.maxPending) {
              if (policy.overflow === 'reject') {
                result.seqs.push(new OutboxFullError(w.collection, policy.maxPending));
                continue;
              }
              store(); // the oldest may be one of this append's
              const oldest = this.#reads.oldestPendingIn(w.collection);
              if (oldest) result.dropped.push(this.#giveUp(oldest, 'dropped', now));
            }
            const base = w.base ?? this.versionOf(w.collection, w.key);
            let batch = batched.get(w.partition);
            if (!batch) batched.set(w.partition, (batch = { first: seq, writes: [] }));
            batch.writes.push({
              collection: w.collection,
              key: w.key,
              op: w.op,
              value: w.value ?? null,
              hlc: w.hlc,
              base,
              rep: w.rep ?? null,
              created_at: now,
            });
            this.#tally.pendingChanged(w.collection, +1);
            result.seqs.push(seq);
            next.set(w.partition, seq + 1);
          }
          store();
          released.push(...this.#forms.deleteReleased('the last'));
          // A device offline fills the batches: the oldest go to rows, half of them at once, so
          // that a write goes to rows in large runs and memory holds only the newest.
          if (this.#batches.size > MAX_BATCHED.writes || this.#batches.rowBytes > MAX_BATCHED.bytes) {
            while (this.#batches.size > MAX_BATCHED.writes / 2 || this.#batches.rowBytes > MAX_BATCHED.bytes / 2)
              this.#forms.toRows(this.#batches.oldest()!);
          }
          within?.(result);
          this.settings.reserveHlc(clockNow);
          return released;
        }),
      ),
    );
    this.#released.forget(gone);
    return result;
  }

  /**
   * Leaves the outbox as rows alone (see OutboxForms.onlyRows), in a transaction of its own (not fsynced:
   * the writes are the same, only their form changes): for the reconciliation with a restored
   * hub, which reads them in SQL.
   */
  onlyRows(): void {
    if (this.#batches.size === 0 && this.#released.empty) return;
    this.#released.forget(this.#forms.guarded(() => this.db.transaction(() => this.#forms.onlyRows())));
  }

  /** Deletes released writes now, in a transaction of their own (not fsynced). */
  flushReleased(): void {
    if (this.#released.empty) return;
    this.#released.forget(this.#forms.guarded(() => this.db.transaction(() => this.#forms.deleteReleased())));
  }

  /**
   * Deletes every released write now, those of a batch the hub answered only part of included
   * (its other writes become rows), in a transaction of its own: when the store closes, so that
   * what the hub committed is not sent again after a restart.
   */
  settleReleased(): void {
    if (this.#released.empty) return;
    this.#released.forget(this.#forms.guarded(() => this.db.transaction(() => this.#forms.settleReleased())));
  }

  /**
   * Gives up pending writes older than their collection's TTL: each keeps its seq (sent as a
   * `skip`, so the sequence stays contiguous) and is recorded where the app sees it.
   */
  expire(ttlSecondsFor: (collection: string) => number, now = Date.now()): Rejection[] {
    const expired: Rejection[] = [];
    // Runs every second: take the write lock only when some pending collection has a TTL.
    const withTtl = this.#tally
      .collections()
      .map((collection) => ({ collection, ttl: ttlSecondsFor(collection) }))
      .filter(({ ttl }) => ttl > 0);
    if (withTtl.length === 0) return expired;
    this.flushReleased();
    // Durable: the app hears that these writes were given up, so a power cut must not revive them.
    const gone = this.#forms.guarded(() =>
      this.#tally.within(() =>
        this.db.durableTransaction(() => {
          for (const { collection, ttl } of withTtl) {
            const before = now - ttl * 1000;
            const old = [...this.#batches.all()].filter((b) => b.writes.some((w) => w.collection === collection && w.created_at < before));
            for (const batch of old) this.#forms.toRows(batch);
          }
          // Committed writes of those batches are rows now: they go before anything is given up.
          const gone = this.#forms.deleteReleased();
          for (const { collection, ttl } of withTtl) {
            for (const row of this.#s.olderThan.all(collection, now - ttl * 1000)) expired.push(this.#giveUp(row, 'expired', now));
          }
          return gone;
        }),
      ),
    );
    this.#released.forget(gone);
    return expired;
  }

  #giveUp(row: OutboxRow, outcome: 'expired' | 'dropped', now: number): Rejection {
    this.#forms.rowOf(row);
    const incarnation = this.partitions.incarnationOf(row.partition);
    const rejection = this.rejections.record(incarnation, row, { outcome, reason: outcome, detail: GIVE_UP_DETAIL[outcome], at: now });
    this.#forms.skipRow(outcome, row.partition, row.seq);
    this.#tally.pendingChanged(row.collection, -1);
    this.#tally.skipsChanged(+1);
    return rejection;
  }

  /** A partition's unacknowledged ops from `fromSeq` on, in seq order: up to `maxOps`, and about `maxBytes` (at least one). */
  pendingFrom(partition: string, fromSeq: number, maxOps: number, maxBytes: number): WriteOp[] {
    return this.#reads.pendingFrom(partition, fromSeq, maxOps, maxBytes);
  }

  /** The first seq of the partition the hub has not acknowledged, if any. */
  lowestPendingSeq(partition: string): number | undefined {
    this.flushReleased();
    return this.#reads.lowestPendingSeq(partition);
  }

  /** The highest seq of a partition's pending writes to any of these collections (0 if none). */
  newestPendingSeqIn(partition: string, collections: ReadonlySet<string>): number {
    return collections.size === 0 ? 0 : this.#reads.newestPendingSeqIn(partition, collections);
  }

  /** Writes not yet acknowledged by the hub, of every partition (skips included). */
  pendingCount(): number {
    return this.#tally.unacknowledged;
  }

  /** Pending writes per collection: how many, and since when (ms epoch). One index lookup per collection, and the batches in memory. */
  pendingByCollection(): Record<string, { pending: number; oldestAt: number }> {
    return Object.fromEntries(
      this.#tally
        .collections()
        .map((collection) => [
          collection,
          { pending: this.#tally.pendingIn(collection), oldestAt: this.#reads.oldestPendingIn(collection)?.created_at ?? Date.now() },
        ]),
    );
  }

  /**
   * Records the hub's outcomes for a partition's writes. A committed op stays in the overlay
   * until the replica holds its version (so reads never go backwards); if its collection is not
   * replicated here it leaves at once. Rejected and conflicting ops leave the outbox and are
   * kept as rejections. `heard`: the hub clock of the ack, kept with a confirmed write's LSN
   * (RestoreWatch reads it).
   */
  applyResults(partition: string, results: readonly OpResult[], replicated: (collection: string) => boolean, heard?: string): Rejection[] {
    const rejected: Rejection[] = [];
    const released: number[] = [];
    // Not fsynced: a power cut may take these outcomes back, and then the writes go up again and
    // the hub answers them again from its dedup state.
    this.#forms.guarded(() =>
      this.#tally.within(() =>
        this.db.transaction(() => {
          // Committed, and nothing more to wait for: a batched write then leaves with its batch, as
          // a connected device's writes do. Any other outcome needs a row of its own: each batch is
          // split once around those of its writes that do (a confirm the replica is behind on, a
          // rejection).
          const leaves = (w: BatchedWrite, r: OpResult): boolean =>
            r.outcome === 'committed' && r.lsn !== undefined && !(replicated(w.collection) && this.versionOf(w.collection, w.key) < r.lsn);
          const needRows = new Map<WriteBatch, Set<number>>();
          for (const r of results) {
            const batched = this.#released.has(partition, r.seq) ? undefined : this.#batches.write(partition, r.seq);
            if (!batched || leaves(batched, r)) continue;
            const batch = this.#batches.batchOf(partition, r.seq)!;
            needRows.set(batch, (needRows.get(batch) ?? new Set()).add(r.seq));
          }
          for (const [batch, seqs] of needRows) this.#forms.split(batch, (w) => (seqs.has(w.seq) ? 'row' : 'batch'));
          const answered = new Set<number>();
          for (const r of results) {
            if (this.#released.has(partition, r.seq) || answered.has(r.seq)) continue; // answered again (a resend): already counted
            answered.add(r.seq);
            const batched = this.#batches.write(partition, r.seq);
            if (batched) {
              this.#tally.pendingChanged(batched.collection, -1);
              released.push(r.seq);
              continue;
            }
            const row = this.#s.row.get(partition, r.seq);
            if (!row) continue;
            if (row.skipped) {
              this.#forms.deleteRow(partition, r.seq); // already reported when it was given up
              this.#tally.skipsChanged(-1);
              continue;
            }
            // An ack repeated for a write already confirmed changes nothing pending.
            if (row.acked_lsn === null) this.#tally.pendingChanged(row.collection, -1);
            if (r.outcome === 'committed' && r.lsn !== undefined) {
              if (replicated(row.collection) && this.versionOf(row.collection, row.key) < r.lsn)
                this.#s.markAcked.run(r.lsn, heard ?? null, partition, r.seq);
              else released.push(r.seq); // goes with the next append (see ReleasedWrites)
              continue;
            }
            const verdict = {
              outcome: r.outcome === 'committed' ? 'duplicate' : r.outcome,
              reason: r.reason ?? null,
              detail: r.detail ?? null,
              at: Date.now(),
            } as const;
            rejected.push(this.rejections.record(this.partitions.incarnationOf(partition), row, verdict));
            this.#forms.deleteRow(partition, r.seq);
          }
        }),
      ),
    );
    // Only once the transaction committed: its pending counts were staged with it.
    for (const seq of released) this.#released.add(partition, seq);
    return rejected;
  }

  /** See OutboxMoves.reincarnate. */
  reincarnate(partition: string): { incarnation: string; renumbered: Array<{ from: number; to: number }> } {
    return this.#moves.reincarnate(partition);
  }

  /** See OutboxMoves.adoptAssignment. */
  adoptAssignment(setting: string, value: unknown, partitionOf: (collection: string) => string): MovedWrite[] {
    this.flushReleased(); // committed writes must not move as if pending
    return this.#moves.adoptAssignment(setting, value, partitionOf);
  }

  /** The device's pending writes to a document over `version` (the replica's), in order: what a read lays over it. */
  overlayOf(collection: string, key: string, version: number): Array<{ op: WriteKind; value: Buffer | null; hlc: string }> {
    return this.#reads.overlayOf(collection, key, version);
  }

  /** Keys of a collection from `from` on (in order) that pending writes touch. */
  overlayKeys(collection: string, from: string): string[] {
    return this.#reads.overlayKeys(collection, from);
  }

  /** Some committed writes wait for their version to reach the replica (usually none do). */
  anyConfirmed(): boolean {
    return this.#s.anyConfirmed.get() !== undefined;
  }

  /** Lets committed writes to a document go once the replica holds version `lsn` of it. */
  releaseConfirmed(collection: string, key: string, lsn: number): void {
    this.#s.releaseConfirmed.run(collection, key, lsn);
  }
}
