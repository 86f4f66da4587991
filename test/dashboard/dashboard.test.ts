import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseHubConfig } from '../../hub/config.js';
import { hashToken } from '../../hub/credentials.js';
import { Hub } from '../../hub/hub.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const CHROMIUM = process.env.OUTPOST_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

describe.skipIf(!existsSync(CHROMIUM))(
  `dashboard in headless Chromium (${CHROMIUM}; skipped when absent: apt-get install chromium)`,
  () => {
    let browser: Browser | undefined;
    let hub: Hub | undefined;
    const agents: Agent[] = [];
    afterAll(async () => {
      await browser?.close();
      await Promise.all(agents.map((a) => a.close()));
      await hub?.stop();
    });

    it('shows every agent with its labels and lag, sorts, filters, opens an agent page; saves a screenshot', async () => {
      const dir = tempDir('dashboard');
      hub = await Hub.start({
        port: 0,
        host: '127.0.0.1',
        dataDir: join(dir, 'hub'),
        http: { host: '127.0.0.1', port: 0 },
        adminToken: 'dash',
        historyEveryMs: 200,
        config: parseHubConfig({ access: { default: { read: ['*'], write: ['*'] } } }),
      });
      const ids = ['pi-alpha', 'pi-bravo', 'pi-charlie'];
      for (const id of ids) await hub.store.putCredential(id, await hashToken(`t-${id}`));
      for (const id of ids)
        agents.push(
          new Agent({ hubUrl: `mqtt://127.0.0.1:${hub.port}`, agentId: id, hubToken: `t-${id}`, dataDir: join(dir, id) }).start(),
        );
      for (const [i, agent] of agents.entries()) await agent.put('readings', `r${i}`, { i }, { durability: 'hub' });
      await waitFor('everyone reported', async () => (await hub!.fleet()).every((a) => a.collections.readings?.appliedLsn === 3));
      await agents[2]!.close(); // pi-charlie goes offline and falls behind
      await agents[0]!.put('readings', 'late', { i: 9 }, { durability: 'hub' });
      // Labelled from another process, as `outpost hub agents label` does; one agent known only by its labels.
      const cli = new SqliteHubStore(join(dir, 'hub'));
      await cli.setLabels('pi-alpha', { site: 'berlin', line: '3' }, []);
      await cli.setLabels('pi-bravo', { site: 'paris', othersite: 'berlin', zone: 'site=berlin-east' }, []);
      await cli.setLabels('pi-spare', { site: 'berlin' }, []);
      await cli.close();
      await waitFor('the hub reloaded the labels', () => hub!.labelsOf('pi-spare').site === 'berlin');

      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
      await page.addInitScript(() => sessionStorage.setItem('outpost-admin-token', 'dash'));
      await page.goto(hub.httpAddress!);

      const row = (id: string) => page.locator(`tr.agent[data-agent="${id}"]`);
      for (const id of [...ids, 'pi-spare']) await row(id).waitFor();
      await expect.poll(async () => row('pi-charlie').locator('td.lag').textContent()).toBe('1');
      expect(await row('pi-alpha').locator('td.lag').textContent()).toBe('0');
      expect(await row('pi-charlie').locator('td').nth(2).textContent()).toBe('offline');
      expect(await row('pi-alpha').locator('td.labels .label').allTextContents()).toEqual(['line=3', 'site=berlin']);
      expect(await row('pi-charlie').locator('td.labels').textContent()).toBe('');
      await expect.poll(async () => page.locator('#summary').textContent()).toBe('2 of 4 agents online');

      await page.click('th[data-key="lag"]'); // ascending
      await page.click('th[data-key="lag"]'); // descending: the laggard first
      expect(await page.locator('tr.agent').first().getAttribute('data-agent')).toBe('pi-charlie');
      await page.fill('#filter', 'bra');
      await expect.poll(async () => page.locator('tr.agent').count()).toBe(1);
      await page.fill('#filter', 'site=berlin'); // by label: exactly, not othersite=berlin or a value holding it
      await expect
        .poll(async () => page.locator('tr.agent').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-agent'))))
        .toEqual(['pi-alpha', 'pi-spare']);
      await page.fill('#filter', 'site=berlin line=3'); // every word
      await expect.poll(async () => page.locator('tr.agent').count()).toBe(1);
      await page.fill('#filter', '');

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

      await row('pi-charlie').click();
      await page.locator('#agent-title').filter({ hasText: 'Agent pi-charlie' }).waitFor();
      expect(await page.locator('#agent-detail').textContent()).toMatch(/applied LSN 3, lag 1 changes/);
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard-agent.png'), fullPage: true });
      await page.goto(`${hub.httpAddress!}/#agent=pi-alpha`);
      await page.locator('#agent-title').filter({ hasText: 'Agent pi-alpha' }).waitFor();
      await expect.poll(async () => page.locator('#agent-detail').textContent()).toMatch(/Labelsline=3 site=berlin/);
    }, 60_000);
  },
);
