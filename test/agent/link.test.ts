import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Link } from '../../agent/link.js';
import { MOSQUITTO, MosquittoProcess } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** Mosquitto sends the SUBACK and the retained message in one segment; aedes a moment apart. */
const BROKERS = MOSQUITTO ? (['aedes', 'mosquitto'] as const) : (['aedes'] as const);

describe('agent link', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  });

  async function broker(kind: 'aedes' | 'mosquitto'): Promise<{ url: string }> {
    if (kind === 'mosquitto') {
      const dir = tempDir('link-mosquitto');
      writeFileSync(join(dir, 'mosquitto.conf'), 'allow_anonymous true\n');
      const mosquitto = await MosquittoProcess.start(dir);
      closers.push(() => mosquitto.stop());
      return { url: mosquitto.url };
    }
    const aedes = await Aedes.createBroker();
    const server: Server = createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    closers.push(() => new Promise((resolve) => aedes.close(() => server.close(() => resolve(undefined)))));
    return { url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  it.each(BROKERS)('subscribes on the live connection to filters added from a message handler (%s)', async (kind) => {
    // The agent learns of the hub's partitions from a retained status, delivered right after the
    // first SUBACK, and subscribes to their topics from that message's handler. Those
    // subscriptions must be made on this connection, not left for a reconnect that may not come.
    const { url } = await broker(kind);
    const publisher = await mqtt.connectAsync(url, { clientId: 'publisher' });
    closers.push(() => publisher.endAsync());
    await publisher.publishAsync('status', 'partitions: billing', { qos: 1, retain: true });

    const received: string[] = [];
    let added: Promise<void> | undefined;
    const link: Link = new Link(
      {
        url,
        clientId: 'pi-1',
        subscriptions: ['status'],
        backoff: { initialMs: 50, maxMs: 100 },
        log: pino({ level: 'silent' }),
      },
      {
        onConnected: () => undefined,
        onDisconnected: () => undefined,
        onMessage: (topic, payload) => {
          received.push(`${topic}: ${payload.toString()}`);
          if (topic === 'status') added = link.subscribe(['billing/down']);
        },
      },
    );
    closers.push(() => link.stop());
    link.start();
    await waitFor('the retained status', () => received.length > 0, 5_000);
    await waitFor('connected', () => link.connected, 5_000);
    await added; // granted by the broker
    await publisher.publishAsync('billing/down', 'ack', { qos: 1 });
    await waitFor('the message on the added subscription', () => received.includes('billing/down: ack'), 3_000);
    expect(received).toEqual(['status: partitions: billing', 'billing/down: ack']);
  });
});
