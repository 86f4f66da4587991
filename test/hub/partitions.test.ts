import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessControl } from '../../hub/access.js';
import { assignment, parseHubConfig, partitionOf, partitionsOf } from '../../hub/config.js';
import { ConfigError } from '../../shared/errors.js';
import { HubCore } from '../../hub/core.js';
import { BrokerClientHub } from '../../hub/external-broker.js';
import { Hub } from '../../hub/hub.js';
import { mosquittoFiles } from '../../hub/mosquitto-export.js';
import { openHubStore, sqliteDirOf } from '../../hub/store/open-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { mayPublish, maySubscribe } from '../../hub/topic-acl.js';
import { unpackAck } from '../../shared/acks.js';
import { broadcastCodec, downCodec, upCodec } from '../../shared/codec.js';
import { encodeHlc } from '../../shared/hlc.js';
import type { HubStatusMessage } from '../../shared/messages.js';
import { byeTopic, partitionTopics, topics } from '../../shared/topics.js';
import { MOSQUITTO, MosquittoProcess, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { outpost } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { encodeValue } from '../../shared/value-bytes.js';

const PARTITIONED = {
  access: { default: { read: ['*'], write: ['*'] }, collections: { ledger: { read: ['pi-1'] } } },
  partitions: { shop: ['orders', 'ledger'], telemetry: ['readings'] },
};
const shop = partitionTopics('shop');
const batch = (c: string, key: string, seq = 1): Buffer =>
  upCodec.encode([
    'batch',
    { inc: 'e'.repeat(32), ops: [{ seq, c, k: key, op: 'put', v: encodeValue({ key }), hlc: encodeHlc(Date.now(), 0) }] },
  ]);

describe('the partitions section of the hub config', () => {
  it('assigns listed collections to their partition and every other one to default', () => {
    const config = parseHubConfig(PARTITIONED);
    expect(partitionOf(config, 'orders')).toBe('shop');
    expect(partitionOf(config, 'readings')).toBe('telemetry');
    expect(partitionOf(config, 'notes')).toBe('default');
    expect(assignment(config)).toEqual({ orders: 'shop', ledger: 'shop', readings: 'telemetry' });
    expect(partitionsOf(config)).toEqual(['default', 'shop', 'telemetry']);
    expect(parseHubConfig({}).partitions).toEqual({});
  });

  it('refuses bad partition names, a listed default, and a collection in two partitions, naming them', () => {
    expect(() => parseHubConfig({ partitions: { Shop: ['orders'] } })).toThrow(ConfigError);
    expect(() => parseHubConfig({ partitions: { 'a/b': ['orders'] } })).toThrow(/partitions/);
    expect(() => parseHubConfig({ partitions: { ['x'.repeat(65)]: ['orders'] } })).toThrow(/partitions/);
    expect(() => parseHubConfig({ partitions: { shop: ['Orders'] } })).toThrow(/\/partitions\/shop\/0/);
    expect(() => parseHubConfig({ partitions: { default: ['orders'] } })).toThrow(/partitions\/default may not be listed/);
    expect(() => parseHubConfig({ partitions: { shop: ['orders'], billing: ['orders'] } })).toThrow(
      /collection orders is assigned to both partition shop and partition billing/,
    );
    expect(() => parseHubConfig({ partitions: { shop: ['orders', 'orders'] } })).toThrow(/lists collection orders twice/);
  });
});

describe('HubCore of one partition', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  function core(partition?: string): { core: HubCore; sent: Array<{ topic: string; payload: Buffer; retain: boolean }> } {
    const sent: Array<{ topic: string; payload: Buffer; retain: boolean }> = [];
    const hub = new HubCore({
      store: new SqliteHubStore(tempDir('partition-core')),
      config: parseHubConfig(PARTITIONED),
      dev: true,
      ...(partition !== undefined && { partition }),
      ...(partition === undefined ? {} : { epoch: 7 }),
      publish: (topic, payload, retain) => sent.push({ topic, payload, retain }),
    });
    closers.push(() => hub.stop());
    return { core: hub, sent };
  }

  const statusOf = (sent: Array<{ topic: string; payload: Buffer }>, topic: string): HubStatusMessage[1] => {
    const message = broadcastCodec.decode(sent.find((s) => s.topic === topic)!.payload);
    expect(message[0]).toBe('hub');
    return message[1] as HubStatusMessage[1];
  };

  it("refuses an agent's op for another partition's collection with wrong_partition and commits nothing of it", async () => {
    const { core: hub, sent } = core();
    hub.onUp(
      'pi-1',
      upCodec.encode([
        'batch',
        {
          inc: 'e'.repeat(32),
          ops: [
            { seq: 1, c: 'orders', k: 'o1', op: 'put', v: encodeValue(1), hlc: encodeHlc(Date.now(), 0) },
            { seq: 2, c: 'notes', k: 'n1', op: 'put', v: encodeValue(1), hlc: encodeHlc(Date.now(), 1) },
          ],
        },
      ]),
    );
    await waitFor('the ack', () => sent.some((s) => s.topic === topics.down('pi-1')));
    const ack = downCodec.decode(sent.find((s) => s.topic === topics.down('pi-1'))!.payload);
    expect(ack[0]).toBe('ack');
    const results = unpackAck(ack[1] as Parameters<typeof unpackAck>[0]);
    expect(results[0]).toMatchObject({ seq: 1, outcome: 'rejected', reason: 'wrong_partition' });
    expect(results[0]!.detail).toMatch(/orders belongs to partition shop.*upgrade the agent/);
    // A rejected op never blocks the ones behind it.
    expect(results[1]).toMatchObject({ seq: 2, outcome: 'committed', lsn: 1 });
    expect(await hub.store.document('orders', 'o1')).toBeUndefined();
    expect(hub.store.head).toBe(1);
    expect(sent.map((s) => s.topic)).not.toContain(topics.collection('orders'));
  });

  it("a named partition publishes on its own topics, refuses the default partition's collections, and starts its own LSNs", async () => {
    const { core: hub, sent } = core('shop');
    expect(await hub.write({ c: 'notes', k: 'n1', op: 'put', v: 1 })).toMatchObject({ outcome: 'rejected', reason: 'wrong_partition' });
    expect(await hub.write({ c: 'readings', k: 'r1', op: 'put', v: 1 })).toMatchObject({ outcome: 'rejected', reason: 'wrong_partition' });
    expect(await hub.write({ c: 'orders', k: 'o1', op: 'put', v: 1 })).toMatchObject({ outcome: 'committed', lsn: 1 });
    expect(sent.map((s) => s.topic)).toEqual([shop.collection('orders')]);
    const changes = broadcastCodec.decode(sent[0]!.payload);
    expect(changes).toMatchObject(['changes', { c: 'orders', epoch: 7 }]);

    hub.onUp('pi-2', batch('orders', 'o2'));
    await waitFor("the ack on the partition's down topic", () => sent.some((s) => s.topic === shop.down('pi-2')));
    expect(sent.map((s) => s.topic)).not.toContain(topics.down('pi-2'));
  });

  it("the default partition's status carries the assignment; a named partition's says which it is", () => {
    const plainSent: Array<{ topic: string; payload: Buffer }> = [];
    const unpartitioned = new HubCore({
      store: new SqliteHubStore(tempDir('plain-core')),
      publish: (topic, payload) => plainSent.push({ topic, payload }),
    });
    closers.push(() => unpartitioned.stop());
    unpartitioned.publishStatus();
    const plainStatus = statusOf(plainSent, topics.hub);
    expect(plainStatus).not.toHaveProperty('parts');
    expect(plainStatus).not.toHaveProperty('part');

    const byDefault = core();
    byDefault.core.publishStatus();
    const status = statusOf(byDefault.sent, topics.hub);
    expect(status.parts).toEqual({ orders: 'shop', ledger: 'shop', readings: 'telemetry' });
    expect(status).not.toHaveProperty('part');
    expect(byDefault.sent.find((s) => s.topic === topics.hub)!.retain).toBe(true);

    const byShop = core('shop');
    byShop.core.publishStatus();
    const shopStatus = statusOf(byShop.sent, shop.hub);
    expect(shopStatus).toMatchObject({ part: 'shop', epoch: 7 });
    expect(shopStatus).not.toHaveProperty('parts');
  });
});

