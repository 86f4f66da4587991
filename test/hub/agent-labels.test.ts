import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** How long a label change may take to reach a running hub: it checks every 500 ms. */
const NOTICED_WITHIN_MS = 3_000;

/** A running hub's copy of every agent's labels, on each store, changed by another process's store. */
function labelWatch(name: string, store: () => Promise<{ hubStore: HubStore; other: () => Promise<HubStore> }>, skip?: string): void {
  describe.skipIf(skip !== undefined)(`a running hub's labels: ${name}${skip ? ` (${skip})` : ''}`, () => {
    let hub: Hub | undefined;
    const others: HubStore[] = [];
    afterEach(async () => {
      await hub?.stop();
      hub = undefined;
      for (const s of others.splice(0)) await s.close();
    });

    it('loads them at start, reloads them when another process changes them, and says whose changed', async () => {
      const { hubStore, other: openOther } = await store();
      const cli = await openOther();
      others.push(cli);
      await cli.setLabels('pi-1', { site: 'berlin' }, []);
      hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: tempDir('labels-hub'), dev: true, store: hubStore });
      expect(hub.labelsOf('pi-1')).toEqual({ site: 'berlin' }); // loaded before the hub started
      expect(hub.labelsOf('pi-2')).toEqual({});
      expect(Object.isFrozen(hub.labelsOf('pi-1'))).toBe(true);
      // A --dev hub: pi-1 is known by its labels alone.
      expect((await hub.fleet()).map((a) => [a.agentId, a.provisioned, a.labels])).toEqual([['pi-1', false, { site: 'berlin' }]]);

      const events: string[][] = [];
      hub.on('labels', (agentIds) => events.push(agentIds));
      await cli.setLabels('pi-1', { site: 'paris', line: '3' }, []);
      await cli.setLabels('pi-2', { site: 'rome' }, []);
      await waitFor(
        'both changes noticed',
        () => hub!.labelsOf('pi-2').site === 'rome' && events.flat().includes('pi-2'),
        NOTICED_WITHIN_MS,
      );
      expect(hub.labelsOf('pi-1')).toEqual({ line: '3', site: 'paris' });
      expect(events.flat().sort()).toEqual(['pi-1', 'pi-2']); // each once, whether in one reload or two

      // Another process's other writes (a credential), and a label set to the value it has, change no agent's labels.
      events.length = 0;
      await cli.putCredential('pi-9', 'hash');
      await cli.setLabels('pi-1', { site: 'paris' }, []);
      await cli.setLabels('pi-2', {}, ['site']);
      await waitFor('the removal noticed', () => events.length > 0, NOTICED_WITHIN_MS);
      expect(events).toEqual([['pi-2']]);
      expect(hub.labelsOf('pi-2')).toEqual({});
      expect((await hub.fleet()).map((a) => [a.agentId, a.labels])).toEqual([
        ['pi-1', { line: '3', site: 'paris' }],
        ['pi-9', {}],
      ]);
    });
  });
}

labelWatch('SQLite', async () => {
  const dir = tempDir('labels-sqlite');
  return { hubStore: new SqliteHubStore(dir), other: async () => new SqliteHubStore(dir) };
});

labelWatch(
  'PostgreSQL',
  async () => {
    const url = await freshDatabase();
    return { hubStore: await PostgresHubStore.open(url), other: () => PostgresHubStore.open(url) };
  },
  NO_POSTGRES,
);
