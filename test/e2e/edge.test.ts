import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import type { Rejection } from '../../agent/store/rejections.js';
import { parseHubConfig } from '../../hub/config.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

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

/**
 * When the hub committed a document's current version (ms epoch). The hub runs in this process,
 * so it is on the test's clock: it can be compared with when an agent event fired.
 */
async function committedAt(store: HubStore, collection: string, key: string): Promise<number> {
  const document = await store.document(collection, key);
  const at = document && (await store.firstCommitAfter(collection, document.version - 1));
  if (at === undefined) throw new Error(`${collection}/${key} is not committed at the hub`);
  return at;
}

describe('life on the edge: sync windows, priority lanes, buffering policies', () => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  it('uploads only inside a cron window, disconnecting outside it; a high-priority write goes out at once', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ collections: { alarms: { priority: 'high' } } }) });
    const hub = await fleet.startHub();
    const agent = fleet.agent('pi-metered', {
      sync: { mode: 'windows', cron: '*/4 * * * * *', windowSeconds: 1, disconnectOutside: true },
    });
    // When each window opened and closed, to compare with when the hub committed a write.
    const windows: Array<{ open: boolean; at: number }> = [];
    agent.on('window', (open) => windows.push({ open, at: Date.now() }));
    const windowOpenedBetween = (from: number, to: number): boolean => windows.some((w) => w.open && w.at >= from && w.at <= to);
    expect(agent.status().connected).toBe(false);
    await nextEvent<[boolean]>(agent, 'window', (open) => !open); // one window: policies arrive and are cached
    await waitFor('disconnected after the window', () => !agent.status().connected);

    // Written outside a window, r1 waits for the next one: the hub commits it only after that opened.
    const r1WrittenAt = Date.now();
    await agent.put('readings', 'r1', { celsius: 20 });
    expect(agent.status()).toMatchObject({ connected: false, outboxDepth: 1 });
    expect(agent.status().nextWindow).toBeDefined();
    await waitFor('r1 uploaded in the next window', () => hub.store.document('readings', 'r1'));
    const r1CommittedAt = await committedAt(hub.store, 'readings', 'r1');
    expect(windowOpenedBetween(r1WrittenAt, r1CommittedAt), 'a window opened between writing r1 and its commit').toBe(true);
    await waitFor('that window closed', () => windows.some((w) => !w.open && w.at >= r1CommittedAt));
    await waitFor('disconnected again', () => !agent.status().connected);

    // The alarm cannot wait: it syncs now, before any window opens, taking the reading queued
    // before it along (order is kept).
    const alarmWrittenAt = Date.now();
    await agent.put('readings', 'r2', { celsius: 21 });
    await agent.put('alarms', 'fire', { on: true });
    await waitFor('alarm at the hub', () => hub.store.document('alarms', 'fire'));
    const alarmCommittedAt = await committedAt(hub.store, 'alarms', 'fire');
    expect(windowOpenedBetween(alarmWrittenAt, alarmCommittedAt), 'a window opened before the alarm was committed').toBe(false);
    expect(await committedAt(hub.store, 'readings', 'r2')).toBeLessThanOrEqual(alarmCommittedAt);
    await waitFor('disconnected after the alarm', () => !agent.status().connected);
  }, 30_000);

  it('sync now connects, uploads, catches up and hangs up again', async () => {
    fleet = new TestFleet();
    const hub = await fleet.startHub();
    const agent = fleet.agent('pi-metered', { sync: { mode: 'windows', cron: '0 0 1 1 *', windowSeconds: 60, disconnectOutside: true } });
    const connectedAt: number[] = [];
    agent.on('connected', () => connectedAt.push(Date.now()));
    await agent.put('notes', 'mine', 2);
    // A writer started after the metered agent connects and sees its write committed: in that time
    // the metered agent could have done the same, and has not.
    const writer = fleet.agent('pi-writer');
    await writer.put('notes', 'from-writer', 1, { durability: 'hub' });
    expect(await hub.store.document('notes', 'mine')).toBeUndefined();
    expect(agent.status()).toMatchObject({ connected: false, outboxDepth: 1 });

    const syncStartedAt = Date.now();
    expect(await agent.syncNow(10_000)).toBe(true);
    // Connected and uploaded by the sync, not before it.
    expect(connectedAt.length).toBeGreaterThan(0);
    expect(connectedAt.filter((at) => at < syncStartedAt)).toEqual([]);
    expect(await committedAt(hub.store, 'notes', 'mine')).toBeGreaterThanOrEqual(syncStartedAt);
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
    await waitFor(
      'policies received',
      () =>
        agent.policy('readings').maxPending === 3 &&
        agent.policy('logs').overflow === 'drop-oldest' &&
        agent.policy('telemetry').ttlSeconds === 1,
    );
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
    // Each failed attempt to reach the hub is logged; counted since the agent last connected (as its
    // backoff is), they tell how far its reconnect window has widened.
    const failures = new Map<string, number>();
    const agents = Array.from({ length: 50 }, (_, i) => {
      const id = `pi-${i}`;
      const logger = pino(
        { level: 'warn' },
        {
          write: (line: string) => {
            if ((JSON.parse(line) as { msg?: string }).msg === 'connection error') failures.set(id, (failures.get(id) ?? 0) + 1);
          },
        },
      );
      const agent = fleet.agent(id, { reconnect: { initialMs: 500, maxMs: 8_000 }, logger });
      agent.on('connected', () => failures.set(id, 0));
      return agent;
    });
    await waitFor('all connected', () => agents.every((a) => a.status().connected), 20_000);
    await fleet.stopHub();
    // Every agent has failed three times: its next attempt is drawn from up to 500 ms × 2³ = 4 s.
    await waitFor('every agent failed three times', () => agents.every((a) => (failures.get(a.id) ?? 0) >= 3), 20_000);
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
