import type { StatusMessage } from '../shared/messages.js';
import type { VerifyReport } from '../shared/messages.js';
/** A committed write whose writer asked to hear when `replicas` other agents have applied it. */
export interface ReplicaWait {
  agentId: string;
  inc: string;
  seq: number;
  collection: string;
  lsn: number;
  replicas: number;
  /**
   * A scoped collection's write: a bucket its document is in. The devices that hold the write are
   * those that applied that bucket up to it (a device holding the document only through another
   * of its buckets is not counted: a wait may time out, never end early).
   */
  bucket?: string;
}

/** Waits no agent satisfied in this long are forgotten (the writer has long timed out). */
const WAIT_EXPIRY_MS = 10 * 60_000;
/** Expired waits are swept at most this often. */
const SWEEP_EVERY_MS = 10_000;

/** How many waits are held, per writer and in all: beyond them a new wait is refused (its writer times out). */
export interface ReplicaWaitLimits {
  perAgent: number;
  total: number;
}

export const DEFAULT_REPLICA_WAIT_LIMITS: ReplicaWaitLimits = { perAgent: 10_000, total: 100_000 };

interface HeldWait extends ReplicaWait {
  id: string;
  since: number;
  /** Other agents known to have applied it. */
  holders: number;
  /** Settled, expired or replaced: left in its collection's list until the next compaction. */
  gone: boolean;
}

/**
 * What every agent has applied, per collection, as it last reported; and the writes waiting
 * for replicas. This is the synchronous-replication half of the classic primary/replica design:
 * the writer is told once N other subscribers hold its write. Kept in memory: after a hub
 * restart (or on a standby that took over) the agents report again what they applied, and each
 * writer its writes still waiting (`add` again; a wait already known is not added twice).
 *
 * The cost of a report is independent of how many writes wait: waits are kept per collection in
 * LSN order, each with a count of the agents that hold it, and an agent moving from LSN a to b
 * touches only the waits in (a, b]. Waits are bounded per writer and in all.
 */
/** What else an agent's report said: its oldest pending write's age, software version, buckets applied, and what verifying its copy found. */
export interface ReportExtras {
  oldestPendingMs?: number;
  /** The device's transfer budget, when it has one (StatusMessage `tb`). */
  transfer?: NonNullable<StatusMessage[1]['tb']>;
  version?: string;
  buckets?: Readonly<Record<string, number>>;
  verification?: VerifyReport;
}

export class ReplicationTracker {
  readonly #applied = new Map<string, Map<string, number>>();
  /** Each agent's last report: when, and how many writes it still had to upload. */
  readonly reports = new Map<string, { at: number; outbox: number } & ReportExtras>();
  /** Per collection, its waits in LSN order. */
  readonly #byCollection = new Map<string, HeldWait[]>();
  readonly #byId = new Map<string, HeldWait>();
  readonly #perAgent = new Map<string, number>();
  /** Per collection, the highest LSN any agent has applied: a wait above it has no holder yet. */
  readonly #highest = new Map<string, number>();
  #lastSweep = Date.now();
  /** Waits refused because a limit was reached, since start. */
  refused = 0;

  constructor(readonly limits: ReplicaWaitLimits = DEFAULT_REPLICA_WAIT_LIMITS) {}

