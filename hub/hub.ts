import type { Aedes, Client } from 'aedes';
import { limits } from '../shared/limits.js';
import { createBroker } from './broker.js';
import type { Presence } from './fleet.js';
import { guardConnection, type ConnectionLimits } from './frame-guard.js';
import { InboundBudgets } from './inbound-budget.js';
import { Listeners } from './listeners.js';
import { DEFAULT_PENDING_LOGIN_LIMITS } from './pending-logins.js';
import type { ShedReason } from './shed.js';
import { HubBase, type HubCommonOptions, onStore, startOrStop } from './hub-base.js';
import type { HubStore } from './store/hub-store.js';

export interface HubOptions extends HubCommonOptions {
  /** MQTT port; 0 picks a free one. */
  port: number;
  host?: string;
  /**
   * A TLS listener, beside the plain one or (with `plain: false`) instead of it. With `ca` and
   * `requireClientCert`, agents authenticate by certificate (mutual TLS): the certificate's
   * common name is the agent id, and no token is needed.
   */
  tls?: { port: number; host?: string; cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requireClientCert?: boolean };
  /** Listen for plain MQTT on `port` (default true); false with `tls` for TLS only. */
  plain?: boolean;
  /** Connection attempts allowed per address per 10 s (default 200). */
  connectsPerAddress?: number;
  /** Largest MQTT packet accepted; a larger one closes the connection before it is buffered. */
  maxPacketBytes?: number;
  /** Largest packet before login (the CONNECT); a larger one closes the connection at its header. */
  maxConnectBytes?: number;
  /**
   * Most bytes waiting to be written to one client: over half of it, it is sent no change sets
   * (it pulls them); a client that stays over it without reading, or reaches four times it, is dropped.
   */
  maxQueuedBytes?: number;
  /** Bytes one client may send per second (twice that saved up); past it, its socket is not read for a while. */
  maxInboundBytesPerSecond?: number;
  /** Connections not logged in yet held at once (DEFAULT_PENDING_LOGIN_LIMITS); more are closed at accept. */
  maxPendingLogins?: number;
  /** The same, per source address (an IPv6 client: per /64). */
  maxPendingLoginsPerAddress?: number;
}

/** Room for the largest message (answered with a typed error when too big) plus MQTT framing. */
export const DEFAULT_MAX_PACKET_BYTES = 4 * limits.maxMessageBytes;

/**
 * An agent's CONNECT is a few hundred bytes (client id and username up to 128 bytes each, a
 * 47-byte token, no will); 8 KiB leaves ample room and holds 1,000 half-sent logins to 8 MB.
 */
export const DEFAULT_MAX_CONNECT_BYTES = 8 * 1024;

/**
 * Several of the largest messages (a pull page, a change set: 1 MiB at most) waiting for one
 * client: a device on a slow link keeps up, one that stopped reading is dropped within a few MB.
 */
export const DEFAULT_MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/**
 * Far above what a device sends (a catch-up of a week's writes uploads a few MB), and a bound on
 * what one connection can make the hub decode and handle.
 */
export const DEFAULT_MAX_INBOUND_BYTES_PER_SECOND = 8 * 1024 * 1024;

/**
 * The main site on the embedded default: an aedes broker (behind a packet-size guard) carrying
 * the hub protocol (`HubCore`), and the HTTP API.
 */
export class Hub extends HubBase {
  #broker: Aedes | undefined;
  #listeners: Listeners | undefined;
  readonly #clients = new Map<string, Client>();
  /** Who is connected, since when, from where; who was, until when. */
  readonly presence = new Map<string, Presence>();

  private constructor(
    private readonly options: HubOptions,
    store: HubStore,
  ) {
    super(options, store, true);
  }

