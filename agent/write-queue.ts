import type { HybridClock } from '../shared/hlc.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import type { AgentStore } from './store/agent-store.js';
import type { AppendResult, Buffering } from './store/outbox.js';
import type { Rejection } from './store/rejections.js';
import type { NewWrite } from './store/writes.js';
import { faultPoint } from '../shared/fault-points.js';

export interface WriteReceipt {
  /** The sequence space the write belongs to (its partition's incarnation: see Partitions.incarnationOf). */
  incarnation: string;
  /** Position of the write in this agent's sequence (of its partition: see `partition`). */
  seq: number;
  /** The hub partition whose sequence space the write joined, when not the default one. */
  partition?: string;
  hlc: string;
  /** The commit's LSN, for writes that waited for `hub` or `replicas` durability: a causal token for `minLsn` reads. */
  lsn?: number;
}

interface Waiting {
  write: Omit<NewWrite, 'hlc' | 'partition'>;
  resolve: (receipt: WriteReceipt) => void;
  reject: (error: Error) => void;
}

/**
 * Group commit for app writes: writes issued in the same turn of the event loop share one
 * outbox transaction (one fsync). Each promise resolves once its write is durable on the
 * device, and rejects — with nothing stored — if the transaction fails.
 */
export class WriteQueue {
  #waiting: Waiting[] = [];
  #scheduled = false;

  constructor(
    private readonly store: AgentStore,
    private readonly clock: HybridClock,
    /** Called after each commit with the collections written and the writes dropped to make room. */
    private readonly onStored: (collections: Set<string>, dropped: Rejection[]) => void,
    private readonly policyFor: (collection: string) => Buffering,
    /** The hub partition a collection's writes join, as known when they are stored. */
    private readonly partitionOf: (collection: string) => string,
  ) {}

  submit(write: Omit<NewWrite, 'hlc' | 'partition'>): Promise<WriteReceipt> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ write, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits every waiting write now. */
  flush(): void {
    this.#scheduled = false;
    const batch = this.#waiting;
    this.#waiting = [];
    if (batch.length === 0) return;
    const writes = batch.map((w) => ({ ...w.write, partition: this.partitionOf(w.write.collection), hlc: this.clock.tick() }));
    let result: AppendResult;
    try {
      result = this.store.outbox.append(writes, this.clock.last, this.policyFor);
    } catch (error) {
      for (const w of batch) w.reject(error as Error);
      return;
    }
    faultPoint('agent.after-append');
    // Read once per partition, not per write: a group commit may hold thousands.
    const incarnations = new Map<string, string>();
    const incarnationOf = (partition: string): string => {
      let incarnation = incarnations.get(partition);
      if (incarnation === undefined) incarnations.set(partition, (incarnation = this.store.partitions.incarnationOf(partition)));
      return incarnation;
    };
    batch.forEach((w, i) => {
      const seq = result.seqs[i]!;
      const { partition } = writes[i]!;
      if (typeof seq !== 'number') w.reject(seq);
      else
        w.resolve({
          incarnation: incarnationOf(partition),
          seq,
          hlc: writes[i]!.hlc,
          ...(partition !== DEFAULT_PARTITION && { partition }),
        });
    });
    this.onStored(new Set(writes.map((w) => w.collection)), result.dropped);
  }
}
