import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ConfigError } from '../shared/errors.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import type { AuthLimits } from './auth-throttle.js';
import { partitionsOf, type HubConfig } from './config.js';
import type { BrokerClientHubOptions } from './external-broker.js';
import type { HubBase, HubCommonOptions } from './hub-base.js';
import type { HubOptions } from './hub.js';
import type { LeaderLock } from './leadership.js';
import type { HubStore } from './store/hub-store.js';
import { openHubStore } from './store/open-store.js';
import type { ObjectStoreLocation } from './blobs/s3-bucket.js';

/**
 * Longest a stop waits for partitions still starting, and longest a fatal error's stop may take
 * before the process ends anyway: a store that hangs must not keep a deposed process alive.
 */
export const QUIT_WITHIN_MS = 10_000;

/** Standing by for a lock failed (a dropped connection): the first wait before asking again, and the longest. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 10_000;

/** Resolves after `ms`, without keeping the process alive for it. */
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** An external broker (Mosquitto, EMQX) that every partition's hub is a client of. */
export type ExternalBrokerOptions = BrokerClientHubOptions['broker'];

/** The embedded broker's listeners: plain MQTT, TLS, or both. */
export type EmbeddedListenerOptions = Pick<
  HubOptions,
  | 'port'
  | 'host'
  | 'connectsPerAddress'
  | 'maxConnectBytes'
  | 'maxQueuedBytes'
  | 'maxInboundBytesPerSecond'
  | 'maxPendingLogins'
  | 'maxPendingLoginsPerAddress'
  | 'plain'
  | 'tls'
>;

export interface HubProcessOptions {
  /**
   * PostgreSQL URL: every partition's log is there, and several processes may share it (per
   * partition, one leads and the others stand by for its lock). Absent: SQLite in `dataDir`.
   */
  storeUrl?: string;
  /** With `storeUrl`: the S3-compatible bucket blob content goes to instead of the database. */
  objectStore?: ObjectStoreLocation;
  dataDir: string;
  /** The partitions this process serves (see servedPartitions); the first one's hub serves the HTTP API. */
  partitions: readonly string[];
  /** What carries the messages: an external broker, or the embedded one (which serves a single hub). */
  mqtt: { broker: ExternalBrokerOptions } | { embedded: EmbeddedListenerOptions };
  /** `host:port` for the HTTP API; omitted = no HTTP API. */
  http?: { host: string; port: number };
  adminToken?: string;
  /** Admit agents without credentials (development only). */
  dev: boolean;
  /** How much token checking logins may cost (default DEFAULT_AUTH_LIMITS). */
  authLimits?: AuthLimits;
  /** Page bytes built per second for one agent's pulls (default DEFAULT_PULL_BYTES_PER_SECOND). */
  maxPullBytesPerSecond?: number;
  /** Largest blob content the hub takes, over HTTP or MQTT (default DEFAULT_MAX_BLOB_BYTES). */
  maxBlobBytes?: number;
  config?: HubConfig;
  logger: Logger;
}

export interface HubProcessEvents {
  /**
   * A partition's store refuses this process as its writer (deposed, or another writer
   * committed), or its leader lock was lost: the process can commit nothing more there. It is
   * already stopping every partition, so that standbys take them all over; `stopped` settles when
   * that is done, or after QUIT_WITHIN_MS at most. Whoever runs the process should then end it
   * (a supervisor restarts it: it then stands by, or reopens the store at the true head).
   * Emitted once, and not while a stop is already under way.
   */
  fatal: [error: Error, stopped: Promise<void>];
}

/**
 * `--partitions` (each name trimmed, repeats and empty ones dropped), checked against the config;
 * by default every partition of the config. Partitions other than the default need an external
 * broker.
 */
export function servedPartitions(config: HubConfig, asked: readonly string[] | undefined, externalBroker: boolean): string[] {
  const known = partitionsOf(config);
  const served = asked === undefined ? known : [...new Set(asked.map((p) => p.trim()).filter((p) => p !== ''))];
  if (served.length === 0) throw new ConfigError('option --partitions: name at least one partition');
  const unknown = served.filter((p) => !known.includes(p));
  if (unknown.length > 0) {
    throw new ConfigError(
      `option --partitions: ${unknown.join(', ')} ${unknown.length === 1 ? 'is not a partition' : 'are not partitions'} of the hub config ` +
        `(it has ${known.join(', ')}); partitions are declared in the config's partitions section`,
    );
  }
  if (!externalBroker && known.length > 1) {
    throw new ConfigError(
      `the hub config assigns collections to partitions (${known.slice(1).join(', ')}): partitions need an external broker (--broker) ` +
        'that the hub processes share, because each agent connects to one broker and each partition may be led by another process; ' +
        'the embedded broker serves a single hub',
    );
  }
  return served;
}

/**
 * One hub process (`outpost hub`): a hub per partition it serves. Each partition is started on
 * its own: on PostgreSQL it first waits for that partition's leader lock, so a process may lead
 * some partitions and stand by for others at once. The HTTP API is the first served partition's
 * (it routes each collection to its partition's hub in this process). One partition's store
 * refusing this process, or its lock being lost, stops the whole process (`fatal`): its
 * partitions fail over to standbys.
 */
