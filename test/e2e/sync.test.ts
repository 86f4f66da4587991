import { afterEach, describe, expect, it } from 'vitest';
import { FLEET_BROKERS, FLEET_SETUPS, TestFleet } from '../helpers/fleet.js';
import { NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { NO_POSTGRES } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

if (!FLEET_BROKERS.includes('mosquitto')) describe.skip(`end to end on Mosquitto: ${NO_MOSQUITTO}`, () => undefined);
if (NO_POSTGRES) describe.skip(`end to end on PostgreSQL: ${NO_POSTGRES}`, () => undefined);

describe.each(FLEET_SETUPS)('end to end, in process: real broker (%s), real store (%s)', (broker, store) => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('a write on agent A is readable on agent B', async () => {
    fleet = new TestFleet({}, broker, store);
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    await waitFor('both agents connected', () => a.status().connected && b.status().connected);

    const receipt = await a.put('sensors', 't1', { celsius: 21.5 });
    expect(receipt.seq).toBe(1);
    // A sees its own write at once, before the hub confirmed it.
    expect(await a.get('sensors', 't1')).toMatchObject({ value: { celsius: 21.5 } });

    const onB = await waitFor('the write on B', () => b.get('sensors', 't1'));
    expect(onB).toMatchObject({ value: { celsius: 21.5 }, version: 1, pending: false });
    await waitFor('A outbox empty', () => a.status().outboxDepth === 0);
    expect(await fleet.hub!.store.document('sensors', 't1')).toMatchObject({ value: { celsius: 21.5 }, version: 1, origin: 'pi-a' });
  });

  it('writes made while the hub is down arrive exactly once after it restarts', async () => {
    fleet = new TestFleet({}, broker, store);
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    await waitFor('connected', () => a.status().connected && b.status().connected);
    await fleet.stopHub();
    // The embedded broker goes with the hub; Mosquitto stays up, and the hub's session holds
    // what A sends meanwhile (A resends it anyway after its ack timeout).
    if (broker === 'embedded') await waitFor('A notices', () => !a.status().connected);

    const receipts = [];
    for (let i = 0; i < 50; i++) receipts.push(await a.put('orders', `o${i}`, { n: i }));
    await a.patch('orders', 'o0', { shipped: true });
    await a.del('orders', 'o1');
    expect(a.status().outboxDepth).toBe(52);
    // Offline reads show the device's own writes.
    expect(await a.get('orders', 'o0')).toMatchObject({ value: { n: 0, shipped: true }, pending: true });
    expect(await a.get('orders', 'o1')).toBeUndefined();

    const hub = await fleet.startHub();
    await waitFor('outbox drained', () => a.status().outboxDepth === 0);
    await waitFor('B caught up', async () => (await b.get('orders', 'o49'))?.value);

    // Exactly once: one log entry per op, 52 ops, nothing twice.
    expect(hub.store.head).toBe(52);
    const inc = a.status().incarnation;
    for (let seq = 1; seq <= 52; seq++) expect(await hub.store.countCommitted('pi-a', inc, seq)).toBe(1);
    expect(await b.get('orders', 'o0')).toMatchObject({ value: { n: 0, shipped: true } });
    expect(await b.get('orders', 'o1')).toBeUndefined();
    expect((await b.list('orders', { limit: 1000 })).length).toBe(49);
  });

  it('an agent stopped while changes happen catches up when started again', async () => {
    fleet = new TestFleet({}, broker, store);
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    let b = fleet.agent('pi-b');
    await a.put('config', 'before', { v: 1 });
    await waitFor('B has the first write', () => b.get('config', 'before'));
    await b.close();

    for (let i = 0; i < 1200; i++) void a.put('config', `k${String(i).padStart(4, '0')}`, { i });
    await a.del('config', 'before');
    await waitFor('A outbox drained', () => a.status().outboxDepth === 0, 20_000);

    b = fleet.agent('pi-b'); // same data directory: a restart, not a new device
    await waitFor('B caught up', async () => b.status().watermark >= fleet.hub!.store.head, 20_000);
    expect(await b.get('config', 'before')).toBeUndefined();
    const all = await b.list('config', { limit: 1000 });
    expect(all.length).toBe(1000);
    expect(all[0]).toMatchObject({ key: 'k0000', value: { i: 0 } });
    expect(await b.get('config', 'k1199')).toMatchObject({ value: { i: 1199 } });
  });

  it('reports a write the hub rejects where the app sees it, and releases it from the outbox', async () => {
    fleet = new TestFleet({}, broker, store);
    await fleet.startHub();
    const a = fleet.agent('pi-a', { now: () => Date.now() + 3_600_000 }); // wall clock an hour fast
    const rejected = new Promise((resolve) => a.once('rejection', resolve));
    await a.put('alarms', 'fire', { on: true });
    expect(await rejected).toMatchObject([{ collection: 'alarms', key: 'fire', outcome: 'rejected', reason: 'clock_skew' }]);
    expect(a.rejections()).toHaveLength(1);
    expect(await a.get('alarms', 'fire')).toBeUndefined();
    expect(a.status().outboxDepth).toBe(0);
  });
});
