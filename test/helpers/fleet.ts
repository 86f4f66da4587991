import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../agent/agent.js';
import { AccessControl } from '../../hub/access.js';
import { assignment, DEFAULT_HUB_CONFIG, partitionsOf } from '../../hub/config.js';
import { hashToken, newToken } from '../../hub/credentials.js';
import { BrokerClientHub } from '../../hub/external-broker.js';
import { Hub, type HubOptions } from '../../hub/hub.js';
import { DEFAULT_HUB_BROKER_USER, mosquittoFiles, writeMosquittoFiles } from '../../hub/mosquitto-export.js';
import { mosquittoHash } from '../../hub/mosquitto-password.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { openHubStore } from '../../hub/store/open-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { DEFAULT_PARTITION } from '../../shared/topics.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { MOSQUITTO, MosquittoProcess } from './mosquitto.js';
import { freshDatabase, NO_POSTGRES } from './postgres.js';
import { tempDir } from './temp.js';

/**
 * Which broker carries the fleet's messages: the hub's embedded aedes, or a real Mosquitto the
 * hub is a client of (`outpost hub --broker`), with the files `outpost hub export mosquitto` writes.
 */
export type FleetBroker = 'embedded' | 'mosquitto';

/** Both brokers where Mosquitto is installed; a suite runs once per entry (`describe.each`). */
export const FLEET_BROKERS: readonly FleetBroker[] = MOSQUITTO ? ['embedded', 'mosquitto'] : ['embedded'];

/** Where the hub keeps its data: SQLite in the fleet's temp dir, or a fresh PostgreSQL database. */
export type FleetStore = 'sqlite' | 'postgres';

/**
 * The setups an end-to-end suite runs on: the embedded default, Mosquitto (where installed) and
 * PostgreSQL (where reachable), each changing one thing from the default.
 */
export const FLEET_SETUPS: ReadonlyArray<[FleetBroker, FleetStore]> = [
  ['embedded', 'sqlite'],
  ...(MOSQUITTO ? [['mosquitto', 'sqlite'] as [FleetBroker, FleetStore]] : []),
  ...(NO_POSTGRES ? [] : [['embedded', 'postgres'] as [FleetBroker, FleetStore]]),
];

/** A hub and agents in this process, on real sockets and real SQLite files in a temp dir. */
export class TestFleet {
  readonly dir = tempDir('fleet');
  hub: Hub | BrokerClientHub | undefined;
  /** On Mosquitto with a partitioned config: the hub of every partition but the default (that is `hub`). */
  readonly partitionHubs = new Map<string, BrokerClientHub>();
  port = 0;
  readonly agents: Agent[] = [];
  mosquitto: MosquittoProcess | undefined;
  /** Provisioning and the broker files, written from a connection of their own (as the CLI does). */
  #admin: SqliteHubStore | undefined;
  readonly #hubPassword = randomBytes(16).toString('base64url');
  /** Hashed once: the hub's entry stays the same across exports. */
  #hubHash: Promise<string> | undefined;
  /** Agents provisioned, re-exported and reloaded one at a time. */
  #provisioning: Promise<void> = Promise.resolve();

  constructor(
    public hubOptions: Partial<HubOptions> = {},
    readonly broker: FleetBroker = 'embedded',
    readonly store: FleetStore = 'sqlite',
  ) {}

  /** The fleet's PostgreSQL database, created on first start and kept across hub restarts. */
  #postgresUrl: string | undefined;

  get hubData(): string {
    return join(this.dir, 'hub');
  }

