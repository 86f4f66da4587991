import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { restoreFromBackup } from '../../hub/restore.js';
import { FLEET_SETUPS, TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** Scoped sites (each device holds its site's), unscoped notes, and a log that keeps only its last 5 entries. */
const CONFIG = parseHubConfig({
  collections: { sites: { scope: { field: 'site', equals: '{label.site}' } }, notes: {} },
  access: { default: { read: ['*'], write: ['*'] } },
  retention: { maxEntries: 5 },
});

const valueOf = async (agent: Agent, key: string): Promise<unknown> => (await agent.get('sites', key))?.value;
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

describe('a scoped device after a hub restore', () => {
  let fleet: TestFleet | undefined;
  afterEach(async () => {
    await fleet?.close();
    fleet = undefined;
  });

  it('fetches its scope again: a document it held above the fork comes back as the restored hub has it', async () => {
    fleet = new TestFleet({ config: CONFIG });
    const hub = await fleet.startHub();
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-1').site === 'berlin');
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin', n: 1 } });
    await hub.core.write({ c: 'sites', k: 'berlin-2', op: 'put', v: { site: 'berlin', n: 1 } });
    const pi1 = fleet.agent('pi-1');
    await waitFor('pi-1 holds berlin', async () => (await sitesOf(pi1)).join() === 'berlin-1,berlin-2');
    const backup = join(fleet.dir, 'hub-backup.db');
    const online = new Database(join(fleet.hubData, 'hub.db'), { readonly: true });
    await online.backup(backup);
    online.close();

    // After the backup: berlin-1 changes, berlin-3 is new. Both are lost in the restore.
    await hub.core.write({ c: 'sites', k: 'berlin-1', op: 'put', v: { site: 'berlin', n: 2 } });
    await hub.core.write({ c: 'sites', k: 'berlin-3', op: 'put', v: { site: 'berlin', n: 1 } });
    await waitFor('pi-1 has what came after', async () => (await sitesOf(pi1)).length === 3);
    expect(await valueOf(pi1, 'berlin-1')).toEqual({ site: 'berlin', n: 2 });

    await fleet.stopHub();
    const restored = new Promise((resolve) => pi1.once('restored', resolve));
    await restoreFromBackup(backup, fleet.hubData);
    await fleet.startHub();
    await restored;
    // The replica equals the restored hub's scope: berlin-1 at the backup's version, berlin-3 gone.
    await waitFor(
      'pi-1 holds berlin as the restored hub has it',
      async () => (await sitesOf(pi1)).join() === 'berlin-1,berlin-2' && (await valueOf(pi1, 'berlin-1')) !== undefined,
    );
    expect(await valueOf(pi1, 'berlin-1')).toEqual({ site: 'berlin', n: 1 });
    // And it follows the restored hub's berlin from there.
    await fleet.hub!.core.write({ c: 'sites', k: 'berlin-4', op: 'put', v: { site: 'berlin', n: 1 } });
    await waitFor('pi-1 has berlin-4', async () => (await sitesOf(pi1)).join() === 'berlin-1,berlin-2,berlin-4');
  });
});
