import { AgentClosedError, DurabilityTimeoutError, ReplicaWaitAbandonedError, WriteRefusedError } from '../shared/errors.js';
import type { OpResult } from '../shared/messages.js';

/**
 * How sure a write must be before it resolves: `local` once in the outbox (offline-first, the
 * default), `hub` once committed at the hub, `{ replicas: N }` once committed and applied by N
 * other agents that replicate its collection.
 */
export type Durability = 'local' | 'hub' | { replicas: number };

/** Where a write is in the hub's sequences: its partition, incarnation and seq. */
export interface WriteIdentity {
  partition: string;
  incarnation: string;
  seq: number;
}

/** A committed write still waiting for replicas: `[seq, lsn, collection, replicas]`, as the status report carries it. */
export type ReplicaWaitReport = [number, number, string, number];

/** At most this many waits go up in one status report (the oldest; the rest wait their turn). */
export const MAX_REPORTED_WAITS = 1000;

interface Waiter {
  /** Where the wait is kept now: a write moved to another partition takes its wait along. */
  owner: DurabilityWaiters;
  seq: number;
  collection: string;
  level: 'hub' | 'replicas';
  /** How many other agents must apply it (level `replicas`). */
  replicas: number;
  /** Told the write's new identity when it moves (see moveTo). */
  renamed: ((identity: WriteIdentity) => void) | undefined;
  lsn?: number;
  resolve: (lsn: number | undefined) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Writes waiting for the hub. A timeout never cancels the write: it stays queued and will be
 * sent; only the wait ends, with an error that says so.
 */
export class DurabilityWaiters {
  readonly #waiting = new Map<number, Waiter>();

  constructor(private readonly isConnected: () => boolean) {}

  /** Resolves with the write's LSN once it reaches `durability`; `renamed` hears of a move meanwhile. */
  wait(
    seq: number,
    collection: string,
    durability: Exclude<Durability, 'local'>,
    timeoutMs: number,
    renamed?: (identity: WriteIdentity) => void,
  ): Promise<number | undefined> {
    const level = durability === 'hub' ? 'hub' : 'replicas';
    const label = durability === 'hub' ? 'committed at the hub' : `applied by ${durability.replicas} other agents`;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        owner: this,
        seq,
        collection,
        level,
        replicas: durability === 'hub' ? 0 : durability.replicas,
        renamed,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiter.owner.#settle(waiter.seq, waiter);
          reject(new DurabilityTimeoutError(seq, label, timeoutMs, this.isConnected()));
        }, timeoutMs),
      };
      waiter.timer.unref?.();
      this.#waiting.set(seq, waiter);
    });
  }

  onResults(results: readonly OpResult[]): void {
    for (const r of results) {
      const w = this.#waiting.get(r.seq);
      if (!w) continue;
      if (r.outcome === 'rejected' || r.outcome === 'conflict') {
        this.#settle(r.seq, w);
        w.reject(new WriteRefusedError(r.seq, r.outcome, r.reason ?? 'unknown', r.detail ?? ''));
      } else if (w.level === 'hub') {
        this.#settle(r.seq, w);
        w.resolve(r.lsn);
      } else {
        w.lsn = r.lsn;
      }
    }
  }

  /**
   * Committed writes still waiting for replicas, oldest first, at most MAX_REPORTED_WAITS. The
   * hub keeps waits in memory: the status report hands them to a hub that restarted (or a
   * standby that took over), which counts them again from what the agents report they applied.
   */
  replicaWaits(): ReplicaWaitReport[] {
    const waits: ReplicaWaitReport[] = [];
    for (const w of this.#waiting.values()) {
      if (w.level !== 'replicas' || w.lsn === undefined) continue;
      waits.push([w.seq, w.lsn, w.collection, w.replicas]);
      if (waits.length === MAX_REPORTED_WAITS) break;
    }
    return waits;
  }

  /**
   * Ends every wait of a write the hub already acknowledged (it waits for replicas) with
   * ReplicaWaitAbandonedError: the partition starts a new incarnation, and those writes keep no
   * seq in it (Outbox.reincarnate), so no report could count their replicas any more.
   */
  abandonAcknowledged(reason: string): void {
    for (const [seq, w] of [...this.#waiting]) {
      if (w.lsn === undefined) continue;
      this.#settle(seq, w);
      w.reject(new ReplicaWaitAbandonedError(seq, reason));
    }
  }

  onReplicated(seqs: readonly number[]): void {
    for (const seq of seqs) {
      const w = this.#waiting.get(seq);
      if (!w) continue;
      this.#settle(seq, w);
      w.resolve(w.lsn);
    }
  }

  /**
   * Moves a write's wait with the write: to another partition's waits (Outbox.adoptAssignment)
   * or to a new seq in these (a reincarnation).
   */
  moveTo(seq: number, to: DurabilityWaiters, identity: WriteIdentity): void {
    const w = this.#waiting.get(seq);
    if (!w) return;
    this.#waiting.delete(seq);
    w.owner = to;
    w.seq = identity.seq;
    to.#waiting.set(identity.seq, w);
    w.renamed?.(identity);
  }

  close(): void {
    for (const [seq, w] of this.#waiting) {
      this.#settle(seq, w);
      w.reject(new AgentClosedError());
    }
  }

  /** Ends a wait; the entry under `seq` goes only if it is still this wait's. */
  #settle(seq: number, w: Waiter): void {
    clearTimeout(w.timer);
    if (this.#waiting.get(seq) === w) this.#waiting.delete(seq);
  }
}