  async startHub(): Promise<Hub | BrokerClientHub> {
    if (this.broker === 'mosquitto') return this.#startBrokerClientHub();
    // Restart on the same port, so agents reconnect to the same URL.
    const store = this.store === 'postgres' ? await PostgresHubStore.open((this.#postgresUrl ??= await freshDatabase())) : undefined;
    this.hub = await Hub.start({
      port: this.port,
      host: '127.0.0.1',
      dataDir: this.hubData,
      dev: true,
      ...(store && { store }),
      ...this.hubOptions,
    });
    this.port = this.hub.port;
    return this.hub;
  }

  /** Mosquitto keeps running while the hub stops and starts: the hub is its client. */
  async #startBrokerClientHub(): Promise<BrokerClientHub> {
    if (!this.mosquitto) {
      await this.#exportBrokerFiles();
      this.mosquitto = await MosquittoProcess.start(this.#exportDir);
      this.port = this.mosquitto.port;
    }
    const hub = await this.#partitionHub(DEFAULT_PARTITION);
    this.hub = hub;
    for (const partition of partitionsOf(this.hubOptions.config ?? DEFAULT_HUB_CONFIG).slice(1)) await this.startPartition(partition);
    return hub;
  }

  /** Starts the hub of one partition (as a standby taking it over would); the default one must be running. */
  async startPartition(partition: string): Promise<BrokerClientHub> {
    const hub = await this.#partitionHub(partition, this.hub!.store);
    this.partitionHubs.set(partition, hub);
    return hub;
  }

  /** Stops the hub of one partition other than the default; the others go on. */
  async stopPartition(partition: string): Promise<void> {
    await this.partitionHubs.get(partition)?.stop();
    this.partitionHubs.delete(partition);
  }

  async #partitionHub(partition: string, registry?: HubStore): Promise<BrokerClientHub> {
    const { dev, config, http, adminToken, historyEveryMs, logger } = this.hubOptions;
    const isDefault = partition === DEFAULT_PARTITION;
    return BrokerClientHub.start({
      dataDir: this.hubData,
      dev: dev ?? true,
      partition,
      ...(!isDefault && { store: await openHubStore({ dataDir: this.hubData, partition }) }),
      ...(registry && { registry }),
      ...(config && { config }),
      ...(http && isDefault && { http }),
      ...(adminToken !== undefined && { adminToken }),
      ...(historyEveryMs !== undefined && { historyEveryMs }),
      ...(logger && { logger }),
      broker: { url: this.mosquitto!.url, username: DEFAULT_HUB_BROKER_USER, password: this.#hubPassword },
    });
  }

  get #exportDir(): string {
    return join(this.dir, 'mosquitto');
  }

  async #exportBrokerFiles(): Promise<void> {
    this.#admin ??= new SqliteHubStore(this.hubData);
    const config = this.hubOptions.config ?? DEFAULT_HUB_CONFIG;
    writeMosquittoFiles(
      this.#exportDir,
      mosquittoFiles({
        agents: await this.#admin.brokerCredentials(),
        partitions: assignment(config),
        access: new AccessControl(config.access, this.hubOptions.dev ?? true),
        hubUser: { username: DEFAULT_HUB_BROKER_USER, mosquittoHash: await (this.#hubHash ??= mosquittoHash(this.#hubPassword)) },
        outDir: this.#exportDir,
      }),
    );
  }

  /** As an operator would: `outpost hub agents add`, export again, reload Mosquitto. */
  provision(agentId: string, token: string): Promise<void> {
    this.#provisioning = this.#provisioning.then(async () => {
      this.#admin ??= new SqliteHubStore(this.hubData);
      await this.#admin.putCredential(agentId, await hashToken(token), await mosquittoHash(token));
      await this.#exportBrokerFiles();
      await this.mosquitto?.reload();
    });
    return this.#provisioning;
  }

  async stopHub(): Promise<void> {
    for (const partition of [...this.partitionHubs.keys()]) await this.stopPartition(partition);
    await this.hub?.stop();
    this.hub = undefined;
  }

  /**
   * An agent on its own data directory; `start: false` lets a test write before it first
   * connects. On Mosquitto it gets a token first, and starts once the broker knows it.
   */
  agent(agentId: string, options: Partial<AgentOptions> = {}, start = true): Agent {
    const token = this.broker === 'mosquitto' && options.hubToken === undefined ? newToken() : undefined;
    const agent = new Agent({
      hubUrl: `mqtt://127.0.0.1:${this.port}`,
      agentId,
      dataDir: join(this.dir, agentId),
      reconnect: { initialMs: 50, maxMs: 300 },
      ackTimeoutMs: 2_000,
      ...(token !== undefined && { hubToken: token }),
      ...options,
    });
    if (token !== undefined) {
      const provisioned = this.provision(agentId, token);
      if (start) void provisioned.then(() => agent.start());
    } else if (start) {
      agent.start();
    }
    this.agents.push(agent);
    return agent;
  }

  async close(): Promise<void> {
    await this.#provisioning.catch(() => undefined);
    await Promise.all(this.agents.map((a) => a.close()));
    await this.stopHub();
    await this.mosquitto?.stop();
    await this.#admin?.close();
  }
}
