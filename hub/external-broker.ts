import mqtt, { type MqttClient } from 'mqtt';
import { agentOfBye, ALL_BYE, isValidAgentId, TOPIC_ROOT } from '../shared/topics.js';
import type { Presence } from './fleet.js';
import type { BrokerServiceUser } from './broker-auth.js';
import { HubBase, type HubCommonOptions, onStore, startOrStop } from './hub-base.js';
import type { HubStore } from './store/hub-store.js';
import { DEFAULT_HUB_BROKER_USER, partitionBrokerUser } from './mosquitto-export.js';
import { ErrorCode, OutpostError } from '../shared/errors.js';

export interface BrokerClientHubOptions extends HubCommonOptions {
  broker: {
    /** `mqtt://host:port` or `mqtts://host:port`. */
    url: string;
    /**
     * The hub's account on the broker (default `outpost-hub`), and its client id. The hub of
     * another partition than the default connects as `<username>-p-<partition>` (same password):
     * each partition has a persistent session of its own, which a standby taking it over resumes.
     */
    username?: string;
    password?: string;
    /** CA (PEM) that signed the broker's certificate, for `mqtts://`. */
    ca?: string | Buffer;
  };
}

/**
 * How long the broker keeps the hub's session (its subscription and the QoS 1 messages agents
 * send meanwhile) while the hub is away: long enough for a restart or a deploy. Beyond it nothing
 * is lost either: agents resend unacknowledged batches and pulls.
 */
const SESSION_EXPIRY_SECONDS = 3600;

/**
 * In this mode the hub sees messages, not connections: an agent is shown online when it sent
 * something within this window (agents report status after applying changes, and pull on every
 * connect, so a busy agent stays online; an idle one drops off after the window).
 */
export const ACTIVE_WINDOW_MS = 120_000;

/** A single client reconnecting to its broker: a fixed period causes no storm. */
const RECONNECT_MS = 1000;

/**
 * The hub as a client of an external MQTT broker (Mosquitto, EMQX) instead of embedding aedes.
 * The broker authenticates agents and enforces the topic ACL (`outpost hub export mosquitto`
 * writes Mosquitto's files; EMQX asks `/v1/broker/authn|authz`), so an agent can publish only on
 * its own `up` topic and the agent id is read from the topic. The hub keeps a persistent session
 * (MQTT 5, clean start off, session expiry) so QoS 1 messages sent while it restarts wait for it.
 * Revocation is the broker's: export its files again and reload it; meanwhile the hub also
 * ignores messages from agents that are no longer provisioned.
 */
export class BrokerClientHub extends HubBase {
  #client: MqttClient | undefined;
  /** When each agent last sent something: presence, as far as this hub can tell. */
  readonly #lastMessage = new Map<string, number>();
  /** Whether an agent is provisioned and unrevoked; forgotten when credentials change. */
  readonly #provisioned = new Map<string, boolean>();
  /** Messages of an agent whose credential is being looked up, chained so that they keep their order. */
  readonly #checking = new Map<string, Promise<boolean>>();
  /** Set once the first connection is up: a later connect republishes the retained status. */
  #started = false;

  private constructor(
    private readonly options: BrokerClientHubOptions,
    store: HubStore,
  ) {
    super(options, store);
  }

