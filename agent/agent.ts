import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { AgentClosedError, InvalidValueError, ReadTimeoutError } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import type { CollectionPolicy, HubStatusMessage } from '../shared/messages.js';
import { upCodec } from '../shared/codec.js';
import { byeTopic, DEFAULT_PARTITION } from '../shared/topics.js';
import { limits } from '../shared/limits.js';
import { isPlainObject, type JsonValue } from '../shared/values.js';
import { Lane } from './lane.js';
import { Lanes } from './lanes.js';
import { Link } from './link.js';
import { PolicyCache } from './policy-cache.js';
import { ProgressWaiters } from './progress-waiters.js';
import { SyncScheduler } from './scheduler.js';
import { DEFAULT_SCRUB_BYTES_PER_MINUTE, Scrubber } from './scrubber.js';
import { VerificationBook } from './verification-book.js';
import { agentStatus, reportStatus } from './status.js';
import { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';
import type { AgentDocument } from './store/replica.js';
import type { WriteKind } from './store/writes.js';
import type { Transport, TransportFactory } from './transport.js';
import type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';
import { validateWrite } from './write-validation.js';
import { appliedChanges } from './applied-changes.js';
import { WriteQueue, type WriteReceipt } from './write-queue.js';

/** Status reports to the hub wait this long, so a burst of changes sends one. */
const STATUS_DEBOUNCE_MS = 50;
/** How often pending writes are checked against their collection's TTL. */
const EXPIRY_CHECK_MS = 1_000;

export type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';

/**
 * An Outpost agent: a local SQLite replica and durable outbox, synchronised with the hub over
 * MQTT. Writes resolve once durable on the device (offline too); reads never need the network
 * and show the device's own pending writes over the confirmed replica.
 *
 * The hub may split its collections into partitions, each its own log led by its own hub
 * process; the agent then syncs one lane per partition (agent/lane.ts, agent/lanes.ts) over one connection. It
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
  readonly #lanes: Lanes;
  readonly #log: Logger;
  readonly #progress = new ProgressWaiters();
  readonly #waitTimeoutMs: number;
  #statusTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #verification: VerificationBook;
  readonly #scrubber: Scrubber;

  constructor(options: AgentOptions) {
    super();
    this.id = options.agentId;
    this.#log = options.logger ?? pino({ level: 'silent' });
    this.#store = new AgentStore(options.dataDir);
    this.#policies = new PolicyCache(this.#store.settings);
    if (options.storageLimitBytes !== undefined) this.#store.settings.setStorageLimit(options.storageLimitBytes);
    this.#clock = new HybridClock(options.now, this.#store.settings.lastHlc);
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 10_000;
    this.#verification = new VerificationBook(this.#store.settings);
    this.#lanes = new Lanes(
      this.#store,
      options.collections,
      {
        lane: (partition, inPartition) => this.#newLane(partition, inPartition, options),
        subscribe: (filters) => this.#link.subscribe(filters),
        connected: () => this.#link.connected,
        closed: () => this.#closed,
        onMoved: (moved) => this.emit('moved', moved),
      },
      this.#log,
    );
    // The partition is chosen when the write is stored, by the assignment known then.
    this.#writes = new WriteQueue(
      this.#store,
      this.#clock,
      (collections, dropped) => this.#afterWrite(collections, dropped),
      (c) => this.#policy(c),
      (c) => this.#lanes.partitionOf(c),
    );
    this.#scrubber = new Scrubber(
      this.#store,
      (collection, keys) => this.#lanes.laneOf(collection)?.verifier.repairKeys(collection, keys),
      options.scrubBytesPerMinute ?? DEFAULT_SCRUB_BYTES_PER_MINUTE,
      this.#log,
    );
    const subscriptions = this.#lanes.subscriptions();
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
            farewell: (session) => ({ topic: byeTopic(options.agentId), payload: upCodec.encode(['bye', { s: session }]) }),
          },
          delegate,
        ));
    this.#link = transport(
      {
        onConnected: () => {
          this.#lanes.onConnected();
          this.#scheduleStatus();
          this.emit('connected');
        },
        onDisconnected: () => {
          this.#lanes.onDisconnected();
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
        pump: () => this.#lanes.pumpAll(),
        pull: () => this.#lanes.pullAll(),
        idle: () => this.#store.outbox.pendingCount() === 0 && !this.#lanes.pulling,
        onWindow: (open) => this.emit('window', open),
      },
      this.#log,
    );
  }

  #newLane(partition: string, inPartition: (collection: string) => boolean, options: AgentOptions): Lane {
    return new Lane(
      partition,
      this.id,
      this.#store,
      this.#clock,
      inPartition,
      {
        collections: options.collections,
        pageLimit: options.pageLimit ?? limits.maxPullPage,
        ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
        verification: this.#verification,
        verifyIntervalMs: options.verifyIntervalMs ?? 60_000,
      },
      {
        publish: (topic, payload) => this.#link.publish(topic, payload),
        connected: () => this.#link.connected,
        session: () => this.#link.session,
        // Nothing goes up before the hub's assignment is known: a write must join its partition's sequence.
        mayUpload: () => this.#lanes.routed && this.#scheduler.mayUpload(),
        routed: () => this.#lanes.routed,
        onApplied: (changes) => this.listenerCount('change') > 0 && this.emit('change', appliedChanges(changes)),
        onEvicted: (documents) => this.emit('evicted', documents),
        onRepaired: (collection, written, removed) => this.emit('repaired', { collection, written: appliedChanges(written), removed }),
        onProgress: () => {
          this.#progress.notify();
          this.#scheduleStatus();
        },
        onRejected: (rejections) => this.emit('rejection', rejections),
        onReincarnated: (previous, next) => this.emit('reincarnated', previous, next),
        onRestored: (info) => this.emit('restored', info),
        onHubStatus: (status) => this.#onHubStatus(partition, status),
      },
      this.#log,
    );
  }

  /** The default partition's hub status carries the collection policies and the assignment of collections to partitions. */
  #onHubStatus(partition: string, status: HubStatusMessage[1]): void {
    // A hub that just started (or a standby that took over behind the same broker) knows nothing
    // of this device: tell it what is applied and which writes wait for replicas.
    this.#scheduleStatus();
    if (partition !== DEFAULT_PARTITION) return;
    this.#policies.update(status);
    this.#lanes.adopt(status.parts ?? {});
  }

  /** Starts syncing in the background; the agent serves reads and writes at once, online or not. */
  start(): this {
    this.#lanes.start();
    this.#scheduler.start();
    this.#scrubber.start();
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
    this.#lanes.pumpFor(collections);
  }

  /** Gives up writes past their collection's TTL; the app hears of each. */
  #expire(): void {
    if (this.#closed) return;
    try {
      const expired = this.#store.outbox.expire((c) => this.#policy(c).ttlSeconds);
      if (expired.length === 0) return;
      this.#log.warn({ count: expired.length }, 'pending writes expired before they could be uploaded');
      this.emit('rejection', expired);
      this.#lanes.pumpAll();
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
    const { lastSyncAt, nextWindow } = this.#scheduler;
    return agentStatus(this.#store, this.#lanes, {
      agentId: this.id,
      connected: this.#link.connected,
      lastSyncAt,
      nextWindow,
      verification: this.#verification.report,
      scrub: this.#scrubber.status,
    });
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
    this.#scrubber.stop();
    await this.#scheduler.stop();
    this.#progress.close();
    this.#lanes.stop();
    await this.#link.stop();
    this.#store.close();
  }

  async #write(collection: string, key: string, op: WriteKind, value: JsonValue | undefined, options: WriteOptions): Promise<WriteReceipt> {
    this.#assertOpen();
    if (op !== 'del' && value === undefined) throw new InvalidValueError(`${op} needs a value`);
    const encoded = validateWrite(collection, key, value);
    const durability = options.durability ?? this.#policy(collection).durability;
    const rep = typeof durability === 'object' ? durability.replicas : undefined;
    const receipt = await this.#writes.submit({
      collection,
      key,
      op,
      value: encoded,
      ...(options.ifVersion !== undefined && { base: options.ifVersion }),
      ...(rep !== undefined && { rep }),
    });
    if (durability === 'local') return receipt;
    return this.#lanes.waitFor(receipt, collection, durability, options.timeoutMs ?? this.#waitTimeoutMs);
  }

  async #caughtUp(collection: string, options: ReadOptions): Promise<void> {
    const { minLsn } = options;
    if (minLsn === undefined) return;
    // A causal token is an LSN of the collection's partition: compare it with that lane's log only.
    const lane = this.#lanes.laneOf(collection)!;
    const applied = (): number => Math.max(this.#store.replica.cursor(collection), lane.watermark);
    if (applied() >= minLsn) return;
    lane.pull(); // the token may name another collection's LSN: a pull moves the watermark past it
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
      reportStatus(this.#store, this.#lanes, this.#verification.report);
    }, STATUS_DEBOUNCE_MS);
    this.#statusTimer.unref?.();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AgentClosedError();
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (this.#closed) return;
    try {
      this.#lanes.onMessage(topic, payload);
    } catch (error) {
      this.#log.warn({ err: error, topic }, 'ignored a message from the hub');
    }
  }
}

/** Opens the agent's database and starts syncing. */
export async function openAgent(options: AgentOptions): Promise<Agent> {
  return new Agent(options).start();
}
