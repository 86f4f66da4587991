import type { SnapshotProgress } from './partitions.js';
import type { AgentDb } from './agent-db.js';

/** A bucket of the device's scope: applied up to `cursor` (-1: joined, nothing received yet), and a snapshot's progress while it is under way. */
export interface HeldBucket {
  cursor: number;
  snapshot: SnapshotProgress | undefined;
}

interface Row {
  bucket: string;
  cursor: number;
  snapshot: string | null;
}

/**
 * The buckets of its scope a device holds, per lane (partition), each with how far its changes
 * are applied: the scope's equivalent of a partition's watermark. Kept in the database, so a
 * device that restarts or was offline resumes each bucket where it stopped.
 */
export class ScopeBuckets {
  readonly #s;

  constructor(private readonly db: AgentDb) {
    this.#s = {
      all: db.prepare<[string], Row>('SELECT bucket, cursor, snapshot FROM scope_buckets WHERE lane = ? ORDER BY bucket'),
      join: db.prepare<[string, string]>('INSERT INTO scope_buckets (lane, bucket, cursor) VALUES (?, ?, -1) ON CONFLICT DO NOTHING'),
      leave: db.prepare<[string, string]>('DELETE FROM scope_buckets WHERE lane = ? AND bucket = ?'),
      advance: db.prepare<[number, string, string]>('UPDATE scope_buckets SET cursor = max(cursor, ?) WHERE lane = ? AND bucket = ?'),
      snapshot: db.prepare<[string | null, string, string]>('UPDATE scope_buckets SET snapshot = ? WHERE lane = ? AND bucket = ?'),
    };
  }

  /** The buckets held in a lane. */
  held(lane: string): Map<string, HeldBucket> {
    return new Map(
      this.#s.all
        .all(lane)
        .map((r) => [
          r.bucket,
          { cursor: r.cursor, snapshot: r.snapshot === null ? undefined : (JSON.parse(r.snapshot) as SnapshotProgress) },
        ]),
    );
  }

  /** The device's scope changed: joins what is new (from nothing), leaves what it no longer holds; in the caller's transaction. */
  reconcile(lane: string, joined: readonly string[], left: readonly string[]): void {
    for (const bucket of joined) this.#s.join.run(lane, bucket);
    for (const bucket of left) this.#s.leave.run(lane, bucket);
  }

  /** Every change of the bucket up to `lsn` is applied (never moves back); a no-op for a bucket no longer held. */
  advance(lane: string, bucket: string, lsn: number): void {
    this.#s.advance.run(lsn, lane, bucket);
  }

  setSnapshot(lane: string, bucket: string, progress: SnapshotProgress | undefined): void {
    this.#s.snapshot.run(progress === undefined ? null : JSON.stringify(progress), lane, bucket);
  }
}
