import type { Logger } from 'pino';
import { DEFAULT_PARTITION, partitionOfTopic } from '../shared/topics.js';
import type { Durability } from './durability.js';
import type { Lane } from './lane.js';
import type { AgentStore } from './store/agent-store.js';
import type { MovedWrite } from './store/outbox.js';
import type { WriteReceipt } from './write-queue.js';

/** Where the hub's assignment of collections to partitions is kept (collection → partition). */
const ASSIGNMENT_SETTING = 'partitions';

export interface LanesDelegate {
  /** A lane for a partition, syncing the collections `inPartition` says are its own. */
  lane(partition: string, inPartition: (collection: string) => boolean): Lane;
  /** Adds subscriptions on the connection; resolves once the broker granted them (see Transport.subscribe). */
  subscribe(filters: readonly string[]): Promise<void>;
  connected(): boolean;
  /** The agent is closing: a late SUBACK starts nothing. */
  closed(): boolean;
  /** Writes made before the assignment was known moved to their partitions (the agent's `moved` event). */
  onMoved(moved: MovedWrite[]): void;
}

/**
 * The agent's lanes, one per partition of the hub, and the hub's assignment of collections to
 * partitions that routes writes, changes and reads among them. The default partition's hub
 * says which collections live elsewhere (`adopt`); until it has, the assignment is unknown
 * (`routed` is false) and nothing is uploaded or pulled. A lane once made stays for the run.
 */
export class Lanes implements Iterable<Lane> {
  readonly #lanes = new Map<string, Lane>();
  /** collection → partition, for collections outside the default one; undefined until first heard from the hub. */
  #assignment: Record<string, string> | undefined;
  #started = false;

