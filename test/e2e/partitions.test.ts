import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import type { BrokerClientHub } from '../../hub/external-broker.js';
import { TestFleet } from '../helpers/fleet.js';
import { MOSQUITTO, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait.js';

/** `orders` and `invoices` live in partition `billing`, with a log and a hub of their own; the rest in `default`. */
const config = parseHubConfig({
  partitions: { billing: ['orders', 'invoices'] },
  access: { default: { read: ['*'], write: ['*'] } },
});

if (!MOSQUITTO) console.warn(`partitions: ${NO_MOSQUITTO}`);

describe.skipIf(!MOSQUITTO)('partitions: collections split across hubs behind one broker', () => {
  let fleet: TestFleet;
  afterEach(() => fleet?.close());

  const billing = (): BrokerClientHub => fleet.partitionHubs.get('billing')!;
  const drained = (agent: Agent): boolean => agent.status().outboxDepth === 0;

  it("an agent whose collections span partitions writes and reads each through its own partition's hub", async () => {
    fleet = new TestFleet({ config }, 'mosquitto');
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    const onlyOrders = fleet.agent('pi-c', { collections: ['orders'] });

    const doc = await a.put('docs', 'd1', { text: 'default partition' }, { durability: 'hub' });
    const order = await a.put('orders', 'o1', { total: 12 }, { durability: 'hub' });
    const invoice = await a.put('invoices', 'i1', { due: 30 }, { durability: 'hub' });
    // Each partition is a log of its own: both begin at LSN 1, and a write joins its partition's sequence.
    expect(doc).toMatchObject({ lsn: 1, seq: 1 });
    expect(doc.partition).toBeUndefined();
    expect(order).toMatchObject({ lsn: 1, seq: 1, partition: 'billing' });
    expect(invoice).toMatchObject({ lsn: 2, seq: 2, partition: 'billing' });
    expect(order.incarnation).not.toBe(doc.incarnation);
    expect(a.status().partitions?.billing?.incarnation).toBe(order.incarnation);

    // Each hub holds only its own partition's documents.
    expect(await fleet.hub!.store.document('docs', 'd1')).toMatchObject({ value: { text: 'default partition' } });
    expect(await fleet.hub!.store.document('orders', 'o1')).toBeUndefined();
    expect(await billing().store.document('orders', 'o1')).toMatchObject({ value: { total: 12 } });
    expect(await billing().store.document('docs', 'd1')).toBeUndefined();

    // Causal tokens are LSNs of the collection's partition.
    expect((await b.get('docs', 'd1', { minLsn: doc.lsn! }))?.value).toEqual({ text: 'default partition' });
    expect((await b.get('orders', 'o1', { minLsn: order.lsn! }))?.value).toEqual({ total: 12 });
    expect((await onlyOrders.get('orders', 'o1', { minLsn: order.lsn! }))?.value).toEqual({ total: 12 });
    // A device replicating only `orders` receives nothing else, from either partition.
    await b.get('invoices', 'i1', { minLsn: invoice.lsn! });
    expect(await onlyOrders.get('invoices', 'i1', { confirmed: true })).toBeUndefined();
    expect(await onlyOrders.get('docs', 'd1', { confirmed: true })).toBeUndefined();

    // Later changes arrive live on each partition's topics, and both hubs see what the agents applied.
    await b.put('orders', 'o2', { total: 3 });
    await b.put('docs', 'd2', { text: 'two' });
    await waitFor(
      'both changes replicated to pi-a',
      async () =>
        (await a.get('orders', 'o2')) !== undefined &&
        (await a.get('docs', 'd2')) !== undefined &&
        !(await a.get('orders', 'o2'))!.pending &&
        !(await a.get('docs', 'd2'))!.pending,
      10_000,
    );
    await waitFor(
      "each hub has pi-a's applied LSNs of its collections",
      async () => {
        const [inDefault, inBilling] = await Promise.all([fleet.hub!.fleet(), billing().fleet()]);
        const ofA = (views: typeof inDefault) => views.find((v) => v.agentId === 'pi-a')?.collections ?? {};
        return ofA(inDefault).docs?.appliedLsn === 2 && ofA(inBilling).orders?.appliedLsn === 3 && ofA(inDefault).orders === undefined;
      },
      10_000,
    );
  }, 60_000);

  it('writes made before the agent first heard of the partitions reach each partition exactly once', async () => {
    fleet = new TestFleet({ config }, 'mosquitto');
    await fleet.startHub();
    const early = fleet.agent('pi-new', {}, false);
    // Never connected: the agent does not know yet that orders live elsewhere.
    const receipts = [];
    for (let i = 0; i < 6; i++) receipts.push(await early.put(i % 2 === 0 ? 'docs' : 'orders', `k${i}`, i));
    expect(early.status().partitions).toBeUndefined();
    early.start();
    await waitFor('the early writes uploaded', () => drained(early), 15_000);

    const inDefault = await fleet.hub!.store.listDocuments('docs', { limit: 100 });
    const inBilling = await billing().store.listDocuments('orders', { limit: 100 });
    expect(inDefault.map((d) => [d.key, d.value])).toEqual([
      ['k0', 0],
      ['k2', 2],
      ['k4', 4],
    ]);
    expect(inBilling.map((d) => [d.key, d.value])).toEqual([
      ['k1', 1],
      ['k3', 3],
      ['k5', 5],
    ]);
    expect(await fleet.hub!.store.listDocuments('orders', { limit: 100 })).toEqual([]);
    // Exactly once: each log holds three entries, no more.
    expect(fleet.hub!.store.head).toBe(3);
    expect(billing().store.head).toBe(3);
    expect(early.status().partitions?.billing).toBeDefined();
    expect(early.rejections()).toEqual([]);
  }, 60_000);

  it("one partition's hub going away does not pause the others, and its writes arrive once it is back", async () => {
    fleet = new TestFleet({ config }, 'mosquitto');
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    await a.put('orders', 'before', 1, { durability: 'hub' });

    await fleet.stopPartition('billing');
    const queued = [];
    for (let i = 0; i < 5; i++) queued.push(await a.put('orders', `while-down-${i}`, i));
    // The default partition commits and replicates as before.
    const doc = await a.put('docs', 'meanwhile', 'still flowing', { durability: 'hub', timeoutMs: 5_000 });
    expect((await b.get('docs', 'meanwhile', { minLsn: doc.lsn!, timeoutMs: 5_000 }))?.value).toBe('still flowing');
    expect(a.status().collections.orders?.pending).toBe(5);

    // The partition's hub comes back (a restart, or a standby taking over): its writes arrive, once each.
    await fleet.startPartition('billing');
    await waitFor('the queued orders committed', () => drained(a), 20_000);
    const orders = await billing().store.listDocuments('orders', { limit: 100 });
    expect(orders.map((d) => d.key).sort()).toEqual(['before', ...queued.map((_, i) => `while-down-${i}`)].sort());
    expect(billing().store.head).toBe(6);
    await waitFor('pi-b has the orders', async () => (await b.get('orders', 'while-down-4')) !== undefined, 10_000);
  }, 60_000);
});