describe('topic rules across partitions', () => {
  const access = new AccessControl(parseHubConfig(PARTITIONED).access, false);
  const config = parseHubConfig(PARTITIONED);
  const rules = {
    mayRead: access.mayRead.bind(access),
    mayReadAll: access.mayReadAll.bind(access),
    partitionOf: (c: string) => partitionOf(config, c),
  };

  it('an agent publishes on its own up topic of any partition and its own bye topic only', () => {
    expect(mayPublish('pi-1', shop.up('pi-1'), false)).toBe(true);
    expect(mayPublish('pi-1', shop.up('pi-2'), false)).toBe(false);
    expect(mayPublish('pi-1', shop.up('pi-1'), true)).toBe(false);
    expect(mayPublish('pi-1', shop.down('pi-1'), false)).toBe(false);
    expect(mayPublish('pi-1', topics.up('pi-1'), false)).toBe(true);
    expect(mayPublish('pi-1', byeTopic('pi-1'), false)).toBe(true);
    expect(mayPublish('pi-1', byeTopic('pi-2'), false)).toBe(false);
    expect(mayPublish('pi-1', byeTopic('pi-1'), true)).toBe(false);
  });

  it("subscribes to its down and hub topics of any partition, and to a collection it may read on its partition's topic or the default one", () => {
    expect(maySubscribe('pi-2', shop.down('pi-2'), rules, false)).toBe(true);
    expect(maySubscribe('pi-2', shop.down('pi-1'), rules, false)).toBe(false);
    expect(maySubscribe('pi-2', shop.hub, rules, false)).toBe(true);
    expect(maySubscribe('pi-2', shop.collection('orders'), rules, false)).toBe(true);
    // The default partition's topic of a collection it may read: nothing of shop's is published
    // there, and an agent that has not yet heard of the partitions asks for it.
    expect(maySubscribe('pi-2', topics.collection('orders'), rules, false)).toBe(true);
    expect(maySubscribe('pi-2', shop.collection('notes'), rules, false)).toBe(false);
    expect(maySubscribe('pi-2', shop.collection('ledger'), rules, false)).toBe(false);
    expect(maySubscribe('pi-1', shop.collection('ledger'), rules, false)).toBe(true);
    expect(maySubscribe('pi-2', 'outpost/v6/p/+/hub', rules, false)).toBe(false);
  });
});

