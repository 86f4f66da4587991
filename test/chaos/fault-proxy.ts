import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/** What the link between one agent and the hub does to traffic. */
export type LinkMode =
  | { kind: 'pass' }
  /** Closes every connection and refuses new ones. */
  | { kind: 'cut' }
  /** Accepts connections and bytes, but never delivers anything either way. */
  | { kind: 'blackhole' };

interface Pair {
  client: Socket;
  upstream: Socket;
}

/** Sees the bytes one connection carried to the agent, in order, as the agent got them. */
export type DownstreamTap = (chunk: Buffer) => void;

/**
 * A TCP proxy between one agent and the hub, controlled by the test: cut, blackhole, add
 * latency, limit bandwidth, reset connections. Counts the bytes it carried each way, and shows
 * those it delivered to the agent to a tap made per connection, if given one.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  #mode: LinkMode = { kind: 'pass' };
  latencyMs = 0;
  /** Bytes per second each way; 0 = unlimited. */
  bandwidth = 0;
  bytesUp = 0;
  bytesDown = 0;

  private constructor(
    private readonly target: { host: string; port: number },
    private readonly tapDown?: () => DownstreamTap,
  ) {
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(target: { host: string; port: number }, tapDown?: () => DownstreamTap): Promise<FaultProxy> {
    const proxy = new FaultProxy(target, tapDown);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get mode(): LinkMode {
    return this.#mode;
  }

  set mode(mode: LinkMode) {
    const leavingBlackhole = this.#mode.kind === 'blackhole' && mode.kind !== 'blackhole';
    this.#mode = mode;
    // A cut drops every connection; after a blackhole the streams have holes: drop them too.
    if (mode.kind === 'cut' || leavingBlackhole) this.reset();
  }

  /** Destroys every open connection at once (the peers see a reset). */
  reset(): void {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#mode.kind === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.#pairs.add(pair);
    const drop = (): void => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    this.#forward(client, upstream, (n) => (this.bytesUp += n));
    const tap = this.tapDown?.();
    this.#forward(upstream, client, (n) => (this.bytesDown += n), tap);
  }

  /** Copies bytes one way, in order, through the current latency, bandwidth and mode. */
  #forward(from: Socket, to: Socket, count: (bytes: number) => void, tap?: DownstreamTap): void {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (this.#mode.kind === 'blackhole') return;
      const latency = this.latencyMs;
      const bandwidth = this.bandwidth;
      from.pause();
      chain = chain
        .then(async () => {
          const delay = latency + (bandwidth > 0 ? (chunk.length / bandwidth) * 1000 : 0);
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          if (this.#mode.kind !== 'pass' || to.destroyed) return;
          count(chunk.length);
          to.write(chunk);
          tap?.(chunk);
        })
        .finally(() => from.resume());
    });
  }
}
