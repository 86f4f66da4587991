import type { Transport, TransportDelegate, TransportFactory } from '../../agent/transport.js';
import { partitionsOf } from '../../hub/config.js';
import { HubCore, type HubCoreOptions } from '../../hub/core.js';
import { sqliteDirOf } from '../../hub/store/open-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { DEFAULT_PARTITION, partitionOfTopic } from '../../shared/topics.js';

interface InFlight {
  /** `hub`, or the agent id it is for. */
  to: string;
  from: string;
  topic: string;
  payload: Buffer;
}

export interface Faults {
  /** Chance that a delivered message is delivered again later. */
  duplicate: number;
  /** Messages are picked at random among the first `reorderWindow` in flight (1 = in order). */
  reorderWindow: number;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * A simulated broker between the hub — one HubCore per partition of its config — and many
 * agents, driven step by step by a test: messages in flight can be delivered out of order and
 * more than once; a disconnect loses whatever was in flight on that connection (as a dropped TCP
 * connection does); a hub restart reopens the same database. Everything else — stores,
 * protocol, agents — is the real code.
 */
export class SimNetwork {
  /** The hub of each partition that is running. */
  readonly hubs = new Map<string, HubCore>();
  readonly #clients = new Map<string, SimTransport>();
  readonly #retained = new Map<string, Buffer>();
  #inFlight: InFlight[] = [];
  faults: Faults;

  constructor(
    private readonly hubOptions: Omit<HubCoreOptions, 'publish' | 'store'> & { dataDir: string },
    private readonly random: () => number,
    faults: Faults,
  ) {
    this.faults = faults;
  }

  /** The default partition's hub. */
  get hub(): HubCore | undefined {
    return this.hubs.get(DEFAULT_PARTITION);
  }

  get partitions(): string[] {
    return this.hubOptions.config ? partitionsOf(this.hubOptions.config) : [DEFAULT_PARTITION];
  }

  /** Starts the hub of every partition (or of one, as a standby taking it over does). */
  startHub(partition?: string): void {
    for (const p of partition === undefined ? this.partitions : [partition]) {
      const hub = new HubCore({
        ...this.hubOptions,
        partition: p,
        store: new SqliteHubStore(sqliteDirOf(this.hubOptions.dataDir, p)),
        publish: (topic, payload, retain) => this.#fromHub(topic, payload, retain),
      });
      hub.start();
      this.hubs.set(p, hub);
    }
    for (const client of this.#clients.values()) if (client.wanted) this.connect(client.id);
  }

  /**
   * Stops the hub of every partition: every agent's connection drops with it. Or stops one
   * partition's hub: agents stay connected to the broker, and what was in flight to or from that
   * hub is lost (the harsher case: a broker session would have kept it).
   */
  async stopHub(partition?: string): Promise<void> {
    if (partition === undefined) {
      for (const client of this.#clients.values()) this.disconnect(client.id);
      this.#inFlight = [];
    } else {
      this.#inFlight = this.#inFlight.filter((m) => partitionOfTopic(m.topic) !== partition);
    }
    for (const p of partition === undefined ? [...this.hubs.keys()] : [partition]) {
      const hub = this.hubs.get(p);
      this.hubs.delete(p);
      await hub?.stop();
    }
  }

  transport(agentId: string): TransportFactory {
    return (delegate, subscriptions) => {
      const client = new SimTransport(this, agentId, delegate, subscriptions);
      this.#clients.set(agentId, client);
      return client;
    };
  }

  connect(agentId: string): void {
    const client = this.#clients.get(agentId);
    if (!client || client.connected || !client.wanted || this.hubs.size === 0) return;
    client.connected = true;
    client.nextSession();
    for (const [topic, payload] of this.#retained) {
      if (client.subscriptions.some((f) => matches(f, topic))) this.#inFlight.push({ to: agentId, from: 'hub', topic, payload });
    }
    client.delegate.onConnected();
  }

  /** A new subscription gets the retained messages it matches, as from a real broker. */
  deliverRetained(agentId: string, filters: readonly string[]): void {
    for (const [topic, payload] of this.#retained) {
      if (filters.some((f) => matches(f, topic))) this.#inFlight.push({ to: agentId, from: 'hub', topic, payload });
    }
  }

  disconnect(agentId: string): void {
    const client = this.#clients.get(agentId);
    if (!client?.connected) return;
    client.connected = false;
    this.#inFlight = this.#inFlight.filter((m) => m.to !== agentId && m.from !== agentId);
    // As the embedded broker tells its hub when a connection closes.
    for (const hub of this.hubs.values()) hub.scopes.offline(agentId);
    client.delegate.onDisconnected();
  }

  send(from: string, topic: string, payload: Buffer): void {
    this.#inFlight.push({ to: 'hub', from, topic, payload });
  }

  get inFlight(): number {
    return this.#inFlight.length;
  }

  /** Delivers one message, with the configured faults; false when nothing is in flight. */
  async step(): Promise<boolean> {
    if (this.#inFlight.length === 0) return false;
    const i = Math.floor(this.random() * Math.min(this.faults.reorderWindow, this.#inFlight.length));
    const [message] = this.#inFlight.splice(i, 1);
    if (this.random() < this.faults.duplicate) {
      this.#inFlight.splice(Math.floor(this.random() * (this.#inFlight.length + 1)), 0, message!);
    }
    const { to, from, payload, topic } = message!;
    if (to === 'hub') {
      this.hubs.get(partitionOfTopic(topic))?.onUp(from, payload);
    } else {
      const client = this.#clients.get(to);
      if (client?.connected) await client.delegate.onMessage(topic, payload);
    }
    await tick(); // let the hub's group commit and the agent's write queue run
    return true;
  }

  #fromHub(topic: string, payload: Buffer, retain: boolean): void {
    if (retain) this.#retained.set(topic, payload);
    for (const client of this.#clients.values()) {
      if (client.connected && client.subscriptions.some((f) => matches(f, topic))) {
        this.#inFlight.push({ to: client.id, from: 'hub', topic, payload });
      }
    }
  }
}

class SimTransport implements Transport {
  connected = false;
  wanted = false;
  #connections = 0;

  /** Each connection's id, as a real link makes one per connection. */
  get session(): string {
    return this.#connections.toString(16).padStart(16, '0');
  }

  /** Called as the connection comes up. */
  nextSession(): void {
    this.#connections += 1;
  }

  constructor(
    private readonly net: SimNetwork,
    readonly id: string,
    readonly delegate: TransportDelegate,
    public subscriptions: readonly string[],
  ) {}

  subscribe(filters: readonly string[]): Promise<void> {
    const added = filters.filter((f) => !this.subscriptions.includes(f));
    this.subscriptions = [...this.subscriptions, ...added];
    if (this.connected) this.net.deliverRetained(this.id, added);
    return Promise.resolve();
  }

  start(): void {
    this.wanted = true;
    this.net.connect(this.id);
  }

  publish(topic: string, payload: Buffer): boolean {
    if (!this.connected) return false;
    this.net.send(this.id, topic, payload);
    return true;
  }

  disconnect(): void {
    this.net.disconnect(this.id);
  }

  async stop(): Promise<void> {
    this.wanted = false;
    this.net.disconnect(this.id);
  }
}
