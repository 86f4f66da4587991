import type { Transport, TransportDelegate, TransportFactory } from './transport.js';

/** Bytes a message costs on the link, as metered: its topic and payload (MQTT, TCP and TLS framing are not counted). */
export const messageBytes = (topic: string, payload: Buffer): number => Buffer.byteLength(topic) + payload.length;

/** A transport whose messages, both ways, are counted against the transfer budget (agent/transfer-budget.ts). */
export function metered(factory: TransportFactory, spend: (bytes: number) => void): TransportFactory {
  return (delegate: TransportDelegate, subscriptions: readonly string[]): Transport => {
    const inner = factory(
      {
        ...delegate,
        onMessage: (topic, payload) => {
          spend(messageBytes(topic, payload));
          return delegate.onMessage(topic, payload);
        },
      },
      subscriptions,
    );
    return {
      get connected() {
        return inner.connected;
      },
      get session() {
        return inner.session;
      },
      start: () => inner.start(),
      publish: (topic, payload) => {
        const sent = inner.publish(topic, payload);
        if (sent) spend(messageBytes(topic, payload));
        return sent;
      },
      subscribe: (filters) => inner.subscribe(filters),
      disconnect: () => inner.disconnect(),
      stop: () => inner.stop(),
    };
  };
}
