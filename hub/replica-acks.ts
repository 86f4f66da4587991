import type { StatusMessage } from '../shared/messages.js';
import type { KnownCollections } from './known-collections.js';
import type { RefusedWork } from './refused-work.js';
import { ReplicationTracker, type ReplicaWait } from './replication-tracker.js';
import { clampApplied, MAX_NEW_WAITS_PER_REPORT, reportedWaits } from './status-report.js';

export interface ReplicaAcksOptions {
  /** The log's head now: no agent can have applied, or wait for, anything above it. */
  head: () => number;
  /** The collections a status report may name. */
  collections: KnownCollections;
  mayRead: (agentId: string, collection: string) => boolean;
  mayWrite: (agentId: string, collection: string) => boolean;
  /** Whether an agent holds a bucket of a scoped collection now. */
  holdsBucket: (agentId: string, bucket: string) => boolean;
  /** Tells a writer that these of its writes have their replicas (a `replicated` message). */
  replicated: (agentId: string, inc: string, seqs: number[]) => void;
  /** Work refused to one agent to bound what it costs. */
  refused: (kind: RefusedWork, agentId: string, count: number) => void;
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

  constructor(private readonly options: ReplicaAcksOptions) {}

  /** One agent's status report. */
  report(agentId: string, status: StatusMessage[1]): void {
    const { options } = this;
    const head = options.head();
    const applied = options.collections.filter(status.applied, (c) => options.mayRead(agentId, c));
    const ignored = Object.keys(status.applied).length - Object.keys(applied).length;
    if (ignored > 0) options.refused('status_collection', agentId, ignored);
    const met = this.tracker.report(agentId, clampApplied(applied, head), status.outbox, {
      ...(status.oldest !== undefined && { oldestPendingMs: status.oldest }),
      ...(status.ver !== undefined && { version: status.ver }),
      ...(status.bs !== undefined && { buckets: status.bs }),
    });
    const buckets = Object.fromEntries(Object.entries(status.bs ?? {}).filter(([b]) => options.holdsBucket(agentId, b)));
    const metInBuckets = this.#buckets.report(agentId, clampApplied(buckets, head));
    const { waits, dropped } = reportedWaits(agentId, status, head, (c) => options.mayWrite(agentId, c));
    if (dropped > 0) options.refused('replica_wait', agentId, dropped);
    this.#notify([...met, ...metInBuckets, ...this.#add(waits, MAX_NEW_WAITS_PER_REPORT)]);
  }

  /** Waits of writes just committed. */
  committed(waits: readonly ReplicaWait[]): void {
    if (waits.length > 0) this.#notify(this.#add(waits));
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
