import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { FLEET_SETUPS, TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** Scoped sites (each device holds its site's), unscoped notes, and a log that keeps only its last 5 entries. */
const CONFIG = parseHubConfig({
  collections: { sites: { scope: { field: 'site', equals: '{label.site}' } }, notes: {} },
  access: { default: { read: ['*'], write: ['*'] } },
  retention: { maxEntries: 5 },
});

/** The keys of the sites an agent holds (confirmed), sorted. */
const sitesOf = async (agent: Agent): Promise<string[]> =>
  (await agent.list('sites', { confirmed: true, limit: 100 })).map((d) => d.key).sort();

describe.each(FLEET_SETUPS)('a scoped device recovering its buckets by snapshot: broker %s, store %s', (broker, store) => {
  let fleet: TestFleet;
  afterEach(async () => fleet?.close());

  it('a held bucket caught up past log retention evicts what left it while the device was away', async () => {
    fleet = new TestFleet({ config: CONFIG }, broker, store);
    const hub = await fleet.startHub();
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-1').site === 'berlin');
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin' } });
    await hub.core.write({ c: 'sites', k: 'berlin-2', op: 'put', v: { site: 'berlin' } });
    let pi1 = fleet.agent('pi-1');
    await waitFor('pi-1 holds berlin', async () => (await sitesOf(pi1)).join() === 'berlin-1,berlin-2');
    await pi1.close();

    // Away: berlin-1 moves to paris, then enough else is written that retention prunes the move.
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'paris' } });
    for (let i = 0; i < 10; i++) await hub.core.write({ c: 'notes', k: `n-${i}`, op: 'put', v: { i } });
    expect(await hub.core.pruneLog()).toBeGreaterThan(0);
    const snapshots: number[] = [];
    hub.core.on('pull', (agentId, pull, answer) => agentId === 'pi-1' && pull.b && answer[0] === 'snapshot' && snapshots.push(pull.from));

    pi1 = fleet.agent('pi-1');
    const evicted: string[] = [];
    pi1.on('evicted', (docs) => evicted.push(...docs.map((d) => d.key)));
    await waitFor('pi-1 evicts berlin-1', async () => (await sitesOf(pi1)).join() === 'berlin-2' && evicted.includes('berlin-1'));
    // Caught up from its cursor, not joined: the hub answered with a snapshot.
    expect(snapshots.length).toBeGreaterThan(0);
    expect(snapshots[0]).toBeGreaterThan(0);
    // And it keeps following berlin.
    await hub.core.write({ c: 'sites', k: 'berlin-3', op: 'put', v: { site: 'berlin' } });
    await waitFor('pi-1 has berlin-3', async () => (await sitesOf(pi1)).join() === 'berlin-2,berlin-3');
  });
});
