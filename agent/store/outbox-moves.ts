import { DEFAULT_PARTITION } from '../../shared/topics.js';
import type { AgentDb } from './agent-db.js';
import type { OutboxForms } from './outbox-forms.js';
import { unsentRows } from './outbox-rows.js';
import type { Partitions } from './partitions.js';
import type { PendingTally } from './pending-tally.js';
import type { ReleasedWrites } from './released-writes.js';
import type { Settings } from './settings.js';

/** A write given a place in another partition's sequence (see `Outbox.adoptAssignment`): where it was, where it is now. */
export interface MovedWrite {
  from: { incarnation: string; seq: number };
  to: { partition: string; incarnation: string; seq: number };
}

/**
 * Writes of the outbox that change identity: renumbered under a new incarnation, or moved to
 * another partition's sequence. Both are rare and read the outbox as rows alone (every batch
 * turned into rows first, see OutboxForms.onlyRows).
 */
export class OutboxMoves {
  readonly #s;

  constructor(
    private readonly db: AgentDb,
    private readonly partitions: Partitions,
    private readonly settings: Settings,
    private readonly tally: PendingTally,
    private readonly forms: OutboxForms,
    private readonly released: ReleasedWrites,
  ) {
    this.#s = {
      seqsOf: db.prepare<[string], { seq: number; confirmed: 0 | 1 }>(
        'SELECT seq, acked_lsn IS NOT NULL AS confirmed FROM outbox WHERE lane = ? ORDER BY seq',
      ),
      renumber: db.prepare<[number, string, number]>('UPDATE outbox SET seq = ? WHERE lane = ? AND seq = ?'),
    };
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
    const reborn = this.forms.guarded(() =>
      this.db.durableTransaction(() => {
        this.forms.onlyRows(); // committed writes must not be renumbered as if pending
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
      }),
    );
    this.released.clear();
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
    let gone: Array<[string, number]> = [];
    const moved = this.forms.guarded(() =>
      this.tally.within(() =>
        this.db.durableTransaction(() => {
          const moved: MovedWrite[] = [];
          this.settings.set(setting, value);
          const from = this.partitions.incarnationOf(DEFAULT_PARTITION);
          // Each target partition's incarnation and next seq, read once (a move may be of many writes).
          const targets = new Map<string, { incarnation: string; next: number }>();
          // Read a page at a time; usually none of them moves.
          const moving = this.tally.collections().filter((c) => partitionOf(c) !== DEFAULT_PARTITION);
          if (moving.length > 0) gone = this.forms.onlyRows(); // committed writes must not move as if pending
          for (const row of unsentRows(this.db, DEFAULT_PARTITION, moving)) {
            const partition = partitionOf(row.collection);
            let target = targets.get(partition);
            if (!target) {
              target = { incarnation: this.partitions.incarnationOf(partition), next: this.partitions.nextSeqOf(partition) };
              targets.set(partition, target);
            }
            const seq = target.next++;
            this.forms.insertRow(row, partition, seq);
            this.forms.skipRow('moved', DEFAULT_PARTITION, row.seq);
            this.tally.skipsChanged(+1); // the copy is pending in its place: the collection's count stays
            moved.push({ from: { incarnation: from, seq: row.seq }, to: { partition, incarnation: target.incarnation, seq } });
          }
          for (const [partition, { next }] of targets) this.partitions.setNextSeq(partition, next);
          return moved;
        }),
      ),
    );
    this.released.forget(gone);
    return moved;
  }
}
