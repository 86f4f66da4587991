import type { AgentDb } from './agent-db.js';
import type { OutboxRow } from './outbox-rows.js';
import { decodeWriteBatch, encodeWriteBatch, type BatchedWriteFields } from './write-batch-codec.js';

/** A write held in a batch: an outbox row that has no state of its own yet (no ack, no skip). */
export type BatchedWrite = OutboxRow & { skipped: null; acked_lsn: null };

/** One append's writes to one partition, consecutive seqs from `firstSeq`, stored as one row. */
export interface WriteBatch {
  readonly partition: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly createdAt: number;
  readonly writes: readonly BatchedWrite[];
  /** The stored blob's size. */
  readonly bytes: number;
  /** Its writes at their row size (`rowBytesOf`): what memory holds of them, and what they take as rows. */
  readonly rowBytes: number;
}

/** What a write would take as a row of the `outbox` table, its indexes included (the estimate the storage budget uses). */
export const rowBytesOf = (w: { key: string; value: Buffer | null }): number => 64 + w.key.length + (w.value?.length ?? 0);

/** Writes one batch holds at most: a larger append is stored as several. */
export const MAX_WRITES_PER_BATCH = 500;
/**
 * What the batches may hold before the oldest go to the outbox's rows (`Outbox`): they are kept
 * in memory too, uncompressed, for reads to lay over the replica, so a device offline for a week
 * holds only its newest writes this way. `bytes` counts writes at their row size (`rowBytesOf`).
 */
export const MAX_BATCHED = { writes: 2_000, bytes: 1 << 20 };

/**
 * The outbox's newest writes, one row per append and partition (`outbox_batches`), with every
 * write of them in memory as well. A write that only waits for the hub to commit it, as nearly
 * every write on a connected device does, never needs a row of its own: its batch is written
 * once when the app writes and deleted once when the hub has committed every write in it, a few
 * pages of a device's flash for a hundred writes where rows, each in three indexes, took fifty
 * (docs/EDGE.md). A write that needs state of its own (an ack whose version the replica does not
 * hold yet, a rejection, a skip, a move, a new incarnation) has its batch turned into rows first
 * (`Outbox`).
 *
 * Every method that writes does so in the caller's transaction; the memory follows the rows as
 * it goes, and `load` puts it back as the rows are if that transaction is rolled back.
 */
export class OutboxBatches {
  readonly #s;
  readonly #byPartition = new Map<string, WriteBatch[]>();
  /** Each document's batched writes, in seq order: what reads lay over the replica. */
  readonly #byDocument = new Map<string, BatchedWrite[]>();
  #writes = 0;
  #bytes = 0;
  #rowBytes = 0;

