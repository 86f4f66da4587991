import type Database from 'better-sqlite3';
import { decodeWriteBatch } from '../../agent/store/write-batch-codec.js';

/** A write of an agent's outbox as its database holds it, in either form (a row, or in a batch). */
export interface WriteOnDisk {
  partition: string;
  seq: number;
  collection: string;
  key: string;
  created_at: number;
  acked_lsn: number | null;
  skipped: string | null;
}

/** Every write of the outbox in an agent database, rows and batches alike, by partition and seq: what a reopened store would find. */
export function writesOnDisk(db: Database.Database): WriteOnDisk[] {
  const rows = db
    .prepare('SELECT lane AS partition, seq, collection, key, created_at, acked_lsn, skipped FROM outbox')
    .all() as WriteOnDisk[];
  const batches = db.prepare('SELECT lane, first_seq, created_at, writes FROM outbox_batches').all() as Array<{
    lane: string;
    first_seq: number;
    created_at: number;
    writes: Buffer;
  }>;
  for (const batch of batches) {
    decodeWriteBatch(batch.writes, batch.created_at).forEach((w, i) =>
      rows.push({
        partition: batch.lane,
        seq: batch.first_seq + i,
        collection: w.collection,
        key: w.key,
        created_at: w.created_at,
        acked_lsn: null,
        skipped: null,
      }),
    );
  }
  return rows.sort((a, b) => (a.partition < b.partition ? -1 : a.partition > b.partition ? 1 : a.seq - b.seq));
}
