import { encodeValue } from '../../shared/value-bytes.js';
import type { WriteOp } from '../../shared/messages.js';
import type { AgentDb } from './agent-db.js';
import type { OutboxBatches } from './outbox-batches.js';
import { ROW, type OutboxRow } from './outbox-rows.js';
import type { ReleasedWrites } from './released-writes.js';
import type { WriteKind } from './writes.js';

/**
 * What the outbox holds, as uploads and reads ask for it: its two forms (see Outbox) merged in
 * seq order, released writes (committed, not yet deleted) left out.
 */
export class OutboxReads {
  readonly #s;

  constructor(
    db: AgentDb,
    private readonly batches: OutboxBatches,
    private readonly released: ReleasedWrites,
  ) {
    this.#s = {
      pendingFrom: db.prepare<[string, number, number], OutboxRow>(
        `SELECT ${ROW} FROM outbox WHERE lane = ? AND seq >= ? AND acked_lsn IS NULL ORDER BY seq LIMIT ?`,
      ),
      newestPendingIn: db.prepare<[string, string], { seq: number | null }>(
        'SELECT max(seq) AS seq FROM outbox WHERE lane = ? AND collection = ? AND acked_lsn IS NULL',
      ),
      lowestPending: db.prepare<[string], { seq: number | null }>(
        'SELECT min(seq) AS seq FROM outbox WHERE lane = ? AND acked_lsn IS NULL',
      ),
      oldestInCollection: db.prepare<[string, number], OutboxRow>(
        // In the pending index's order (ties: the order they were stored in), so that only the entries needed are read.
        `SELECT ${ROW} FROM outbox WHERE collection = ? AND acked_lsn IS NULL AND skipped IS NULL ORDER BY created_at LIMIT ?`,
      ),
      overlay: db.prepare<[string, string, number], { partition: string; seq: number; hlc: string; op: WriteKind; value: Buffer | null }>(
        // In the order the app made them (their clock): a collection's writes may sit in two
        // partitions' sequences after it was assigned another, each numbered from its own 1.
        `SELECT lane AS partition, seq, hlc, op, value FROM outbox WHERE collection = ? AND key = ? AND skipped IS NULL
         AND (acked_lsn IS NULL OR acked_lsn > ?) ORDER BY hlc, lane, seq`,
      ),
      overlayKeys: db.prepare<[string, string], { key: string }>(
        'SELECT DISTINCT key FROM outbox WHERE collection = ? AND key >= ? AND skipped IS NULL ORDER BY key',
      ),
    };
  }

  /** A partition's unacknowledged ops from `fromSeq` on, in seq order: up to `maxOps`, and about `maxBytes` (at least one). */
  pendingFrom(partition: string, fromSeq: number, maxOps: number, maxBytes: number): WriteOp[] {
    const rows: OutboxRow[] = this.#s.pendingFrom.all(partition, fromSeq, maxOps);
    for (const w of this.batches.from(partition, fromSeq)) {
      if (this.released.has(partition, w.seq)) continue;
      rows.push(w);
      if (rows.length >= 2 * maxOps) break; // enough to take maxOps from, whatever the rows hold
    }
    rows.sort((a, b) => a.seq - b.seq);
    const ops: WriteOp[] = [];
    let bytes = 0;
    for (const row of rows.slice(0, maxOps)) {
      if (this.released.has(partition, row.seq)) continue; // committed: not sent again
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

  /** The first seq of the partition the hub has not acknowledged, if any (released writes not yet deleted are not). */
  lowestPendingSeq(partition: string): number | undefined {
    const row = this.#s.lowestPending.get(partition)?.seq ?? undefined;
    for (const w of this.batches.from(partition, -Infinity)) {
      if (this.released.has(partition, w.seq)) continue;
      return row === undefined ? w.seq : Math.min(row, w.seq);
    }
    return row;
  }

  /** The oldest pending write of a collection; a released one (committed, not yet deleted) is not pending. */
  oldestPendingIn(collection: string): OutboxRow | undefined {
    const row = this.#s.oldestInCollection.all(collection, this.released.size + 1).find((r) => !this.released.has(r.partition, r.seq));
    let oldest: OutboxRow | undefined;
    for (const batch of this.batches.all()) {
      if (oldest && batch.createdAt >= oldest.created_at) continue;
      const w = batch.writes.find((b) => b.collection === collection && !this.released.has(b.partition, b.seq));
      if (w && (!oldest || w.created_at < oldest.created_at)) oldest = w;
    }
    return row && (!oldest || row.created_at <= oldest.created_at) ? row : oldest;
  }

  /** The highest seq of a partition's pending writes to any of these collections (0 if none): how far an alarm lane may send. */
  newestPendingSeqIn(partition: string, collections: ReadonlySet<string>): number {
    let newest = 0;
    for (const c of collections) newest = Math.max(newest, this.#s.newestPendingIn.get(partition, c)?.seq ?? 0);
    for (const w of this.batches.from(partition, newest + 1)) {
      if (collections.has(w.collection) && !this.released.has(partition, w.seq)) newest = Math.max(newest, w.seq);
    }
    return newest;
  }

  /** The device's pending writes to a document over `version` (the replica's), in order: what a read lays over it. */
  overlayOf(collection: string, key: string, version: number): Array<{ op: WriteKind; value: Buffer | null; hlc: string }> {
    // A released write is committed and the replica holds its version or a newer one: it lays nothing over it.
    const rows: Array<{ partition: string; seq: number; hlc: string; op: WriteKind; value: Buffer | null }> = this.#s.overlay.all(
      collection,
      key,
      version,
    );
    const batched = this.batches.ofDocument(collection, key);
    if (batched.length > 0) {
      rows.push(...batched);
      rows.sort((a, b) =>
        a.hlc < b.hlc ? -1 : a.hlc > b.hlc ? 1 : a.partition < b.partition ? -1 : a.partition > b.partition ? 1 : a.seq - b.seq,
      );
    }
    return rows.filter((row) => !this.released.has(row.partition, row.seq));
  }

  /** Keys of a collection from `from` on (in order) that pending writes touch. */
  overlayKeys(collection: string, from: string): string[] {
    const keys = this.#s.overlayKeys.all(collection, from).map((r) => r.key);
    const batched = this.batches.keysOf(collection, from);
    if (batched.length === 0) return keys;
    // In SQLite's order (BINARY: the keys' UTF-8 bytes), as the rows come and the replica's keys are merged.
    return [...new Set([...keys, ...batched])].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
}