  constructor(
    private readonly store: AgentStore,
    /** Collections replicated on this device (of every partition); undefined = all. */
    private readonly collections: readonly string[] | undefined,
    private readonly delegate: LanesDelegate,
    private readonly log: Logger,
  ) {
    this.#assignment = store.settings.get<Record<string, string>>(ASSIGNMENT_SETTING);
    this.#laneOrNew(DEFAULT_PARTITION);
    for (const partition of new Set(Object.values(this.#assignment ?? {}))) this.#laneOrNew(partition);
  }

  /** The hub's assignment is known: writes can join their partitions' sequences, and changes be pulled. */
  get routed(): boolean {
    return this.#assignment !== undefined;
  }

  /** The partition a collection's writes and changes belong to, by the hub's assignment as known now. */
  partitionOf(collection: string): string {
    return this.#assignment?.[collection] ?? DEFAULT_PARTITION;
  }

  /** The lane of a collection's partition. */
  laneOf(collection: string): Lane | undefined {
    return this.#lanes.get(this.partitionOf(collection));
  }

  [Symbol.iterator](): Iterator<Lane> {
    return this.#lanes.values();
  }

  /** What every lane listens to. */
  subscriptions(): string[] {
    return [...this.#lanes.values()].flatMap((lane) => lane.subscriptions(this.collections));
  }

  /** Some lane is pulling, or about to. */
  get pulling(): boolean {
    return [...this.#lanes.values()].some((lane) => lane.pulling);
  }

  start(): void {
    this.#started = true;
    for (const lane of this.#lanes.values()) lane.start();
  }

  stop(): void {
    for (const lane of this.#lanes.values()) lane.stop();
  }

  onConnected(): void {
    for (const lane of this.#lanes.values()) lane.onConnected();
  }

  onDisconnected(): void {
    for (const lane of this.#lanes.values()) lane.onDisconnected();
  }

  /** Hands a message to the lane of its topic's partition (none if no lane follows that partition). */
  onMessage(topic: string, payload: Buffer): void {
    this.#lanes.get(partitionOfTopic(topic))?.onMessage(topic, payload);
  }

  pumpAll(): void {
    for (const lane of this.#lanes.values()) lane.pump();
  }

  /** Pumps the lanes of these collections' partitions (after writes to them were stored). */
  pumpFor(collections: Iterable<string>): void {
    for (const partition of new Set([...collections].map((c) => this.partitionOf(c)))) this.#lanes.get(partition)?.pump();
  }

  pullAll(): void {
    for (const lane of this.#lanes.values()) lane.pull();
  }

  /** Uploads and pulls what waited (a new period of the transfer budget, or a larger one). */
  resume(): void {
    this.pumpAll();
    this.pullAll();
  }

  /**
   * Resolves once a stored write reached `durability`, with its LSN. A write moved while it waits
   * (to its partition, or renumbered) is named where it is now.
   */
  async waitFor(
    receipt: WriteReceipt,
    collection: string,
    durability: Exclude<Durability, 'local'>,
    timeoutMs: number,
  ): Promise<WriteReceipt> {
    let current = receipt;
    const lane = this.#lanes.get(receipt.partition ?? DEFAULT_PARTITION)!;
    const lsn = await lane.waitFor(receipt.seq, collection, durability, timeoutMs, ({ partition, incarnation, seq }) => {
      current = { hlc: receipt.hlc, incarnation, seq, ...(partition !== DEFAULT_PARTITION && { partition }) };
    });
    return lsn === undefined ? current : { ...current, lsn };
  }

  /**
   * The default partition said which collections live elsewhere: route by it, and follow new
   * partitions — each new lane subscribes to its topics and uploads once the broker granted them.
   */
  adopt(parts: Record<string, string>): void {
    const first = this.#assignment === undefined;
    if (!first && sameAssignment(parts, this.#assignment!)) return;
    const before = new Set(this.#lanes.keys());
    this.#assignment = parts;
    for (const partition of new Set(Object.values(parts))) this.#laneOrNew(partition);
    if (!first) {
      this.log.warn(
        { partitions: parts },
        'the hub assigned collections to partitions differently; new writes follow the new assignment, ' +
          "writes already queued for a collection's old partition stay there",
      );
      this.store.settings.set(ASSIGNMENT_SETTING, parts);
    } else {
      // Writes made before the assignment was known all joined the default lane: those of other
      // partitions move to their lanes, with their waits — in the transaction that records the
      // assignment, so that a crash cannot leave them behind.
      let moved;
      try {
        moved = this.store.outbox.adoptAssignment(ASSIGNMENT_SETTING, parts, (c) => this.partitionOf(c));
      } catch (error) {
        this.#assignment = undefined; // not adopted: the next status tries again
        throw error;
      }
      const defaultLane = this.#lanes.get(DEFAULT_PARTITION)!;
      for (const { from, to } of moved) defaultLane.handOverWait(from.seq, this.#lanes.get(to.partition)!, to);
      if (moved.length > 0) this.delegate.onMoved(moved);
      // Nothing was pulled before the assignment was known (a collection's LSNs are its partition's).
      if (this.delegate.connected()) for (const partition of before) this.#lanes.get(partition)!.pull();
    }
    const added = [...this.#lanes.values()].filter((lane) => !before.has(lane.partition));
    for (const lane of added) lane.holdUntilSubscribed();
    void this.delegate.subscribe(this.subscriptions()).then(() => {
      for (const lane of added) lane.onSubscribed();
      if (this.delegate.closed() || !this.delegate.connected()) return;
      for (const lane of added) lane.onConnected();
      this.pumpAll();
    });
    this.pumpAll();
  }

  #laneOrNew(partition: string): Lane {
    let lane = this.#lanes.get(partition);
    if (lane) return lane;
    lane = this.delegate.lane(partition, (c) => this.partitionOf(c) === partition);
    this.#lanes.set(partition, lane);
    if (this.#started) lane.start();
    return lane;
  }
}

/** Whether two assignments (collection → partition) say the same, whatever the order of their keys. */
function sameAssignment(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((c) => a[c] === b[c]);
}
