import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { newToken } from '../../hub/credentials.js';
import type { BrokerClientHub } from '../../hub/external-broker.js';
import { broadcastCodec, downCodec, upCodec } from '../../shared/codec.js';
import type { Change } from '../../shared/messages.js';
import { partitionTopics, TOPIC_ROOT } from '../../shared/topics.js';
import { TestFleet } from '../helpers/fleet.js';
import { MOSQUITTO, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

/** `config` is scoped in the default partition; `orders` (scoped by a label) and `notes` (whole) in `billing`. */
const CONFIG = parseHubConfig({
  collections: {
    config: { scope: { key: '{agent}/' } },
    orders: { scope: { field: 'site', equals: '{label.site}' } },
    notes: {},
  },
  partitions: { billing: ['orders', 'notes'] },
  access: { default: { read: ['*'], write: ['*'] } },
});
const billingTopics = partitionTopics('billing');

const holds = async (agent: Agent, c: string, k: string): Promise<boolean> => (await agent.get(c, k)) !== undefined;

function evictions(agent: Agent): string[] {
  const evicted: string[] = [];
  agent.on('evicted', (docs) => evicted.push(...docs.map((d) => `${d.collection}/${d.key}`)));
  return evicted;
}

if (!MOSQUITTO) console.warn(`scopes with partitions: ${NO_MOSQUITTO}`);

describe.skipIf(!MOSQUITTO)('scoped collections in several partitions, behind one broker', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet?.close());

  async function start(dev = true): Promise<{ hub: BrokerClientHub; billing: BrokerClientHub }> {
    fleet = new TestFleet({ config: CONFIG, dev }, 'mosquitto');
    const hub = (await fleet.startHub()) as BrokerClientHub;
    const billing = fleet.partitionHubs.get('billing')!;
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await hub.registry.setLabels('pi-2', { site: 'paris' }, []);
    // Each partition's hub reads the labels from the registry on its own.
    await waitFor('labels loaded by both hubs', () => hub.labelsOf('pi-2').site === 'paris' && billing.labelsOf('pi-2').site === 'paris');
    await hub.core.write({ c: 'config', k: 'pi-1/limits', op: 'put', v: { max: 1 } });
    await hub.core.write({ c: 'config', k: 'pi-2/limits', op: 'put', v: { max: 2 } });
    await billing.core.write({ c: 'orders', k: 'berlin-1', op: 'put', v: { site: 'berlin' } });
    await billing.core.write({ c: 'orders', k: 'paris-1', op: 'put', v: { site: 'paris' } });
    await billing.core.write({ c: 'notes', k: 'n-1', op: 'put', v: { text: 'for everyone' } });
    return { hub, billing };
  }

  it("each device holds its scope of every partition; a relabel moves what one partition's rules select and nothing of another's; a closed device goes offline at every partition's hub", async () => {
    const { hub, billing } = await start();
    const pi1 = fleet.agent('pi-1');
    const pi2 = fleet.agent('pi-2');
    const evicted1 = evictions(pi1);
    await waitFor(
      'pi-1 holds its scope of both partitions',
      async () =>
        (await holds(pi1, 'config', 'pi-1/limits')) && (await holds(pi1, 'orders', 'berlin-1')) && (await holds(pi1, 'notes', 'n-1')),
    );
    await waitFor(
      'pi-2 holds its scope of both partitions',
      async () =>
        (await holds(pi2, 'config', 'pi-2/limits')) && (await holds(pi2, 'orders', 'paris-1')) && (await holds(pi2, 'notes', 'n-1')),
    );

    // Live changes and a device's own write, each through its partition's hub.
    await billing.core.write({ c: 'orders', k: 'berlin-2', op: 'put', v: { site: 'berlin' } });
    await hub.core.write({ c: 'config', k: 'pi-1/limits', op: 'put', v: { max: 10 } });
    await waitFor('pi-1 has the new berlin order', async () => await holds(pi1, 'orders', 'berlin-2'));
    await waitFor('pi-1 has its new config', async () => ((await pi1.get('config', 'pi-1/limits'))?.value as { max: number }).max === 10);
    const own = await pi1.put('orders', 'berlin-3', { site: 'berlin', by: 'pi-1' }, { durability: 'hub' });
    expect(own).toMatchObject({ partition: 'billing' });

    // pi-1 moves to paris: billing's hub moves its orders; its config (the default partition's) stays.
    await hub.registry.setLabels('pi-1', { site: 'paris' }, []);
    await waitFor('pi-1 holds the paris orders', async () => await holds(pi1, 'orders', 'paris-1'));
    await waitFor('pi-1 evicted the berlin orders', () =>
      ['berlin-1', 'berlin-2', 'berlin-3'].every((k) => evicted1.includes(`orders/${k}`)),
    );
    expect(await holds(pi1, 'orders', 'berlin-1')).toBe(false);
    expect(await holds(pi1, 'config', 'pi-1/limits')).toBe(true);
    expect(await holds(pi1, 'notes', 'n-1')).toBe(true);
    expect(evicted1.filter((d) => !d.startsWith('orders/berlin-'))).toEqual([]);
    await billing.core.write({ c: 'orders', k: 'paris-2', op: 'put', v: { site: 'paris' } });
    await waitFor(
      'both paris devices have the new order',
      async () => (await holds(pi1, 'orders', 'paris-2')) && (await holds(pi2, 'orders', 'paris-2')),
    );
    expect(await holds(pi2, 'orders', 'berlin-2')).toBe(false);

    // Each partition's hub counts the device's scope of its own collections.
    await waitFor('both hubs count pi-1 up to date', async () => {
      const [inDefault, inBilling] = await Promise.all([hub.fleet(), billing.fleet()]);
      const scope = (views: typeof inDefault) => views.find((v) => v.agentId === 'pi-1')?.scope;
      return (
        scope(inDefault)?.documents === 1 &&
        scope(inDefault)?.lagChanges === 0 &&
        scope(inBilling)?.documents === 2 &&
        scope(inBilling)?.lagChanges === 0
      );
    });

    // Its will reaches every partition's hub: neither goes on sending to it.
    for (const h of [hub, billing]) expect(h.core.scopes.directory.tracks('pi-2')).toBe(true);
    await pi2.close();
    await waitFor(
      'pi-2 offline at both hubs',
      () => !hub.core.scopes.directory.tracks('pi-2') && !billing.core.scopes.directory.tracks('pi-2'),
    );
    for (const h of [hub, billing]) expect(h.core.scopes.directory.tracks('pi-1')).toBe(true);
  }, 60_000);

  it("a device's own credentials subscribing to wildcards and other devices' partition topics receive nothing of theirs", async () => {
    const { billing } = await start(false);
    const tokens = new Map(['pi-1', 'pi-2'].map((id) => [id, newToken()]));
    for (const [id, token] of tokens) await fleet.provision(id, token);
    const pi2 = fleet.agent('pi-2', { hubToken: tokens.get('pi-2')! });
    const spy = await mqtt.connectAsync(`mqtt://127.0.0.1:${fleet.port}`, {
      clientId: 'pi-1',
      username: 'pi-1',
      password: tokens.get('pi-1')!,
      reconnectPeriod: 0,
    });
    const received: Change[] = [];
    spy.on('message', (topic, payload) => {
      if (topic.endsWith('/bye')) return;
      const message = topic.endsWith('/down') ? downCodec.decode(payload) : broadcastCodec.decode(payload);
      if (message[0] === 'changes' || message[0] === 'page') received.push(...message[1].changes);
      if (message[0] === 'snapshot') received.push(...message[1].docs);
    });
    const filters = ['#', `${TOPIC_ROOT}/p/#`, billingTopics.down('pi-2'), `${billingTopics.root}/a/+/down`, `${TOPIC_ROOT}/a/+/bye`];
    for (const filter of filters) await spy.subscribeAsync(filter, { qos: 1 }).catch(() => undefined);
    await spy.subscribeAsync(billingTopics.down('pi-1'), { qos: 1 });
    await spy.publishAsync(billingTopics.up('pi-1'), upCodec.encode(['hello', { s: '0123456789abcdef' }]), { qos: 1 });
    await billing.core.write({ c: 'orders', k: 'paris-2', op: 'put', v: { site: 'paris', pin: 1234 } });
    await billing.core.write({ c: 'orders', k: 'berlin-2', op: 'put', v: { site: 'berlin' } });
    await waitFor('pi-2 holds its orders', async () => (await holds(pi2, 'orders', 'paris-1')) && (await holds(pi2, 'orders', 'paris-2')));
    // The spy, as pi-1, does hear pi-1's own bucket of billing: proof that it listens there.
    await waitFor('the spy hears its own bucket', () => received.some((c) => c.k === 'berlin-2'));
    expect(received.filter((c) => c.k.startsWith('paris-') || c.k.startsWith('pi-2/'))).toEqual([]);
    await spy.endAsync(true);
  }, 60_000);
});
