import { bucketIdOf } from '../shared/buckets.js';
import { groupsByMember, type ScopeRules } from './scope-rules.js';

/**
 * Which buckets each device holds (by id, of the scoped collections it may read), and which of
 * the devices online hold each bucket: what publishing a scoped change set looks up. A change
 * costs one lookup per bucket it touches, however large the fleet.
 *
 * A device's buckets follow from its id, labels and access groups alone; they are computed when
 * it comes online and again when its labels change. Devices offline are not tracked: they
 * catch up by pulling when they return.
 */
export class ScopeDirectory {
  readonly #memberOf: Map<string, string[]>;
  /** Devices online, with the bucket ids they hold. */
  readonly #online = new Map<string, ReadonlySet<string>>();
  /** Bucket id → devices online holding it. */
  readonly #holders = new Map<string, Set<string>>();

  constructor(
    private readonly rules: ScopeRules,
    groups: Readonly<Record<string, readonly string[]>>,
    private readonly labelsOf: (agentId: string) => Readonly<Record<string, string>>,
    private readonly mayRead: (agentId: string, collection: string) => boolean,
  ) {
    this.#memberOf = groupsByMember(groups);
  }

  /** Whether any collection is scoped (without, there is nothing to track). */
  get active(): boolean {
    return this.rules.collections.length > 0;
  }

  /** The scoped collections. */
  get collections(): string[] {
    return this.rules.collections;
  }

  scoped(collection: string): boolean {
    return this.rules.scoped(collection);
  }

  /** The bucket ids a device holds now, from its labels and groups as they are. */
  bucketsOf(agentId: string): Set<string> {
    const ids = new Set<string>();
    for (const collection of this.rules.collections) for (const id of this.#bucketsIn(agentId, collection)) ids.add(id);
    return ids;
  }

  /** Whether a device holds a bucket now (online or not). */
  holds(agentId: string, bucket: string): boolean {
    return (this.#online.get(agentId) ?? this.bucketsOf(agentId)).has(bucket);
  }

  /**
   * The collection of a bucket the device holds now (undefined: it holds no such bucket): what
   * verifying the bucket is answered for. Bucket ids do not name their collection, so each
   * scoped collection's buckets of the device are computed until one matches.
   */
  collectionOf(agentId: string, bucket: string): string | undefined {
    if (!this.holds(agentId, bucket)) return undefined;
    return this.rules.collections.find((collection) => this.#bucketsIn(agentId, collection).includes(bucket));
  }

  /** Each bucket a device holds now, with its collection (what the scope message tells it). */
  collectionsOfBuckets(agentId: string): Map<string, string> {
    const collections = new Map<string, string>();
    for (const collection of this.rules.collections) for (const id of this.#bucketsIn(agentId, collection)) collections.set(id, collection);
    return collections;
  }

  /** The ids of a device's buckets of one collection (none if it may not read it). */
  #bucketsIn(agentId: string, collection: string): string[] {
    if (!this.mayRead(agentId, collection)) return [];
    const subject = { agentId, labels: this.labelsOf(agentId), groups: this.#memberOf.get(agentId) ?? [] };
    return this.rules.bucketsOfDevice(collection, subject).map(bucketIdOf);
  }

  /**
   * A device came online, or its labels changed: its buckets are computed anew. Returns them,
   * and whether they differ from what it held while online before (always, when it just came).
   */
  track(agentId: string): { buckets: ReadonlySet<string>; changed: boolean } {
    const before = this.#online.get(agentId);
    const buckets = this.bucketsOf(agentId);
    const changed = before === undefined || before.size !== buckets.size || [...buckets].some((b) => !before.has(b));
    if (before && changed) this.#unlink(agentId, before);
    if (changed) {
      this.#online.set(agentId, buckets);
      for (const bucket of buckets) {
        const set = this.#holders.get(bucket);
        if (set) set.add(agentId);
        else this.#holders.set(bucket, new Set([agentId]));
      }
    }
    return { buckets: changed || before === undefined ? buckets : before, changed };
  }

  /** Whether a device is tracked (online). */
  tracks(agentId: string): boolean {
    return this.#online.has(agentId);
  }

  /** A device went offline. */
  untrack(agentId: string): void {
    const before = this.#online.get(agentId);
    if (!before) return;
    this.#online.delete(agentId);
    this.#unlink(agentId, before);
  }

  /** The devices online that hold a bucket. */
  holders(bucket: string): ReadonlySet<string> {
    return this.#holders.get(bucket) ?? NOBODY;
  }

  #unlink(agentId: string, buckets: ReadonlySet<string>): void {
    for (const bucket of buckets) {
      const set = this.#holders.get(bucket);
      set?.delete(agentId);
      if (set?.size === 0) this.#holders.delete(bucket);
    }
  }
}

const NOBODY: ReadonlySet<string> = new Set();
