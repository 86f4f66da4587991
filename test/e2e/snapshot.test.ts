import { afterEach, describe, expect, it } from 'vitest';
import { parseHubConfig } from '../../hub/config.js';
import type { PullMessage, SnapshotMessage } from '../../shared/messages.js';
import { FLEET_SETUPS, TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

describe.each(FLEET_SETUPS)('catch-up beyond log retention (%s broker, %s store)', (broker, store) => {
  let fleet: TestFleet;
  afterEach(async () => fleet.close());

  async function writeMany(agent: ReturnType<TestFleet['agent']>, n: number, prefix: string): Promise<void> {
    for (let i = 0; i < n; i++) void agent.put('items', `${prefix}${String(i).padStart(4, '0')}`, { i, prefix });
    await agent.del('items', 'doomed');
    await waitFor('uploaded', () => agent.status().outboxDepth === 0, 20_000);
  }

  it('an agent offline past retention recovers through a snapshot and converges, deletions included', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ retention: { maxEntries: 20 } }) }, broker, store);
    const hub = await fleet.startHub();
    const writer = fleet.agent('pi-writer');
    let reader = fleet.agent('pi-reader', { pageLimit: 25 });
    await writer.put('items', 'doomed', { bye: true });
    await waitFor('reader has the first doc', () => reader.get('items', 'doomed'));
    await reader.close();

    await writeMany(writer, 150, 'a');
    expect(await hub.core.pruneLog()).toBeGreaterThan(100);
    const snapshots: SnapshotMessage[1][] = [];
    hub.core.on('pull', (agentId, _pull, answer) => agentId === 'pi-reader' && answer[0] === 'snapshot' && snapshots.push(answer[1]));

    reader = fleet.agent('pi-reader', { pageLimit: 25 });
    await waitFor('reader caught up', () => reader.status().watermark >= hub.store.head, 20_000);
    expect(snapshots.length).toBeGreaterThanOrEqual(6); // 151 documents, 25 a page
    expect(await reader.get('items', 'doomed')).toBeUndefined();
    const docs = await reader.list('items', { limit: 1000 });
    expect(docs).toHaveLength(150);
    const atHub = await Promise.all(docs.map((d) => hub.store.document('items', d.key)));
    expect(docs.every((d, i) => atHub[i]?.version === d.version)).toBe(true);
    // The collection counts as applied up to the snapshot (the hub's lag and replica counts read it).
    expect(reader.status().collections.items?.appliedLsn).toBeGreaterThanOrEqual(snapshots.at(-1)!.lsn);

    // And it keeps following the log afterwards.
    await writer.put('items', 'after', { ok: 1 });
    await waitFor('live again', () => reader.get('items', 'after'));
  });

  it('a snapshot interrupted halfway resumes where it stopped', async () => {
    fleet = new TestFleet({ config: parseHubConfig({ retention: { maxEntries: 5 } }) }, broker, store);
    const hub = await fleet.startHub();
    const writer = fleet.agent('pi-writer');
    await writer.put('items', 'doomed', 1);
    await writeMany(writer, 100, 'b');
    await hub.core.pruneLog();

    const pulls: PullMessage[1][] = [];
    const docsServed: number[] = [];
    hub.core.on('pull', (agentId, pull, answer) => {
      if (agentId !== 'pi-reader') return;
      pulls.push(pull);
      docsServed.push(answer[0] === 'snapshot' ? answer[1].docs.length : 0);
    });
    let reader = fleet.agent('pi-reader', { pageLimit: 10 });
    await new Promise((resolve) => reader.once('change', resolve)); // the first page has landed
    await reader.close();
    const servedBefore = pulls.length;
    expect(servedBefore).toBeGreaterThanOrEqual(1);

    reader = fleet.agent('pi-reader', { pageLimit: 10 });
    await waitFor('reader caught up', () => reader.status().watermark >= hub.store.head, 20_000);
    // The closed reader had already asked for its second page; the hub may answer that pull after
    // the close, so pages are counted once per position, and no pull after the close starts over.
    const after = pulls.slice(servedBefore);
    expect(after.every((pull) => pull.snap !== undefined || pull.from > 0)).toBe(true); // resumed, not started over
    expect(after[0]!.snap!.after[1] >= 'b0000').toBe(true);
    const servedAt = new Map<string, number>();
    after.forEach((pull, i) => servedAt.set(JSON.stringify(pull.snap ?? pull.from), docsServed[servedBefore + i]!));
    // After the restart only what was left is sent: not the 101 documents of a full snapshot.
    const sentAfter = [...servedAt.values()].reduce((a, b) => a + b, 0);
    expect(sentAfter).toBeLessThanOrEqual(101 - 10);
    expect(sentAfter).toBeGreaterThan(0);
    expect(await reader.list('items', { limit: 1000 })).toHaveLength(100);
  });
});
