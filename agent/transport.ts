/** What the agent needs from its connection to the hub; `Link` (MQTT) is the real one. */
export interface Transport {
  readonly connected: boolean;
  /** A random id of the current connection (a new one each time it connects), which its `bye` will carries too. */
  readonly session: string;
  start(): void;
  /** Publishes at QoS 1 if connected; returns false (and sends nothing) otherwise. */
  publish(topic: string, payload: Buffer): boolean;
  /**
   * Adds subscriptions (QoS 1), kept for every later connection too; resolves once the hub's
   * broker granted them (at once when not connected: they are made on connecting).
   */
  subscribe(filters: readonly string[]): Promise<void>;
  /** Drops the current connection; the transport reconnects by itself. */
  disconnect(): void;
  stop(): Promise<void>;
}

export interface TransportDelegate {
  /** Connected, and subscribed to every topic the agent needs. */
  onConnected(): void;
  onDisconnected(): void;
  /** Handles one incoming message; the QoS 1 PUBACK is sent only after the promise settles. */
  onMessage(topic: string, payload: Buffer): Promise<void> | void;
}

export type TransportFactory = (delegate: TransportDelegate, subscriptions: readonly string[]) => Transport;
