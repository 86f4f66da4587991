import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { http } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { check, summaryLine } from './checker.js';
import { History } from './history.js';
import { ProcessFleet } from './process-fleet.js';
import { CHAOS_HUB_CONFIG, writer, writeThrough } from './run.js';
import { prng } from '../helpers/prng.js';
import { linkTap } from './received.js';
import { sitesOf } from './scope-plan.js';

/** Scenarios the random runner may not reach, each against real processes and the same checker. */
describe('chaos scenarios', () => {
  let fleet: ProcessFleet | undefined;
  afterEach(async () => fleet?.close());

  /** A hub and agents `pi-0…`; `special` agents get extra command-line arguments. */
  async function setUp(
    agents: number,
    config = CHAOS_HUB_CONFIG,
    special: Record<string, string[]> = {},
  ): Promise<{ fleet: ProcessFleet; ids: string[]; history: History; dir: string }> {
    const dir = tempDir('scenario');
    writeFileSync(join(dir, 'hub.yaml'), config);
    fleet = new ProcessFleet(dir, ['--config', join(dir, 'hub.yaml')]);
    await fleet.startHub();
    const ids = [...Array.from({ length: agents }, (_, i) => `pi-${i}`), ...Object.keys(special)];
    const history = new History();
    // Several at once: a 20-agent fleet provisioned one command at a time takes half a minute.
    await fleet.provision(ids, (id) => ({ site: sitesOf(id)[0] }));
    for (const id of ids) history.sites.set(id, sitesOf(id)[0]);
    fleet.tapDown = (id) => linkTap(history, id);
    for (const id of ids) {
      fleet.agentArgs = special[id] ?? [];
      await fleet.addAgent(id);
    }
    fleet.agentArgs = [];
    return { fleet, ids, history, dir };
  }

  async function verify(f: ProcessFleet, dir: string, ids: string[], history: History): Promise<void> {
    await f.quiesce(120_000);
    await f.close();
    const verdict = check(dir, ids, history);
    expect(verdict, summaryLine(verdict, history.faults.length, 0)).toMatchObject({
      lost: [],
      duplicated: [],
      misordered: [],
      diverged: [],
      wrongOutcome: [],
      corrupt: [],
      regressions: [],
      outsideScope: [],
    });
    expect(verdict.acknowledged).toBeGreaterThan(0);
  }

  it('hub restart with 20 agents reconnecting at once', async () => {
    const { fleet: f, ids, history, dir } = await setUp(20);
    const random = prng(20);
    await Promise.all(ids.map((id) => writer(f, id, history, random, Date.now() + 3000, 100)));
    await f.killHub();
    // Writes go on while the hub is down; then every agent comes back at once.
    await Promise.all(ids.map((id) => writer(f, id, history, random, Date.now() + 2000, 100)));
    await f.startHub();
    await Promise.all(ids.map((id) => writer(f, id, history, random, Date.now() + 3000, 100)));
    await verify(f, dir, ids, history);
  }, 240_000);

  it('an agent offline beyond log retention catches up by snapshot', async () => {
    const { fleet: f, ids, history, dir } = await setUp(2, CHAOS_HUB_CONFIG.replace('maxEntries: 500', 'maxEntries: 100'));
    const random = prng(7);
    f.proxy('pi-1').mode = { kind: 'cut' };
    // Far more than the 100 entries retained: write until the log is three times that long.
    const giveUp = Date.now() + 60_000;
    while (((await f.hubStatus())?.head ?? 0) <= 300 && Date.now() < giveUp) await writer(f, 'pi-0', history, random, Date.now() + 1000, 2);
    const hub = await f.hubStatus();
    expect(hub!.head).toBeGreaterThan(300);
    await waitFor(
      'retention ran',
      async () => (await http<{ prunedThrough: number }>('GET', `${f.hubUrl}/v1/status`)).body.prunedThrough > 0,
    );
    await verify(f, dir, ids, history);
  }, 240_000);

  it('an agent whose clock is an hour behind: its concurrent writes lose, are archived, and it converges', async () => {
    const { fleet: f, ids, history, dir } = await setUp(1, CHAOS_HUB_CONFIG, { 'pi-late': ['--clock-offset-ms', String(-3_600_000)] });
    const random = prng(3);
    // Offline at first: the late device stamps its writes an hour in the past.
    f.proxy('pi-late').mode = { kind: 'cut' };
    // The random writers alone may not make a conflict: under load the late device's first write
    // with hub durability can take its whole offline window (it waits 3 s for an ack that cannot
    // come). So each agent also writes the same few settings, the late one first and offline.
    for (const id of ['pi-late', 'pi-0']) {
      for (const key of ['s0', 's1', 's2']) {
        const status = await writeThrough(f, id, history, {
          collection: 'settings',
          key,
          value: { by: id },
          durability: 'local',
          poison: false,
        });
        expect(status).toBe(200);
      }
    }
    await Promise.all(ids.map((id) => writer(f, id, history, random, Date.now() + 3000, 30)));
    f.proxy('pi-late').mode = { kind: 'pass' };
    await Promise.all(ids.map((id) => writer(f, id, history, random, Date.now() + 3000, 30)));
    await f.quiesce();
    await f.close();
    const verdict = check(dir, ids, history);
    expect(verdict.conflicts).toBeGreaterThan(0);
    expect(verdict).toMatchObject({ lost: [], duplicated: [], diverged: [], wrongOutcome: [], corrupt: [] });
  }, 240_000);

  it('a full disk on an agent: a clear error to the app, nothing already queued lost', async () => {
    const { fleet: f, history, dir } = await setUp(0, CHAOS_HUB_CONFIG, { 'pi-full': ['--storage-limit-mb', '1'] });
    f.proxy('pi-full').mode = { kind: 'cut' }; // offline: the outbox only grows
    let full: { status: number; body: { code: string; message: string } } | undefined;
    for (let i = 0; i < 2000 && !full; i++) {
      const response = await http<{ incarnation: string; seq: number; code: string; message: string }>(
        'PUT',
        `${f.agentUrl('pi-full')}/v1/docs/readings/r${i}`,
        // Random bytes: the outbox compresses what it stores, and a repeated character would never fill it.
        { blob: randomBytes(1500).toString('base64'), i },
      );
      if (response.status === 200) {
        history.writes.push({
          agentId: 'pi-full',
          incarnation: response.body.incarnation,
          seq: response.body.seq,
          collection: 'readings',
          key: `r${i}`,
          durability: 'local',
          poison: false,
        });
      } else {
        full = response;
      }
    }
    expect(full).toMatchObject({ status: 507, body: { code: 'OUTPOST_STORAGE_FULL' } });
    expect(full!.body.message).toMatch(/nothing already queued was lost/);
    expect(history.writes.length).toBeGreaterThan(50);
    await verify(f, dir, ['pi-full'], history);
  }, 240_000);
});
