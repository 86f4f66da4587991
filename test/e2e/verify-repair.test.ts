import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../agent/types.js';
import { parseHubConfig } from '../../hub/config.js';
import type { Hub } from '../../hub/hub.js';
import { encodeCbor } from '../../shared/codec.js';
import { documentHash } from '../../shared/digest.js';
import { TestFleet } from '../helpers/fleet.js';
import { http } from '../helpers/processes.js';
import { editAgentDb, repaired, startVerifyingAgent, statusOf, type VerifyingAgent } from '../helpers/verifying-agent.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Every copy verified: a real agent process whose SQLite file is damaged while it is stopped, as
 * a rotting card, a cut power supply or a hand with the sqlite3 tool would leave it, finds the
 * damage and repairs it from the hub within 60 s of coming back, moving only what differs; a hole
 * in the hub's log is found by the digest the pages carry. The fleet view names the device and
 * its repair.
 */

const DOCS = 200;
const REPAIR_DEADLINE_MS = 60_000;

describe('verifying and repairing a damaged replica', () => {
  let fleet: TestFleet;
  let agent: VerifyingAgent | undefined;
  afterEach(async () => {
    await agent?.process.kill('SIGTERM');
    agent = undefined;
    await fleet.close();
  });

  const startAgent = (dataDir: string, scrub: boolean): Promise<VerifyingAgent> => startVerifyingAgent(fleet.port, dataDir, scrub);

  /** The hub's documents of `readings`, as the agent's API shows confirmed ones: key → value. */
  async function hubReadings(hub: Hub): Promise<Record<string, unknown>> {
    const docs = await hub.store.listDocuments('readings', { limit: 10_000 });
    return Object.fromEntries(docs.map((d) => [d.key, d.value]));
  }

  async function agentReadings(running: VerifyingAgent): Promise<Record<string, unknown>> {
    const { body } = await http<{ docs: Array<{ key: string; value: unknown }> }>(
      'GET',
      `${running.api}/v1/docs/readings?limit=1000&confirmed=true`,
    );
    return Object.fromEntries(body.docs.map((d) => [d.key, d.value]));
  }

  /** A hub with DOCS readings, a few deleted (tombstones), and an agent process holding all of it, then stopped. */
  async function seeded(hubOptions: ConstructorParameters<typeof TestFleet>[0] = {}): Promise<{ hub: Hub; dataDir: string; head: number }> {
    fleet = new TestFleet(hubOptions);
    const hub = (await fleet.startHub()) as Hub;
    for (let i = 0; i < DOCS; i++)
      await hub.core.write({ c: 'readings', k: `r-${String(i).padStart(3, '0')}`, op: 'put', v: { celsius: i } });
    for (const i of [7, 8, 9]) await hub.core.write({ c: 'readings', k: `r-00${i}`, op: 'del' });
    const dataDir = tempDir('verify-agent');
    const running = await startAgent(dataDir, false);
    const head = hub.store.head;
    await waitFor('the agent holds everything', async () => (await statusOf(running)).collections.readings?.appliedLsn === head, 20_000);
    await running.process.kill('SIGTERM');
    return { hub, dataDir, head };
  }

  /** Starts the agent again and waits until it has repaired (cause `cause`) and its copy verified since. */
  async function repairedAfterRestart(hub: Hub, dataDir: string, cause: string, scrub = false): Promise<AgentStatus> {
    const backAt = Date.now();
    agent = await startAgent(dataDir, scrub);
    const running = agent;
    const status = await repaired(running, cause, REPAIR_DEADLINE_MS);
    expect(Date.now() - backAt).toBeLessThan(REPAIR_DEADLINE_MS);
    expect(await agentReadings(running)).toEqual(await hubReadings(hub));
    // The fleet view names the device with the divergence and its repair.
    const view = await waitFor('the hub heard of the repair', async () => {
      const mine = (await hub.fleet()).find((a) => a.agentId === 'pi-1');
      return mine?.verification && mine.verification.repairs >= 1 ? mine : undefined;
    });
    expect(view.verification).toMatchObject({ lastRepairCause: cause });
    expect(view.verification!.divergencesFound).toBeGreaterThanOrEqual(1);
    expect(view.verification!.documentsRepaired).toBeGreaterThanOrEqual(1);
    return status;
  }

  it('a value changed under an unchanged version is found by the scrub and fetched again', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) =>
      db.prepare("UPDATE documents SET value = ? WHERE collection = 'readings' AND key = 'r-042'").run(encodeCbor({ celsius: 999 })),
    );
    const status = await repairedAfterRestart(hub, dataDir, 'scrub', true);
    expect(status.verification.documentsRepaired).toBe(1);
    expect(await agentReadings(agent!)).toMatchObject({ 'r-042': { celsius: 42 } });
  }, 90_000);

  it('lost rows are found by the digest and only their ranges fetched again', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) =>
      db.prepare("DELETE FROM documents WHERE collection = 'readings' AND key IN ('r-010', 'r-011', 'r-150')").run(),
    );
    const status = await repairedAfterRestart(hub, dataDir, 'digest');
    expect(status.verification.documentsRepaired).toBe(3);
  }, 90_000);

  it('a phantom row the hub never had is found and removed', async () => {
    const { hub, dataDir, head } = await seeded();
    editAgentDb(dataDir, (db) => {
      const value = encodeCbor({ celsius: -1 });
      db.prepare(
        "INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, hash) VALUES ('readings', 'ghost', ?, 0, ?, '0000000000000000', 'hub', ?)",
      ).run(value, head, documentHash('readings', 'ghost', head, false, value));
    });
    const status = await repairedAfterRestart(hub, dataDir, 'digest');
    expect(status.verification.documentsRepaired).toBe(1);
    expect(await agentReadings(agent!)).not.toHaveProperty('ghost');
  }, 90_000);

  it('a lost tombstone is found and restored', async () => {
    const { hub, dataDir } = await seeded();
    editAgentDb(dataDir, (db) => {
      const { changes } = db.prepare("DELETE FROM documents WHERE collection = 'readings' AND key = 'r-008' AND deleted = 1").run();
      expect(changes).toBe(1);
    });
    await repairedAfterRestart(hub, dataDir, 'digest');
    await agent!.process.kill('SIGTERM');
    editAgentDb(dataDir, (db) =>
      expect(db.prepare("SELECT deleted FROM documents WHERE collection = 'readings' AND key = 'r-008'").get()).toEqual({ deleted: 1 }),
    );
  }, 90_000);

  it('a lost row that the catch-up by snapshot puts back unseen is still reported: the device compares what it held at connect', async () => {
    const { hub, dataDir } = await seeded({ config: parseHubConfig({ retention: { maxEntries: 5 } }) });
    editAgentDb(dataDir, (db) => db.prepare("DELETE FROM documents WHERE collection = 'readings' AND key = 'r-100'").run());
    // While it is away the hub writes on and its log is pruned past the device's watermark: it will get a snapshot.
    for (let i = 0; i < 20; i++) await hub.core.write({ c: 'other', k: `o-${i}`, op: 'put', v: i });
    await hub.core.pruneLog();
    expect(hub.store.prunedThrough).toBeGreaterThan(DOCS);
    agent = await startAgent(dataDir, false);
    const running = agent;
    const status = await waitFor(
      'the divergence reported',
      async () => {
        const s = await statusOf(running);
        return s.verification.divergencesFound >= 1 && s.verification.repairing.length === 0 ? s : undefined;
      },
      REPAIR_DEADLINE_MS,
      200,
    );
    expect(status.verification.lastRepairCause).toBe('digest');
    expect(await agentReadings(running)).toEqual(await hubReadings(hub));
  }, 90_000);

  it("a hole in the hub's log is found by the digest its pages carry, and the missed document fetched", async () => {
    const { hub, dataDir } = await seeded();
    // While the agent is away: 20 more changes, and the log loses one of them underneath.
    for (let i = 0; i < 20; i++)
      await hub.core.write({ c: 'readings', k: `r-${String(i).padStart(3, '0')}`, op: 'put', v: { celsius: 1000 + i } });
    const hole = hub.store.head - 10;
    const raw = new Database(join(fleet.hubData, 'hub.db'));
    expect(raw.prepare('DELETE FROM log WHERE lsn = ?').run(hole).changes).toBe(1);
    raw.close();
    const status = await repairedAfterRestart(hub, dataDir, 'hole');
    expect(status.verification.documentsRepaired).toBe(1);
  }, 90_000);
});
