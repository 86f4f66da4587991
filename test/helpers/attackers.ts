import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { upCodec } from '../../shared/codec.js';
import { topics } from '../../shared/topics.js';
import { STOLEN_ID } from './hub-under-attack.js';
import { waitFor } from './wait.js';

/**
 * A device whose credential was stolen logs in, subscribes to every collection and its `down`
 * topic, then stops reading its socket. Resolves once it is subscribed and no longer reading.
 */
export async function frozenSubscriber(port: number, token: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      clientId: STOLEN_ID,
      username: STOLEN_ID,
      password: Buffer.from(token),
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
    }),
  );
  await waitFor('CONNACK', () => received >= 4, 5_000);
  socket.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: topics.allCollections, qos: 1 },
        { topic: topics.down(STOLEN_ID), qos: 1 },
      ],
    }),
  );
  await waitFor('SUBACK', () => received >= 4 + 6, 5_000);
  socket.pause();
  socket.removeAllListeners('data');
  return socket;
}

/** A QoS 0 publish on the stolen device's own `up` topic, as raw bytes for a raw socket. */
export const upPublish = (payload: Buffer): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: topics.up(STOLEN_ID), payload, qos: 0, retain: false, dup: false });

/** Asks for the log from its start: the hub answers with a page of up to 512 KiB. */
export const pullEverything = (id: number): Buffer => upPublish(upCodec.encode(['pull', { id, from: 0 }]));

/** MQTT's variable-length encoding of a packet's remaining length. */
export function remainingLength(n: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    bytes.push(byte);
  } while (n > 0);
  return Buffer.from(bytes);
}