  static async start(options: HubOptions): Promise<Hub> {
    const hub = await onStore(options, (store) => new Hub(options, store));
    return startOrStop(hub, () => hub.#start());
  }

  protected publishToBroker(topic: string, payload: Buffer, retain: boolean): void {
    this.#broker?.publish({ cmd: 'publish', topic, payload, qos: 1, retain, dup: false }, (error) => {
      if (error) this.log.warn({ topic, err: error.message }, 'publish failed');
    });
  }

  protected presenceView(): ReadonlyMap<string, Presence> {
    return this.presence;
  }

  async #start(): Promise<void> {
    const { options, log, authenticator } = this;
    await this.warnAboutSetup();
    await this.watchLabels();
    const broker = await createBroker({
      dev: options.dev ?? false,
      authenticator,
      log,
      shedLog: this.shedLog,
      mayRead: (agentId, collection) => this.core.access.mayRead(agentId, collection),
      connectLimit: { perAddress: options.connectsPerAddress ?? 200, windowMs: 10_000 },
      onUp: (agentId, payload, bye) => this.core.onUp(agentId, payload, bye),
      onChangeSetSkipped: (agentId) => this.core.emit('refused', 'change_set_skipped', agentId, 1),
      wantsBlob: (agentId, hash) => this.core.wantsBlob(agentId, hash),
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
      this.core.scopes.offline(client.id);
      this.presence.set(client.id, { ...this.presence.get(client.id), online: false, since: Date.now() });
    });
    if (!options.dev) {
      // A revoked agent's live connection is closed at once.
      await this.watchCredentials(() => {
        for (const [agentId, client] of this.#clients) {
          authenticator.stillValid(agentId).then(
            (valid) => {
              if (valid || this.#clients.get(agentId) !== client) return;
              log.warn({ agentId }, 'credential revoked; closing the connection');
              client.close();
            },
            (error: unknown) => log.warn({ err: error, agentId }, 'could not re-check a credential; checking again at the next change'),
          );
        }
      });
    }
    const limits: ConnectionLimits = {
      maxPacketBytes: options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES,
      maxConnectBytes: options.maxConnectBytes ?? DEFAULT_MAX_CONNECT_BYTES,
      maxQueuedBytes: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      maxInboundBytesPerSecond: options.maxInboundBytesPerSecond ?? DEFAULT_MAX_INBOUND_BYTES_PER_SECOND,
    };
    limits.budgets = new InboundBudgets(limits.maxInboundBytesPerSecond);
    this.#listeners = await Listeners.start(
      {
        plain: options.plain !== false,
        port: options.port,
        host: options.host ?? '0.0.0.0',
        ...(options.tls && {
          tls: {
            ...options.tls,
            host: options.tls.host ?? options.host ?? '0.0.0.0',
            requireClientCert: options.tls.requireClientCert ?? false,
          },
        }),
        pendingLogins: {
          total: options.maxPendingLogins ?? DEFAULT_PENDING_LOGIN_LIMITS.total,
          perSource: options.maxPendingLoginsPerAddress ?? DEFAULT_PENDING_LOGIN_LIMITS.perSource,
        },
      },
      (socket, loggedIn) => {
        socket.setNoDelay(true); // acks and pages are small and latency-bound: no Nagle delay
        const shed = (reason: ShedReason, peer: string, facts: Record<string, number | string>): void =>
          this.shedLog.shed(reason, { peer, ...facts });
        broker.handle(guardConnection(socket, limits, shed, loggedIn));
      },
      this.shedLog,
      log,
    );
    this.core.start();
    this.history.start();
    await this.startHttp();
    log.info({ mqttPort: this.port, http: this.httpAddress, data: options.dataDir, head: this.store.head }, 'hub started');
  }

  /** The plain MQTT port (the TLS one when there is no plain listener). */
  get port(): number {
    return this.#listeners!.port;
  }

  get tlsPort(): number | undefined {
    return this.#listeners?.tlsPort;
  }

  get ready(): boolean {
    return this.#listeners?.listening === true && !this.stopping;
  }

  get connectedAgents(): number {
    return this.#broker?.connectedClients ?? 0;
  }

  /**
   * Commits what is queued, closes every connection, then the store. The listeners close last:
   * a device that reconnects meanwhile waits on a connection the broker then closes, instead of
   * being refused at once, and refusals are what widen its backoff (measured: closing them
   * first made a 10,000-device reconnect storm after a restart take 42 s instead of 25).
   */
  async stop(): Promise<void> {
    const started = performance.now();
    const connected = this.connectedAgents;
    await this.stopCommon();
    await this.core.drain(); // acks for what is queued go out while the broker is still up
    const drained = performance.now();
    if (this.#broker) {
      const broker = this.#broker;
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    }
    const disconnected = performance.now();
    await this.core.stop();
    await this.#listeners?.close();
    // How long each part took: a fleet's reconnect storm after a restart grows with this downtime.
    const ms = (from: number, to: number): number => Math.round(to - from);
    this.log.info(
      { connected, drainMs: ms(started, drained), disconnectMs: ms(drained, disconnected), closeMs: ms(disconnected, performance.now()) },
      'hub stopped',
    );
  }
}
