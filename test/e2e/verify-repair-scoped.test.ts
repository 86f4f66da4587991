import Database from 'better-sqlite3';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../agent/types.js';
import { parseHubConfig } from '../../hub/config.js';
import type { Hub } from '../../hub/hub.js';
import { encodeCbor } from '../../shared/codec.js';
import { documentHash } from '../../shared/digest.js';
import { TestFleet } from '../helpers/fleet.js';
import { http } from '../helpers/processes.js';
import { editAgentDb, repaired, startVerifyingAgent, type VerifyingAgent } from '../helpers/verifying-agent.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Every copy verified, scoped collections too: a real agent process holding its scope of `sites`
 * (its site's documents and its own keys: two buckets, some documents in both) whose SQLite
 * file is damaged while it is stopped finds the damage through its buckets' digests and
 * repairs it by bucket range within 60 s of coming back; what is outside its scope stays out.
 */

const REPAIR_DEADLINE_MS = 60_000;
const CONFIG = parseHubConfig({
  collections: {
    sites: { scope: [{ field: 'site', equals: '{label.site}' }, { key: '{agent}/' }] },
    notes: { scope: { key: '{agent}/' } },
  },
});

describe('verifying and repairing a damaged replica of a scoped collection', () => {
  let fleet: TestFleet;
  let agent: VerifyingAgent | undefined;
  afterEach(async () => {
    await agent?.process.kill('SIGTERM');
    agent = undefined;
    await fleet.close();
  });

  const startAgent = (dataDir: string, scrub: boolean): Promise<VerifyingAgent> => startVerifyingAgent(fleet.port, dataDir, scrub);

  /** The hub's live documents of `sites` in pi-1's scope (berlin's, and its own keys): key → value. */
  async function hubScope(hub: Hub): Promise<Record<string, unknown>> {
    const docs = await hub.store.listDocuments('sites', { limit: 10_000 });
    const mine = docs.filter((d) => (d.value as { site?: string } | undefined)?.site === 'berlin' || d.key.startsWith('pi-1/'));
    return Object.fromEntries(mine.map((d) => [d.key, d.value]));
  }

  async function agentScope(running: VerifyingAgent): Promise<Record<string, unknown>> {
    const { body } = await http<{ docs: Array<{ key: string; value: unknown }> }>(
      'GET',
      `${running.api}/v1/docs/sites?limit=1000&confirmed=true`,
    );
    return Object.fromEntries(body.docs.map((d) => [d.key, d.value]));
  }

  /**
   * A hub with documents of two sites (berlin's in pi-1's scope, paris's not), some under pi-1's
   * own keys (in both its buckets when they are berlin's), a few deleted; and an agent process
   * labelled berlin holding its scope, then stopped.
   */
  async function seeded(): Promise<{ hub: Hub; dataDir: string }> {
    fleet = new TestFleet({ config: CONFIG });
    const hub = (await fleet.startHub()) as Hub;
    await hub.registry.setLabels('pi-1', { site: 'berlin' }, []);
    await waitFor('labels loaded', () => hub.labelsOf('pi-1').site === 'berlin');
    for (let i = 0; i < 120; i++) {
      const site = i % 3 === 0 ? 'paris' : 'berlin';
      await hub.core.write({ c: 'sites', k: `s-${String(i).padStart(3, '0')}`, op: 'put', v: { site, n: i } });
    }
    for (let i = 0; i < 20; i++)
      await hub.core.write({ c: 'sites', k: `pi-1/${i}`, op: 'put', v: { site: i % 2 ? 'berlin' : 'paris', n: i } });
    for (const k of ['s-001', 's-002', 'pi-1/3']) await hub.core.write({ c: 'sites', k, op: 'del' });
    for (const owner of ['pi-1', 'pi-2'])
      for (let i = 0; i < 4; i++) await hub.core.write({ c: 'notes', k: `${owner}/n${i}`, op: 'put', v: { i } });
    const dataDir = tempDir('verify-scoped-agent');
    const running = await startAgent(dataDir, false);
    const expected = await hubScope(hub);
    const notes = async (): Promise<number> =>
      (await http<{ docs: unknown[] }>('GET', `${running.api}/v1/docs/notes?limit=100&confirmed=true`)).body.docs.length;
    await waitFor(
      'the agent holds its scope',
      async () => isDeepStrictEqual(await agentScope(running), expected) && (await notes()) === 4,
      20_000,
    );
    await running.process.kill('SIGTERM');
    return { hub, dataDir };
  }

  /** Starts the agent again and waits until it has repaired (cause `cause`) and its copy verified since. */
  async function repairedAfterRestart(hub: Hub, dataDir: string, cause: string, scrub = false): Promise<AgentStatus> {
    const backAt = Date.now();
    agent = await startAgent(dataDir, scrub);
    const running = agent;
    const status = await repaired(running, cause, REPAIR_DEADLINE_MS);
    expect(Date.now() - backAt).toBeLessThan(REPAIR_DEADLINE_MS);
    expect(await agentScope(running)).toEqual(await hubScope(hub));
    const view = await waitFor('the hub heard of the repair', async () => {
      const mine = (await hub.fleet()).find((a) => a.agentId === 'pi-1');
      return mine?.verification && mine.verification.repairs >= 1 ? mine : undefined;
    });
    expect(view.verification).toMatchObject({ lastRepairCause: cause });
    expect(view.verification!.documentsRepaired).toBeGreaterThanOrEqual(1);
    return status;
  }

  it('a value changed under an unchanged version is found by the scrub and fetched again through its bucket', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) =>
      db.prepare("UPDATE documents SET value = ? WHERE collection = 'sites' AND key = 's-004'").run(encodeCbor({ site: 'berlin', n: -4 })),
    );
    const status = await repairedAfterRestart(hub, dataDir, 'scrub', true);
    expect(status.verification.documentsRepaired).toBe(1);
    expect(await agentScope(agent!)).toMatchObject({ 's-004': { site: 'berlin', n: 4 } });
  }, 90_000);

  it('lost rows, one of them in both buckets, are found by the digests and fetched again', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) =>
      expect(db.prepare("DELETE FROM documents WHERE collection = 'sites' AND key IN ('s-010', 's-100', 'pi-1/5')").run().changes).toBe(3),
    );
    const status = await repairedAfterRestart(hub, dataDir, 'digest');
    expect(status.verification.documentsRepaired).toBeGreaterThanOrEqual(3);
  }, 90_000);

  it('a phantom row in a bucket is found and removed', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) => {
      const { buckets, version } = db
        .prepare<[], { buckets: string; version: number }>(
          "SELECT buckets, version FROM documents WHERE collection = 'sites' AND key = 's-005'",
        )
        .get()!;
      const value = encodeCbor({ site: 'berlin', n: -1 });
      db.prepare(
        "INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES ('sites', 'ghost', ?, 0, ?, '0000000000000000', 'hub', ?, ?)",
      ).run(value, version, buckets, documentHash('sites', 'ghost', version, false, value));
    });
    await repairedAfterRestart(hub, dataDir, 'digest');
    expect(await agentScope(agent!)).not.toHaveProperty('ghost');
  }, 90_000);

  it('a lost tombstone is found and restored', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) =>
      expect(db.prepare("DELETE FROM documents WHERE collection = 'sites' AND key = 's-002' AND deleted = 1").run().changes).toBe(1),
    );
    await repairedAfterRestart(hub, dataDir, 'digest');
    await agent!.process.kill('SIGTERM');
    agent = undefined;
    editAgentDb(dataDir, (db) =>
      expect(db.prepare("SELECT deleted FROM documents WHERE collection = 'sites' AND key = 's-002'").get()).toEqual({ deleted: 1 }),
    );
  }, 90_000);

  it("a hole in the hub's log is found by the digest of the bucket's last page, and the missed document fetched", async () => {
    const { hub, dataDir } = await seeded();
    for (let i = 10; i < 30; i++)
      await hub.core.write({ c: 'sites', k: `s-${String(i).padStart(3, '0')}`, op: 'put', v: { site: 'berlin', n: 1000 + i } });
    const hole = hub.store.head - 10;
    const raw = new Database(join(fleet.hubData, 'hub.db'));
    expect(raw.prepare('DELETE FROM log WHERE lsn = ?').run(hole).changes).toBe(1);
    raw.close();
    const status = await repairedAfterRestart(hub, dataDir, 'hole');
    expect(status.verification.documentsRepaired).toBe(1);
  }, 90_000);

  it('nothing outside the scope is fetched by a repair', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) => db.prepare("DELETE FROM documents WHERE collection = 'sites' AND key LIKE 's-0%'").run());
    await repairedAfterRestart(hub, dataDir, 'digest');
    await agent!.process.kill('SIGTERM');
    agent = undefined;
    const paris = editAgentDb(dataDir, (db) =>
      db.prepare<[], { key: string }>("SELECT key FROM documents WHERE collection = 'sites' AND evicted = 0 AND key LIKE 's-%'").all(),
    );
    // Of s-000…s-119, every third is paris's: none of those is held.
    expect(paris.map((r) => r.key).filter((k) => Number(k.slice(2)) % 3 === 0)).toEqual([]);
  }, 90_000);

  it("every row of a bucket lost: the scope message names the bucket's collection, and the bucket is fetched again", async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) => expect(db.prepare("DELETE FROM documents WHERE collection = 'notes'").run().changes).toBe(4));
    await repairedAfterRestart(hub, dataDir, 'digest');
    const { body } = await http<{ docs: Array<{ key: string }> }>('GET', `${agent!.api}/v1/docs/notes?limit=100&confirmed=true`);
    expect(body.docs.map((d) => d.key)).toEqual(['pi-1/n0', 'pi-1/n1', 'pi-1/n2', 'pi-1/n3']);
  }, 90_000);
});
