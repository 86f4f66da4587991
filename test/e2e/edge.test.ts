import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import type { Rejection } from '../../agent/store/rejections.js';
import { parseHubConfig } from '../../hub/config.js';
import { TestFleet } from '../helpers/fleet.js';
import { sleep, waitFor } from '../helpers/wait.js';

const nextEvent = <T extends unknown[]>(
  agent: Agent,
  event: 'window' | 'rejection',
  accept: (...args: T) => boolean = () => true,
): Promise<T> =>
  new Promise((resolve) => {
    const listener = (...args: unknown[]): void => {
      if (!accept(...(args as T))) return;
      agent.off(event, listener);
      resolve(args as T);
    };
    agent.on(event, listener);
  });

describe('life on the edge: sync windows, priority lanes, buffering policies', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('uploads only inside a cron window, disconnecting outside it; a high-priority write goes out at once', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ collections: { alarms: { priority: 'high' } } }) });
    const hub = await fleet.startHub();
    const agent = fleet.agent('pi-metered', {
      sync: { mode: 'windows', cron: '*/4 * * * * *', windowSeconds: 1, disconnectOutside: true },
    });
    expect(agent.status().connected).toBe(false);
    await nextEvent<[boolean]>(agent, 'window', (open) => !open); // one window: policies arrive and are cached
    await waitFor('disconnected after the window', () => !agent.status().connected);

    await agent.put('readings', 'r1', { celsius: 20 });
    await sleep(1500); // outside the window
    expect(await hub.store.document('readings', 'r1')).toBeUndefined();
    expect(agent.status()).toMatchObject({ connected: false, outboxDepth: 1 });
    expect(agent.status().nextWindow).toBeDefined();

    // The alarm cannot wait: it syncs now, taking the queued reading along (order is kept).
    await agent.put('alarms', 'fire', { on: true });
    await waitFor('alarm at the hub', () => hub.store.document('alarms', 'fire'), 1500);
    expect(await hub.store.document('readings', 'r1')).toBeDefined();
    await waitFor('disconnected again', () => !agent.status().connected);

    await agent.put('readings', 'r2', { celsius: 21 });
    await nextEvent<[boolean]>(agent, 'window', (open) => open);
    await waitFor('r2 uploaded in the window', () => hub.store.document('readings', 'r2'), 1000);
  }, 30_000);

  it('sync now connects, uploads, catches up and hangs up again', async () => {
    fleet = new TestFleet();
    const hub = await fleet.startHub();
    const writer = fleet.agent('pi-writer');
    await writer.put('notes', 'from-writer', 1, { durability: 'hub' });
    const agent = fleet.agent('pi-metered', { sync: { mode: 'windows', cron: '0 0 1 1 *', windowSeconds: 60, disconnectOutside: true } });
    await agent.put('notes', 'mine', 2);
    await sleep(300);
    expect(await hub.store.document('notes', 'mine')).toBeUndefined();
    expect(await agent.syncNow(10_000)).toBe(true);
    expect(await hub.store.document('notes', 'mine')).toBeDefined();
    expect(await agent.get('notes', 'from-writer')).toMatchObject({ value: 1 });
    expect(agent.status().lastSyncAt).toBeDefined();
    await waitFor('hung up', () => !agent.status().connected);
  });

  it('expires pending writes past their TTL and applies both overflow policies, telling the app', async () => {
    fleet = new TestFleet({
      config: parseHubConfig({
        collections: {
          telemetry: { ttlSeconds: 1 },
          readings: { maxPending: 3, overflow: 'reject' },
          logs: { maxPending: 3, overflow: 'drop-oldest' },
        },
      }),
    });
    const hub = await fleet.startHub();
    const agent = fleet.agent('pi-buffer');
    await waitFor('policies received', () => agent.status().connected);
    await sleep(100);
    await fleet.stopHub();
    await waitFor('offline', () => !agent.status().connected);

    for (let i = 0; i < 3; i++) await agent.put('readings', `r${i}`, i);
    await expect(agent.put('readings', 'r3', 3)).rejects.toMatchObject({ code: 'OUTPOST_OUTBOX_FULL' });

    const dropped: Rejection[] = [];
    agent.on('rejection', (r) => dropped.push(...r));
    for (let i = 0; i < 5; i++) await agent.put('logs', `l${i}`, i);
    expect(dropped.map((r) => [r.key, r.outcome])).toEqual([
      ['l0', 'dropped'],
      ['l1', 'dropped'],
    ]);

    await agent.put('telemetry', 't', { v: 1 });
    const expired = await nextEvent<[Rejection[]]>(agent, 'rejection', (r) => r.some((x) => x.outcome === 'expired'));
    expect(expired[0]).toMatchObject([{ collection: 'telemetry', key: 't', outcome: 'expired' }]);
    expect(
      agent
        .rejections()
        .map((r) => r.outcome)
        .sort(),
    ).toEqual(['dropped', 'dropped', 'expired']);
    expect(await agent.get('telemetry', 't')).toBeUndefined();

    await fleet.startHub();
    await waitFor('outbox drained', () => agent.status().outboxDepth === 0, 10_000);
    const store = fleet.hub!.store;
    const has = async (c: string, k: string): Promise<boolean> => (await store.document(c, k)) !== undefined;
    expect(await Promise.all(['r0', 'r1', 'r2'].map((k) => has('readings', k)))).toEqual([true, true, true]);
    expect(await has('readings', 'r3')).toBe(false);
    expect(await Promise.all(['l2', 'l3', 'l4'].map((k) => has('logs', k)))).toEqual([true, true, true]);
    expect(await has('logs', 'l0')).toBe(false);
    expect(await has('telemetry', 't')).toBe(false);
    // The hub knows what was given up, and why: nothing silently vanished.
    const inc = agent.status().incarnation;
    const reasons = (
      await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map(async (seq) => (await store.outcomeOf('pi-buffer', inc, seq))?.result.reason))
    ).filter(Boolean);
    expect(reasons.sort()).toEqual(['dropped', 'dropped', 'expired']);
    void hub;
  }, 30_000);

  it('policies changed at the hub reach a running agent and survive its restart while offline', async () => {
    fleet = new TestFleet({ config: parseHubConfig({}) });
    await fleet.startHub();
    let agent = fleet.agent('pi-policy');
    await waitFor('connected', () => agent.status().connected);
    await fleet.stopHub();
    fleet.hubOptions = { config: parseHubConfig({ collections: { readings: { maxPending: 1, overflow: 'reject' } } }) };
    await fleet.startHub();
    expect(agent.policy('readings').maxPending).toBe(0);
    await waitFor('the new policy reaches the running agent', () => agent.policy('readings').maxPending === 1);
    await agent.close();
    await fleet.stopHub();
    agent = fleet.agent('pi-policy'); // restarted, offline
    expect(agent.policy('readings')).toMatchObject({ maxPending: 1, overflow: 'reject' });
    await agent.put('readings', 'a', 1);
    await expect(agent.put('readings', 'b', 1)).rejects.toMatchObject({ code: 'OUTPOST_OUTBOX_FULL' });
  });

  it('backoff spreads 50 agents reconnecting after a hub restart instead of a burst', async () => {
    fleet = new TestFleet();
    await fleet.startHub();
    const agents = Array.from({ length: 50 }, (_, i) => fleet.agent(`pi-${i}`, { reconnect: { initialMs: 500, maxMs: 8_000 } }));
    await waitFor('all connected', () => agents.every((a) => a.status().connected), 20_000);
    await fleet.stopHub();
    await sleep(4_000); // every agent has failed a few times: its window has widened
    const hub = await fleet.startHub();
    const started = Date.now();
    const times: number[] = [];
    for (const a of agents) a.once('connected', () => times.push(Date.now() - started));
    await waitFor('all back', () => times.length === 50, 30_000);
    times.sort((x, y) => x - y);
    const spread = times[49]! - times[0]!;
    const busiestSecond = Math.max(...times.map((t) => times.filter((u) => u >= t && u < t + 1000).length));
    expect(spread).toBeGreaterThan(2_000);
    expect(busiestSecond).toBeLessThan(35); // not a storm: no second takes most of the fleet
    void hub;
  }, 60_000);
});
