import { encodeValue } from '../../shared/value-bytes.js';
import { OutboxFullError } from '../../shared/errors.js';
import type { Hlc } from '../../shared/hlc.js';
import type { OpResult, WriteOp } from '../../shared/messages.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import type { AgentDb } from './agent-db.js';
import type { Partitions } from './partitions.js';
import { PendingTally } from './pending-tally.js';
import { ReleasedWrites } from './released-writes.js';
import { ROW, unsentRows, type OutboxRow } from './outbox-rows.js';
import type { Rejection, Rejections } from './rejections.js';
import type { Settings } from './settings.js';
import type { NewWrite, WriteKind } from './writes.js';

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

/** A write given a place in another partition's sequence (see `Outbox.adoptAssignment`): where it was, where it is now. */
export interface MovedWrite {
  from: { incarnation: string; seq: number };
  to: { partition: string; incarnation: string; seq: number };
}

const GIVE_UP_DETAIL = {
  expired: "not uploaded within the collection's TTL",
  dropped: 'dropped to make room (overflow policy drop-oldest)',
} as const;

/**
 * The durable outbox of the device's own writes, one sequence per partition of the hub, each
 * contiguous from 1 in its incarnation (the hub requires it). A row stays until the hub has
 * answered for it: committed rows the replica does not hold yet stay to keep reads from going
 * backwards (`acked_lsn`); a write given up before upload (TTL, overflow policy, moved to
 * another partition) keeps its seq as a `skip`, without its value.
 */