describe('the Mosquitto export with partitions', () => {
  it("lets agents use every partition's up, down and hub topics, and read their collections on their partition's topics", () => {
    const config = parseHubConfig(PARTITIONED);
    const files = mosquittoFiles({
      agents: [
        { agentId: 'pi-1', mosquittoHash: '$7$h1' },
        { agentId: 'pi-2', mosquittoHash: '$7$h2' },
      ],
      access: new AccessControl(config.access, false),
      outDir: tempDir('export'),
      hubUser: { username: 'outpost-hub', mosquittoHash: '$7$hub' },
      partitions: assignment(config),
    });
    expect(files.passwords.split('\n').filter(Boolean)).toEqual([
      'outpost-hub:$7$hub',
      'outpost-hub-p-shop:$7$hub',
      'outpost-hub-p-telemetry:$7$hub',
      'pi-1:$7$h1',
      'pi-2:$7$h2',
    ]);
    for (const line of [
      'pattern write outpost/v6/a/%u/up',
      'pattern write outpost/v6/a/%u/bye',
      'pattern read outpost/v6/a/%u/down',
      'pattern write outpost/v6/p/+/a/%u/up',
      'pattern read outpost/v6/p/+/a/%u/down',
      'user outpost-hub-p-shop\ntopic readwrite outpost/v6/#',
    ])
      expect(files.acl).toContain(line);
    expect(files.acl).toMatch(/user pi-1\ntopic read outpost\/v6\/hub\ntopic read outpost\/v6\/c\/#\ntopic read outpost\/v6\/p\/\+\/hub\n/);
    // pi-1 reads every collection of both partitions; pi-2 not the ledger.
    expect(files.acl).toMatch(/user pi-1\n(.+\n)*topic read outpost\/v6\/p\/shop\/c\/#\ntopic read outpost\/v6\/p\/telemetry\/c\/#/);
    expect(files.acl).toMatch(/user pi-2\n(.+\n)*topic read outpost\/v6\/p\/shop\/c\/orders\ntopic read outpost\/v6\/p\/telemetry\/c\/#/);
    expect(files.acl).not.toContain('outpost/v6/p/shop/c/ledger');
  });

  it("refuses an agent named like a partition's hub account", () => {
    expect(() =>
      mosquittoFiles({
        agents: [{ agentId: 'outpost-hub-p-shop', mosquittoHash: '$7$x' }],
        access: new AccessControl(parseHubConfig({}).access, false),
        outDir: tempDir('export'),
        hubUser: { username: 'outpost-hub', mosquittoHash: '$7$hub' },
        partitions: { orders: 'shop' },
      }),
    ).toThrow(/same name as a hub broker account/);
  });
});

describe('the HTTP API of a partitioned hub', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  it('answers writes to a partition this process does not lead with 409 wrong_partition, and lists what it leads in /v1/status', async () => {
    const data = tempDir('partition-http');
    const hub = await Hub.start({
      dataDir: data,
      dev: true,
      port: 0,
      host: '127.0.0.1',
      http: { host: '127.0.0.1', port: 0 },
      config: parseHubConfig(PARTITIONED),
    });
    closers.push(() => hub.stop());
    const put = await fetch(`${hub.httpAddress!}/v1/docs/orders/o1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(put.status).toBe(409);
    const refusal = (await put.json()) as { code: string; partition: string; message: string };
    expect(refusal).toMatchObject({ code: 'OUTPOST_WRONG_PARTITION', partition: 'shop' });
    expect(refusal.message).toMatch(/partition shop.*HTTP API of partition shop's leader/);
    expect(hub.store.head).toBe(0);
    const notes = await fetch(`${hub.httpAddress!}/v1/docs/notes/n1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(notes.status).toBe(200);
    const status = (await (await fetch(`${hub.httpAddress!}/v1/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({
      partition: 'default',
      head: 1,
      collections: { notes: 1 },
      partitions: [{ partition: 'default', head: 1, ready: true }],
    });
  });
});

describe.skipIf(!MOSQUITTO)(`partitions on a real Mosquitto${MOSQUITTO ? '' : ` (${NO_MOSQUITTO})`}`, () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  const HUB_PASSWORD = 'hub-secret-for-partitions';

  it("each partition's hub has its own session; an agent publishes on its own partition up topic, never on another agent's", async () => {
    const dir = tempDir('partitions-mosquitto');
    const data = join(dir, 'hub');
    const out = join(dir, 'mosquitto');
    const configFile = join(dir, 'hub.yaml');
    writeFileSync(configFile, JSON.stringify(PARTITIONED));
    const tokens = Object.fromEntries(['pi-1', 'pi-2'].map((id) => [id, outpost(['hub', 'agents', 'add', id, '--data', data]).trim()]));
    outpost(['hub', 'export', 'mosquitto', '--data', data, '--out', out, '--config', configFile], {
      OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
    });
    expect(readFileSync(join(out, 'acl'), 'utf8')).toContain('pattern write outpost/v6/p/+/a/%u/up');
    const broker = await MosquittoProcess.start(out);
    closers.push(() => broker.stop());

    const config = parseHubConfig(PARTITIONED);
    const registry = new SqliteHubStore(data);
    closers.push(() => registry.close());
    const start = async (partition: string): Promise<BrokerClientHub> => {
      const hub = await BrokerClientHub.start({
        dataDir: data,
        partition,
        config,
        broker: { url: broker.url, password: HUB_PASSWORD },
        ...(partition === 'default' && { http: { host: '127.0.0.1', port: 0 } }),
        store: await openHubStore({ dataDir: data, partition }),
        ...(partition !== 'default' && { registry }),
      });
      closers.push(() => hub.stop());
      return hub;
    };
    const byDefault = await start('default');
    const byShop = await start('shop');
    expect(byShop.clientId).toBe('outpost-hub-p-shop');
    expect((byShop.store as SqliteHubStore).path).toBe(join(sqliteDirOf(data, 'shop'), 'hub.db'));

    const agent = await mqtt.connectAsync(broker.url, {
      clientId: 'pi-1',
      username: 'pi-1',
      password: tokens['pi-1']!,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    closers.push(() => agent.endAsync(true));
    const acks: string[] = [];
    agent.on('message', (topic) => acks.push(topic));
    await agent.subscribeAsync([shop.down('pi-1'), shop.hub], { qos: 1 });
    await agent.publishAsync(shop.up('pi-2'), batch('orders', 'forged'), { qos: 1 });
    await agent.publishAsync(shop.up('pi-1'), batch('orders', 'own'), { qos: 1 });
    await waitFor("pi-1's write committed in the shop partition", () => byShop.store.head === 1);
    await waitFor("the ack on pi-1's shop down topic", () => acks.includes(shop.down('pi-1')));
    await sleep(300);
    expect(acks).toContain(shop.hub); // the retained status of the partition
    expect(await byShop.store.document('orders', 'own')).toMatchObject({ origin: 'pi-1', version: 1 });
    expect(await byShop.store.document('orders', 'forged')).toBeUndefined();
    expect(byShop.store.head).toBe(1);
    // Both sessions stayed up side by side, and the default partition's log is untouched.
    expect(byDefault.ready && byShop.ready).toBe(true);
    expect(byDefault.store.head).toBe(0);

    // A broker that asks over HTTP (EMQX) admits each partition's hub account, and partition topics by the same rules.
    const ask = async (path: string, body: unknown): Promise<unknown> =>
      (
        (await (
          await fetch(`${byDefault.httpAddress!}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          })
        ).json()) as { result: string }
      ).result;
    expect(await ask('/v1/broker/authn', { username: 'outpost-hub-p-shop', password: HUB_PASSWORD, clientid: 'outpost-hub-p-shop' })).toBe(
      'allow',
    );
    expect(await ask('/v1/broker/authn', { username: 'outpost-hub-p-shop', password: 'wrong', clientid: 'outpost-hub-p-shop' })).toBe(
      'deny',
    );
    expect(await ask('/v1/broker/authn', { username: 'outpost-hub-p-shop', password: HUB_PASSWORD, clientid: 'outpost-hub' })).toBe('deny');
    expect(await ask('/v1/broker/authz', { username: 'outpost-hub-p-shop', topic: shop.down('pi-1'), action: 'publish' })).toBe('allow');
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: shop.up('pi-2'), action: 'publish' })).toBe('allow');
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: shop.up('pi-1'), action: 'publish' })).toBe('deny');
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: shop.collection('orders'), action: 'subscribe' })).toBe('allow');
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: shop.collection('ledger'), action: 'subscribe' })).toBe('deny');
    // The default partition's topic of shop's collection carries nothing of it; allowed, so that
    // an agent that has not heard of the partitions yet is not cut off for asking.
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: topics.collection('orders'), action: 'subscribe' })).toBe('allow');
    expect(await ask('/v1/broker/authz', { username: 'pi-2', topic: topics.collection('ledger'), action: 'subscribe' })).toBe('deny');
  }, 30_000);
});
