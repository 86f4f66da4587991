import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { Aedes, Client } from 'aedes';
import pino, { type Logger } from 'pino';
import { limits } from '../shared/limits.js';
import { Authenticator } from './authenticator.js';
import { createBroker } from './broker.js';
import type { HubConfig } from './config.js';
import { HubCore } from './core.js';
import { fleetStatus, type AgentView, type Presence } from './fleet.js';
import { FleetHistory } from './history.js';
import { guardConnection } from './frame-guard.js';
import { createHubHttp, type HubHttp } from './http.js';

export interface HubOptions {
  /** MQTT port; 0 picks a free one. */
  port: number;
  host?: string;
  /** `host:port` for the HTTP API; omitted = no HTTP API. */
  http?: { host: string; port: number };
  dataDir: string;
  /** Admit agents without credentials (development only). */
  dev?: boolean;
  /** Collections, policies and retention; defaults when omitted. */
  config?: HubConfig;
  /**
   * A TLS listener, beside the plain one or (with `plain: false`) instead of it. With `ca` and
   * `requireClientCert`, agents authenticate by certificate (mutual TLS): the certificate's
   * common name is the agent id, and no token is needed.
   */
  tls?: { port: number; host?: string; cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requireClientCert?: boolean };
  /** Listen for plain MQTT on `port` (default true); false with `tls` for TLS only. */
  plain?: boolean;
  /** How often the dashboard's throughput and lag are sampled (default 5 s). */
  historyEveryMs?: number;
  /** Connection attempts allowed per address per 10 s (default 200). */
  connectsPerAddress?: number;
  /** Bearer token for the HTTP API; required when it listens beyond loopback. */
  adminToken?: string;
  /** Largest MQTT packet accepted; a larger one closes the connection before it is buffered. */
  maxPacketBytes?: number;
  logger?: Logger;
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || host.startsWith('127.');

/** How often the hub looks for credential changes made by another process. */
const CREDENTIAL_CHECK_MS = 500;

/** Room for the largest message (answered with a typed error when too big) plus MQTT framing. */
export const DEFAULT_MAX_PACKET_BYTES = 4 * limits.maxMessageBytes;

/**
 * The main site on the embedded default: an aedes broker (behind a packet-size guard) carrying
 * the hub protocol (`HubCore`), and the HTTP API.
 */
export class Hub {
  readonly core: HubCore;
  readonly log: Logger;
  #broker: Aedes | undefined;
  #server: Server | undefined;
  #tlsServer: TlsServer | undefined;
  #http: HubHttp | undefined;
  readonly #clients = new Map<string, Client>();
  /** Throughput and lag over time, for the dashboard. */
  readonly history: FleetHistory;
  /** Who is connected, since when, from where; who was, until when. */
  readonly presence = new Map<string, Presence>();
  #credentialTimer: NodeJS.Timeout | undefined;
  #stopping = false;