export class Outbox {
  readonly #s;
  readonly #tally: PendingTally;
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
      insert: db.prepare<[string, number, string, string, WriteKind, Buffer | null, string, number, number, number | null]>(
        'INSERT INTO outbox (lane, seq, collection, key, op, value, hlc, base, created_at, rep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      row: db.prepare<[string, number], OutboxRow>(`SELECT ${ROW} FROM outbox WHERE lane = ? AND seq = ?`),
      pendingFrom: db.prepare<[string, number, number], OutboxRow>(
        `SELECT ${ROW} FROM outbox WHERE lane = ? AND seq >= ? AND acked_lsn IS NULL ORDER BY seq LIMIT ?`,
      ),
      lowestPending: db.prepare<[string], { seq: number | null }>(
        'SELECT min(seq) AS seq FROM outbox WHERE lane = ? AND acked_lsn IS NULL',
      ),
      oldestInCollection: db.prepare<[string, number], OutboxRow>(
        // In the pending index's order (ties: the order they were stored in), so that only the entries needed are read.
        `SELECT ${ROW} FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL ORDER BY created_at LIMIT ?`,
      ),
      olderThan: db.prepare<[string, number], OutboxRow>(
        `SELECT ${ROW} FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL AND created_at < ? ORDER BY seq`,
      ),
      skip: db.prepare<[string, string, number]>('UPDATE outbox SET skipped = ?, value = NULL WHERE lane = ? AND seq = ?'),
      markAcked: db.prepare<[number, string | null, string, number]>(
        'UPDATE outbox SET acked_lsn = ?, acked_hlc = ? WHERE lane = ? AND seq = ?',
      ),
      delete: db.prepare<[string, number]>('DELETE FROM outbox WHERE lane = ? AND seq = ?'),
      seqsOf: db.prepare<[string], { seq: number; confirmed: 0 | 1 }>(
        'SELECT seq, acked_lsn IS NOT NULL AS confirmed FROM outbox WHERE lane = ? ORDER BY seq',
      ),
      renumber: db.prepare<[number, string, number]>('UPDATE outbox SET seq = ? WHERE lane = ? AND seq = ?'),
      overlay: db.prepare<[string, string, number], { partition: string; seq: number; op: WriteKind; value: Buffer | null }>(
        `SELECT lane AS partition, seq, op, value FROM outbox WHERE collection = ? AND key = ? AND skipped IS NULL AND (acked_lsn IS NULL OR acked_lsn > ?) ORDER BY seq`,
      ),
      overlayKeys: db.prepare<[string, string], { key: string }>(
        'SELECT DISTINCT key FROM outbox WHERE collection = ? AND key >= ? AND skipped IS NULL ORDER BY key',
      ),
      anyConfirmed: db.prepare<[], { one: number }>('SELECT 1 AS one FROM outbox WHERE acked_lsn IS NOT NULL LIMIT 1'),
      releaseConfirmed: db.prepare<[string, string, number]>(
        'DELETE FROM outbox WHERE collection = ? AND key = ? AND acked_lsn IS NOT NULL AND acked_lsn <= ?',
      ),
    };
    // Counted once, when the store opens; from then on every change to pending rows is tallied.
    this.#tally = new PendingTally(
      db
        .prepare<[], { collection: string; n: number }>(
          'SELECT collection, count(*) AS n FROM outbox WHERE acked_lsn IS NULL AND skipped IS NULL GROUP BY collection',
        )
        .all(),
      db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox WHERE acked_lsn IS NULL AND skipped IS NOT NULL').get()!.n,
    );
  }

  /**
   * Appends writes in one transaction (group commit), each at the end of its partition's
   * sequence, under the collections' buffering policies: a write over its collection's
   * `maxPending` is refused (OutboxFullError in its place) or makes the oldest pending write of
   * that collection give way (`drop-oldest`, reported in `dropped`). Throws StorageFullError
   * when the disk or the storage budget is exhausted; nothing is half-written.
   */
  append(writes: readonly NewWrite[], clockNow: Hlc, policyFor?: (collection: string) => Buffering): AppendResult {
    this.settings.assertRoomFor(writes);
    const result: AppendResult = { seqs: [], dropped: [] };
    this.#tally.within(() =>
      this.db.appTransaction(() => {
        // Released rows go first, so that the new rows take the pages they free (a page freed and
        // filled again in one commit is written once); each partition's last goes after the new
        // rows, so that it is not the partition's last row when it leaves (see Partitions.nextSeqOf).
        this.#deleteReleased('all but the last');
        const now = Date.now();
        const next = new Map<string, number>();
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
            const oldest = this.#oldestPendingIn(w.collection);
            if (oldest) result.dropped.push(this.#giveUp(oldest, 'dropped', now));
          }
          const base = w.base ?? this.versionOf(w.collection, w.key);
          this.#s.insert.run(w.partition, seq, w.collection, w.key, w.op, w.value ?? null, w.hlc, base, now, w.rep ?? null);
          this.#tally.pendingChanged(w.collection, +1);
          result.seqs.push(seq);
          next.set(w.partition, seq + 1);
        }
        this.#deleteReleased('the last');
        this.settings.reserveHlc(clockNow);
      }),
    );
    this.#released.clear();
    return result;
  }

  /** The oldest pending write of a collection; a released one (committed, its row not yet deleted) is not pending. */
  #oldestPendingIn(collection: string): OutboxRow | undefined {
    return this.#s.oldestInCollection.all(collection, this.#released.size + 1).find((row) => !this.#released.has(row.partition, row.seq));
  }

  /** Deletes the rows of released writes (see ReleasedWrites) in the transaction under way: all, or each partition's last, or the others. */
  #deleteReleased(which: 'all' | 'all but the last' | 'the last' = 'all'): void {
    for (const [partition, seqs] of this.#released.byPartition()) {
      let last = -Infinity;
      for (const seq of seqs) last = Math.max(last, seq);
      for (const seq of seqs) {
        if (which === 'all' || (seq === last) === (which === 'the last')) this.#s.delete.run(partition, seq);
      }
    }
  }

  /** Deletes the rows of released writes now, in a transaction of their own (not fsynced). */
  flushReleased(): void {
    if (this.#released.empty) return;
    this.db.transaction(() => this.#deleteReleased());
    this.#released.clear();
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
    this.#tally.within(() =>
      this.db.durableTransaction(() => {
        for (const { collection, ttl } of withTtl) {
          for (const row of this.#s.olderThan.all(collection, now - ttl * 1000)) expired.push(this.#giveUp(row, 'expired', now));
        }
      }),
    );
    return expired;
  }

  #giveUp(row: OutboxRow, outcome: 'expired' | 'dropped', now: number): Rejection {
    const incarnation = this.partitions.incarnationOf(row.partition);
    const rejection = this.rejections.record(incarnation, row, { outcome, reason: outcome, detail: GIVE_UP_DETAIL[outcome], at: now });
    this.#s.skip.run(outcome, row.partition, row.seq);
    this.#tally.pendingChanged(row.collection, -1);
    this.#tally.skipsChanged(+1);
    return rejection;
  }

  /** A partition's unacknowledged ops from `fromSeq` on, in seq order: up to `maxOps`, and about `maxBytes` (at least one). */
  pendingFrom(partition: string, fromSeq: number, maxOps: number, maxBytes: number): WriteOp[] {
    const ops: WriteOp[] = [];
    let bytes = 0;
    for (const row of this.#s.pendingFrom.all(partition, fromSeq, maxOps)) {
      if (this.#released.has(partition, row.seq)) continue; // committed: not sent again
      bytes += 48 + row.key.length + (row.value?.length ?? 0);
      if (ops.length > 0 && bytes > maxBytes) break;
      if (row.skipped) {
        ops.push({ seq: row.seq, c: row.collection, k: row.key, op: 'skip', v: encodeValue(row.skipped), hlc: row.hlc });
        continue;
      }
      ops.push({
        seq: row.seq,
        c: row.collection,
        k: row.key,
        op: row.op,
        hlc: row.hlc,
        // Sent as stored: the bytes the write was encoded to once, when it was made.
        ...(row.value !== null && { v: row.value }),
        ...(row.base > 0 && { base: row.base }),
        ...(row.rep != null && { rep: row.rep }),
      });
    }
    return ops;
  }

  /** The first seq of the partition the hub has not acknowledged, if any. */
  lowestPendingSeq(partition: string): number | undefined {
    this.flushReleased();
    return this.#s.lowestPending.get(partition)?.seq ?? undefined;
  }

  /** Writes not yet acknowledged by the hub, of every partition (skips included). */
  pendingCount(): number {
    return this.#tally.unacknowledged;
  }

  /** Pending writes per collection: how many, and since when (ms epoch). One index lookup per collection. */
  pendingByCollection(): Record<string, { pending: number; oldestAt: number }> {
    return Object.fromEntries(
      this.#tally
        .collections()
        .map((collection) => [
          collection,
          { pending: this.#tally.pendingIn(collection), oldestAt: this.#oldestPendingIn(collection)?.created_at ?? Date.now() },
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
    this.#tally.within(() =>
      this.db.transaction(() => {
        for (const r of results) {
          if (this.#released.has(partition, r.seq)) continue; // answered again (a resend): already counted
          const row = this.#s.row.get(partition, r.seq);
          if (!row) continue;
          if (row.skipped) {
            this.#s.delete.run(partition, r.seq); // already reported when it was given up
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
          this.#s.delete.run(partition, r.seq);
        }
      }),
    );
    // Only once the transaction committed: its pending counts were staged with it.
    for (const seq of released) this.#released.add(partition, seq);
    return rejected;
  }

  /**
   * Starts a new incarnation of a partition's sequence: the writes the hub has not acknowledged
   * renumbered from 1 in their order. Used when the hub reports that this incarnation's seqs were
   * already used for other writes (the database was restored from an old backup), and when the
   * hub itself was restored. Writes the hub acknowledged, still in the overlay until the replica
   * holds their version, are never sent again: they go below 0 in their order, so that the new
   * incarnation's first upload is seq 1, as the hub expects of a new incarnation. Returns the new
   * incarnation and each unacknowledged write's old and new seq, in order.
   */
  reincarnate(partition: string): { incarnation: string; renumbered: Array<{ from: number; to: number }> } {
    // Durable: writes go up under their new seqs, which a power cut must not take back.
    const reborn = this.db.durableTransaction(() => {
      this.#deleteReleased(); // committed writes must not be renumbered as if pending
      const rows = this.#s.seqsOf.all(partition);
      // First out of the way of every final seq (confirmed rows may already sit below 0), so that
      // no two rows share a key half way.
      const parked = -1e12;
      rows.forEach((row, i) => this.#s.renumber.run(parked - i, partition, row.seq));
      const confirmed = rows.filter((row) => row.confirmed);
      const pending = rows.filter((row) => !row.confirmed);
      rows.forEach((row, i) => {
        const to = row.confirmed ? confirmed.indexOf(row) - confirmed.length : pending.indexOf(row) + 1;
        this.#s.renumber.run(to, partition, parked - i);
      });
      const incarnation = this.partitions.reborn(partition, pending.length + 1);
      return { incarnation, renumbered: pending.map((row, i) => ({ from: row.seq, to: i + 1 })) };
    });
    this.#released.clear();
    return reborn;
  }

  /**
   * Adopts the hub's assignment of collections to partitions (`setting` = `value`, kept as a
   * setting) and, in the same transaction, moves every pending write of the default partition
   * whose collection `partitionOf` now puts in another: a copy goes to the end of that
   * partition's sequence, and the write keeps its place in the default one as a `skip` (reason
   * `moved`), so that the default sequence stays contiguous and no write that stays there changes
   * identity — even one that was already uploaded. Returns the writes moved, for whoever holds
   * their receipts or waits on them.
   */
  adoptAssignment(setting: string, value: unknown, partitionOf: (collection: string) => string): MovedWrite[] {
    // Durable: the moved writes go up under their new identities, which a power cut must not take back.
    this.flushReleased(); // committed writes must not move as if pending
    return this.#tally.within(() =>
      this.db.durableTransaction(() => {
        const moved: MovedWrite[] = [];
        this.settings.set(setting, value);
        const from = this.partitions.incarnationOf(DEFAULT_PARTITION);
        // Each target partition's incarnation and next seq, read once (a move may be of many writes).
        const targets = new Map<string, { incarnation: string; next: number }>();
        // Read a page at a time; usually none of them moves.
        const moving = this.#tally.collections().filter((c) => partitionOf(c) !== DEFAULT_PARTITION);
        for (const row of unsentRows(this.db, DEFAULT_PARTITION, moving)) {
          const partition = partitionOf(row.collection);
          let target = targets.get(partition);
          if (!target) {
            target = { incarnation: this.partitions.incarnationOf(partition), next: this.partitions.nextSeqOf(partition) };
            targets.set(partition, target);
          }
          const seq = target.next++;
          const { collection, key, op, value: stored, hlc, base, created_at, rep } = row;
          this.#s.insert.run(partition, seq, collection, key, op, stored, hlc, base, created_at, rep);
          this.#s.skip.run('moved', DEFAULT_PARTITION, row.seq);
          this.#tally.skipsChanged(+1); // the copy is pending in its place: the collection's count stays
          moved.push({ from: { incarnation: from, seq: row.seq }, to: { partition, incarnation: target.incarnation, seq } });
        }
        for (const [partition, { next }] of targets) this.partitions.setNextSeq(partition, next);
        return moved;
      }),
    );
  }

  /** The device's pending writes to a document over `version` (the replica's), in order: what a read lays over it. */
  overlayOf(collection: string, key: string, version: number): Array<{ op: WriteKind; value: Buffer | null }> {
    // A released write is committed and the replica holds its version or a newer one: it lays nothing over it.
    return this.#s.overlay.all(collection, key, version).filter((row) => !this.#released.has(row.partition, row.seq));
  }

  /** Keys of a collection from `from` on (in order) that pending writes touch. */
  overlayKeys(collection: string, from: string): string[] {
    return this.#s.overlayKeys.all(collection, from).map((r) => r.key);
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
