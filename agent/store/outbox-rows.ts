import type { AgentDb } from './agent-db.js';
import type { StoredWrite } from './writes.js';

/** An outbox row as the outbox reads it. */
export interface OutboxRow extends StoredWrite {
  hlc: string;
  base: number;
  created_at: number;
  rep: number | null;
  skipped: string | null;
  acked_lsn: number | null;
}

/** Every column of a row, the partition under its word (the column is still called `lane`). */
export const ROW = 'lane AS partition, seq, collection, key, op, value, hlc, base, created_at, rep, skipped, acked_lsn';

/** Writes read per page by `unsentRows`. */
const PAGE = 1_000;

/**
 * A partition's writes not yet uploaded of the collections `collections`, in seq order, read a
 * page at a time: a device home from a long time offline may hold a million writes, which must
 * not all be in memory at once.
 */
export function* unsentRows(db: AgentDb, partition: string, collections: readonly string[]): Generator<OutboxRow> {
  if (collections.length === 0) return;
  const page = db.prepare<unknown[], OutboxRow>(
    `SELECT ${ROW} FROM outbox WHERE lane = ? AND seq > ? AND skipped IS NULL AND acked_lsn IS NULL
     AND collection IN (${collections.map(() => '?').join(', ')}) ORDER BY seq LIMIT ${PAGE}`,
  );
  for (let after = 0; ;) {
    const rows = page.all(partition, after, ...collections);
    if (rows.length === 0) return;
    yield* rows;
    after = rows[rows.length - 1]!.seq;
  }
}
