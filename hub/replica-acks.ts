import type { Logger } from 'pino';
import type { StatusMessage } from '../shared/messages.js';
import type { AccessControl } from './access.js';
import type { KnownCollections } from './known-collections.js';
import type { RefusedWork } from './refused-work.js';
import { ReplicationTracker, type ReplicaWait } from './replication-tracker.js';
import type { ScopeDirectory } from './scope-directory.js';
import { clampApplied, MAX_NEW_WAITS_PER_REPORT, reportedWaits } from './status-report.js';
import type { HubStore } from './store/hub-store.js';

export interface ReplicaAcksOptions {
  /**
   * The log: its head now (no agent can have applied, or wait for, anything above it), and who
   * wrote an entry, with what buckets (a wait reported again on a scoped collection).
   */
  store: Pick<HubStore, 'head' | 'loggedWrites'>;
  /** The collections a status report may name. */
  collections: KnownCollections;
  access: Pick<AccessControl, 'mayRead' | 'mayWrite'>;
  /** The scoped collections, and whether an agent holds a bucket of one now. */
  scopes: Pick<ScopeDirectory, 'scoped' | 'tracks' | 'holds'>;
  /** Tells a writer that these of its writes have their replicas (a `replicated` message). */
  replicated: (agentId: string, inc: string, seqs: number[]) => void;
  /** Work refused to one agent to bound what it costs. */
  refused: (kind: RefusedWork, agentId: string, count: number) => void;
  log: Logger;
}

/**
 * Replica acknowledgements: takes agents' status reports (what each applied; which of its own
 * writes still wait for replicas) and the waits of writes just committed, keeps them in the
 * ReplicationTracker within its limits, and tells each writer when its writes have their
 * replicas. What a report names is checked first (hub/status-report.ts): only collections that
 * exist and the agent may read, LSNs at most the head, waits only of the writer's own writes.
 */
export class ReplicaAcks {
  readonly tracker = new ReplicationTracker();
  /** The same for scoped collections, by bucket: what each device applied of each bucket it holds, and waits on a bucket. */
  readonly #buckets = new ReplicationTracker();
  /** Reported waits on scoped collections whose log entries are being read, by id. */
  readonly #lookingUp = new Set<string>();

  constructor(private readonly options: ReplicaAcksOptions) {}

  /** One agent's status report. */
  report(agentId: string, status: StatusMessage[1]): void {
    const { options } = this;
    const head = options.store.head;
    const applied = options.collections.filter(status.applied, (c) => options.access.mayRead(agentId, c));
    const ignored = Object.keys(status.applied).length - Object.keys(applied).length;
    if (ignored > 0) options.refused('status_collection', agentId, ignored);
    const met = this.tracker.report(agentId, clampApplied(applied, head), status.outbox, {
      ...(status.oldest !== undefined && { oldestPendingMs: status.oldest }),
      ...(status.ver !== undefined && { version: status.ver }),
      ...(status.bs !== undefined && { buckets: status.bs }),
      ...(status.vf !== undefined && { verification: status.vf }),
      ...(status.tb !== undefined && { transfer: status.tb }),
    });
    const holds = (b: string): boolean => options.scopes.tracks(agentId) && options.scopes.holds(agentId, b);
    const buckets = Object.fromEntries(Object.entries(status.bs ?? {}).filter(([b]) => holds(b)));
    const metInBuckets = this.#buckets.report(agentId, clampApplied(buckets, head));
    const { waits, dropped } = reportedWaits(agentId, status, head, (c) => options.access.mayWrite(agentId, c));
    if (dropped > 0) options.refused('replica_wait', agentId, dropped);
    const scoped = waits.filter((w) => options.scopes.scoped(w.collection));
    const whole = waits.filter((w) => !options.scopes.scoped(w.collection));
    this.#notify([...met, ...metInBuckets, ...this.#add(whole, MAX_NEW_WAITS_PER_REPORT)]);
    if (scoped.length > 0) void this.#addScoped(agentId, scoped);
  }

  /** Waits of writes just committed. */
  committed(waits: readonly ReplicaWait[]): void {
    if (waits.length > 0) this.#notify(this.#add(waits));
  }

  /**
   * Registers waits reported again on scoped collections. A report names no bucket: each write's
   * is read from its log entry (its first bucket, as when it was committed), which must be the
   * writer's own write; one that is not, or that retention took, is dropped and its writer times
   * out. The waits already held or being read are skipped, at most MAX_NEW_WAITS_PER_REPORT read.
   */
  async #addScoped(agentId: string, reported: readonly ReplicaWait[]): Promise<void> {
    const idOf = (w: ReplicaWait): string => `${w.agentId}\n${w.inc}\n${w.seq}`;
    const fresh = reported.filter((w) => !this.#buckets.holds(w) && !this.#lookingUp.has(idOf(w))).slice(0, MAX_NEW_WAITS_PER_REPORT);
    if (fresh.length === 0) return;
    for (const w of fresh) this.#lookingUp.add(idOf(w));
    try {
      const logged = await this.options.store.loggedWrites(fresh.map((w) => w.lsn));
      const found: ReplicaWait[] = [];
      for (const w of fresh) {
        const entry = logged.get(w.lsn);
        const own = entry?.collection === w.collection && entry.origin === agentId && entry.incarnation === w.inc && entry.seq === w.seq;
        if (own) found.push(entry.buckets?.[0] === undefined ? w : { ...w, bucket: entry.buckets[0] });
      }
      if (found.length < fresh.length) this.options.refused('replica_wait', agentId, fresh.length - found.length);
      this.#notify(this.#add(found));
    } catch (error) {
      this.options.log.warn(
        { err: error, agentId },
        "could not read the log for an agent's replica waits; its next status reports them again",
      );
    } finally {
      for (const w of fresh) this.#lookingUp.delete(idOf(w));
    }
  }

  /** Registers waits; those over the trackers' limits are refused, and said so (their writers time out). */
  #add(waits: readonly ReplicaWait[], maxNew?: number): ReplicaWait[] {
    const refused = new Map<string, number>();
    const onRefused = (w: ReplicaWait): void => void refused.set(w.agentId, (refused.get(w.agentId) ?? 0) + 1);
    const scoped = waits.filter((w) => w.bucket !== undefined).map((w) => ({ ...w, collection: w.bucket! }));
    const met = [
      ...this.tracker.add(
        waits.filter((w) => w.bucket === undefined),
        maxNew,
        onRefused,
      ),
      ...this.#buckets.add(scoped, maxNew, onRefused),
    ];
    for (const [agentId, count] of refused) this.options.refused('replica_wait', agentId, count);
    return met;
  }

  #notify(done: readonly ReplicaWait[]): void {
    const byWriter = new Map<string, { agentId: string; inc: string; seqs: number[] }>();
    for (const w of done) {
      const id = `${w.agentId}/${w.inc}`;
      const entry = byWriter.get(id) ?? { agentId: w.agentId, inc: w.inc, seqs: [] };
      entry.seqs.push(w.seq);
      byWriter.set(id, entry);
    }
    for (const { agentId, inc, seqs } of byWriter.values()) this.options.replicated(agentId, inc, seqs);
  }
}
