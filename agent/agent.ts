import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { broadcastCodec, downCodec, upCodec } from '../shared/codec.js';
import { AgentClosedError, InvalidValueError, ReadTimeoutError } from '../shared/errors.js';
import { HybridClock, type Hlc } from '../shared/hlc.js';
import type { CollectionPolicy, DownMessage, UpMessage } from '../shared/messages.js';
import { SOFTWARE_VERSION } from '../shared/protocol-version.js';
import { collectionOfTopic, topics } from '../shared/topics.js';
import { isPlainObject, type JsonValue } from '../shared/values.js';
import { DurabilityWaiters } from './durability.js';
import { Link } from './link.js';
import { PolicyCache } from './policy-cache.js';
import { ProgressWaiters } from './progress-waiters.js';
import { SyncScheduler } from './scheduler.js';
import type { Transport, TransportFactory } from './transport.js';
import type { AgentEvents, AgentOptions, AgentStatus, ListOptions, ReadOptions, WriteOptions } from './types.js';
import { validateWrite } from './write-validation.js';
import { Replicator } from './replicator.js';
import { AgentStore, type AgentDocument, type Rejection, type WriteKind } from './store.js';
import { Uploader } from './uploader.js';
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
  readonly #uploader: Uploader;
  readonly #replicator: Replicator;
  readonly #log: Logger;
  readonly #durability: DurabilityWaiters;
  readonly #progress = new ProgressWaiters();
  readonly #waitTimeoutMs: number;
  #statusTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: AgentOptions) {
    super();
    this.id = options.agentId;
    this.#log = options.logger ?? pino({ level: 'silent' });
    this.#store = new AgentStore(options.dataDir);
    this.#policies = new PolicyCache(this.#store);
    if (options.storageLimitBytes !== undefined) this.#store.setStorageLimit(options.storageLimitBytes);
    this.#clock = new HybridClock(options.now, this.#store.lastHlc);
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 10_000;
    this.#durability = new DurabilityWaiters(() => this.#link.connected);
    this.#uploader = new Uploader(this.#store, {
      send: (batch) => this.#send(batch),
      mayUpload: () => this.#scheduler.mayUpload(),
      isReplicated: (c) => this.#replicator.replicates(c),
      onAcked: (results) => this.#durability.onResults(results),
      onRejected: (rejections) => this.emit('rejection', rejections),
    }, { maxBatchOps: 500, maxBatchBytes: 256 * 1024, maxInFlight: 4, ackTimeoutMs: options.ackTimeoutMs ?? 10_000 }, this.#log);
    this.#replicator = new Replicator(this.#store, {
      send: (pull) => this.#send(pull),
      onApplied: (changes) => this.emit('change', changes),
      onProgress: () => {
        this.#progress.notify();
        this.#scheduleStatus();
      },
    }, { collections: options.collections, pageLimit: options.pageLimit ?? 500, pullTimeoutMs: options.ackTimeoutMs ?? 10_000 }, this.#log);
    this.#writes = new WriteQueue(this.#store, this.#clock, (collections, dropped) => this.#afterWrite(collections, dropped), (c) => this.#policy(c));
    const collectionTopics = options.collections?.map((c) => topics.collection(c)) ?? [topics.allCollections];
    const subscriptions = [topics.down(options.agentId), topics.hub, ...collectionTopics];
    const transport: TransportFactory = options.transport ?? ((delegate) => new Link({
      url: options.hubUrl,
      clientId: options.agentId,
      ...(options.hubToken !== undefined && { username: options.agentId, password: options.hubToken }),
      ...(options.tls && { tls: options.tls }),
      subscriptions,
      backoff: options.reconnect ?? { initialMs: 500, maxMs: 30_000 },
      log: this.#log,
    }, delegate));
    this.#link = transport({
      onConnected: () => {
        this.#uploader.reset();
        this.#uploader.pump();
        this.#replicator.onConnected();
        this.#scheduleStatus();
        this.emit('connected');
      },
      onDisconnected: () => {
        this.#uploader.reset();
        this.#replicator.onDisconnected();
        this.emit('disconnected');
      },
      onMessage: (topic, payload) => this.#onMessage(topic, payload),
    }, subscriptions);
    this.#scheduler = new SyncScheduler(options.sync ?? { mode: 'realtime' }, {
      connect: () => this.#link.start(),
      disconnect: () => this.#link.stop(),
      connected: () => this.#link.connected,
      pump: () => this.#uploader.pump(),
      pull: () => this.#replicator.pull(),
      idle: () => this.#store.pendingCount() === 0 && !this.#replicator.pulling,
      onWindow: (open) => this.emit('window', open),
    }, this.#log);
  }

  /** Starts syncing in the background; the agent serves reads and writes at once, online or not. */
  start(): this {
    this.#uploader.start();
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
    this.#uploader.pump();
  }

  /** Gives up writes past their collection's TTL; the app hears of each. */
  #expire(): void {
    if (this.#closed) return;
    try {
      const expired = this.#store.expire((c) => this.#policy(c).ttlSeconds);
      if (expired.length === 0) return;
      this.#log.warn({ count: expired.length }, 'pending writes expired before they could be uploaded');
      this.emit('rejection', expired);
      this.#uploader.pump();
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
    return this.#store.read(collection, key, options.confirmed);
  }

  async list(collection: string, options: ListOptions = {}): Promise<AgentDocument[]> {
    this.#assertOpen();
    await this.#caughtUp(collection, options);
    return this.#store.list(collection, {
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
    const cursors = this.#store.cursors();
    const pending = this.#store.pendingByCollection();
    const watermark = this.#store.watermark;
    const now = Date.now();
    const collections: AgentStatus['collections'] = {};
    for (const c of new Set([...Object.keys(cursors), ...Object.keys(pending)])) {
      const p = pending[c];
      const applied = Math.max(cursors[c] ?? 0, watermark);
      const lag = Math.max(0, (this.#replicator.heads.get(c) ?? 0) - applied);
      collections[c] = { appliedLsn: cursors[c] ?? 0, lag, pending: p?.pending ?? 0, ...(p && { oldestPendingAgeMs: now - p.oldestAt }) };
    }
    const { lastSyncAt, nextWindow } = this.#scheduler;
    return {
      agentId: this.id,
      incarnation: this.#store.incarnation,
      connected: this.#link.connected,
      outboxDepth: this.#store.pendingCount(),
      appliedLsn: Math.max(watermark, ...Object.values(cursors)),
      watermark,
      collections,
      ...(lastSyncAt !== undefined && { lastSyncAt: new Date(lastSyncAt).toISOString() }),
      ...(nextWindow && { nextWindow: nextWindow.toISOString() }),
    };
  }

  rejections(limit?: number): Rejection[] {
    this.#assertOpen();
    return this.#store.rejections(limit);
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
    this.#durability.close();
    this.#progress.close();
    this.#uploader.stop();
    this.#replicator.stop();
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
      collection, key, op, value,
      ...(options.ifVersion !== undefined && { base: options.ifVersion }),
      ...(rep !== undefined && { rep }),
    });
    if (durability === 'local') return receipt;
    const lsn = await this.#durability.wait(receipt.seq, durability, options.timeoutMs ?? this.#waitTimeoutMs);
    return lsn === undefined ? receipt : { ...receipt, lsn };
  }

  async #caughtUp(collection: string, options: ReadOptions): Promise<void> {
    const { minLsn } = options;
    if (minLsn === undefined) return;
    const applied = (): number => Math.max(this.#store.cursor(collection), this.#store.watermark);
    if (applied() >= minLsn) return;
    this.#replicator.pull(); // the token may name another collection's LSN: a pull moves the watermark past it
    const timeoutMs = options.timeoutMs ?? this.#waitTimeoutMs;
    await this.#progress.wait(() => applied() >= minLsn, timeoutMs, () => new ReadTimeoutError(minLsn, applied(), timeoutMs));
  }

  /** Tells the hub what this device has applied (debounced): lag tracking and replica acknowledgements. */
  #scheduleStatus(): void {
    if (this.#statusTimer || this.#closed) return;
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      if (this.#closed) return;
      const oldestAt = Math.min(...Object.values(this.#store.pendingByCollection()).map((p) => p.oldestAt));
      this.#send(['status', {
        applied: this.#store.cursors(), outbox: this.#store.pendingCount(), ver: SOFTWARE_VERSION,
        ...(Number.isFinite(oldestAt) && { oldest: Math.max(0, Date.now() - oldestAt) }),
      }]);
    }, STATUS_DEBOUNCE_MS);
    this.#statusTimer.unref?.();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AgentClosedError();
  }

  #send(message: UpMessage): boolean {
    return this.#link.publish(topics.up(this.id), upCodec.encode(message));
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (this.#closed) return;
    try {
      if (topic === topics.down(this.id)) {
        const message = downCodec.decode(payload);
        if (message[0] !== 'error' && this.#isDeposed(message[1].epoch)) return;
        this.#onDown(message);
      } else if (collectionOfTopic(topic) !== undefined || topic === topics.hub) {
        const message = broadcastCodec.decode(payload);
        if (this.#isDeposed(message[1].epoch)) return;
        this.#clock.observe(message[1].hlc as Hlc);
        if (message[0] === 'changes') this.#replicator.onChanges(message);
        else {
          this.#policies.update(message[1]);
          // A hub (re)started or took over: change sets it committed but never published (it
          // died first) are found only by pulling, and a quiet collection would not reveal them.
          if (message[1].head > this.#store.watermark) this.#replicator.pull();
        }
      }
    } catch (error) {
      this.#log.warn({ err: error, topic }, 'ignored a message from the hub');
    }
  }

  /**
   * Whether a message comes from a hub process that has since been replaced (a lower leadership
   * epoch than one already heard). The highest epoch is kept across restarts.
   */
  #isDeposed(epoch: number | undefined): boolean {
    if (epoch === undefined) return false;
    const highest = (this.#hubEpoch ??= this.#store.getSetting<number>('hubEpoch') ?? 0);
    if (epoch < highest) {
      this.#log.warn({ epoch, highest }, 'ignored a message from a deposed hub process (lower leadership epoch)');
      return true;
    }
    if (epoch > highest) {
      this.#store.setSetting('hubEpoch', epoch);
      this.#hubEpoch = epoch;
      // A new leader: acks for batches the old one took are lost; resend them now, not after the ack timeout.
      if (highest > 0) {
        this.#uploader.reset();
        this.#uploader.pump();
      }
    }
    return false;
  }

  /** The highest leadership epoch heard from the hub (loaded on first use). */
  #hubEpoch: number | undefined;

  #onDown(message: DownMessage): void {
    // Every hub message but an error carries the hub's clock: advance past it.
    if (message[0] !== 'error') this.#clock.observe(message[1].hlc as Hlc);
    switch (message[0]) {
      case 'ack':
        this.#uploader.onAck(message);
        break;
      case 'resync':
        this.#uploader.onResync(message);
        break;
      case 'page':
        this.#replicator.onPage(message);
        break;
      case 'snapshot':
        this.#replicator.onSnapshot(message);
        break;
      case 'replicated':
        if (message[1].inc === this.#store.incarnation) this.#durability.onReplicated(message[1].seqs);
        break;
      case 'reincarnate': {
        if (message[1].inc !== this.#store.incarnation) break;
        const previous = this.#store.incarnation;
        const next = this.#store.reincarnate();
        this.#log.warn({ previous, next, seq: message[1].seq },
          'the hub holds other writes under this database\'s sequence numbers (restored from a backup?); resending the queue under a new incarnation');
        this.emit('reincarnated', previous, next);
        this.#uploader.reset();
        this.#uploader.pump();
        break;
      }
      case 'error':
        this.#log.error({ code: message[1].code }, `hub reported: ${message[1].message}`);
        break;
    }
  }
}

/** Opens the agent's database and starts syncing. */
export async function openAgent(options: AgentOptions): Promise<Agent> {
  return new Agent(options).start();
}
