import type { Transport, TransportDelegate, TransportFactory } from '../../agent/transport.js';
import { HubCore, type HubCoreOptions } from '../../hub/core.js';

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
 * A simulated broker between one HubCore and many agents, driven step by step by a test:
 * messages in flight can be delivered out of order and more than once; a disconnect loses
 * whatever was in flight on that connection (as a dropped TCP connection does); a hub restart
 * reopens the same database. Everything else — stores, protocol, agents — is the real code.
 */
export class SimNetwork {
  hub: HubCore | undefined;
  readonly #clients = new Map<string, SimTransport>();
  readonly #retained = new Map<string, Buffer>();
  #inFlight: InFlight[] = [];
  faults: Faults;

  constructor(private readonly hubOptions: Omit<HubCoreOptions, 'publish'>, private readonly random: () => number, faults: Faults) {
    this.faults = faults;
  }

  startHub(): void {
    this.hub = new HubCore({ ...this.hubOptions, publish: (topic, payload, retain) => this.#fromHub(topic, payload, retain) });
    this.hub.start();
    for (const client of this.#clients.values()) if (client.wanted) this.connect(client.id);
  }

  async stopHub(): Promise<void> {
    for (const client of this.#clients.values()) this.disconnect(client.id);
    this.#inFlight = [];
    const hub = this.hub;
    this.hub = undefined;
    await hub?.stop();
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
    if (!client || client.connected || !client.wanted || !this.hub) return;
    client.connected = true;
    for (const [topic, payload] of this.#retained) {
      if (client.subscriptions.some((f) => matches(f, topic))) this.#inFlight.push({ to: agentId, from: 'hub', topic, payload });
    }
    client.delegate.onConnected();
  }

  disconnect(agentId: string): void {
    const client = this.#clients.get(agentId);
    if (!client?.connected) return;
    client.connected = false;
    this.#inFlight = this.#inFlight.filter((m) => m.to !== agentId && m.from !== agentId);
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
      this.hub?.onUp(from, payload);
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

  constructor(
    private readonly net: SimNetwork,
    readonly id: string,
    readonly delegate: TransportDelegate,
    public subscriptions: readonly string[],
  ) {}

  subscribe(filters: readonly string[]): Promise<void> {
    this.subscriptions = [...new Set([...this.subscriptions, ...filters])];
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
