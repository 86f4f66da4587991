import type { AgentDb } from './agent-db.js';
import type { BatchedWrite, OutboxBatches, WriteBatch } from './outbox-batches.js';
import type { OutboxRow } from './outbox-rows.js';
import type { ReleasedWrites } from './released-writes.js';
import type { WriteKind } from './writes.js';

/**
 * The outbox's two forms, batches and rows (see Outbox), and the writes released from either:
 * turning batches into rows, deleting released writes, and keeping the batches' memory true to
 * the database when a transaction fails. Every method but `guarded` works in the caller's
 * transaction.
 */
export class OutboxForms {
  readonly #s;

  constructor(
    db: AgentDb,
    private readonly batches: OutboxBatches,
    private readonly released: ReleasedWrites,
  ) {
    this.#s = {
      insert: db.prepare<[string, number, string, string, WriteKind, Buffer | null, string, number, number, number | null]>(
        'INSERT INTO outbox (lane, seq, collection, key, op, value, hlc, base, created_at, rep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      delete: db.prepare<[string, number]>('DELETE FROM outbox WHERE lane = ? AND seq = ?'),
      skip: db.prepare<[string, string, number]>('UPDATE outbox SET skipped = ?, value = NULL WHERE lane = ? AND seq = ?'),
    };
  }

  /** A write as a row of its own, at `partition`'s `seq` (its own unless given), in the transaction under way. */
  insertRow(w: Omit<OutboxRow, 'skipped' | 'acked_lsn'>, partition = w.partition, seq = w.seq): void {
    this.#s.insert.run(partition, seq, w.collection, w.key, w.op, w.value, w.hlc, w.base, w.created_at, w.rep);
  }

  deleteRow(partition: string, seq: number): void {
    this.#s.delete.run(partition, seq);
  }

  /** A row's write given up (`reason`): it keeps its seq, without its value. */
  skipRow(reason: string, partition: string, seq: number): void {
    this.#s.skip.run(reason, partition, seq);
  }

  /**
   * Runs a transaction that may change the batches; if it throws (rolled back), their memory is
   * read again as the rows are.
   */
  guarded<T>(transaction: () => T): T {
    try {
      return transaction();
    } catch (cause) {
      this.batches.load();
      throw cause;
    }
  }

  /**
   * Turns a batch into rows, in the transaction under way: its writes keep their seqs, and gain
   * a row each so that they can hold state of their own. A released write becomes a released
   * row, which the next deletion of released writes takes.
   */
  toRows(batch: WriteBatch): void {
    this.split(batch, () => 'row');
  }

  /**
   * Takes a batch apart, in the transaction under way: each write becomes a row, stays batched
   * (each run of those that stay is stored again as a batch, in its place) or is dropped (a
   * released write, which may leave). Returns the writes dropped.
   */
  split(batch: WriteBatch, fate: (w: BatchedWrite) => 'row' | 'batch' | 'drop'): Array<[string, number]> {
    const dropped: Array<[string, number]> = [];
    // First out: deleting the partition's last batch keeps its next seq in meta (migration 14), dropped writes' seqs included.
    this.batches.remove(batch);
    let run: BatchedWrite[] = [];
    const storeRun = (): void => {
      if (run.length > 0) this.batches.add(batch.partition, run[0]!.seq, batch.createdAt, run);
      run = [];
    };
    for (const w of batch.writes) {
      const f = fate(w);
      if (f === 'batch') {
        run.push(w);
        continue;
      }
      storeRun();
      if (f === 'drop') dropped.push([w.partition, w.seq]);
      else this.insertRow(w);
    }
    storeRun();
    return dropped;
  }

  /**
   * Every write to rows and every released one deleted, in the transaction under way: before
   * work that reads the rows in SQL as the whole outbox (renumbering, moving, reporting to a
   * restored hub). Returns the writes deleted.
   */
  onlyRows(): Array<[string, number]> {
    for (const batch of [...this.batches.all()]) this.toRows(batch);
    return this.deleteReleased();
  }

  /** Makes sure a write has a row (its batch split around it), in the transaction under way. */
  rowOf(row: OutboxRow): void {
    const batch = this.batches.batchOf(row.partition, row.seq);
    if (batch) this.split(batch, (w) => (w.seq === row.seq ? 'row' : 'batch'));
  }

  /**
   * Deletes released writes (see ReleasedWrites) in the transaction under way: all, or each
   * partition's last, or the others. A batch goes once every write in it is released. Returns
   * the writes deleted.
   */
  deleteReleased(which: 'all' | 'all but the last' | 'the last' = 'all'): Array<[string, number]> {
    const gone: Array<[string, number]> = [];
    for (const [partition, seqs] of this.released.byPartition()) {
      let last = -Infinity;
      for (const seq of seqs) last = Math.max(last, seq);
      const lastBatch = this.batches.batchOf(partition, last);
      const batches = new Set<WriteBatch>();
      for (const seq of seqs) {
        const batch = this.batches.batchOf(partition, seq);
        const isLast = batch ? batch === lastBatch : seq === last;
        if (which !== 'all' && isLast !== (which === 'the last')) continue;
        if (batch) batches.add(batch);
        else {
          this.deleteRow(partition, seq);
          gone.push([partition, seq]);
        }
      }
      for (const batch of batches) {
        if (!batch.writes.every((w) => seqs.has(w.seq))) continue; // the hub has not answered for all of it yet
        this.batches.remove(batch);
        for (const w of batch.writes) gone.push([partition, w.seq]);
      }
    }
    return gone;
  }

  /**
   * Deletes every released write, in the transaction under way, those of a batch the hub
   * answered only part of included: the answered ones leave, and the others are stored again as
   * a batch without them. Returns the writes deleted.
   */
  settleReleased(): Array<[string, number]> {
    const gone: Array<[string, number]> = [];
    for (const [partition, seqs] of this.released.byPartition()) {
      const partial = new Set<WriteBatch>();
      for (const seq of seqs) {
        const batch = this.batches.batchOf(partition, seq);
        if (batch && !batch.writes.every((w) => seqs.has(w.seq))) partial.add(batch);
      }
      for (const batch of partial) gone.push(...this.split(batch, (w) => (seqs.has(w.seq) ? 'drop' : 'batch')));
    }
    return [...gone, ...this.deleteReleased()];
  }
}
