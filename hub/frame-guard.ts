import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { InboundBudget, type InboundBudgets } from './inbound-budget.js';
import { SendQueue } from './send-queue.js';
import type { ShedReason } from './shed.js';

/** MQTT packet type 1 (CONNECT), in the high nibble of the fixed header's first byte. */
const CONNECT_TYPE = 1;

/**
 * Reads MQTT fixed headers as bytes pass and refuses a packet whose announced size is over the
 * limit, before anything buffers it. aedes has no maximum packet size (aedes #831): without
 * this a client could make the hub hold ~256 MB per connection.
 *
 * With `loginLimit`, a connection is also held to that much smaller limit until `admit()` (the
 * broker accepted its login), and its first packet must be a CONNECT: an anonymous client can
 * make the hub hold a few KB, not megabytes, for the whole connect timeout.
 */
export class FrameMeter {
  #state: 'type' | 'length' | 'body' = 'type';
  #length = 0;
  #multiplier = 1;
  #lengthBytes = 0;
  #remaining = 0;
  #packets = 0;
  #admitted: boolean;
  /** Why the stream was refused, once it was. */
  refused: ShedReason | undefined;

  constructor(
    readonly maxPacketBytes: number,
    readonly loginLimit?: number,
  ) {
    this.#admitted = loginLimit === undefined;
  }

  /** The client is logged in: from now on packets are held to `maxPacketBytes`. */
  admit(): void {
    this.#admitted = true;
  }

