import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { AgentClosedError, InvalidValueError, ReadTimeoutError } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import type { CollectionPolicy, HubStatusMessage } from '../shared/messages.js';
import { SOFTWARE_VERSION } from '../shared/protocol-version.js';
import { DEFAULT_PARTITION, partitionOfTopic } from '../shared/topics.js';
import { isPlainObject, type JsonValue } from '../shared/values.js';
import { Lane } from './lane.js';
import { Link } from './link.js';
import { PolicyCache } from './policy-cache.js';
import { ProgressWaiters } from './progress-waiters.js';
import { SyncScheduler } from './scheduler.js';
import type { Transport, TransportFactory } from './transport.js';
import type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';
import { validateWrite } from './write-validation.js';
import { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';
import type { AgentDocument } from './store/replica.js';
import type { WriteKind } from './store/writes.js';
import { WriteQueue, type WriteReceipt } from './write-queue.js';

/** Status reports to the hub wait this long, so a burst of changes sends one. */
const STATUS_DEBOUNCE_MS = 50;
/** How often pending writes are checked against their collection's TTL. */
const EXPIRY_CHECK_MS = 1_000;
/** Where the hub's assignment of collections to partitions is kept (collection → partition). */
const ASSIGNMENT_SETTING = 'partitions';

export type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';

/**
 * An Outpost agent: a local SQLite replica and durable outbox, synchronised with the hub over
 * MQTT. Writes resolve once durable on the device (offline too); reads never need the network
 * and show the device's own pending writes over the confirmed replica.
 *
 * The hub may split its collections into partitions, each its own log led by its own hub
 * process; the agent then syncs one lane per partition (agent/lane.ts) over one connection. It
 * learns which collection belongs where from the default partition's retained status, and
 * uploads nothing before it has heard that once (writes made earlier wait in the default lane
 * and move to theirs then).
 */
export class Agent extends EventEmitter<AgentEvents> {
  readonly id: string;
  readonly #store: AgentStore;
  readonly #policies: PolicyCache;
  readonly #clock: HybridClock;
  readonly #writes: WriteQueue;
  readonly #link: Transport;
  readonly #scheduler: SyncScheduler;
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #lanes = new Map<string, Lane>();
  /** collection → partition, for collections outside the default one; undefined until first heard from the hub. */
  #assignment: Record<string, string> | undefined;
  readonly #log: Logger;
  readonly #progress = new ProgressWaiters();
  readonly #waitTimeoutMs: number;
  readonly #options: AgentOptions;
  #started = false;
  #statusTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: AgentOptions) {
    super();
    this.id = options.agentId;
    this.#options = options;
    this.#log = options.logger ?? pino({ level: 'silent' });
    this.#store = new AgentStore(options.dataDir);
    this.#policies = new PolicyCache(this.#store.settings);
    if (options.storageLimitBytes !== undefined) this.#store.settings.setStorageLimit(options.storageLimitBytes);
    this.#clock = new HybridClock(options.now, this.#store.settings.lastHlc);
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 10_000;
    this.#assignment = this.#store.settings.get<Record<string, string>>(ASSIGNMENT_SETTING);
    this.#laneOrNew(DEFAULT_PARTITION);
    for (const partition of new Set(Object.values(this.#assignment ?? {}))) this.#laneOrNew(partition);
    // The lane is chosen when the write is stored, by the assignment known then.
    this.#writes = new WriteQueue(
      this.#store,
      this.#clock,
      (collections, dropped) => this.#afterWrite(collections, dropped),
      (c) => this.#policy(c),
      (c) => this.#laneOf(c),
    );
    const subscriptions = [...this.#lanes.values()].flatMap((lane) => lane.subscriptions(options.collections));
    const transport: TransportFactory =
      options.transport ??
      ((delegate) =>
        new Link(
          {
            url: options.hubUrl,
            clientId: options.agentId,
            ...(options.hubToken !== undefined && { username: options.agentId, password: options.hubToken }),
            ...(options.tls && { tls: options.tls }),
            subscriptions,
            backoff: options.reconnect ?? { initialMs: 500, maxMs: 30_000 },
            log: this.#log,
          },
          delegate,
        ));
    this.#link = transport(
      {
        onConnected: () => {
          for (const lane of this.#lanes.values()) lane.onConnected();
          this.#scheduleStatus();
          this.emit('connected');
        },
        onDisconnected: () => {
          for (const lane of this.#lanes.values()) lane.onDisconnected();
          this.emit('disconnected');
        },
        onMessage: (topic, payload) => this.#onMessage(topic, payload),
      },
      subscriptions,
    );
    this.#scheduler = new SyncScheduler(
      options.sync ?? { mode: 'realtime' },
      {
        connect: () => this.#link.start(),
        disconnect: () => this.#link.stop(),
        connected: () => this.#link.connected,
        pump: () => this.#pumpAll(),
        pull: () => this.#eachLane((lane) => lane.replicator.pull()),
        idle: () => this.#store.outbox.pendingCount() === 0 && ![...this.#lanes.values()].some((lane) => lane.replicator.pulling),
        onWindow: (open) => this.emit('window', open),
      },
      this.#log,
    );
  }

  /** The partition a collection's writes and changes belong to, by the hub's assignment as known now. */
  #laneOf(collection: string): string {
    return this.#assignment?.[collection] ?? DEFAULT_PARTITION;
  }

  #laneOrNew(partition: string): Lane {
    let lane = this.#lanes.get(partition);
    if (lane) return lane;
    lane = new Lane(
      partition,
      this.id,
      this.#store,
      this.#clock,
      (c) => this.#laneOf(c) === partition,
      {
        collections: this.#options.collections,
        pageLimit: this.#options.pageLimit ?? 500,
        ackTimeoutMs: this.#options.ackTimeoutMs ?? 10_000,
      },
      {
        publish: (topic, payload) => this.#link.publish(topic, payload),
        connected: () => this.#link.connected,
        // Nothing goes up before the hub's assignment is known: a write must join its partition's sequence.
        mayUpload: () => this.#assignment !== undefined && this.#scheduler.mayUpload(),
        routed: () => this.#assignment !== undefined,
        onApplied: (changes) => this.emit('change', changes),
        onProgress: () => {
          this.#progress.notify();
          this.#scheduleStatus();
        },
        onRejected: (rejections) => this.emit('rejection', rejections),
        onReincarnated: (previous, next) => this.emit('reincarnated', previous, next),
        onHubStatus: (status) => this.#onHubStatus(partition, status),
      },
      this.#log,
    );
    this.#lanes.set(partition, lane);
    if (this.#started) lane.start();
    return lane;
  }

  #eachLane(action: (lane: Lane) => void): void {
    for (const lane of this.#lanes.values()) action(lane);
  }

  #pumpAll(): void {
    this.#eachLane((lane) => lane.uploader.pump());
  }

  #onHubStatus(partition: string, status: HubStatusMessage[1]): void {
    if (partition !== DEFAULT_PARTITION) return;
    this.#policies.update(status);
    this.#onAssignment(status.parts ?? {});
  }

  /** The default partition said which collections live elsewhere: route by it, and follow new partitions. */
  #onAssignment(parts: Record<string, string>): void {
    const first = this.#assignment === undefined;
    if (!first && sameAssignment(parts, this.#assignment!)) return;
    const before = new Set(this.#lanes.keys());
    const previous = this.#assignment;
    this.#assignment = parts;
    for (const partition of new Set(Object.values(parts))) this.#laneOrNew(partition);
    if (!first) {
      this.#log.warn(
        { partitions: parts },
        'the hub assigned collections to partitions differently; new writes follow the new assignment, ' +
          "writes already queued for a collection's old partition stay there",
      );
      this.#store.settings.set(ASSIGNMENT_SETTING, parts);
    } else {
      // Writes made before the assignment was known all joined the default lane: those of other
      // partitions move to their lanes, with their waits — in the transaction that records the
      // assignment, so that a crash cannot leave them behind.
      let moved;
      try {
        moved = this.#store.outbox.adoptAssignment(ASSIGNMENT_SETTING, parts, (c) => this.#laneOf(c));
      } catch (error) {
        this.#assignment = previous; // not adopted: the next status tries again
        throw error;
      }
      const defaultLane = this.#lanes.get(DEFAULT_PARTITION)!;
      for (const { from, to } of moved) defaultLane.durability.moveTo(from.seq, this.#lanes.get(to.partition)!.durability, to);
      if (moved.length > 0) this.emit('moved', moved);
      // Nothing was pulled before the assignment was known (a collection's LSNs are its partition's).
      if (this.#link.connected) for (const partition of before) this.#lanes.get(partition)!.replicator.pull();
    }
    const added = [...this.#lanes.values()].filter((lane) => !before.has(lane.partition));
    for (const lane of added) lane.subscribed = false;
    const subscriptions = [...this.#lanes.values()].flatMap((lane) => lane.subscriptions(this.#options.collections));
    void this.#link.subscribe(subscriptions).then(() => {
      for (const lane of added) lane.subscribed = true;
      if (this.#closed || !this.#link.connected) return;
      for (const lane of added) lane.onConnected();
      this.#pumpAll();
    });
    this.#pumpAll();
  }

  /** Starts syncing in the background; the agent serves reads and writes at once, online or not. */
  start(): this {
    this.#started = true;
    this.#eachLane((lane) => lane.start());
    this.#scheduler.start();
    this.#expiryTimer = setInterval(() => this.#expire(), EXPIRY_CHECK_MS);
    this.#expiryTimer.unref?.();
    return this;
  }

  /** Connects if needed, uploads everything queued and catches up; true once done within `timeoutMs`. */
  syncNow(timeoutMs?: number): Promise<boolean> {
    this.#assertOpen();
    return this.#scheduler.syncNow(timeoutMs);
  }

  /** The hub's policy for a collection (cached, so it holds offline and across restarts). */
  policy(collection: string): CollectionPolicy {
    this.#assertOpen();
    return this.#policy(collection);
  }

  #policy(collection: string): CollectionPolicy {
    return this.#policies.get(collection);
  }

  #afterWrite(collections: Set<string>, dropped: Rejection[]): void {
    if (dropped.length > 0) this.emit('rejection', dropped);
    if (!this.#scheduler.mayUpload() && [...collections].some((c) => this.#policy(c).priority === 'high')) {
      void this.#scheduler.syncNow(); // priority lane: at once, even outside a window
      return;
    }
    for (const partition of new Set([...collections].map((c) => this.#laneOf(c)))) this.#lanes.get(partition)?.uploader.pump();
  }

  /** Gives up writes past their collection's TTL; the app hears of each. */
  #expire(): void {
    if (this.#closed) return;
    try {
      const expired = this.#store.outbox.expire((c) => this.#policy(c).ttlSeconds);
      if (expired.length === 0) return;
      this.#log.warn({ count: expired.length }, 'pending writes expired before they could be uploaded');
      this.emit('rejection', expired);
      this.#pumpAll();
    } catch (error) {
      this.#log.error({ err: error }, 'could not expire pending writes');
    }
  }

  put(collection: string, key: string, value: JsonValue, options: WriteOptions = {}): Promise<WriteReceipt> {
    return this.#write(collection, key, 'put', value, options);
  }

  /** Shallow merge: listed fields replace, fields set to null are removed. */
  patch(collection: string, key: string, fields: { [field: string]: JsonValue }, options: WriteOptions = {}): Promise<WriteReceipt> {
    if (!isPlainObject(fields)) return Promise.reject(new InvalidValueError('patch takes an object of fields'));
    return this.#write(collection, key, 'patch', fields, options);
  }

  del(collection: string, key: string, options: WriteOptions = {}): Promise<WriteReceipt> {
    return this.#write(collection, key, 'del', undefined, options);
  }

  async get(collection: string, key: string, options: ReadOptions = {}): Promise<AgentDocument | undefined> {
    this.#assertOpen();
    await this.#caughtUp(collection, options);
    return this.#store.replica.read(collection, key, options.confirmed);
  }

  async list(collection: string, options: ListOptions = {}): Promise<AgentDocument[]> {
    this.#assertOpen();
    await this.#caughtUp(collection, options);
    return this.#store.replica.list(collection, {
      limit: Math.min(options.limit ?? 100, 1000),
      ...(options.prefix !== undefined && { prefix: options.prefix }),
      ...(options.after !== undefined && { after: options.after }),
      confirmedOnly: options.confirmed ?? false,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  status(): AgentStatus {
    this.#assertOpen();
    const cursors = this.#store.replica.cursors();
    const pending = this.#store.outbox.pendingByCollection();
    const watermark = this.#store.partitions.watermarkOf(DEFAULT_PARTITION);
    const now = Date.now();
    const collections: AgentStatus['collections'] = {};
    for (const c of new Set([...Object.keys(cursors), ...Object.keys(pending)])) {
      const p = pending[c];
      const lane = this.#lanes.get(this.#laneOf(c));
      const applied = Math.max(cursors[c] ?? 0, lane?.replicator.watermark ?? 0);
      const lag = Math.max(0, (lane?.replicator.heads.get(c) ?? 0) - applied);
      collections[c] = { appliedLsn: cursors[c] ?? 0, lag, pending: p?.pending ?? 0, ...(p && { oldestPendingAgeMs: now - p.oldestAt }) };
    }
    const partitions: NonNullable<AgentStatus['partitions']> = {};
    for (const lane of this.#lanes.values()) {
      if (lane.partition === DEFAULT_PARTITION) continue;
      const laneCursors = Object.entries(cursors)
        .filter(([c]) => lane.inLane(c))
        .map(([, lsn]) => lsn);
      partitions[lane.partition] = {
        incarnation: this.#store.partitions.incarnationOf(lane.partition),
        watermark: lane.replicator.watermark,
        appliedLsn: Math.max(lane.replicator.watermark, ...laneCursors),
      };
    }
    const defaultCursors = Object.entries(cursors)
      .filter(([c]) => this.#laneOf(c) === DEFAULT_PARTITION)
      .map(([, lsn]) => lsn);
    const { lastSyncAt, nextWindow } = this.#scheduler;
    return {
      agentId: this.id,
      incarnation: this.#store.partitions.incarnationOf(DEFAULT_PARTITION),
      connected: this.#link.connected,
      outboxDepth: this.#store.outbox.pendingCount(),
      catchingUp: [...this.#lanes.values()].some((lane) => lane.replicator.pulling),
      appliedLsn: Math.max(watermark, ...defaultCursors),
      watermark,
      collections,
      ...(Object.keys(partitions).length > 0 && { partitions }),
      ...(lastSyncAt !== undefined && { lastSyncAt: new Date(lastSyncAt).toISOString() }),
      ...(nextWindow && { nextWindow: nextWindow.toISOString() }),
    };
  }

  rejections(limit?: number): Rejection[] {
    this.#assertOpen();
    return this.#store.rejections.list(limit);
  }

  /** Drops the connection to the hub; it comes back by itself with backoff. */
  disconnect(): void {
    this.#link.disconnect();
  }

  /** Stores what is queued, stops syncing and closes the database. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#writes.flush();
    clearTimeout(this.#statusTimer);
    clearInterval(this.#expiryTimer);
    await this.#scheduler.stop();
    this.#progress.close();
    this.#eachLane((lane) => lane.stop());
    await this.#link.stop();
    this.#store.close();
  }

  async #write(collection: string, key: string, op: WriteKind, value: JsonValue | undefined, options: WriteOptions): Promise<WriteReceipt> {
    this.#assertOpen();
    if (op !== 'del' && value === undefined) throw new InvalidValueError(`${op} needs a value`);
    validateWrite(collection, key, value);
    const durability = options.durability ?? this.#policy(collection).durability;
    const rep = typeof durability === 'object' ? durability.replicas : undefined;
    const receipt = await this.#writes.submit({
      collection,
      key,
      op,
      value,
      ...(options.ifVersion !== undefined && { base: options.ifVersion }),
      ...(rep !== undefined && { rep }),
    });
    if (durability === 'local') return receipt;
    // A write moved while it waits (to its partition, or renumbered): the receipt says where it is now.
    let current = receipt;
    const lane = this.#lanes.get(receipt.partition ?? DEFAULT_PARTITION)!;
    const lsn = await lane.durability.wait(
      receipt.seq,
      durability,
      options.timeoutMs ?? this.#waitTimeoutMs,
      ({ partition, incarnation, seq }) => {
        current = { hlc: receipt.hlc, incarnation, seq, ...(partition !== DEFAULT_PARTITION && { partition }) };
      },
    );
    return lsn === undefined ? current : { ...current, lsn };
  }

  async #caughtUp(collection: string, options: ReadOptions): Promise<void> {
    const { minLsn } = options;
    if (minLsn === undefined) return;
    // A causal token is an LSN of the collection's partition: compare it with that lane's log only.
    const lane = this.#lanes.get(this.#laneOf(collection))!;
    const applied = (): number => Math.max(this.#store.replica.cursor(collection), lane.replicator.watermark);
    if (applied() >= minLsn) return;
    lane.replicator.pull(); // the token may name another collection's LSN: a pull moves the watermark past it
    const timeoutMs = options.timeoutMs ?? this.#waitTimeoutMs;
    await this.#progress.wait(
      () => applied() >= minLsn,
      timeoutMs,
      () => new ReadTimeoutError(minLsn, applied(), timeoutMs),
    );
  }

  /**
   * Tells each partition's hub what this device has applied of its collections (debounced): lag
   * tracking and replica acknowledgements.
   */
  #scheduleStatus(): void {
    if (this.#statusTimer || this.#closed) return;
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      if (this.#closed) return;
      const pending = Object.entries(this.#store.outbox.pendingByCollection());
      const cursors = Object.entries(this.#store.replica.cursors());
      for (const lane of this.#lanes.values()) {
        // Each partition's hub hears of its own collections: what is applied, and what waits to go up.
        const queued = pending.filter(([c]) => lane.inLane(c)).map(([, p]) => p);
        const oldestAt = Math.min(...queued.map((p) => p.oldestAt));
        lane.send([
          'status',
          {
            applied: Object.fromEntries(cursors.filter(([c]) => lane.inLane(c))),
            outbox: queued.reduce((sum, p) => sum + p.pending, 0),
            ver: SOFTWARE_VERSION,
            ...(Number.isFinite(oldestAt) && { oldest: Math.max(0, Date.now() - oldestAt) }),
          },
        ]);
      }
    }, STATUS_DEBOUNCE_MS);
    this.#statusTimer.unref?.();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AgentClosedError();
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (this.#closed) return;
    try {
      this.#lanes.get(partitionOfTopic(topic))?.onMessage(topic, payload);
    } catch (error) {
      this.#log.warn({ err: error, topic }, 'ignored a message from the hub');
    }
  }
}

/** Opens the agent's database and starts syncing. */
export async function openAgent(options: AgentOptions): Promise<Agent> {
  return new Agent(options).start();
}

/** Whether two assignments (collection → partition) say the same, whatever the order of their keys. */
function sameAssignment(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((c) => a[c] === b[c]);
}