  static async start(options: BrokerClientHubOptions): Promise<BrokerClientHub> {
    const hub = await onStore(options, (store) => new BrokerClientHub(options, store));
    return startOrStop(hub, () => hub.#start());
  }

  override get brokerServiceUser(): BrokerServiceUser | undefined {
    const { password } = this.options.broker;
    return password === undefined ? undefined : { username: this.options.broker.username ?? DEFAULT_HUB_BROKER_USER, password };
  }

  /** This partition's account on the broker, which is also its client id: it names the persistent session. */
  get clientId(): string {
    return partitionBrokerUser(this.options.broker.username ?? DEFAULT_HUB_BROKER_USER, this.partition);
  }

  protected publishToBroker(topic: string, payload: Buffer, retain: boolean): void {
    // While disconnected MQTT.js keeps QoS 1 publishes and sends them on reconnect; agents also
    // ask again for whatever does not come.
    this.#client?.publish(topic, payload, { qos: 1, retain }, (error) => {
      if (error) this.log.warn({ topic, err: error.message }, 'publish failed');
    });
  }

  protected presenceView(): ReadonlyMap<string, Presence> {
    const now = Date.now();
    return new Map([...this.#lastMessage].map(([agentId, at]) => [agentId, { online: now - at < ACTIVE_WINDOW_MS, since: at }]));
  }

  async #start(): Promise<void> {
    const { options, log } = this;
    const allUp = this.core.topics.allUp;
    await this.warnAboutSetup();
    await this.watchLabels();
    if (!options.dev) await this.watchCredentials(() => this.#provisioned.clear());
    // The HTTP API first: a broker that authenticates over HTTP (EMQX) asks it about the hub too.
    await this.startHttp();
    const client = mqtt.connect(options.broker.url, {
      clientId: this.clientId,
      username: this.clientId,
      ...(options.broker.password !== undefined && { password: options.broker.password }),
      ...(options.broker.ca !== undefined && { ca: options.broker.ca, rejectUnauthorized: true }),
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_SECONDS },
      reconnectPeriod: RECONNECT_MS,
      resubscribe: false, // subscribed on every connect below
      connectTimeout: 10_000,
      keepalive: 30,
    });
    this.#client = client;
    // The PUBACK goes out after this returns, and the message is then in the committer's queue.
    client.handleMessage = (packet, done) => {
      // While stopping, nothing more can be committed: leave the message unacknowledged, so that
      // the broker keeps it in the session for the next hub instead of this one dropping it.
      if (this.stopping) return;
      this.#onMessage(packet.topic, packet.payload as Buffer, packet.retain);
      done();
    };
    client.on('error', (error) => log.warn({ err: error.message, broker: options.broker.url }, 'broker connection error'));
    client.on('offline', () => log.warn({ broker: options.broker.url }, 'lost the broker; reconnecting'));
    client.on('connect', () => {
      // Acks and change sets are small and latency-bound: no Nagle delay behind the broker's delayed ACKs.
      (client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
      // The subscription survives in the session, but a broker that restarted without
      // persistence lost it, and the retained hub status with it.
      client.subscribe([allUp, ALL_BYE], { qos: 1 }, (error, granted) => {
        if (error || granted?.some((g) => g.qos >= 128)) {
          log.error(
            { err: error?.message, granted, topics: [allUp, ALL_BYE] },
            `the broker refused the hub's subscription: give user ${this.clientId} readwrite on ${TOPIC_ROOT}/# in its ACL`,
          );
          return;
        }
        if (this.#started) this.core.publishStatus();
      });
    });
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error): void => {
        client.off('connect', connected);
        reject(new BrokerConnectError(options.broker.url, error));
      };
      const connected = (): void => {
        client.off('error', failed);
        resolve();
      };
      client.once('connect', connected);
      client.once('error', failed);
    });
    this.core.start();
    this.#started = true;
    this.history.start();
    log.info(
      {
        broker: options.broker.url,
        username: this.clientId,
        http: this.httpAddress,
        data: options.dataDir,
        head: this.store.head,
        ...(this.core.epoch !== undefined && { epoch: this.core.epoch }),
      },
      'hub started',
    );
  }

  #onMessage(topic: string, payload: Buffer, retained: boolean): void {
    // A bye (an agent's will) comes on a topic of its own, which every partition's hub hears.
    const byeOf = agentOfBye(topic);
    const bye = byeOf !== undefined;
    const agentId = this.core.topics.agentOfUp(topic) ?? byeOf;
    if (agentId === undefined || !isValidAgentId(agentId)) {
      this.log.warn({ topic }, 'message on a topic the hub does not serve; ignored');
      return;
    }
    if (retained) {
      // A retained publish on an up topic would replay to the hub on every resubscribe.
      this.log.warn({ agentId }, 'retained message on an up topic ignored: agents never retain (does the broker ACL allow it?)');
      return;
    }
    if (this.options.dev) {
      this.#deliver(agentId, payload, bye);
      return;
    }
    const known = this.#provisioned.get(agentId);
    if (known !== undefined && !this.#checking.has(agentId)) {
      if (known) this.#deliver(agentId, payload, bye);
      else this.#ignoreUnprovisioned(agentId);
      return;
    }
    // Not known yet: look it up, and hold this agent's later messages behind it, in order.
    const previous =
      this.#checking.get(agentId) ??
      this.authenticator.stillValid(agentId).then(
        (ok) => {
          this.#provisioned.set(agentId, ok);
          return ok;
        },
        () => false,
      );
    const next = previous.then((ok) => {
      if (ok) this.#deliver(agentId, payload, bye);
      else this.#ignoreUnprovisioned(agentId);
      return ok;
    });
    this.#checking.set(agentId, next);
    void next.then(() => {
      if (this.#checking.get(agentId) === next) this.#checking.delete(agentId);
    });
  }

  #deliver(agentId: string, payload: Buffer, bye: boolean): void {
    if (!bye) this.#lastMessage.set(agentId, Date.now());
    this.core.onUp(agentId, payload, bye);
  }

  #ignoreUnprovisioned(agentId: string): void {
    this.log.warn(
      { agentId },
      'message from an agent that is not provisioned (or revoked) ignored; export the broker files again and reload the broker',
    );
  }

  get ready(): boolean {
    return this.#client?.connected === true && !this.stopping;
  }

  /** Agents that sent something within the last ACTIVE_WINDOW_MS (connections are the broker's). */
  get connectedAgents(): number {
    const since = Date.now() - ACTIVE_WINDOW_MS;
    return [...this.#lastMessage.values()].filter((at) => at > since).length;
  }

  /** Commits what is queued and publishes its acks, waits for the broker to take them, then closes the store. */
  async stop(): Promise<void> {
    await this.stopCommon();
    await this.core.drain();
    if (this.#client) {
      const client = this.#client;
      // Not forced: in-flight QoS 1 publishes are acknowledged first (when the broker is there).
      await Promise.race([client.endAsync(!client.connected), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
      client.end(true);
    }
    await this.core.stop();
  }
}

/** The broker could not be reached or refused the hub's account at start. */
export class BrokerConnectError extends OutpostError {
  constructor(url: string, cause: Error) {
    super(
      ErrorCode.BROKER_UNREACHABLE,
      `the hub could not connect to the broker at ${url}: ${cause.message}; check --broker, and that --broker-username and ` +
        '--broker-password (OUTPOST_BROKER_PASSWORD) match an account the broker knows (`outpost hub export mosquitto` writes it)',
      { cause },
    );
  }
}
