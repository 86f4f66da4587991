/** A committed write whose writer asked to hear when `replicas` other agents have applied it. */
export interface ReplicaWait {
  agentId: string;
  inc: string;
  seq: number;
  collection: string;
  lsn: number;
  replicas: number;
}

/** Waits no agent satisfied in this long are forgotten (the writer has long timed out). */
const WAIT_EXPIRY_MS = 10 * 60_000;

/**
 * What every agent has applied, per collection, as it last reported; and the writes waiting
 * for replicas. This is the synchronous-replication half of the classic primary/replica design:
 * the writer is told once N other subscribers hold its write. Kept in memory: after a hub
 * restart (or on a standby that took over) the agents report again what they applied, and each
 * writer its writes still waiting (`add` again; a wait already known is not added twice).
 */
export class ReplicationTracker {
  readonly #applied = new Map<string, Map<string, number>>();
  /** Each agent's last report: when, and how many writes it still had to upload. */
  readonly reports = new Map<string, { at: number; outbox: number; oldestPendingMs?: number; version?: string }>();
  #waits: Array<ReplicaWait & { since: number }> = [];
  /** The waits in `#waits`, by writer incarnation and seq. */
  readonly #waiting = new Set<string>();

  /** Records an agent's report; returns the waits it completed. */
  report(
    agentId: string,
    applied: Record<string, number>,
    outbox = 0,
    extra: { oldestPendingMs?: number; version?: string } = {},
  ): ReplicaWait[] {
    this.reports.set(agentId, { at: Date.now(), outbox, ...extra });
    let mine = this.#applied.get(agentId);
    if (!mine) this.#applied.set(agentId, (mine = new Map<string, number>()));
    for (const [collection, lsn] of Object.entries(applied)) {
      if (lsn > (mine.get(collection) ?? 0)) mine.set(collection, lsn);
    }
    return this.#settle();
  }

  /** Registers waits (for writes just committed, or reported by their writer); returns any already met. */
  add(waits: readonly ReplicaWait[]): ReplicaWait[] {
    const now = Date.now();
    for (const w of waits) {
      const id = waitId(w);
      if (this.#waiting.has(id)) continue;
      this.#waiting.add(id);
      this.#waits.push({ ...w, since: now });
    }
    return this.#settle();
  }

  /** How many waits are held. */
  get waiting(): number {
    return this.#waits.length;
  }

  /** The collections an agent has applied, and up to which LSN, as last reported. */
  appliedBy(agentId: string): Record<string, number> {
    return Object.fromEntries(this.#applied.get(agentId) ?? []);
  }

  #settle(): ReplicaWait[] {
    const now = Date.now();
    const done: ReplicaWait[] = [];
    this.#waits = this.#waits.filter((w) => {
      let holders = 0;
      for (const [agentId, applied] of this.#applied) {
        if (agentId !== w.agentId && (applied.get(w.collection) ?? 0) >= w.lsn) holders += 1;
      }
      if (holders >= w.replicas) done.push(w);
      else if (now - w.since <= WAIT_EXPIRY_MS) return true;
      this.#waiting.delete(waitId(w));
      return false;
    });
    return done;
  }
}

function waitId(w: ReplicaWait): string {
  return `${w.agentId}\n${w.inc}\n${w.seq}`;
}
