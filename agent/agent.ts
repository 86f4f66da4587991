import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { AgentClosedError, InvalidValueError } from '../shared/errors.js';
import { HybridClock } from '../shared/hlc.js';
import type { CollectionPolicy, HubStatusMessage } from '../shared/messages.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { limits } from '../shared/limits.js';
import { isPlainObject, type JsonValue } from '../shared/values.js';
import { Lane } from './lane.js';
import { Lanes } from './lanes.js';
import { mqttLink } from './link.js';
import { PolicyCache } from './policy-cache.js';
import { ProgressWaiters } from './progress-waiters.js';
import { SyncScheduler } from './scheduler.js';
import { DEFAULT_SCRUB_BYTES_PER_MINUTE, Scrubber } from './scrubber.js';
import { VerificationBook } from './verification-book.js';
import { agentStatus, reportStatus, StatusReporter } from './status.js';
import { AgentStore } from './store/agent-store.js';
import type { Rejection } from './store/rejections.js';
import type { AgentDocument } from './store/replica.js';
import type { WriteKind } from './store/writes.js';
import type { Transport } from './transport.js';
import type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';
import { validateWrite } from './write-validation.js';
import { appliedChanges } from './applied-changes.js';
import { DeviceBlobs, type BlobData, type BlobHandle, type BlobReceipt } from './blobs/device-blobs.js';
import { WriteExpiry } from './write-expiry.js';
import { metered } from './metered-transport.js';
import { TransferBudget } from './transfer-budget.js';
import { SyncGates } from './sync-gates.js';
import { WriteQueue, type WriteReceipt } from './write-queue.js';

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
  readonly #expiry: WriteExpiry;
  readonly #lanes: Lanes;
  readonly #log: Logger;
  readonly #progress = new ProgressWaiters();
  readonly #waitTimeoutMs: number;
  readonly #statusReports: StatusReporter;
  #closed = false;
  readonly #verification: VerificationBook;
  readonly #scrubber: Scrubber;
  readonly #blobs: DeviceBlobs;
  readonly #budget: TransferBudget;
  readonly #gates: SyncGates;

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
    const report = (): void => reportStatus(this.#store, this.#lanes, this.#verification.report, this.#gates.budgetStatus());
    this.#statusReports = new StatusReporter(report);
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
    // A new day or month of the transfer budget (or a larger one declared): what waited for it goes now.
    const renewed = (): void => this.#lanes.resume();
    this.#budget = new TransferBudget(this.#store.settings, options.transferBudget ?? {}, renewed, options.transferBudget?.now);
    this.#gates = new SyncGates(
      this.#store,
      this.#policies,
      this.#budget,
      () => this.#lanes,
      () => this.#scheduler,
    );
    this.#expiry = new WriteExpiry(
      this.#store,
      (c) => this.#policy(c).ttlSeconds,
      (expired) => {
        this.emit('rejection', expired);
        this.#lanes.pumpAll();
      },
      this.#log,
    );
    this.#blobs = new DeviceBlobs(
      this.#store,
      this.#clock,
      { dataDir: options.dataDir, ackTimeoutMs: options.ackTimeoutMs ?? 10_000, ...options.blobs },
      {
        send: (c, message) => this.#lanes.laneOf(c)?.send(message) ?? false,
        connected: () => this.#link.connected,
        mayUpload: () => this.#gates.blobUploads(),
        mayMoveChunks: () => this.#gates.blobChunks(),
        documentsBusy: () => [...this.#lanes].some((lane) => lane.uploading),
        partitionOf: (c) => this.#lanes.partitionOf(c),
        policy: (c) => this.#policy(c),
        read: (c, k) => this.#store.replica.read(c, k),
        onQueued: (c, dropped) => this.#afterWrite(new Set([c]), dropped),
        onRejected: (rejections) => this.emit('rejection', rejections),
      },
      this.#log,
    );
    const transport = metered(options.transport ?? ((delegate, filters) => mqttLink(options, filters, this.#log, delegate)), (bytes) =>
      this.#budget.spend(bytes),
    );
    this.#link = transport(
      {
        onConnected: () => {
          this.#lanes.onConnected();
          this.#blobs.onLink();
          this.#statusReports.schedule();
          this.emit('connected');
        },
        onDisconnected: () => {
          this.#lanes.onDisconnected();
          this.#blobs.onLink();
          this.emit('disconnected');
        },
        onMessage: (topic, payload) => this.#onMessage(topic, payload),
      },
      this.#lanes.subscriptions(),
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
        mayUpload: (partition) => this.#gates.uploads(partition),
        mayPull: () => this.#gates.pulls(),
        onApplied: (changes) => {
          this.#blobs.onApplied(changes);
          if (this.listenerCount('change') > 0) this.emit('change', appliedChanges(changes));
        },
        onEvicted: (documents) => this.emit('evicted', documents),
        onRepaired: (collection, written, removed) => this.emit('repaired', { collection, written: appliedChanges(written), removed }),
        onProgress: () => {
          this.#progress.notify();
          this.#statusReports.schedule();
        },
        onRejected: (rejections) => this.emit('rejection', rejections),
        onReincarnated: (previous, next) => this.emit('reincarnated', previous, next),
        onRestored: (info) => this.emit('restored', info),
        onHubStatus: (status) => this.#onHubStatus(partition, status),
        onDeviceMessage: (message) => (message[0] === 'budget' ? this.#budget.declare(message[1]) : this.#blobs.onMessage(message)),
      },
      this.#log,
    );
  }

  /** The default partition's hub status carries the collection policies and the assignment of collections to partitions. */
  #onHubStatus(partition: string, status: HubStatusMessage[1]): void {
    // A hub that just started (or a standby that took over behind the same broker) knows nothing
    // of this device: tell it what is applied and which writes wait for replicas.
    this.#statusReports.schedule();
    if (partition !== DEFAULT_PARTITION) return;
    this.#policies.update(status);
    if (!status.budgets) this.#budget.declare({}); // the hub declares none (any more)
    this.#lanes.adopt(status.parts ?? {});
  }

  /** Starts syncing in the background; the agent serves reads and writes at once, online or not. */
  start(): this {
    this.#lanes.start();
    this.#scheduler.start();
    this.#scrubber.start();
    this.#blobs.start();
    this.#budget.start();
    this.#expiry.start();
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

  /**
   * Writes a blob (agent/blobs/), durable on the device when it resolves; its content uploads in the lowest lane, and its
   * document commits once the hub holds it whole.
   */
  putBlob(collection: string, key: string, data: BlobData, options: { contentType?: string } = {}): Promise<BlobReceipt> {
    this.#assertOpen();
    return this.#blobs.put(collection, key, data, options.contentType ?? 'application/octet-stream');
  }

  /** A document's blob with its content held on the device (fetched first if need be); undefined if there is no document. */
  getBlob(collection: string, key: string, options: { timeoutMs?: number } = {}): Promise<BlobHandle | undefined> {
    this.#assertOpen();
    return this.#blobs.get(collection, key, options.timeoutMs ?? this.#waitTimeoutMs);
  }

  async get(collection: string, key: string, options: ReadOptions = {}): Promise<AgentDocument | undefined> {
    this.#assertOpen();
    await this.#caughtUp(collection, options);
    return this.#blobs.laidOver(collection, key, this.#store.replica.read(collection, key, options.confirmed), options.confirmed);
  }

  async list(collection: string, options: ListOptions = {}): Promise<AgentDocument[]> {
    this.#assertOpen();
    await this.#caughtUp(collection, options);
    const range = { ...options, limit: Math.min(options.limit ?? 100, 1000) };
    const page = this.#store.replica.list(collection, { ...range, confirmedOnly: options.confirmed ?? false });
    return this.#blobs.laidOverPage(collection, page, range, (key) => this.#store.replica.read(collection, key));
  }

  get closed(): boolean {
    return this.#closed;
  }

  status(): AgentStatus {
    this.#assertOpen();
    const { lastSyncAt, nextWindow } = this.#scheduler;
    const status = agentStatus(this.#store, this.#lanes, {
      agentId: this.id,
      connected: this.#link.connected,
      lastSyncAt,
      nextWindow,
      verification: this.#verification.report,
      scrub: this.#scrubber.status,
    });
    const budget = this.#gates.budgetStatus();
    return { ...status, blobs: this.#blobs.status(), ...(budget && { budget }) };
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
    this.#statusReports.stop();
    this.#expiry.stop();
    this.#scrubber.stop();
    await this.#scheduler.stop();
    this.#progress.close();
    this.#lanes.stop();
    await this.#link.stop();
    await this.#blobs.stop();
    this.#budget.stop();
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

  #caughtUp(collection: string, { minLsn, timeoutMs }: ReadOptions): Promise<void> {
    if (minLsn === undefined) return Promise.resolve();
    // A causal token is an LSN of the collection's partition: compare it with that lane's log only.
    const cursor = (): number => this.#store.replica.cursor(collection);
    return this.#progress.caughtUp(this.#lanes.laneOf(collection)!, cursor, minLsn, timeoutMs ?? this.#waitTimeoutMs);
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
