import { DEFAULT_MAX_BLOB_BYTES } from '../shared/blobs.js';
import { closeWithin } from '../shared/http-close.js';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import type { AuthLimits } from './auth-throttle.js';
import { Authenticator } from './authenticator.js';
import { brokerAuth, type BrokerServiceUser } from './broker-auth.js';
import type { HubConfig } from './config.js';
import { HubCore } from './core.js';
import type { HubStore } from './store/hub-store.js';
import { openHubStore } from './store/open-store.js';
import { fleetStatus, type AgentView, type Presence } from './fleet.js';
import { FleetHistory } from './history.js';
import { createHubApi } from './hub-api.js';
import { createHubHttp, type HubHttp } from './http.js';
import { LabelCache } from './label-cache.js';
import type { Labels } from './labels.js';
import { ConfigError } from '../shared/errors.js';
import { ShedLog } from './shed.js';

/** What every hub takes, whichever broker carries its messages. */
export interface HubCommonOptions {
  /** `host:port` for the HTTP API; omitted = no HTTP API. */
  http?: { host: string; port: number };
  dataDir: string;
  /**
   * The primary store (this partition's log), which the hub closes when it stops. Default: SQLite
   * in `dataDir` (another partition's in its own directory there, see sqliteDirOf), opened by
   * `start`.
   */
  store?: HubStore;
  /**
   * Where agents' credentials live: the default partition's store, which `outpost hub agents`
   * writes. Default: `store` (a hub of the default partition, or one without partitions).
   * Whoever opened it closes it; the hub only reads it.
   */
  registry?: HubStore;
  /** The partition this hub is the log of (default `default`; see HubCoreOptions.partition). */
  partition?: string;
  /**
   * The hubs of every partition this process leads, this one included (default: this one). The
   * HTTP API, served by one of them, routes each collection's reads and writes to its
   * partition's hub through it, and lists them in `/v1/status`.
   */
  partitionHubs?: () => ReadonlyMap<string, HubBase>;
  /** The leadership epoch this process writes as (hub/leadership.ts); none without failover. */
  epoch?: number;
  /** Admit agents without credentials (development only). */
  dev?: boolean;
  /** How much token checking logins may cost (default DEFAULT_AUTH_LIMITS). */
  authLimits?: AuthLimits;
  /** Page bytes built per second for one agent's pulls (default DEFAULT_PULL_BYTES_PER_SECOND). */
  maxPullBytesPerSecond?: number;
  /** Collections, policies and retention; defaults when omitted. */
  config?: HubConfig;
  /** How often the dashboard's throughput and lag are sampled (default 5 s). */
  historyEveryMs?: number;
  /** Bearer token for the HTTP API; required when it listens beyond loopback. */
  adminToken?: string;
  /** Largest blob content the HTTP API takes (default DEFAULT_MAX_BLOB_BYTES). */
  maxBlobBytes?: number;
  logger?: Logger;
}

/**
 * Builds a hub on its store: the one given, or the default SQLite one (HubCommonOptions.store),
 * which is closed again if the hub cannot be built on it (its config refused, say).
 */
