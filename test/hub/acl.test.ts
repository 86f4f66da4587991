import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import { upCodec } from '../../shared/codec.js';
import { encodeHlc } from '../../shared/hlc.js';
import { TOPIC_ROOT, topics } from '../../shared/topics.js';
import { RawClient } from '../helpers/raw-client.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { encodeValue } from '../../shared/value-bytes.js';

const INC = 'c'.repeat(32);

describe('broker access control', () => {
  let hub: Hub;
  const clients: RawClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end()));
    await hub.stop();
  });

  async function client(id: string): Promise<RawClient> {
    const c = await RawClient.connect(hub.port, id);
    clients.push(c);
    return c;
  }

  it('refuses every agent outside development mode until credentials exist', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl') });
    await expect(mqtt.connectAsync(`mqtt://127.0.0.1:${hub.port}`, { clientId: 'pi-1', reconnectPeriod: 0 })).rejects.toThrow(
      /Bad username or password/i,
    );
    await expect(
      mqtt.connectAsync(`mqtt://127.0.0.1:${hub.port}`, { clientId: 'pi-1', username: 'pi-1', password: 'guess', reconnectPeriod: 0 }),
    ).rejects.toThrow(/Bad username or password/i); // an unknown id is refused like a wrong token
  });

  it('refuses client ids that cannot be agent ids', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl'), dev: true });
    await expect(mqtt.connectAsync(`mqtt://127.0.0.1:${hub.port}`, { clientId: 'a/b#', reconnectPeriod: 0 })).rejects.toThrow(
      /Identifier rejected/i,
    );
  });

  it("disconnects an agent that publishes to another agent's up topic, and commits nothing", async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl'), dev: true });
    const mallory = await client('mallory');
    const batch = upCodec.encode([
      'batch',
      { inc: INC, ops: [{ seq: 1, c: 'docs', k: 'k', op: 'put', v: encodeValue(1), hlc: encodeHlc(Date.now(), 0) }] },
    ]);
    mallory.client.publish(topics.up('pi-victim'), batch, { qos: 1 });
    await waitFor('mallory disconnected', () => mallory.closed);
    expect(hub.store.head).toBe(0);
  });

  it('disconnects on publishes to $SYS, collection topics and the hub topic', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl'), dev: true });
    for (const topic of ['$SYS/x', topics.collection('docs'), topics.hub, topics.down('mallory')]) {
      const mallory = await client('mallory');
      mallory.client.publish(topic, Buffer.from('x'), { qos: 1 });
      await waitFor(`disconnect after publishing to ${topic}`, () => mallory.closed);
    }
  });

  it("refuses subscriptions to another agent's down topic and to wildcards over agents", async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl'), dev: true });
    const eve = await client('eve');
    for (const topic of [topics.down('pi-victim'), `${TOPIC_ROOT}/a/+/down`, '#', '$SYS/#', topics.up('eve')]) {
      // SUBACK return code 0x80: refused, without closing the connection
      await expect(eve.client.subscribeAsync(topic, { qos: 1 }), topic).rejects.toThrow(/Subscribe error/);
    }
    for (const topic of [topics.down('eve'), topics.hub, topics.allCollections, topics.collection('docs')]) {
      const granted = await eve.client.subscribeAsync(topic, { qos: 1 });
      expect(granted[0]!.qos, topic).toBe(1);
    }
    // The broker answers a client's packets in order: a later subscription granted on the same
    // connection shows that none of the refusals closed it.
    expect((await eve.client.subscribeAsync(topics.down('eve'), { qos: 1 }))[0]!.qos).toBe(1);
    expect(eve.closed).toBe(false);
  });

  it('limits connection attempts per address', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('acl'), dev: true, connectsPerAddress: 5 });
    // A refused attempt is closed before any CONNACK: the client never connects.
    const clients = Array.from({ length: 8 }, (_, i) =>
      mqtt.connect(`mqtt://127.0.0.1:${hub.port}`, { clientId: `pi-${i}`, reconnectPeriod: 0 }),
    );
    // Every attempt is answered: a CONNACK, or the socket closed.
    const answered = new Set<mqtt.MqttClient>();
    for (const c of clients) for (const event of ['connect', 'close'] as const) c.once(event, () => answered.add(c));
    await waitFor('every attempt answered', () => answered.size === clients.length);
    expect(clients.filter((c) => c.connected)).toHaveLength(5);
    await Promise.all(clients.map((c) => c.endAsync(true)));
  });
});
