import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError } from '../shared/errors.js';
import { PendingLogins, type PendingLoginLimits } from './pending-logins.js';
import type { ShedLog } from './shed.js';

/** Longest a TLS handshake may take, as long as a CONNECT may (Node's default is 120 s). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Connections the kernel may hold for accept. After a restart a whole fleet connects at once, and
 * while the event loop works through a wave of logins, a queue of Node's default 511 overflows:
 * the kernel drops the SYNs, and each device waits out a TCP retransmit, often past its 10 s
 * connect timeout. Linux caps this at net.core.somaxconn (4096 by default since 5.4).
 */
const LISTEN_BACKLOG = 4096;

export interface ListenerOptions {
  /** Plain MQTT (default true). */
  plain: boolean;
  port: number;
  host: string;
  tls?: { port: number; host: string; cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requireClientCert: boolean };
  pendingLogins: PendingLoginLimits;
}

/** A connection accepted and counted as waiting to log in; `loggedIn` ends that (or its close does). */
export type Accepted = (socket: Socket, loggedIn: () => void) => void;

/** Every live connection is told apart by its four-tuple; the peer's address and port alone can repeat. */
const connectionOf = (s: Socket): string => `${s.localAddress}|${s.localPort}|${s.remoteAddress}|${s.remotePort}`;

/**
 * The embedded broker's MQTT listeners, plain and TLS. Each connection counts as waiting to log
 * in from its TCP accept (for TLS, before its handshake) until its login is accepted or it
 * closes (PendingLogins); a TLS handshake that does not finish within 10 s is closed, as a
 * CONNECT that does not come within the connect timeout is. On stop, connections still waiting
 * are closed, so that the servers close at once.
 */
export class Listeners {
  readonly #pending: PendingLogins;
  #server: Server | undefined;
  #tlsServer: TlsServer | undefined;

  private constructor(
    options: ListenerOptions,
    private readonly shedLog: ShedLog,
  ) {
    this.#pending = new PendingLogins(options.pendingLogins);
  }

  static async start(options: ListenerOptions, accepted: Accepted, shedLog: ShedLog, log: Logger): Promise<Listeners> {
    const listeners = new Listeners(options, shedLog);
    await listeners.#listen(options, accepted, log);
    return listeners;
  }

  async #listen(options: ListenerOptions, accepted: Accepted, log: Logger): Promise<void> {
    if (options.plain) {
      this.#server = createServer((socket) => {
        const release = this.#admit(socket);
        if (release) accepted(socket, release);
      });
      await listen(this.#server, options.port, options.host);
    }
    if (options.tls) {
      const { cert, key, ca, requireClientCert } = options.tls;
      // Raw connections in their handshake: their release, and the timer that ends the handshake.
      const handshaking = new Map<string, { release: () => void; timer: NodeJS.Timeout }>();
      const server = createTlsServer(
        { cert, key, ...(ca !== undefined && { ca }), requestCert: requireClientCert, rejectUnauthorized: requireClientCert },
        (socket: TLSSocket) => {
          const id = connectionOf(socket);
          const entry = handshaking.get(id);
          handshaking.delete(id);
          clearTimeout(entry?.timer);
          if (entry) accepted(socket, entry.release);
          else socket.destroy(); // its raw connection was closed meanwhile
        },
      );
      server.on('connection', (raw: Socket) => {
        const release = this.#admit(raw);
        if (!release) return;
        const id = connectionOf(raw);
        const timer = setTimeout(() => raw.destroy(), TLS_HANDSHAKE_TIMEOUT_MS).unref();
        handshaking.set(id, { release, timer });
        raw.once('close', () => {
          clearTimeout(timer);
          if (handshaking.get(id)?.release === release) handshaking.delete(id);
        });
      });
      // A failed handshake (or one past Node's own timeout) only reports: the socket must be closed here.
      server.on('tlsClientError', (error, socket) => {
        log.debug({ err: error.message }, 'TLS handshake failed');
        socket.destroy();
      });
      this.#tlsServer = server;
      await listen(server, options.tls.port, options.tls.host);
    }
    if (!this.#server && !this.#tlsServer) throw new ConfigError('the hub has no listener: enable the plain one or configure TLS');
  }

  /** Counts a new connection as waiting to log in; closes it if that is over a limit. */
  #admit(socket: Socket): (() => void) | undefined {
    const address = socket.remoteAddress ?? 'unknown';
    const release = this.#pending.enter(
      socket.remoteAddress,
      () => socket.destroy(),
      (source) => this.shedLog.shed('pending_logins', { source, evicted: true, pending: this.#pending.pending }),
    );
    if (release) {
      socket.once('close', release);
      return release;
    }
    this.shedLog.shed('pending_logins', { address, pending: this.#pending.pending });
    socket.destroy();
    return undefined;
  }

  /** The plain MQTT port (the TLS one when there is no plain listener). */
  get port(): number {
    return ((this.#server ?? this.#tlsServer)!.address() as AddressInfo).port;
  }

  get tlsPort(): number | undefined {
    return (this.#tlsServer?.address() as AddressInfo | null | undefined)?.port;
  }

  get listening(): boolean {
    return (this.#server ?? this.#tlsServer)?.listening === true;
  }

  /** Stops accepting, closes the connections still waiting to log in, and waits for the servers to close (logged-in connections are the broker's to close). */
  async close(): Promise<void> {
    const closing = [this.#server, this.#tlsServer].map((server) =>
      server?.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve(),
    );
    this.#pending.closeAll();
    await Promise.all(closing);
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
}
