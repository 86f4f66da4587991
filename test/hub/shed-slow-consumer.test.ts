import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { upCodec } from '../../shared/codec.js';
import { topics } from '../../shared/topics.js';
import { HubUnderAttack, STOLEN_ID } from '../helpers/hub-under-attack.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A device whose credential was stolen logs in, subscribes to every collection and its `down`
 * topic, then stops reading its socket. Resolves once it is subscribed and no longer reading.
 */
async function frozenSubscriber(port: number, token: string): Promise<Socket> {
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

/** Asks for the log from its start, as a QoS 0 publish on its own `up` topic: the hub answers with a page of up to 512 KiB. */
const pullEverything = (id: number): Buffer =>
  mqttPacket.generate({
    cmd: 'publish',
    topic: topics.up(STOLEN_ID),
    payload: upCodec.encode(['pull', { id, from: 0 }]),
    qos: 0,
    retain: false,
    dup: false,
  });

describe('a hub under attack: a subscriber that stops reading', () => {
  let bench: HubUnderAttack | undefined;
  afterEach(async () => {
    await bench?.stop();
    bench = undefined;
  });

  it('is dropped once over maxQueuedBytes, and never delays delivery to the legit agents', async () => {
    bench = await HubUnderAttack.start();
    await bench.startLoad(50, 8 * 1024);
    await waitFor('a log worth a full page', () => bench!.loadWrites >= 80, 10_000);
    const attacker = await frozenSubscriber(bench.mqttPort, bench.stolenToken);
    let closed = false;
    attacker.once('close', () => (closed = true));

    // It asks for pages it never reads, ~5 MB/s, while the legit agents go on writing and
    // replicating: every legit write must replicate within 5 s throughout. Without the bound,
    // aedes waits for this client's `drain` before delivering anything more, to anyone, until
    // its 20 s drain timeout.
    const probes: number[] = [];
    const attack = (async () => {
      for (let id = 1; !closed && id < 300; id++) {
        attacker.write(pullEverything(id));
        await sleep(100);
      }
    })();
    const deadline = Date.now() + 15_000;
    while (!closed && Date.now() < deadline) probes.push(await bench.legitWriteReplicates(5_000));
    await attack;
    expect(closed, 'the frozen subscriber was disconnected').toBe(true);
    expect(await bench.shed('slow_consumer')).toBe(1);
    await bench.hub.waitForLog('"shed":"slow_consumer"', 2_000);
    // The legit agents keep replicating after it is gone, and kept doing so meanwhile.
    for (let i = 0; i < 3; i++) probes.push(await bench.legitWriteReplicates(5_000));
    expect(Math.max(...probes), 'slowest legit replication during the attack (ms)').toBeLessThan(5_000);
    await bench.expectHealthy();
    attacker.destroy();
  }, 60_000);
});
