import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { upCodec } from '../shared/codec.js';
import { byeTopic } from '../shared/topics.js';
import { Backoff } from './backoff.js';
import type { AgentOptions } from './types.js';
import type { Transport, TransportDelegate } from './transport.js';

export interface LinkOptions {
  /** The hub's URL; several, comma-separated, for hub processes that take over from one another. */
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Topic filters to subscribe (QoS 1) on every connection, before `onConnected`. */
  subscriptions: readonly string[];
  backoff: { initialMs: number; maxMs: number };
  log: Logger;
  /**
   * What the broker publishes for this device if a connection drops (its MQTT will), made for
   * each connection's `session`; `stop()` drops the connection so that it is published then too.
   */
  farewell?: (session: string) => { topic: string; payload: Buffer };
}

/**
 * The agent's MQTT connection. MQTT.js's own reconnect is switched off (its fixed period
 * turns a hub restart into a reconnect storm); this class reconnects with jittered backoff.
 *
 *   stopped ─start()─► connecting ─connack+suback─► connected ─close─► waiting ─timer─► connecting
 */
export class Link implements Transport {
  #client: MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #connected = false;
  #stopped = true;
  readonly #backoff: Backoff;
  readonly #urls: string[];
  /** The URL tried now: kept while it works, the next one after an attempt that fails. */
  #current = 0;
  /** Made on every connection: the options' ones and any added since. */
  readonly #subscriptions: Set<string>;
  #session = '';

  constructor(
    private readonly options: LinkOptions,
    private readonly delegate: TransportDelegate,
  ) {
    this.#backoff = new Backoff(options.backoff);
    this.#urls = options.url
      .split(',')
      .map((u) => u.trim())
      .filter((u) => u.length > 0);
    this.#subscriptions = new Set(options.subscriptions);
  }

  subscribe(filters: readonly string[]): Promise<void> {
    const added = filters.filter((f) => !this.#subscriptions.has(f));
    for (const filter of added) this.#subscriptions.add(filter);
    const client = this.#client;
    // MQTT-connected is what counts, not `connected` (set only once the first subscriptions are
    // granted): filters added in between, e.g. on the retained status that follows the first
    // SUBACK, would otherwise wait for the next connection, which may never come.
    if (added.length === 0 || !client?.connected) return Promise.resolve();
    return new Promise((resolve) => {
      client.subscribe(Object.fromEntries(added.map((topic) => [topic, { qos: 1 as const }])), (error, granted) => {
        if (error || !granted || granted.some((g) => g.qos === 128)) {
          // As at connect: a refused subscription is a broken session; the next one retries it.
          this.options.log.error({ err: error, granted }, 'subscription refused by the hub; reconnecting');
          client.end(true);
        }
        resolve();
      });
    });
  }

  get connected(): boolean {
    return this.#connected;
  }

  get session(): string {
    return this.#session;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  #connect(): void {
    const { options, delegate } = this;
    const url = this.#urls[this.#current]!;
    this.#session = randomBytes(8).toString('hex');
    const farewell = options.farewell?.(this.#session);
    const client = mqtt.connect(url, {
      clientId: options.clientId,
      ...(options.username !== undefined && { username: options.username }),
      ...(options.password !== undefined && { password: options.password }),
      ...(options.tls && { ...options.tls, rejectUnauthorized: true }),
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 30,
      protocolVersion: 4,
      resubscribe: false,
      // MQTT.js otherwise keeps 65,536 pre-built two-byte Buffers for packet ids: 7 MB of heap.
      writeCache: false,
      ...(farewell && { will: { topic: farewell.topic, payload: farewell.payload, qos: 1, retain: false } }),
    });
    this.#client = client;
    client.handleMessage = (packet, done) => {
      // Stopping (saying bye): nothing more is taken in, so nothing more is asked for either.
      if (this.#stopped) return done();
      Promise.resolve()
        .then(() => delegate.onMessage(packet.topic, packet.payload as Buffer))
        .catch((error: unknown) => options.log.error({ err: error, topic: packet.topic }, 'failed to handle message'))
        .finally(() => done());
    };
    client.on('connect', () => {
      // Batches, pulls and status reports are small and latency-bound: without this, Nagle holds
      // a batch back until the hub's delayed ACK of the previous small message (tens of ms).
      (client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
      const filters = Object.fromEntries([...this.#subscriptions].map((topic) => [topic, { qos: 1 as const }]));
      client.subscribe(filters, (error, granted) => {
        if (error || !granted || granted.some((g) => g.qos === 128)) {
          options.log.error({ err: error, granted }, 'subscription refused by the hub; reconnecting');
          client.end(true);
          return;
        }
        if (this.#client !== client) return;
        this.#backoff.reset();
        this.#connected = true;
        options.log.info({ url }, 'connected to hub');
        delegate.onConnected();
      });
    });
    client.on('error', (error) => options.log.warn({ err: error.message }, 'connection error'));
    client.on('close', () => {
      if (this.#client !== client) return;
      const was = this.#connected;
      this.#connected = false;
      this.#client = undefined;
      client.removeAllListeners('connect');
      client.end(true);
      if (was) {
        options.log.warn({ url }, 'disconnected from hub');
        delegate.onDisconnected();
      } else {
        // That hub did not answer: a standby (or its replacement) may lead at the next URL.
        this.#current = (this.#current + 1) % this.#urls.length;
      }
      if (!this.#stopped) {
        const delay = this.#backoff.next();
        this.#timer = setTimeout(() => this.#connect(), delay);
        this.#timer.unref?.();
      }
    });
  }

  /** Publishes at QoS 1 if connected; returns false (and sends nothing) otherwise. */
  publish(topic: string, payload: Buffer): boolean {
    const client = this.#client;
    if (!client || !this.#connected) return false;
    client.publish(topic, payload, { qos: 1 }, (error) => {
      if (error) this.options.log.debug({ err: error.message, topic }, 'publish not completed');
    });
    return true;
  }

  /** Drops the current connection; the link reconnects with backoff (used by tests and `sync now`). */
  disconnect(): void {
    this.#client?.stream?.destroy();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    if (!client) return;
    // With a will, the connection is dropped rather than closed: a clean DISCONNECT would discard
    // the will, and the broker publishes it at once for a dropped one (the hub hears bye).
    if (this.options.farewell) client.stream?.destroy();
    await client.endAsync(true).catch(() => undefined);
  }
}

/** The agent's MQTT link to the hub, as its options say (the default transport). */
export function mqttLink(options: AgentOptions, subscriptions: readonly string[], log: Logger, delegate: TransportDelegate): Link {
  return new Link(
    {
      url: options.hubUrl,
      clientId: options.agentId,
      ...(options.hubToken !== undefined && { username: options.agentId, password: options.hubToken }),
      ...(options.tls && { tls: options.tls }),
      subscriptions,
      backoff: options.reconnect ?? { initialMs: 500, maxMs: 30_000 },
      log,
      farewell: (session) => ({ topic: byeTopic(options.agentId), payload: upCodec.encode(['bye', { s: session }]) }),
    },
    delegate,
  );
}
