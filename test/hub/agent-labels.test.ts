import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentView } from '../../hub/fleet.js';
import { Hub } from '../../hub/hub.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freePort } from '../helpers/ports.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { http, outpost, OutpostProcess, runOutpost } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** How long a label change may take to reach a running hub: it checks every 500 ms. */
const NOTICED_WITHIN_MS = 3_000;

describe('agent labels set with `outpost hub agents` while a hub process runs (SQLite)', () => {
  const running: OutpostProcess[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.kill('SIGTERM')));
  });

  async function startHub(): Promise<{ data: string; api: string }> {
    const data = join(tempDir('labels'), 'hub');
    const [mqtt, api] = await Promise.all([freePort(), freePort()]);
    const hub = new OutpostProcess(['hub', '--port', String(mqtt), '--host', '127.0.0.1', '--http', `127.0.0.1:${api}`, '--data', data]);
    running.push(hub);
    await hub.waitForLog('hub started');
    return { data, api: `http://127.0.0.1:${api}` };
  }

  const agent = async (api: string, id: string): Promise<AgentView | undefined> => {
    const { status, body } = await http<AgentView>('GET', `${api}/v1/agents/${id}`);
    return status === 200 ? body : undefined;
  };

  it('reach the fleet view without a restart: set with add --label, changed and removed with label, for any agent id', async () => {
    const { data, api } = await startHub();
    const token = outpost(['hub', 'agents', 'add', 'pi-1', '--label', 'site=berlin', '--label', 'line=3', '--data', data]).trim();
    expect(token).toMatch(/^opt_/);
    await waitFor('pi-1 with its labels in the fleet', async () => (await agent(api, 'pi-1'))?.labels.site === 'berlin', NOTICED_WITHIN_MS);
    expect(await agent(api, 'pi-1')).toMatchObject({ provisioned: true, online: false, labels: { line: '3', site: 'berlin' } });

    // Set one, remove another: the command prints the labels after, one a line.
    expect(outpost(['hub', 'agents', 'label', 'pi-1', 'site=paris', 'line-', 'sites=berlin,paris', '--data', data])).toBe(
      'site=paris\nsites=berlin,paris\n',
    );
    await waitFor('the change in the fleet', async () => (await agent(api, 'pi-1'))?.labels.site === 'paris', NOTICED_WITHIN_MS);
    expect((await agent(api, 'pi-1'))!.labels).toEqual({ site: 'paris', sites: 'berlin,paris' });
    expect(outpost(['hub', 'agents', 'label', 'pi-1', '--data', data])).toBe('site=paris\nsites=berlin,paris\n');

    // An id never provisioned (a --dev hub would admit it) can be labelled, and appears in the fleet by its labels alone.
    outpost(['hub', 'agents', 'label', 'dev-7', 'zone=a', '--data', data]);
    await waitFor('dev-7 in the fleet', () => agent(api, 'dev-7'), NOTICED_WITHIN_MS);
    expect(await agent(api, 'dev-7')).toMatchObject({ provisioned: false, revoked: false, online: false, labels: { zone: 'a' } });
    expect(outpost(['hub', 'agents', 'list', '--data', data])).toMatch(
      /^AGENT +CREATED +STATE +LABELS\ndev-7 +- +no credential +zone=a\npi-1 +\S+ +active +site=paris sites=berlin,paris\n$/,
    );

    // Its last label removed, it is nobody the hub knows of again.
    const removed = runOutpost(['hub', 'agents', 'label', 'dev-7', 'zone-', '--data', data]);
    expect([removed.status, removed.stdout, removed.stderr]).toEqual([0, '', 'agent dev-7 has no labels\n']);
    await waitFor('dev-7 gone from the fleet', async () => (await agent(api, 'dev-7')) === undefined, NOTICED_WITHIN_MS);
    expect((await http<{ agents: AgentView[] }>('GET', `${api}/v1/agents`)).body.agents.map((a) => a.agentId)).toEqual(['pi-1']);
  }, 60_000);

  it('refuses bad names, values and arguments with exit status 1 and a message that says what to write, changing nothing', async () => {
    const { data, api } = await startHub();
    outpost(['hub', 'agents', 'label', 'pi-1', 'site=berlin', '--data', data]);
    const refused = (args: string[]): string => {
      const run = runOutpost(['hub', 'agents', ...args, '--data', data]);
      expect(run.status, run.stderr).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^outpost: configuration error: .* \[OUTPOST_INVALID_CONFIG\]\n$/);
      return run.stderr;
    };
    expect(refused(['label', 'pi-1', 'Site=paris'])).toContain(
      'label name "Site" is invalid: use 1-64 lowercase letters, digits, dots, underscores or dashes',
    );
    expect(refused(['label', 'pi-1', 'site='])).toContain(
      'label site has no value: give it 1-256 characters (site=berlin), or remove it with site-',
    );
    expect(refused(['label', 'pi-1', `site=${'x'.repeat(257)}`])).toContain('is 257 characters long: use at most 256');
    expect(refused(['label', 'pi-1', 'site=a\nb'])).toContain('control character');
    expect(refused(['label', 'pi-1', 'paris'])).toContain('"paris" is not a label change: write name=value');
    expect(refused(['label', 'pi-1', 'zone=a', 'site=paris', 'site-'])).toContain('label site is given more than once');
    expect(refused(['label', 'pi 1', 'site=paris'])).toContain('agent id "pi 1" is invalid');
    const many = Array.from({ length: 64 }, (_, i) => `l${i}=x`);
    expect(refused(['label', 'pi-1', ...many])).toContain('agent pi-1 would have 65 labels: at most 64 are allowed');
    // add refuses a bad label before it provisions anything: no token, no credential.
    expect(refused(['add', 'pi-2', '--label', 'Bad=x'])).toContain('label name "Bad" is invalid');
    expect(refused(['add', 'pi-2', '--label', 'site-'])).toContain('--label sets labels (name=value)');

    expect(outpost(['hub', 'agents', 'label', 'pi-1', '--data', data])).toBe('site=berlin\n');
    expect(outpost(['hub', 'agents', 'list', '--json', '--data', data])).not.toContain('pi-2');
    await waitFor('pi-1 in the fleet', () => agent(api, 'pi-1'), NOTICED_WITHIN_MS);
    expect((await agent(api, 'pi-1'))!.labels).toEqual({ site: 'berlin' });
  }, 60_000);
});

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