  private constructor(private readonly options: HubOptions) {
    this.log = options.logger ?? pino({ level: 'silent' });
    this.core = new HubCore({
      dataDir: options.dataDir,
      dev: options.dev ?? false,
      logger: this.log,
      ...(options.config && { config: options.config }),
      publish: (topic, payload, retain) => {
        this.#broker?.publish({ cmd: 'publish', topic, payload, qos: 1, retain, dup: false }, (error) => {
          if (error) this.log.warn({ topic, err: error.message }, 'publish failed');
        });
      },
    });
    this.history = new FleetHistory(this.core, () => this.fleet(), options.historyEveryMs);
  }

  static async start(options: HubOptions): Promise<Hub> {
    const hub = new Hub(options);
    try {
      await hub.#start();
    } catch (error) {
      await hub.stop();
      throw error;
    }
    return hub;
  }

  async #start(): Promise<void> {
    const { options, log } = this;
    if (options.dev) {
      log.warn('DEVELOPMENT MODE: any agent may connect without credentials. Never expose this hub to a network.');
    }
    const authenticator = new Authenticator(this.store, log);
    const broker = await createBroker({
      dev: options.dev ?? false, authenticator, log,
      mayRead: (agentId, collection) => this.core.access.mayRead(agentId, collection),
      connectLimit: { perAddress: options.connectsPerAddress ?? 200, windowMs: 10_000 },
      onUp: (agentId, payload) => this.core.onUp(agentId, payload),
    });
    this.#broker = broker;
    broker.on('client', (client) => {
      this.#clients.set(client.id, client);
      const address = (client.conn as { remoteAddress?: string }).remoteAddress;
      this.presence.set(client.id, { online: true, since: Date.now(), ...(address !== undefined && { address }) });
    });
    broker.on('clientDisconnect', (client) => {
      if (this.#clients.get(client.id) !== client) return;
      this.#clients.delete(client.id);
      this.presence.set(client.id, { ...this.presence.get(client.id), online: false, since: Date.now() });
    });
    if (!options.dev) {
      this.#watchCredentials(authenticator);
      if (this.core.access.grantsNothing) {
        log.warn('the hub config grants no collection to any agent (access section): agents can connect but not read or write; ' +
          'grant access, e.g. access: { default: { read: ["*"], write: ["*"] } }');
      }
      if (this.store.credentials().every((c) => c.revokedAt !== null)) {
        log.warn(`no agents are provisioned yet: add one with \`outpost hub agents add <agent-id> --data ${options.dataDir}\`, ` +
          'which prints its token once; give it to the agent as OUTPOST_HUB_TOKEN');
      }
    }
    const maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    const accept = (socket: Socket): void => {
      socket.setNoDelay(true); // acks and pages are small and latency-bound: no Nagle delay
      broker.handle(guardConnection(socket, maxPacketBytes, (peer) => {
        log.warn({ peer, maxPacketBytes }, 'closed a connection that sent a packet over the size limit');
      }));
    };
    const listen = (server: Server, port: number, host: string): Promise<void> => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    if (options.plain !== false) {
      this.#server = createServer(accept);
      await listen(this.#server, options.port, options.host ?? '0.0.0.0');
    }
    if (options.tls) {
      const { cert, key, ca, requireClientCert } = options.tls;
      this.#tlsServer = createTlsServer({
        cert, key, ...(ca !== undefined && { ca }),
        requestCert: requireClientCert ?? false, rejectUnauthorized: requireClientCert ?? false,
      }, accept);
      this.#tlsServer.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
      await listen(this.#tlsServer, options.tls.port, options.tls.host ?? options.host ?? '0.0.0.0');
    }
    if (!this.#server && !this.#tlsServer) throw new Error('the hub has no listener: enable the plain one or configure TLS');
    this.core.start();
    this.history.start();
    if (options.http) {
      if (!options.adminToken && !isLoopback(options.http.host)) {
        throw new Error(`the hub HTTP API on ${options.http.host} would be reachable from the network without a token: set --admin-token (OUTPOST_ADMIN_TOKEN) or bind it to 127.0.0.1`);
      }
      this.#http = await createHubHttp(this, log, options.adminToken);
      await this.#http.listen({ host: options.http.host, port: options.http.port });
    }
    log.info({ mqttPort: this.port, http: this.httpAddress, data: options.dataDir, head: this.store.head }, 'hub started');
  }

  /**
   * `outpost hub agents revoke` writes from another process: SQLite's data_version tells this
   * one, within half a second, to forget verified tokens and close revoked agents' connections.
   */
  #watchCredentials(authenticator: Authenticator): void {
    let version = this.store.dataVersion();
    this.#credentialTimer = setInterval(() => {
      const now = this.store.dataVersion();
      if (now === version) return;
      version = now;
      authenticator.forget();
      for (const [agentId, client] of this.#clients) {
        if (!authenticator.stillValid(agentId)) {
          this.log.warn({ agentId }, 'credential revoked; closing the connection');
          client.close();
        }
      }
    }, CREDENTIAL_CHECK_MS);
    this.#credentialTimer.unref();
  }

  /** Every agent the hub knows of, with its replication status. */
  fleet(): AgentView[] {
    return fleetStatus(this.store, this.core.replication, this.presence);
  }

  get store(): HubCore['store'] {
    return this.core.store;
  }

  /** The plain MQTT port (the TLS one when there is no plain listener). */
  get port(): number {
    return ((this.#server ?? this.#tlsServer)!.address() as AddressInfo).port;
  }

  get tlsPort(): number | undefined {
    return (this.#tlsServer?.address() as AddressInfo | null | undefined)?.port;
  }

  get httpAddress(): string | undefined {
    const address = this.#http?.server.address() as AddressInfo | null | undefined;
    return address ? `http://${address.address}:${address.port}` : undefined;
  }

  /** Listening for agents, with the store open: ready for traffic. */
  get ready(): boolean {
    return (this.#server ?? this.#tlsServer)?.listening === true && !this.#stopping;
  }

  get connectedAgents(): number {
    return this.#broker?.connectedClients ?? 0;
  }

  /** Commits what is queued, closes every connection, then the store. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#credentialTimer);
    this.history.stop();
    await this.#http?.close();
    this.core.drain(); // acks for what is queued go out while the broker is still up
    if (this.#broker) {
      const broker = this.#broker;
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    }
    this.core.stop();
    for (const server of [this.#server, this.#tlsServer]) {
      if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
}
