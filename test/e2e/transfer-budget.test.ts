import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/** A device on a metered link: what its transfer budget lets go, in what order. */
describe('the transfer budget', () => {
  let hub: Hub | undefined;
  let device: Agent | undefined;
  afterEach(async () => {
    await device?.close();
    await hub?.stop();
  });

  it('with the budget spent, an alarm still goes at once, documents wait, and blobs wait longest', async () => {
    const dir = tempDir('budget');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dev: true,
      dataDir: join(dir, 'hub'),
      config: parseHubConfig({
        collections: { photos: { blobs: 'lazy' }, alarms: { priority: 'high' } },
        access: { default: { read: ['*'], write: ['*'] } },
      }),
    });
    let clock = Date.UTC(2026, 11, 3, 12);
    const budget = 600_000;
    device = new Agent({
      hubUrl: `mqtt://127.0.0.1:${hub.port}`,
      agentId: 'pi-cellular',
      dataDir: join(dir, 'pi'),
      transferBudget: { bytesPerDay: budget, now: () => clock },
    }).start();
    const atHub = (c: string, k: string) => hub!.core.store.document(c, k);
    const spent = (): number => device!.status().budget!.periods[0]!.spentBytes;

    // A blob takes the budget past 80 %: the next blob waits, documents still go.
    await device.putBlob('photos', 'p1', randomBytes(500_000), { contentType: 'image/jpeg' });
    await waitFor('the first blob at the hub', () => atHub('photos', 'p1'), 20_000);
    expect(spent()).toBeGreaterThan(0.8 * budget);
    await device.putBlob('photos', 'p2', randomBytes(2_000), { contentType: 'image/jpeg' });
    await device.put('notes', 'n1', { text: randomBytes(60_000).toString('base64') }, { durability: 'hub' });
    expect(spent(), 'the budget is spent').toBeGreaterThanOrEqual(budget);
    expect(device.status().budget!.waiting).toEqual({ documents: 0, blobs: 1 });

    // Spent: an alarm goes at once; a note written after it waits, as does the blob.
    const alarm = await device.put('alarms', 'door', { open: true }, { durability: 'hub' });
    expect(alarm.lsn).toBeGreaterThan(0);
    await device.put('notes', 'late', { text: 'waits for tomorrow' });
    expect(await device.syncNow(1_500), 'nothing more goes today').toBe(false);
    expect(device.status().budget).toMatchObject({
      periods: [{ period: 'day', budgetBytes: budget, resetsAt: '2026-12-04T00:00:00.000Z' }],
      waiting: { documents: 1, blobs: 1 },
    });
    expect(await atHub('notes', 'late')).toBeUndefined();
    // The hub's fleet view shows the spend, as the device last reported it.
    const reported = await waitFor('the spend in the fleet view', async () => {
      const view = (await hub!.fleet()).find((a) => a.agentId === 'pi-cellular')?.transfer;
      return view && view.periods[0]!.spentBytes >= budget ? view : undefined;
    });
    expect(reported.periods[0]).toMatchObject({ period: 'day', budgetBytes: budget });
    expect(await atHub('photos', 'p2')).toBeUndefined();

    // A new day: the note goes, then the blob.
    clock += 24 * 3600 * 1000;
    const late = await waitFor('the note at the hub', () => atHub('notes', 'late'), 20_000);
    const blob = await waitFor('the second blob at the hub', () => atHub('photos', 'p2'), 20_000);
    expect(late.version).toBeLessThan(blob.version);
    expect(device.status().budget!.waiting).toEqual({ documents: 0, blobs: 0 });
  });

  it('follows the budget the hub declares for its group, unless the device has its own', async () => {
    const dir = tempDir('budget');
    hub = await Hub.start({
      port: 0,
      host: '127.0.0.1',
      dev: true,
      dataDir: join(dir, 'hub'),
      config: parseHubConfig({
        access: { groups: { cellular: ['pi-cell', 'pi-own'] }, default: { read: ['*'], write: ['*'] } },
        budgets: { 'group:cellular': { mbPerDay: 2, mbPerMonth: 40 }, 'pi-wired': { mbPerMonth: 1000 } },
      }),
    });
    const open = (id: string, own?: { bytesPerDay: number }): Agent =>
      new Agent({
        hubUrl: `mqtt://127.0.0.1:${hub!.port}`,
        agentId: id,
        dataDir: join(dir, id),
        ...(own && { transferBudget: own }),
      }).start();
    const cell = open('pi-cell');
    const own = open('pi-own', { bytesPerDay: 1000 });
    const other = open('pi-other');
    try {
      const periods = (a: Agent) => a.status().budget?.periods.map((p) => [p.period, p.budgetBytes]);
      await waitFor('the declared budget on pi-cell', () => periods(cell)?.length === 2);
      expect(periods(cell)).toEqual([
        ['day', 2 * 1024 * 1024],
        ['month', 40 * 1024 * 1024],
      ]);
      expect(periods(own), "the device's own budget wins").toEqual([['day', 1000]]);
      await waitFor('pi-other connected', () => other.status().connected);
      await cell.put('notes', 'n', { ok: true }, { durability: 'hub' });
      expect(other.status().budget, 'no budget declared for it').toBeUndefined();
      // The hub restarted with a config that declares none: the device follows none again.
      const port = hub.port;
      await hub.stop();
      hub = await Hub.start({
        port,
        host: '127.0.0.1',
        dev: true,
        dataDir: join(dir, 'hub'),
        config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } }),
      });
      await waitFor('the declared budget gone from pi-cell', () => cell.status().budget === undefined, 20_000);
      expect(periods(own)).toEqual([['day', 1000]]);
    } finally {
      await Promise.all([cell, own, other].map((a) => a.close()));
    }
  });
});
