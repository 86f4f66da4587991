import type { Logger } from 'pino';
import { downCodec } from '../shared/codec.js';
import type { HybridClock } from '../shared/hlc.js';
import type { ChangesMessage, ScopeMessage } from '../shared/messages.js';
import { PacedQueue, type Pace } from './paced-queue.js';
import type { ScopeDirectory } from './scope-directory.js';
import type { HubStore } from './store/hub-store.js';

export interface ScopeDeliveryCarrier {
  /** Sends a scope message on a device's own topic. */
  sendScope(agentId: string, message: ScopeMessage): void;
  /** Publishes an encoded message on a device's own topic. */
  sendEncoded(agentId: string, payload: Buffer): void;
  /** A hello was replaced by a newer one (or its connection ended) before it was answered. */
  superseded(agentId: string): void;
}

/**
 * Hellos answered per device per second (as many saved up): a device says one per connection;
 * each costs a read of its buckets' heads, so a client that says nothing else is held to this.
 */
const HELLO_PACE: Pace = { rate: 1, burst: 4 };

/**
 * Delivers scoped collections: each device gets, on its own topic (which only it may read, on
 * every broker), its scope when it comes online or its labels change, and the change sets of
 * the buckets it holds. A change set is encoded once and handed to the devices online holding
 * its bucket; devices offline pull what they missed when they return.
 */
export class ScopeDelivery {
  /** Per device, the newest scope computed: a slower read of heads for an older one is not sent after it. */
  readonly #latest = new Map<string, number>();
  #sequence = 0;
  /** The connection each online device said hello on. */
  readonly #sessions = new Map<string, string>();
  /** The connection of each hello waiting for its turn: one whose connection ends first is not taken. */
  readonly #waiting = new Map<string, string>();

  readonly #hellos: PacedQueue<string>;
  readonly #store: HubStore;
  readonly #clock: HybridClock;
  readonly #epoch: number | undefined;
  readonly #log: Logger;

  constructor(
    readonly directory: ScopeDirectory,
    hub: { store: HubStore; clock: HybridClock; epoch: number | undefined; log: Logger },
    private readonly carrier: ScopeDeliveryCarrier,
  ) {
    this.#store = hub.store;
    this.#clock = hub.clock;
    this.#epoch = hub.epoch;
    this.#log = hub.log;
    this.#hellos = new PacedQueue(
      async (agentId, session) => {
        // Its connection ended while it waited (its bye came first): tracking it would send to nobody.
        if (this.#waiting.get(agentId) !== session) {
          carrier.superseded(agentId);
          return 0;
        }
        this.#waiting.delete(agentId);
        this.#sessions.set(agentId, session);
        await this.#tell(agentId, this.directory.track(agentId).buckets);
        return 1;
      },
      HELLO_PACE,
      (agentId) => carrier.superseded(agentId),
    );
  }

  /**
   * A device connected and listens on its own topic (`hello`, with its connection's id): it is
   * told its scope, and hears its buckets' change sets from now on.
   */
  online(agentId: string, session: string): void {
    if (this.directory.active) this.#hello(agentId, session);
  }

  stop(): void {
    this.#hellos.stop();
  }

  /** Tells an online device its scope again (it asked for a bucket it does not hold). */
  retell(agentId: string): void {
    const session = this.#sessions.get(agentId);
    // Through the hellos' pace: each costs a read of heads.
    if (session !== undefined && this.directory.tracks(agentId)) this.#hello(agentId, session);
  }

  #hello(agentId: string, session: string): void {
    this.#waiting.set(agentId, session);
    this.#hellos.submit(agentId, session);
  }

  /**
   * A device's connection is gone: its `bye` (`session` given: only if no newer connection
   * said hello since, as a will may come late), or the broker said so.
   */
  offline(agentId: string, session?: string): void {
    if (session === undefined || this.#waiting.get(agentId) === session) this.#waiting.delete(agentId);
    if (session !== undefined && this.#sessions.get(agentId) !== session) return;
    this.#sessions.delete(agentId);
    this.directory.untrack(agentId);
    this.#latest.delete(agentId);
  }

  /** Devices' labels changed: those online whose buckets changed are told their new scope. */
  relabelled(agentIds: readonly string[]): void {
    if (!this.directory.active) return;
    for (const agentId of agentIds) {
      if (!this.directory.tracks(agentId)) continue;
      const { buckets, changed } = this.directory.track(agentId);
      if (changed) void this.#tell(agentId, buckets);
    }
  }

  /** Publishes a change set of one bucket to the devices holding it; false for a set that is not a bucket's. */
  publish(set: ChangesMessage): boolean {
    const bucket = set[1].b;
    if (bucket === undefined) return false;
    const holders = this.directory.holders(bucket);
    if (holders.size === 0) return true;
    if (this.#epoch !== undefined) set[1].epoch = this.#epoch;
    let payload: Buffer;
    try {
      payload = downCodec.encode(set); // once, however many devices hold the bucket
    } catch (error) {
      this.#log.error({ err: error, bucket }, 'could not encode a change set; not sent (devices will pull what they miss)');
      return true;
    }
    for (const agentId of holders) this.carrier.sendEncoded(agentId, payload);
    return true;
  }

  /** Tells a device its scope; settles once sent (or given up). */
  #tell(agentId: string, buckets: ReadonlySet<string>): Promise<void> {
    const sequence = ++this.#sequence;
    this.#latest.set(agentId, sequence);
    const ids = [...buckets].sort();
    return this.#store.bucketHeads(ids).then(
      (heads) => {
        if (this.#latest.get(agentId) !== sequence) return;
        const bs = ids.map((b): [string, number] => [b, heads.get(b) ?? 0]);
        const cs = this.directory.collections;
        // Each bucket's collection by its index in cs: a device verifying a bucket asks of it.
        const collectionOf = this.directory.collectionsOfBuckets(agentId);
        const bc = ids.map((b) => cs.indexOf(collectionOf.get(b) ?? ''));
        const named = bc.every((i) => i >= 0) ? { bc } : {}; // all or none: the buckets held may have changed since
        this.carrier.sendScope(agentId, ['scope', { hlc: this.#clock.tick(), cs, bs, ...named }]);
      },
      (error: unknown) =>
        // The device keeps the scope it had; it is told again when it reconnects.
        this.#log.error({ err: error, agentId }, 'could not read bucket heads to tell a device its scope'),
    );
  }
}
