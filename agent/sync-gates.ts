import type { Lanes } from './lanes.js';
import type { PolicyCache } from './policy-cache.js';
import type { SyncScheduler } from './scheduler.js';
import type { AgentStore } from './store/agent-store.js';
import type { TransferBudget } from './transfer-budget.js';
import type { AgentStatus } from './types.js';

/**
 * What may go over the link now, in priority order, by the hub's assignment of partitions (known
 * or not), the sync windows and the transfer budget: alarms (high-priority collections) always,
 * with the writes queued before them; other writes and pulls while the budget lasts; blobs while
 * 80 % of it does.
 */
export class SyncGates {
  constructor(
    private readonly store: AgentStore,
    private readonly policies: PolicyCache,
    private readonly budget: TransferBudget,
    private readonly lanes: () => Lanes,
    private readonly scheduler: () => SyncScheduler,
  ) {}

  /** How far a partition's uploads may go (see LaneDelegate.mayUpload). */
  uploads(partition: string): boolean | number {
    // Nothing goes up before the hub's assignment is known: a write must join its partition's sequence.
    if (!this.lanes().routed || !this.scheduler().mayUpload()) return false;
    return this.budget.allows('documents') || this.store.outbox.newestPendingSeqIn(partition, this.policies.highPriority());
  }

  pulls(): boolean {
    return this.lanes().routed && this.budget.allows('documents');
  }

  blobUploads(): boolean {
    return this.lanes().routed && this.scheduler().mayUpload();
  }

  /** Blob chunks, up or down, may spend. */
  blobChunks(): boolean {
    return this.budget.allows('blobs');
  }

  /** The transfer budget's spend and what waits for lack of it; undefined without a budget. */
  budgetStatus(): AgentStatus['budget'] {
    if (!this.budget.limited) return undefined;
    const documents = this.budget.allows('documents') ? 0 : this.store.outbox.pendingCount();
    const blobs = this.budget.allows('blobs') ? 0 : this.store.blobUploads.count().blobs;
    return { periods: this.budget.periods(), waiting: { documents, blobs } };
  }
}