export async function onStore<T>(common: HubCommonOptions, build: (store: HubStore) => T): Promise<T> {
  if (common.store) return build(common.store);
  const store = await openHubStore({ dataDir: common.dataDir, ...(common.partition !== undefined && { partition: common.partition }) });
  try {
    return build(store);
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** Runs a new hub's start; one that fails is stopped (closing what it had opened) before the error is thrown. */
export async function startOrStop<T extends HubBase>(hub: T, start: () => Promise<void>): Promise<T> {
  try {
    await hub.core.prepare();
    await start();
  } catch (error) {
    await hub.stop();
    throw error;
  }
  return hub;
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || host.startsWith('127.');

/** How often the hub looks for credential changes made by another process. */
const CREDENTIAL_CHECK_MS = 500;

/** What a hub tells whoever listens. */
export interface HubEvents {
  /**
   * Agents' labels changed (from another process: `outpost hub agents label`); `labelsOf` gives
   * their new labels already. An agent's scope depends on its labels: whoever keeps scopes listens.
   */
  labels: [agentIds: string[]];
}

/**
 * What the embedded-broker hub and the external-broker hub share: the protocol core, the
 * authenticator, fleet status and history, the HTTP API and the watch on credentials and labels
 * written by `outpost hub agents`. A subclass carries the messages and says who is online.
 */
export abstract class HubBase extends EventEmitter<HubEvents> {
  readonly core: HubCore;
  readonly log: Logger;
  readonly authenticator: Authenticator;
  /** Agents' credentials: the default partition's store (the same as `store` there). */
  readonly registry: HubStore;
  /** Throughput and lag over time, for the dashboard. */
  readonly history: FleetHistory;
  /** Clients dropped, refused or rate-limited to protect the others: logged and counted. */
  readonly shedLog: ShedLog;
  /** Every agent's labels, from the registry, reloaded when they change. */
  readonly #labels: LabelCache;
  #http: HubHttp | undefined;
  #credentialTimer: NodeJS.Timeout | undefined;
  protected stopping = false;

  protected constructor(
    readonly common: HubCommonOptions,
    store: HubStore,
    /** The broker forwards a blob's chunks only to the devices fetching it (the embedded one): they are published once for all. */
    fanOutBlobs = false,
  ) {
    super();
    const log = common.logger ?? pino({ level: 'silent' });
    // A process may serve several partitions: every line of this hub's says which it is about.
    this.log = common.partition !== undefined ? log.child({ partition: common.partition }) : log;
    this.core = new HubCore({
      store,
      ...(common.epoch !== undefined && { epoch: common.epoch }),
      ...(common.partition !== undefined && { partition: common.partition }),
      dev: common.dev ?? false,
      ...(common.maxPullBytesPerSecond !== undefined && { maxPullBytesPerSecond: common.maxPullBytesPerSecond }),
      ...(common.maxBlobBytes !== undefined && { maxBlobBytes: common.maxBlobBytes }),
      fanOutBlobs,
      logger: this.log,
      ...(common.config && { config: common.config }),
      labelsOf: (agentId) => this.labelsOf(agentId),
      publish: (topic, payload, retain) => this.publishToBroker(topic, payload, retain),
    });
    this.registry = common.registry ?? this.core.store;
    this.shedLog = new ShedLog(this.log);
    this.authenticator = new Authenticator(this.registry, this.log, common.authLimits);
    this.history = new FleetHistory(this.core, () => this.fleet(), common.historyEveryMs);
    this.#labels = new LabelCache(this.registry, (agentIds) => this.emit('labels', agentIds), this.log);
    this.on('labels', (agentIds) => this.core.scopes.relabelled(agentIds));
  }

  /** Carries one message of the hub (QoS 1) to its subscribers. */
  protected abstract publishToBroker(topic: string, payload: Buffer, retain: boolean): void;

  /** Who is online, by what this hub can observe. */
  protected abstract presenceView(): ReadonlyMap<string, Presence>;

  /** Listening for agents, with the store open: ready for traffic. */
  abstract get ready(): boolean;

  /** Commits what is queued, closes the broker side, then the store. */
  abstract stop(): Promise<void>;

  /** Agents connected now (or, where connections are not visible, recently active). */
  abstract get connectedAgents(): number;

  /** The hub's broker account, when it has one (external broker). */
  get brokerServiceUser(): BrokerServiceUser | undefined {
    return undefined;
  }

  /** Every agent the hub knows of, with its replication status. */
  fleet(): Promise<AgentView[]> {
    // Asked by the dashboard sampler, each metrics scrape (twice) and the admin API: callers that
    // ask while it is being computed share that computation, so a fleet of thousands is not read
    // from the store several times over at once.
    const { directory } = this.core.scopes;
    const scopeOf = (agentId: string): string[] => (directory.active ? [...directory.bucketsOf(agentId)] : []);
    this.#fleet ??= fleetStatus(this.store, this.registry, this.core.replication, this.presenceView(), this.#labels.all, scopeOf).finally(
      () => (this.#fleet = undefined),
    );
    return this.#fleet;
  }

  #fleet: Promise<AgentView[]> | undefined;

  /** An agent's labels as of the last reload (at most about half a second old), names in order; none: empty. */
  labelsOf(agentId: string): Labels {
    return this.#labels.of(agentId);
  }

  get store(): HubCore['store'] {
    return this.core.store;
  }

  /** The partition this hub is the log of. */
  get partition(): string {
    return this.core.partition;
  }

  /** The hubs of the partitions this process leads, by partition (this one included). */
  partitionHubs(): ReadonlyMap<string, HubBase> {
    const hubs = this.common.partitionHubs?.();
    if (hubs?.has(this.partition)) return hubs;
    // This hub itself, also while it is starting (its HTTP API listens before the process lists it).
    return new Map([[this.partition, this], ...(hubs ?? [])]);
  }

  get httpAddress(): string | undefined {
    const address = this.#http?.server.address() as AddressInfo | null | undefined;
    return address ? `http://${address.address}:${address.port}` : undefined;
  }

  /** Says at start what would otherwise surprise: development mode, an access section granting nothing, no agents. */
  protected async warnAboutSetup(): Promise<void> {
    const { common, log } = this;
    if (common.dev) {
      log.warn('DEVELOPMENT MODE: any agent may connect without credentials. Never expose this hub to a network.');
      return;
    }
    if (this.core.access.grantsNothing) {
      log.warn(
        'the hub config grants no collection to any agent (access section): agents can connect but not read or write; ' +
          'grant access, e.g. access: { default: { read: ["*"], write: ["*"] } }',
      );
    }
    if ((await this.registry.credentials()).every((c) => c.revokedAt !== null)) {
      log.warn(
        `no agents are provisioned yet: add one with \`outpost hub agents add <agent-id> --data ${common.dataDir}\`, ` +
          'which prints its token once; give it to the agent as OUTPOST_HUB_TOKEN',
      );
    }
  }

  protected async startHttp(): Promise<void> {
    const { http, adminToken } = this.common;
    if (!http) return;
    if (!adminToken && !isLoopback(http.host)) {
      throw new ConfigError(
        `the hub HTTP API on ${http.host} would be reachable from the network without a token: set --admin-token (OUTPOST_ADMIN_TOKEN) or bind it to 127.0.0.1`,
      );
    }
    const auth = brokerAuth({
      service: this.brokerServiceUser,
      dev: this.common.dev ?? false,
      authenticator: this.authenticator,
      access: {
        mayRead: (agentId, collection) => this.core.access.mayRead(agentId, collection),
        mayReadAll: (agentId) => this.core.access.mayReadAll(agentId),
        partitionOf: (collection) => this.core.partitionOf(collection),
      },
      log: this.log,
    });
    const api = createHubApi(this, auth, { maxBlobBytes: this.common.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES });
    this.#http = await createHubHttp(api, this.log, adminToken);
    await this.#http.listen({ host: http.host, port: http.port });
  }

  /**
   * `outpost hub agents add|revoke` write from another process: the store's credentials version
   * tells this one within half a second, and `onChange` acts on it (verified tokens need no
   * forgetting: each counts only while its agent's stored hash is the one it was checked against).
   */
  protected async watchCredentials(onChange: () => void): Promise<void> {
    let version = await this.registry.credentialsVersion();
    let checking = false;
    this.#credentialTimer = setInterval(() => {
      if (checking) return;
      checking = true;
      this.registry
        .credentialsVersion()
        .then((now) => {
          if (now === version) return;
          version = now;
          onChange();
        })
        .catch((error: unknown) => this.log.warn({ err: error }, 'could not check for credential changes'))
        .finally(() => (checking = false));
    }, CREDENTIAL_CHECK_MS);
    this.#credentialTimer.unref();
  }

  /**
   * Loads every agent's labels, and reloads them when `outpost hub agents label` changes them from
   * another process (within half a second, as credentials), emitting `labels`. In every mode: a
   * `--dev` hub labels the agents it admits too.
   */
  protected watchLabels(): Promise<void> {
    return this.#labels.start();
  }

  /** Stops sampling, the credential and label watches and the HTTP API: the first step of every stop. */
  protected async stopCommon(): Promise<void> {
    this.stopping = true;
    clearInterval(this.#credentialTimer);
    this.#labels.stop();
    this.history.stop();
    const http = this.#http;
    if (http) await closeWithin(http.server, () => http.close());
  }
}
