import { randomBytes } from 'node:crypto';
import { partitionScoped, type AgentDb } from './agent-db.js';

/** Where an unfinished snapshot stopped: its LSN, and the last document received. */
export interface SnapshotProgress {
  lsn: number;
  after: [string, string];
}

/**
 * What the agent keeps per partition of the hub (see shared/topics.ts), because each partition
 * is a separate log with its own sequence spaces and LSNs: the incarnation (sequence space) of
 * this device's writes there and the next seq in it, the watermark of its log applied here, and
 * the progress of a snapshot under way. Kept in `meta`, read from there every time, so that
 * what a rolled-back transaction wrote is never believed.
 */
export class Partitions {
  readonly #lastSeq;

  constructor(private readonly db: AgentDb) {
    this.#lastSeq = db.prepare<[string, string], { seq: number | null }>(
      `SELECT max(seq) AS seq FROM (SELECT max(seq) AS seq FROM outbox WHERE lane = ?
       UNION ALL SELECT last_seq FROM (SELECT last_seq FROM outbox_batches WHERE lane = ? ORDER BY first_seq DESC LIMIT 1))`,
    );
  }

  /** The partition's current sequence space; a partition first used is born with a fresh one. */
  incarnationOf(partition: string): string {
    return this.db.meta(partitionScoped('incarnation', partition)) ?? this.#born(partition);
  }

  /**
   * The seq the partition's next write takes: one past its last outbox write (row or batch), or what `meta` kept
   * when the last row left (the trigger of migration 11) or a new incarnation began. An append
   * then writes only its rows, not a meta row as well: a page less to the device's flash per write.
   */
  nextSeqOf(partition: string): number {
    const kept = Number(this.db.meta(partitionScoped('next_seq', partition)) ?? '1');
    return Math.max(kept, (this.#lastSeq.get(partition, partition)?.seq ?? 0) + 1);
  }

  setNextSeq(partition: string, seq: number): void {
    this.db.setMeta(partitionScoped('next_seq', partition), String(seq));
  }

  /**
   * A new incarnation of the partition, a sequence space the hub cannot confuse with the old
   * one, whose next seq is `nextSeq` (the caller renumbers the outbox into it). Returns it.
   */
  reborn(partition: string, nextSeq: number): string {
    const incarnation = this.#born(partition);
    this.setNextSeq(partition, nextSeq);
    return incarnation;
  }

  #born(partition: string): string {
    const incarnation = randomBytes(16).toString('hex');
    this.db.setMeta(partitionScoped('incarnation', partition), incarnation);
    return incarnation;
  }

  /** Every change of the partition's replicated collections up to this LSN (of its log) has been applied. */
  watermarkOf(partition: string): number {
    return Number(this.db.meta(partitionScoped('watermark', partition)) ?? '0');
  }

  /**
   * Moves the watermark up to `lsn`; never down. `heard`: the hub clock of the message that
   * brought it, kept beside it (see migration 13).
   */
  raiseWatermark(partition: string, lsn: number, heard?: string): void {
    if (lsn <= this.watermarkOf(partition)) return;
    this.db.setMeta(partitionScoped('watermark', partition), String(lsn));
    // The clock goes with the LSN it taught: a watermark raised without one is of unknown age.
    if (heard !== undefined) this.db.setMeta(partitionScoped('watermark_heard', partition), heard);
    else this.db.deleteMeta(partitionScoped('watermark_heard', partition));
  }

  /** The hub clock of the message that raised the watermark to where it is ('' if unknown). */
  watermarkHeardOf(partition: string): string {
    return this.db.meta(partitionScoped('watermark_heard', partition)) ?? '';
  }

  /**
   * Starts the partition's log over from LSN 0 (after the hub was restored from a backup): the
   * watermark and any snapshot under way are forgotten. Only the restore reconciliation lowers it.
   */
  resetLog(partition: string): void {
    this.db.setMeta(partitionScoped('watermark', partition), '0');
    this.db.deleteMeta(partitionScoped('watermark_heard', partition));
    this.setSnapshotProgress(partition, undefined);
  }

  /** The hub lineage this device last synced the partition with, and the hub status that said so; undefined before the first. */
  hubLineageOf(partition: string): { lineage: string; statusHlc: string } | undefined {
    const text = this.db.meta(partitionScoped('hub_lineage', partition));
    return text === undefined ? undefined : (JSON.parse(text) as { lineage: string; statusHlc: string });
  }

  setHubLineage(partition: string, lineage: string, statusHlc: string): void {
    this.db.setMeta(partitionScoped('hub_lineage', partition), JSON.stringify({ lineage, statusHlc }));
  }

  /** Where an unfinished snapshot of the partition stopped, if one is under way. */
  snapshotProgressOf(partition: string): SnapshotProgress | undefined {
    const text = this.db.meta(partitionScoped('snapshot', partition));
    return text === undefined ? undefined : (JSON.parse(text) as SnapshotProgress);
  }

  /** Records how far a snapshot got, or (undefined) that none is under way. */
  setSnapshotProgress(partition: string, progress: SnapshotProgress | undefined): void {
    const name = partitionScoped('snapshot', partition);
    if (progress === undefined) this.db.deleteMeta(name);
    else this.db.setMeta(name, JSON.stringify(progress));
  }
}