  /** Records an agent's report; returns the waits it completed. */
  report(agentId: string, applied: Record<string, number>, outbox = 0, extra: ReportExtras = {}): ReplicaWait[] {
    this.reports.set(agentId, { at: Date.now(), outbox, ...extra });
    let mine = this.#applied.get(agentId);
    if (!mine) this.#applied.set(agentId, (mine = new Map<string, number>()));
    const done: ReplicaWait[] = [];
    for (const [collection, lsn] of Object.entries(applied)) {
      const before = mine.get(collection) ?? 0;
      if (lsn <= before) continue;
      mine.set(collection, lsn);
      if (lsn > (this.#highest.get(collection) ?? 0)) this.#highest.set(collection, lsn);
      this.#raise(agentId, collection, before, lsn, done);
    }
    this.#sweep();
    return done;
  }

  /**
   * Registers waits (for writes just committed, or reported by their writer); returns any already
   * met. At most `maxNew` waits not held yet are looked at; the rest are left for a later report.
   * `onRefused` hears of each wait refused because a limit was reached.
   */
  add(waits: readonly ReplicaWait[], maxNew = Infinity, onRefused?: (wait: ReplicaWait) => void): ReplicaWait[] {
    const now = Date.now();
    const done: ReplicaWait[] = [];
    let fresh = 0;
    for (const w of waits) {
      const id = `${w.agentId}\n${w.inc}\n${w.seq}`;
      if (this.#byId.has(id)) continue;
      if (++fresh > maxNew) break;
      // Limits first: counting holders may loop over every agent, and a refused wait costs nothing.
      const mine = this.#perAgent.get(w.agentId) ?? 0;
      if (mine >= this.limits.perAgent || this.#byId.size >= this.limits.total) {
        this.refused += 1;
        onRefused?.(w);
        continue;
      }
      const held: HeldWait = { ...w, id, since: now, holders: this.#holdersOf(w), gone: false };
      if (held.holders >= held.replicas) {
        done.push(w);
        continue;
      }
      this.#perAgent.set(w.agentId, mine + 1);
      this.#byId.set(id, held);
      this.#insert(held);
    }
    this.#sweep();
    return done;
  }

  /** Whether a write's wait is held. */
  holds(wait: Pick<ReplicaWait, 'agentId' | 'inc' | 'seq'>): boolean {
    return this.#byId.has(`${wait.agentId}\n${wait.inc}\n${wait.seq}`);
  }

  /** How many waits are held. */
  get waiting(): number {
    return this.#byId.size;
  }

  /** How many waits of one writer are held. */
  waitingFor(agentId: string): number {
    return this.#perAgent.get(agentId) ?? 0;
  }

  /** The collections an agent has applied, and up to which LSN, as last reported. */
  appliedBy(agentId: string): Record<string, number> {
    return Object.fromEntries(this.#applied.get(agentId) ?? []);
  }

  /** Agents other than the writer that hold the wait's LSN; counted once, when it is added. */
  #holdersOf(w: ReplicaWait): number {
    // A write just committed is above every LSN reported: no agent can hold it yet.
    if (w.lsn > (this.#highest.get(w.collection) ?? 0)) return 0;
    let holders = 0;
    for (const [agentId, applied] of this.#applied) {
      if (agentId !== w.agentId && (applied.get(w.collection) ?? 0) >= w.lsn) holders += 1;
    }
    return holders;
  }

  /** An agent now holds `collection` up to `to` (from `from`): each wait in (from, to] gains a holder. */
  #raise(agentId: string, collection: string, from: number, to: number, done: ReplicaWait[]): void {
    const list = this.#byCollection.get(collection);
    if (!list) return;
    for (let i = firstAbove(list, from); i < list.length && list[i]!.lsn <= to; i++) {
      const w = list[i]!;
      if (w.gone || w.agentId === agentId) continue;
      w.holders += 1;
      if (w.holders >= w.replicas) {
        this.#remove(w);
        done.push(asWait(w));
      }
    }
  }

  #insert(w: HeldWait): void {
    let list = this.#byCollection.get(w.collection);
    if (!list) this.#byCollection.set(w.collection, (list = []));
    // Waits of new commits come in LSN order and go at the end; a reported one may go in between.
    if (list.length === 0 || list[list.length - 1]!.lsn <= w.lsn) list.push(w);
    else list.splice(firstAbove(list, w.lsn), 0, w);
  }

  #remove(w: HeldWait): void {
    w.gone = true;
    this.#byId.delete(w.id);
    const left = (this.#perAgent.get(w.agentId) ?? 1) - 1;
    if (left > 0) this.#perAgent.set(w.agentId, left);
    else this.#perAgent.delete(w.agentId);
  }

  /** Forgets expired waits and compacts the lists, at most every SWEEP_EVERY_MS. */
  #sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    for (const [collection, list] of this.#byCollection) {
      for (const w of list) if (!w.gone && now - w.since > WAIT_EXPIRY_MS) this.#remove(w);
      const kept = list.filter((w) => !w.gone);
      if (kept.length > 0) this.#byCollection.set(collection, kept);
      else this.#byCollection.delete(collection);
    }
  }
}

function asWait({ agentId, inc, seq, collection, lsn, replicas }: ReplicaWait): ReplicaWait {
  return { agentId, inc, seq, collection, lsn, replicas };
}

/** Index of the first wait in `list` (in LSN order) whose LSN is above `lsn`. */
function firstAbove(list: readonly ReplicaWait[], lsn: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.lsn <= lsn) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