  constructor(db: AgentDb) {
    this.#s = {
      all: db.prepare<[], { lane: string; first_seq: number; created_at: number; writes: Buffer }>(
        'SELECT lane, first_seq, created_at, writes FROM outbox_batches ORDER BY lane, first_seq',
      ),
      insert: db.prepare<[string, number, number, number, Buffer]>(
        'INSERT INTO outbox_batches (lane, first_seq, last_seq, created_at, writes) VALUES (?, ?, ?, ?, ?)',
      ),
      delete: db.prepare<[string, number]>('DELETE FROM outbox_batches WHERE lane = ? AND first_seq = ?'),
    };
    this.load();
  }

  /** Reads every batch from the database again (when the store opens, and after a rolled-back transaction). */
  load(): void {
    this.#byPartition.clear();
    this.#byDocument.clear();
    this.#writes = 0;
    this.#bytes = 0;
    this.#rowBytes = 0;
    for (const row of this.#s.all.iterate()) {
      this.#remember(row.lane, row.first_seq, row.created_at, decodeWriteBatch(row.writes, row.created_at), row.writes.length);
    }
  }

  /** Writes held. */
  get size(): number {
    return this.#writes;
  }

  /** Bytes of the stored batches. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The batched writes at their row size (`rowBytesOf`). */
  get rowBytes(): number {
    return this.#rowBytes;
  }

  /**
   * Stores writes of `partition` with consecutive seqs from `firstSeq` as one batch (several of
   * at most MAX_WRITES_PER_BATCH), in the transaction under way.
   */
  add(partition: string, firstSeq: number, createdAt: number, writes: readonly BatchedWriteFields[]): void {
    for (let i = 0; i < writes.length; i += MAX_WRITES_PER_BATCH) {
      const part = writes.slice(i, i + MAX_WRITES_PER_BATCH);
      const blob = encodeWriteBatch(part, createdAt);
      this.#s.insert.run(partition, firstSeq + i, firstSeq + i + part.length - 1, createdAt, blob);
      this.#remember(partition, firstSeq + i, createdAt, part, blob.length);
    }
  }

  /** Deletes a batch, in the transaction under way. */
  remove(batch: WriteBatch): void {
    this.#s.delete.run(batch.partition, batch.firstSeq);
    const batches = this.#byPartition.get(batch.partition)!;
    const at = batches.indexOf(batch);
    if (at < 0) throw new Error(`no batch of ${batch.partition} from seq ${batch.firstSeq} is held`);
    batches.splice(at, 1);
    if (batches.length === 0) this.#byPartition.delete(batch.partition);
    for (const w of batch.writes) {
      const doc = documentOf(w.collection, w.key);
      const writes = this.#byDocument.get(doc)!;
      writes.splice(writes.indexOf(w), 1);
      if (writes.length === 0) this.#byDocument.delete(doc);
    }
    this.#writes -= batch.writes.length;
    this.#bytes -= batch.bytes;
    this.#rowBytes -= batch.rowBytes;
  }

  /** The batch holding `seq` of `partition`, if any. */
  batchOf(partition: string, seq: number): WriteBatch | undefined {
    const batches = this.#byPartition.get(partition);
    if (!batches) return undefined;
    let [lo, hi] = [0, batches.length - 1];
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const batch = batches[mid]!;
      if (seq < batch.firstSeq) hi = mid - 1;
      else if (seq > batch.lastSeq) lo = mid + 1;
      else return batch;
    }
    return undefined;
  }

  /** The batched write at `seq` of `partition`, if a batch holds it. */
  write(partition: string, seq: number): BatchedWrite | undefined {
    const batch = this.batchOf(partition, seq);
    return batch?.writes[seq - batch.firstSeq];
  }

  /** Every batch, each partition's in seq order. */
  *all(): Generator<WriteBatch> {
    for (const batches of this.#byPartition.values()) yield* batches;
  }

  /** The oldest batch of all. */
  oldest(): WriteBatch | undefined {
    let oldest: WriteBatch | undefined;
    for (const batches of this.#byPartition.values()) if (!oldest || batches[0]!.createdAt < oldest.createdAt) oldest = batches[0];
    return oldest;
  }

  /** A partition's batched writes from `fromSeq` on, in seq order. */
  *from(partition: string, fromSeq: number): Generator<BatchedWrite> {
    for (const batch of this.#byPartition.get(partition) ?? []) {
      if (batch.lastSeq < fromSeq) continue;
      for (const w of batch.writes) if (w.seq >= fromSeq) yield w;
    }
  }

  /** The batched writes to a document, in seq order. */
  ofDocument(collection: string, key: string): readonly BatchedWrite[] {
    return this.#byDocument.get(documentOf(collection, key)) ?? [];
  }

  /** Keys of a collection from `from` on that batched writes touch (unordered). */
  keysOf(collection: string, from: string): string[] {
    const keys: string[] = [];
    for (const writes of this.#byDocument.values()) {
      const { collection: c, key } = writes[0]!;
      if (c === collection && Buffer.compare(Buffer.from(key), Buffer.from(from)) >= 0) keys.push(key);
    }
    return keys;
  }

  /** Batched writes per collection. */
  countsByCollection(): Array<{ collection: string; n: number }> {
    const counts = new Map<string, number>();
    for (const batch of this.all()) for (const w of batch.writes) counts.set(w.collection, (counts.get(w.collection) ?? 0) + 1);
    return [...counts].map(([collection, n]) => ({ collection, n }));
  }

  #remember(partition: string, firstSeq: number, createdAt: number, fields: readonly BatchedWriteFields[], bytes: number): void {
    const writes = fields.map((w, i): BatchedWrite => ({ ...w, partition, seq: firstSeq + i, skipped: null, acked_lsn: null }));
    const rowBytes = writes.reduce((sum, w) => sum + rowBytesOf(w), 0);
    const batch: WriteBatch = { partition, firstSeq, lastSeq: firstSeq + writes.length - 1, createdAt, writes, bytes, rowBytes };
    let batches = this.#byPartition.get(partition);
    if (!batches) this.#byPartition.set(partition, (batches = []));
    // An append goes at the end of its partition's sequence; a batch split (OutboxForms.split) goes back in its place.
    let at = batches.length;
    while (at > 0 && batches[at - 1]!.firstSeq > firstSeq) at--;
    batches.splice(at, 0, batch);
    for (const w of writes) {
      const doc = documentOf(w.collection, w.key);
      let onDoc = this.#byDocument.get(doc);
      if (!onDoc) this.#byDocument.set(doc, (onDoc = []));
      onDoc.push(w);
    }
    this.#writes += writes.length;
    this.#bytes += bytes;
    this.#rowBytes += rowBytes;
  }
}

const documentOf = (collection: string, key: string): string => `${collection}\u0000${key}`;
