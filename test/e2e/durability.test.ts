import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe('durability levels and causal reads', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('hub durability resolves with the LSN, which a reader elsewhere can wait for', async () => {
    fleet = new TestFleet();
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    await waitFor('connected', () => a.status().connected && b.status().connected);
    const receipt = await a.put('orders', 'o1', { qty: 1 }, { durability: 'hub' });
    expect(receipt.lsn).toBe(1);
    expect((await fleet.hub!.store.document('orders', 'o1'))?.version).toBe(1);
    // B reads with the token: it waits until it has applied LSN 1, and never sees an older state.
    expect(await b.get('orders', 'o1', { minLsn: receipt.lsn! })).toMatchObject({ value: { qty: 1 }, version: 1 });
    await expect(b.get('orders', 'o1', { minLsn: 99, timeoutMs: 200 })).rejects.toMatchObject({ code: 'OUTPOST_READ_TIMEOUT' });
  });

  it('hub durability times out with a clear error while offline; the write stays queued and arrives later', async () => {
    fleet = new TestFleet();
    await fleet.startHub();
    const port = fleet.port;
    await fleet.stopHub();
    const a = fleet.agent('pi-a');
    const error = await a.put('orders', 'o1', { qty: 1 }, { durability: 'hub', timeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'OUTPOST_DURABILITY_TIMEOUT' });
    expect((error as Error).message).toMatch(/stays queued.*do not write it again/);
    expect((error as Error).message).toMatch(/offline/);
    expect(a.status().outboxDepth).toBe(1);
    fleet.port = port;
    await fleet.startHub();
    await waitFor('committed after all', () => fleet.hub!.store.document('orders', 'o1'));
  });

  it('a write that waits for the hub and is refused rejects with the reason', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ collections: { readings: { schema: { type: 'object', required: ['celsius'] } } } }) });
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    await expect(a.put('readings', 'r1', { fahrenheit: 70 }, { durability: 'hub' })).rejects.toMatchObject({
      code: 'OUTPOST_WRITE_REJECTED',
      reason: 'schema',
      outcome: 'rejected',
    });
    expect(a.status().outboxDepth).toBe(0);
  });

  it("follows the collection's default durability declared at the hub, also after a restart offline", async () => {
    fleet = new TestFleet({ config: parseHubConfig({ collections: { orders: { durability: 'hub' } } }) });
    await fleet.startHub();
    let a = fleet.agent('pi-a');
    await waitFor('policies received', async () => (await a.put('orders', 'probe', 1, { timeoutMs: 2000 })).lsn !== undefined);
    expect((await a.put('notes', 'n', 1)).lsn).toBeUndefined(); // undeclared: local
    await a.close();
    await fleet.stopHub();
    a = fleet.agent('pi-a');
    await expect(a.put('orders', 'o2', 2, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'OUTPOST_DURABILITY_TIMEOUT' });
  });

  it('replicas: N resolves once N other agents have applied the write', async () => {
    fleet = new TestFleet();
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    const c = fleet.agent('pi-c', { collections: ['alarms'] });
    await waitFor('connected', () => [a, b, c].every((x) => x.status().connected));
    const receipt = await a.put('alarms', 'fire', { on: true }, { durability: { replicas: 2 } });
    expect(receipt.lsn).toBe(1);
    // Both others hold it already: that is what the wait was for.
    expect(await b.get('alarms', 'fire', { confirmed: true })).toBeDefined();
    expect(await c.get('alarms', 'fire', { confirmed: true })).toBeDefined();

    await c.close();
    await expect(a.put('alarms', 'flood', { on: true }, { durability: { replicas: 2 }, timeoutMs: 500 })).rejects.toMatchObject({
      code: 'OUTPOST_DURABILITY_TIMEOUT',
    });
    expect((await a.put('alarms', 'smoke', { on: true }, { durability: { replicas: 1 } })).lsn).toBe(3);
  });

  it('a replicas wait survives a hub restart: the writer reports it again, and it resolves once met', async () => {
    fleet = new TestFleet();
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    let b = fleet.agent('pi-b', { collections: ['alarms'] });
    await waitFor('connected', () => a.status().connected && b.status().connected);
    await b.close(); // the only other replica is away: the wait cannot be met yet
    const waiting = a.put('alarms', 'fire', { on: true }, { durability: { replicas: 1 }, timeoutMs: 20_000 });
    await waitFor('committed at the hub', async () => (await fleet.hub!.store.document('alarms', 'fire')) !== undefined);
    expect(fleet.hub!.core.replication.waiting).toBe(1);
    await fleet.stopHub(); // the hub keeps waits in memory: this one is gone with it
    await fleet.startHub();
    await waitFor('the writer reported its wait to the new hub', () => fleet.hub!.core.replication.waiting === 1);
    b = fleet.agent('pi-b', { collections: ['alarms'] });
    expect((await waiting).lsn).toBe(1);
    expect(await b.get('alarms', 'fire', { confirmed: true })).toMatchObject({ version: 1 });
  });

  it('a replicas wait on a scoped write survives a hub restart: the new hub counts the devices holding its bucket', async () => {
    const config = parseHubConfig({
      collections: { sites: { scope: { field: 'site', equals: '{label.site}' } } },
      access: { default: { read: ['*'], write: ['*'] } },
    });
    fleet = new TestFleet({ config });
    let hub = await fleet.startHub();
    await hub.registry.setLabels('pi-a', { site: 'berlin' }, []);
    await hub.registry.setLabels('pi-b', { site: 'berlin' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-b').site === 'berlin');
    const a = fleet.agent('pi-a');
    let b = fleet.agent('pi-b');
    await waitFor('connected', () => a.status().connected && b.status().connected);
    await b.close(); // the only other device holding berlin is away: the wait cannot be met yet
    const waiting = a.put('sites', 'berlin-1', { site: 'berlin' }, { durability: { replicas: 1 }, timeoutMs: 20_000 });
    await waitFor('committed at the hub', async () => (await fleet.hub!.store.document('sites', 'berlin-1')) !== undefined);
    await fleet.stopHub(); // the hub keeps waits in memory: this one is gone with it
    hub = await fleet.startHub();
    await waitFor('the writer reported to the new hub', () => hub.core.replication.reports.has('pi-a'));
    b = fleet.agent('pi-b');
    const receipt = await waiting;
    expect(await hub.store.document('sites', 'berlin-1')).toMatchObject({ version: receipt.lsn });
    expect(await b.get('sites', 'berlin-1')).toMatchObject({ version: receipt.lsn });
  });
});
