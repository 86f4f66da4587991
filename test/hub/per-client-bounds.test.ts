import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import { parseHubConfig } from '../../hub/config.js';
import { upCodec } from '../../shared/codec.js';
import { topics } from '../../shared/topics.js';
import { RawClient } from '../helpers/raw-client.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

describe('what one client can make the hub hold or do', () => {
  let hub: Hub;
  const clients: RawClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end()));
    await hub.stop();
  });

  it('status reports keep only collections that exist (declared, or in the log): made-up names cost the hub nothing', async () => {
    const config = parseHubConfig({ collections: { alarms: {} } });
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('status'), dev: true, config });
    await hub.core.write({ c: 'logs', k: 'l1', op: 'put', v: 1 }); // committed, though not declared
    await hub.core.write({ c: 'logs', k: 'l2', op: 'put', v: 2 }); // the head is 2: LSNs above it are clamped
    const device = await RawClient.connect(hub.port, 'pi-1');
    clients.push(device);
    const applied: Record<string, number> = { alarms: 2, logs: 1 };
    for (let i = 0; i < 40_000; i++) applied[`made-up-${i}`] = 1;
    device.client.publish(topics.up('pi-1'), upCodec.encode(['status', { applied, outbox: 0 }]), { qos: 1 });
    await waitFor('the report arrived', () => hub.core.replication.reports.has('pi-1'));
    expect(hub.core.replication.appliedBy('pi-1')).toEqual({ alarms: 2, logs: 1 });
  });

  it('pulls are answered one at a time per agent, a newer one replacing the one waiting: a flood costs one page per answer used', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('pulls'), dev: true });
    for (let i = 0; i < 30; i++) await hub.core.write({ c: 'docs', k: `k${i}`, op: 'put', v: 'x'.repeat(4000) });
    const device = await RawClient.connect(hub.port, 'pi-1');
    clients.push(device);
    const answered: number[] = [];
    hub.core.on('pull', (agentId, pull) => agentId === 'pi-1' && answered.push(pull.id));
    let superseded = 0;
    hub.core.on('refused', (kind, agentId, n) => kind === 'pull_superseded' && agentId === 'pi-1' && (superseded += n));
    const FLOOD = 300;
    for (let id = 1; id <= FLOOD; id++) device.client.publish(topics.up('pi-1'), upCodec.encode(['pull', { id, from: 0, limit: 10_000 }]));
    await waitFor('the newest pull answered', () => answered.includes(FLOOD));
    // Each pull is answered or replaced before it was: pulls sent back to back mostly replace each other.
    expect(answered.length + superseded).toBe(FLOOD);
    expect(superseded).toBeGreaterThan(0);
    expect(answered).toEqual([...answered].sort((a, b) => a - b)); // never an older one after a newer
  });

  it('status reports: waits of writes not committed yet are dropped, at most 100 new waits each, applied LSNs clamped to the head', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('waits'), dev: true });
    for (let i = 0; i < 3; i++) await hub.core.write({ c: 'alarms', k: `a${i}`, op: 'put', v: i });
    const head = hub.core.store.head;
    const device = await RawClient.connect(hub.port, 'pi-1');
    clients.push(device);
    const refused: number[] = [];
    hub.core.on('refused', (kind, agentId, count) => kind === 'replica_wait' && agentId === 'pi-1' && refused.push(count));
    const inc = 'a'.repeat(32);
    // 1,000 waits (the schema's most): 300 of committed writes, 700 above the head (made up).
    const list: [number, number, string, number][] = Array.from({ length: 1_000 }, (_, i) => [
      i + 1,
      i < 300 ? head : head + 1 + i,
      'alarms',
      5,
    ]);
    const status = upCodec.encode(['status', { applied: { alarms: 2 ** 53 - 1 }, outbox: 0, waits: { inc, list } }]);
    await device.publish(topics.up('pi-1'), status);
    await waitFor('the report arrived', () => hub.core.replication.reports.has('pi-1'));
    expect(hub.core.replication.appliedBy('pi-1')).toEqual({ alarms: head });
    expect(hub.core.replication.waitingFor('pi-1')).toBe(100);
    expect(refused).toEqual([700]);
    await device.publish(topics.up('pi-1'), status);
    await waitFor('the next 100 waits held', () => hub.core.replication.waitingFor('pi-1') === 200);

    // The clamped report does not count pi-1 as a replica of a write committed after it.
    const writer = await RawClient.connect(hub.port, 'pi-2');
    clients.push(writer);
    await hub.core.write({ c: 'alarms', k: 'later', op: 'put', v: 1 });
    const later = hub.core.store.head;
    await writer.publish(
      topics.up('pi-2'),
      upCodec.encode(['status', { applied: {}, outbox: 0, waits: { inc, list: [[1, later, 'alarms', 1]] } }]),
    );
    await waitFor('the writer reported', () => hub.core.replication.waitingFor('pi-2') === 1);
  });

  it('a client that takes over its id is held to the packet limit from its CONNACK on, not to the CONNECT limit', async () => {
    hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('takeover'), dev: true });
    const shed: string[] = [];
    hub.shedLog.on('shed', (reason) => shed.push(reason));
    // A 64 KiB message, over the 8 KiB a connection may send before its login is accepted.
    const applied = Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [randomBytes(8).toString('hex'), i + 1]));
    const large = Buffer.from(upCodec.encode(['status', { applied, outbox: 0 }]));
    expect(large.length).toBeGreaterThan(32 * 1024);
    for (let round = 0; round < 10; round++) {
      const previous = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.port}`, { clientId: 'pi-1', reconnectPeriod: 0 });
      // Many subscriptions make closing the previous connection take a while: aedes sends the
      // CONNACK before that, and says the new client is there only after.
      await previous.subscribeAsync(Array.from({ length: 1_000 }, (_, i) => topics.collection(`c${i}`)));
      // The new connection sends its large message the moment the CONNACK arrives.
      const next = connect(hub.port, '127.0.0.1');
      let closed = false;
      next.on('close', () => (closed = true));
      await new Promise((resolve) => next.once('connect', resolve));
      next.write(
        mqttPacket.generate({ cmd: 'connect', clientId: 'pi-1', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60 }),
      );
      const publish = mqttPacket.generate({
        cmd: 'publish',
        topic: topics.up('pi-1'),
        payload: large,
        qos: 1,
        messageId: 1,
        retain: false,
        dup: false,
      });
      let received = Buffer.alloc(0);
      next.on('data', (chunk: Buffer) => {
        if (received.length === 0) next.write(publish); // the CONNACK's first bytes
        received = Buffer.concat([received, chunk]);
      });
      // CONNACK (4 bytes) and PUBACK (4 bytes): the large message was taken.
      await waitFor('the PUBACK of the large message', () => received.length >= 8 || closed);
      expect(closed).toBe(false);
      next.destroy();
      await previous.endAsync(true);
    }
    expect(shed).toEqual([]);
  });
});