export class HubProcess extends EventEmitter<HubProcessEvents> {
  readonly #options: HubProcessOptions;
  readonly #log: Logger;
  /** The hub of each partition this process leads, once it has started. */
  readonly #leading = new Map<string, HubBase>();
  readonly #locks: LeaderLock[] = [];
  /** Aborted by a stop: whoever stands by for a lock stops waiting. */
  readonly #standingBy = new AbortController();
  /** Partitions still starting: a stop waits for them (bounded), so that none connects after its lock is released. */
  readonly #starting = new Set<Promise<void>>();
  /** Agents' credentials, for the hubs of other partitions than the default (whose store they are in). */
  #registry: HubStore | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: HubProcessOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
  }

  /**
   * Starts every served partition, and resolves once this process leads them all (on PostgreSQL
   * that may be long: until each lock is its). A partition that fails to start stops the others,
   * then the error is thrown; a stop while starting resolves it quietly.
   */
  async start(): Promise<void> {
    const { partitions, storeUrl, dataDir } = this.#options;
    // Agents' credentials live in the default partition's store; another partition's hub reads them there.
    if (partitions.some((p) => p !== DEFAULT_PARTITION)) {
      this.#registry = await openHubStore({ store: storeUrl, dataDir, maxConnections: 2 });
    }
    try {
      await Promise.all(
        partitions.map((partition, index) => {
          const start = this.#startPartition(partition, index);
          const tracked = start.catch(() => undefined).finally(() => this.#starting.delete(tracked));
          this.#starting.add(tracked);
          return start;
        }),
      );
    } catch (error) {
      if (this.#stopping) return; // stopped while partitions were starting
      await this.stop();
      throw error;
    }
    if (partitions.length > 1 || partitions[0] !== DEFAULT_PARTITION) {
      this.#log.info({ partitions }, 'leading every partition this process serves');
    }
  }

  /**
   * Stops every partition's hub, releases the locks (standbys take over) and closes the registry.
   * Partitions still starting are waited for, QUIT_WITHIN_MS at most. Once: later calls share it.
   */
  stop(): Promise<void> {
    return (this.#stopping ??= (async () => {
      this.#standingBy.abort(new Error('the hub is stopping'));
      await Promise.race([Promise.allSettled([...this.#starting]), delay(QUIT_WITHIN_MS)]);
      await Promise.allSettled([...this.#leading.values()].map((hub) => hub.stop()));
      await Promise.allSettled(this.#locks.map((lock) => lock.release()));
      await this.#registry?.close();
    })());
  }

  /** Once, and bounded: stop every partition, so that standbys take them all over; then say so. */
  #fatal(why: string, partition: string, error: Error): void {
    if (this.#stopping) return;
    this.#log.error({ partition, err: error.message }, why);
    const stopped = Promise.race([this.stop().catch(() => undefined), delay(QUIT_WITHIN_MS)]);
    this.emit('fatal', error, stopped);
  }

  /**
   * Waits for a partition's lock. Once this process leads some partition, a failure while it
   * stands by for another (a dropped connection) is retried, not allowed to stop what it leads;
   * before that, it fails the start (a wrong --store is said at once).
   */
  async #acquire(url: string, partition: string): Promise<LeaderLock> {
    const { LeaderLock } = await import('./leadership.js');
    const signal = this.#standingBy.signal;
    for (let delayMs = RETRY_FIRST_MS; ; delayMs = Math.min(delayMs * 2, RETRY_MAX_MS)) {
      try {
        return await LeaderLock.acquire(url, { log: this.#log, partition, signal });
      } catch (error) {
        if (signal.aborted || this.#leading.size === 0) throw error;
        this.#log.warn(
          { partition, err: (error as Error).message, retryInMs: delayMs },
          "could not stand by for this partition's lock; trying again",
        );
        await sleep(delayMs, undefined, { signal, ref: false });
      }
    }
  }

  async #startPartition(partition: string, index: number): Promise<void> {
    const options = this.#options;
    const { storeUrl, dataDir, objectStore } = options;
    // On PostgreSQL several hub processes may share the database: per partition, one leads and the others stand by.
    const lock = storeUrl === undefined ? undefined : await this.#acquire(storeUrl, partition);
    if (lock) {
      if (this.#stopping) {
        await lock.release();
        return;
      }
      this.#locks.push(lock);
      lock.onLost((error) => this.#fatal('lost the leader lock; stopping', partition, error));
    }
    const store = await openHubStore({
      store: storeUrl,
      dataDir,
      partition,
      ...(lock && { epoch: lock.epoch }),
      ...(objectStore && { objectStore }),
    });
    const common: HubCommonOptions = {
      dataDir,
      store,
      partition,
      ...(lock && { epoch: lock.epoch }),
      dev: options.dev,
      ...(options.authLimits && { authLimits: options.authLimits }),
      ...(options.maxPullBytesPerSecond !== undefined && { maxPullBytesPerSecond: options.maxPullBytesPerSecond }),
      ...(options.maxBlobBytes !== undefined && { maxBlobBytes: options.maxBlobBytes }),
      logger: this.#log,
      ...(partition !== DEFAULT_PARTITION && this.#registry && { registry: this.#registry }),
      // The HTTP API is the first served partition's only; it reaches the others through `#leading`.
      ...(index === 0 && options.http !== undefined && { http: options.http }),
      ...(options.adminToken !== undefined && { adminToken: options.adminToken }),
      ...(options.config && { config: options.config }),
      partitionHubs: () => this.#leading,
    };
    // Only the carrier in use is loaded: MQTT.js for an external broker, aedes for the embedded one.
    let hub: HubBase;
    if ('broker' in options.mqtt) {
      const { BrokerClientHub } = await import('./external-broker.js');
      hub = await BrokerClientHub.start({ ...common, broker: options.mqtt.broker });
    } else {
      const { Hub } = await import('./hub.js');
      hub = await Hub.start({ ...common, ...options.mqtt.embedded });
    }
    if (this.#stopping) {
      await hub.stop();
      return;
    }
    this.#leading.set(partition, hub);
    // Deposed, or another writer committed: this process can commit nothing more here.
    hub.core.on('fatal', (error) => this.#fatal('the store refuses this hub as its writer; stopping', partition, error));
  }
}