  /** False once a packet announces more than the limit (or a malformed length); `refused` says why. */
  feed(chunk: Uint8Array): boolean {
    if (this.refused) return false;
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === 'type') {
        if (this.#packets++ === 0 && !this.#admitted && chunk[i]! >> 4 !== CONNECT_TYPE) return this.#refuse('not_connect');
        i += 1;
        this.#state = 'length';
        this.#length = 0;
        this.#multiplier = 1;
        this.#lengthBytes = 0;
      } else if (this.#state === 'length') {
        const byte = chunk[i++]!;
        this.#length += (byte & 0x7f) * this.#multiplier;
        this.#multiplier *= 128;
        this.#lengthBytes += 1;
        if (byte & 0x80) {
          if (this.#lengthBytes === 4) return this.#refuse('packet_too_large'); // MQTT allows at most four length bytes
          continue;
        }
        if (!this.#admitted && this.#length > this.loginLimit!) return this.#refuse('connect_too_large');
        if (this.#length > this.maxPacketBytes) return this.#refuse('packet_too_large');
        this.#remaining = this.#length;
        this.#state = this.#remaining === 0 ? 'type' : 'body';
      } else {
        const take = Math.min(this.#remaining, chunk.length - i);
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = 'type';
      }
    }
    return true;
  }

  #refuse(reason: ShedReason): false {
    this.refused = reason;
    return false;
  }
}

export interface ConnectionLimits {
  /** Largest packet once logged in. */
  maxPacketBytes: number;
  /** Largest packet before login: the CONNECT, and anything sent before the broker accepted it. */
  maxConnectBytes: number;
  /** Most bytes waiting to be written to the client; see SendQueue for what happens past it. */
  maxQueuedBytes: number;
  /** Bytes the client may send per second; see InboundBudget for what happens past it. */
  maxInboundBytesPerSecond: number;
  /** Once logged in, the agent's budget is kept here, across its connections. */
  budgets?: InboundBudgets;
}

/**
 * A connection as the broker sees it: `admit()` once the client's login is accepted; `queue` is
 * what it has not been sent yet.
 */
export type GuardedConnection = Duplex & { admit(agentId: string): void; readonly queue: SendQueue };

/**
 * Wraps a socket in the stream the broker reads and writes, which bounds what one client can
 * make the hub hold:
 * - incoming, every packet is within the limits (FrameMeter) before a byte of it is passed on;
 * - outgoing, writes never wait for the client: aedes delivers a message to each subscriber and
 *   waits for every write's callback (and, on a full buffer, for `drain`) before it takes the
 *   next message, so one client that stops reading would hold up delivery to everyone until its
 *   drain timeout (aedes #1060). Here a write completes at once, and what is left unsent is
 *   bounded by the SendQueue: the broker skips change sets for a backlogged client, and a client
 *   that stopped reading is dropped (it pulls what it missed when it reconnects).
 * - incoming, at most `maxInboundBytesPerSecond` (InboundBudget): past it, the socket is not read
 *   for a while.
 * On a refusal the socket is destroyed and `onShed` says why (with the agent id once logged in);
 * a throttled client is reported the same way, and slowed, not dropped. `loggedIn` is called once
 * the client's login is accepted, or it closes, whichever comes first.
 */
export function guardConnection(
  socket: Socket,
  limits: ConnectionLimits,
  onShed: (reason: ShedReason, peer: string, facts: Record<string, number | string>) => void,
  loggedIn: () => void = () => undefined,
): GuardedConnection {
  const meter = new FrameMeter(limits.maxPacketBytes, limits.maxConnectBytes);
  const peer = (): string => `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? ''}`;
  let agentId: string | undefined;
  const queue = new SendQueue(socket, limits.maxQueuedBytes, (overflow) => {
    onShed('slow_consumer', peer(), { ...(agentId !== undefined && { agentId }), ...overflow, maxQueuedBytes: limits.maxQueuedBytes });
    socket.destroy();
  });
  // Before login, the connection's own (it may send a few KB then); after, its agent's.
  let budget = new InboundBudget(limits.maxInboundBytesPerSecond);
  // Reading stops while the broker has not taken what was pushed, or the budget is spent; it
  // resumes once neither holds.
  let backpressured = false;
  let throttle: NodeJS.Timeout | undefined;
  const guarded = new Duplex({
    read() {
      backpressured = false;
      if (throttle === undefined) socket.resume();
    },
    write(chunk: Buffer, encoding, callback) {
      if (socket.destroyed) return callback();
      socket.write(chunk, encoding);
      queue.wrote();
      callback();
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  // The broker and the fleet view ask the connection for the peer's address; with mutual TLS the
  // authenticator asks for the verified client certificate's common name.
  const tls = socket as Partial<TLSSocket>;
  const peerCommonName = tls.authorized === true ? String(tls.getPeerCertificate?.().subject?.CN ?? '') || undefined : undefined;
  Object.assign(guarded, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, peerCommonName });
  socket.on('data', (chunk: Buffer) => {
    if (!meter.feed(chunk)) {
      const limit = meter.refused === 'packet_too_large' ? limits.maxPacketBytes : limits.maxConnectBytes;
      onShed(meter.refused!, peer(), { ...(agentId !== undefined && { agentId }), limitBytes: limit });
      socket.destroy();
      return;
    }
    if (!guarded.push(chunk)) {
      backpressured = true;
      socket.pause();
    }
    const waitMs = budget.spend(chunk.length);
    if (waitMs > 0 && throttle === undefined) {
      onShed('inbound_rate', peer(), {
        ...(agentId !== undefined && { agentId }),
        pausedMs: waitMs,
        bytesPerSecond: limits.maxInboundBytesPerSecond,
      });
      socket.pause();
      throttle = setTimeout(() => {
        throttle = undefined;
        if (!backpressured && !socket.destroyed) socket.resume();
      }, waitMs);
    }
  });
  socket.on('end', () => guarded.push(null));
  socket.on('close', () => {
    clearTimeout(throttle);
    loggedIn();
    queue.stop();
    guarded.destroy();
  });
  socket.on('error', (error) => guarded.destroy(error));
  const admit = (id: string): void => {
    agentId = id;
    meter.admit();
    if (limits.budgets) budget = limits.budgets.of(id);
    loggedIn();
  };
  return Object.assign(guarded, { admit, queue });
}
