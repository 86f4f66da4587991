import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import type { WriteReceipt } from '../../agent/write-queue.js';
import type { HubStore } from '../../hub/store/hub-store.js';
import { openHubStore } from '../../hub/store/open-store.js';
import { MOSQUITTO, MosquittoProcess, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { outpost, OutpostProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { sleep, waitFor } from '../helpers/wait.js';

const HUB_PASSWORD = 'hub-secret-for-partitions';
const AGENTS = ['pi-1', 'pi-2', 'pi-3'];
/** `readings` stays in the default partition; `orders` has a partition, a log and a leader of its own. */
const CONFIG = 'partitions:\n  billing: [orders]\naccess:\n  default: { read: ["*"], write: ["*"] }\n';
const COLLECTIONS = { readings: 'default', orders: 'billing' } as const;

const skip = NO_POSTGRES ?? (MOSQUITTO ? undefined : NO_MOSQUITTO);
if (skip) console.warn(`partition failover: ${skip}`);

describe.skipIf(skip !== undefined)('partition failover: each partition has its own leader', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  });

  it("SIGKILL of one partition's leader: its standby leads within 5 s, the other partition never stops committing, nothing is lost, duplicated or diverged", async () => {
    const url = await freshDatabase();
    const dir = tempDir('partition-failover');
    const config = join(dir, 'hub.yaml');
    writeFileSync(config, CONFIG);
    const tokens = Object.fromEntries(AGENTS.map((id) => [id, outpost(['hub', 'agents', 'add', id, '--store', url]).trim()]));
    outpost(['hub', 'export', 'mosquitto', '--store', url, '--out', join(dir, 'mosquitto'), '--config', config], {
      OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
    });
    const broker = await MosquittoProcess.start(join(dir, 'mosquitto'));
    closers.push(() => broker.stop());

    const hub = (name: string, partitions: string): OutpostProcess => {
      const p = new OutpostProcess(
        ['hub', '--broker', broker.url, '--store', url, '--data', join(dir, name), '--config', config, '--partitions', partitions],
        { OUTPOST_BROKER_PASSWORD: HUB_PASSWORD },
      );
      closers.push(() => p.kill('SIGTERM'));
      return p;
    };
    // Three processes: one leads the default partition, one leads billing, one stands by for billing.
    const main = hub('hub-main', 'default');
    await main.waitForLog('hub started');
    const billing = hub('hub-billing-a', 'billing');
    await billing.waitForLog('hub started');
    const standby = hub('hub-billing-b', 'billing');
    await standby.waitForLog('standing by');

    const agents = AGENTS.map((id) => {
      const agent = new Agent({
        hubUrl: broker.url,
        agentId: id,
        hubToken: tokens[id]!,
        dataDir: join(dir, id),
        reconnect: { initialMs: 50, maxMs: 500 },
      }).start();
      closers.push(() => agent.close());
      return agent;
    });
    // A receipt names the write's place in its partition's sequence once the agent knows the
    // partitions (writes made before are moved to their partition and renumbered).
    await waitFor('agents know the partitions', () => agents.every((a) => a.status().partitions?.billing !== undefined), 15_000);

    const made: Array<{ agentId: string; collection: keyof typeof COLLECTIONS; receipt: WriteReceipt }> = [];
    let writing = true;
    const writers = agents.map(async (agent, a) => {
      for (let i = 0; writing; i++) {
        const collection = i % 2 === 0 ? 'readings' : 'orders';
        const key = i % 8 < 2 ? `shared-${i % 3}` : `${agent.id}-${i}`;
        made.push({ agentId: agent.id, collection, receipt: await agent.put(collection, key, { a, i }) });
        await sleep(5);
      }
    });

    const stores = new Map<string, HubStore>();
    for (const partition of ['default', 'billing']) {
      const store = await openHubStore({ store: url, dataDir: dir, partition, maxConnections: 2 });
      closers.push(() => store.close());
      stores.set(partition, store);
    }
    const headOf = async (collection: keyof typeof COLLECTIONS): Promise<number> =>
      (await stores.get(COLLECTIONS[collection])!.collectionHeads())[collection] ?? 0;

    await waitFor('writes made before the kill', () => made.length > 200, 15_000);
    await billing.kill('SIGKILL');
    const readingsAtKill = await headOf('readings');
    const killedAt = Date.now();
    await standby.waitForLog('hub started', 15_000);
    const takeover = Date.now() - killedAt;
    const readingsAtTakeover = await headOf('readings');
    expect(takeover, "billing's standby leading after the SIGKILL (ms)").toBeLessThan(5_000);
    // The default partition kept committing while billing had no leader.
    expect(readingsAtTakeover, 'readings committed while billing failed over').toBeGreaterThan(readingsAtKill);

    const before = made.length;
    await waitFor('writes made after the takeover', () => made.length > before + 200, 15_000);
    writing = false;
    await Promise.all(writers);

    // Every agent uploads everything and catches up on both partitions, without help.
    const heads: Record<string, number> = {};
    const caughtUp = (agent: Agent): boolean => {
      const s = agent.status();
      return s.outboxDepth === 0 && Object.keys(COLLECTIONS).every((c) => (s.collections[c]?.appliedLsn ?? 0) >= (heads[c] ?? 0));
    };
    await waitFor(
      'every outbox empty and every replica caught up',
      async () => {
        for (const c of Object.keys(COLLECTIONS) as Array<keyof typeof COLLECTIONS>) heads[c] = await headOf(c);
        return agents.every(caughtUp);
      },
      30_000,
    ).catch((error: Error) => {
      throw new Error(
        `${error.message}\nheads ${JSON.stringify(heads)}\n${JSON.stringify(
          agents.map((a) => a.status()),
          null,
          1,
        )}\n--- standby:\n${standby.output.slice(-3000)}`,
      );
    });

    // Nothing lost or duplicated: each write committed exactly once, in its own partition's log.
    const problems: string[] = [];
    for (const { agentId, collection, receipt } of made) {
      const partition = COLLECTIONS[collection];
      expect(receipt.partition ?? 'default').toBe(partition);
      const store = stores.get(partition)!;
      const outcome = await store.outcomeOf(agentId, receipt.incarnation, receipt.seq);
      const logged = await store.countCommitted(agentId, receipt.incarnation, receipt.seq);
      if (outcome?.result.outcome !== 'committed' && outcome?.result.outcome !== 'conflict')
        problems.push(`${agentId} ${partition}/${receipt.seq}: outcome ${JSON.stringify(outcome)}`);
      if (outcome?.result.outcome === 'committed' && logged !== 1)
        problems.push(`${agentId} ${partition}/${receipt.seq}: ${logged} log entries`);
    }
    expect(problems, `${made.length} writes checked`).toEqual([]);

    // Nothing diverged: every replica holds exactly each partition's documents, at its versions.
    for (const collection of Object.keys(COLLECTIONS) as Array<keyof typeof COLLECTIONS>) {
      const atHub = (await stores.get(COLLECTIONS[collection])!.listDocuments(collection, { limit: 100_000 })).map(
        ({ key, value, version }) => ({ key, value, version }),
      );
      expect(atHub.length).toBeGreaterThan(100);
      for (const agent of agents) {
        const replica = (await agent.list(collection, { confirmed: true, limit: 1000 })).map(({ key, value, version }) => ({
          key,
          value,
          version,
        }));
        expect(replica, `${collection} on ${agent.id}`).toEqual(atHub);
      }
    }
    // The other partition's store holds none of them.
    expect(await stores.get('default')!.listDocuments('orders', { limit: 10 })).toEqual([]);
    expect(await stores.get('billing')!.listDocuments('readings', { limit: 10 })).toEqual([]);
    // Billing's epoch rose with its takeover; the default partition's leader never changed.
    const epochOf = (output: string): number => Number(/"epoch":(\d+)[^\n]*"msg":"leading/.exec(output)?.[1]);
    expect(epochOf(standby.output)).toBeGreaterThan(epochOf(billing.output));
    expect(main.output).not.toMatch(/lost the leader lock|stopping/);
  }, 120_000);
});
