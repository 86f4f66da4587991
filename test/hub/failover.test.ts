import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import type { WriteReceipt } from '../../agent/write-queue.js';
import pino from 'pino';
import { HubCore } from '../../hub/core.js';
import { LeaderLock } from '../../hub/leadership.js';
import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { MOSQUITTO, MosquittoProcess, NO_MOSQUITTO } from '../helpers/mosquitto.js';
import { freshDatabase, NO_POSTGRES, sql } from '../helpers/postgres.js';
import { freePort } from '../helpers/ports.js';
import { http, outpost, OutpostProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { sleep, waitFor } from '../helpers/wait.js';

const HUB_PASSWORD = 'hub-secret-for-failover';
const AGENTS = ['pi-1', 'pi-2', 'pi-3'];
/** Keys every agent writes (concurrent writes, resolved last-writer-wins) besides its own. */
const SHARED_KEYS = 5;

const skip = NO_POSTGRES ?? (MOSQUITTO ? undefined : NO_MOSQUITTO);
if (skip) console.warn(`hub failover: ${skip}`);

describe.skipIf(skip !== undefined)('hub failover: hub processes on one PostgreSQL', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  });

  it("behind Mosquitto: a standby leads within 5 s of the leader's SIGKILL; agents go on by themselves; nothing is lost, duplicated or diverged", async () => {
    const url = await freshDatabase();
    const dir = tempDir('failover');
    const config = join(dir, 'hub.yaml');
    writeFileSync(config, 'access:\n  default: { read: ["*"], write: ["*"] }\n');
    const tokens = Object.fromEntries(AGENTS.map((id) => [id, outpost(['hub', 'agents', 'add', id, '--store', url]).trim()]));
    outpost(['hub', 'export', 'mosquitto', '--store', url, '--out', join(dir, 'mosquitto'), '--config', config], {
      OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
    });
    const broker = await MosquittoProcess.start(join(dir, 'mosquitto'));
    closers.push(() => broker.stop());

    const hub = (name: string): OutpostProcess => {
      const p = new OutpostProcess(['hub', '--broker', broker.url, '--store', url, '--data', join(dir, name), '--config', config], {
        OUTPOST_BROKER_PASSWORD: HUB_PASSWORD,
      });
      closers.push(() => p.kill('SIGTERM'));
      return p;
    };
    const first = hub('hub-a');
    await first.waitForLog('hub started');
    const second = hub('hub-b');
    await second.waitForLog('standing by');
    const agents = AGENTS.map((id) => open(id, broker.url, dir, tokens[id]));
    await killLeaderUnderLoad({ url, first, second, agents });
  }, 90_000);

  it("with embedded brokers: agents given both hubs' URLs move to the standby when it leads; nothing is lost, duplicated or diverged", async () => {
    const url = await freshDatabase();
    const dir = tempDir('failover-embedded');
    const ports = [await freePort(), await freePort()];
    const hub = (name: string, port: number): OutpostProcess => {
      const p = new OutpostProcess([
        'hub',
        '--dev',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--store',
        url,
        '--data',
        join(dir, name),
      ]);
      closers.push(() => p.kill('SIGTERM'));
      return p;
    };
    const first = hub('hub-a', ports[0]!);
    await first.waitForLog('hub started');
    const second = hub('hub-b', ports[1]!);
    await second.waitForLog('standing by');
    const agents = AGENTS.map((id) => open(id, ports.map((port) => `mqtt://127.0.0.1:${port}`).join(','), dir));
    await killLeaderUnderLoad({ url, first, second, agents });
  }, 90_000);

  function open(id: string, hubUrl: string, dir: string, hubToken?: string): Agent {
    const agent = new Agent({
      hubUrl,
      agentId: id,
      ...(hubToken !== undefined && { hubToken }),
      dataDir: join(dir, id),
      reconnect: { initialMs: 50, maxMs: 500 },
    }).start();
    closers.push(() => agent.close());
    return agent;
  }

  /** Agents write steadily; the leader is SIGKILLed; then every guarantee is checked against the database. */
  async function killLeaderUnderLoad({
    url,
    first,
    second,
    agents,
  }: {
    url: string;
    first: OutpostProcess;
    second: OutpostProcess;
    agents: Agent[];
  }): Promise<void> {
    // Steady writes from every agent, before, during and after the failover.
    const made: Array<{ agentId: string; receipt: WriteReceipt }> = [];
    let writing = true;
    const writers = agents.map(async (agent, a) => {
      for (let i = 0; writing; i++) {
        const key = i % 4 === 0 ? `shared-${i % SHARED_KEYS}` : `${agent.id}-${i}`;
        made.push({ agentId: agent.id, receipt: await agent.put('readings', key, { a, i }) });
        await sleep(5);
      }
    });

    await waitFor('writes made before the kill', () => made.length > 150, 15_000);
    await sleep(500);
    await first.kill('SIGKILL');
    const killedAt = Date.now();
    await second.waitForLog('hub started', 15_000);
    const takeover = Date.now() - killedAt;
    expect(takeover, 'standby leading after the SIGKILL (ms)').toBeLessThan(5_000);

    const before = made.length;
    await waitFor('writes made after the takeover', () => made.length > before + 150, 15_000);
    writing = false;
    await Promise.all(writers);

    // Every agent uploads everything and catches up with the new leader, without help.
    const store = await PostgresHubStore.open(url);
    closers.push(() => store.close());
    let heads: Record<string, number> = {};
    const caughtUp = (a: Agent): boolean => {
      const s = a.status();
      return s.outboxDepth === 0 && Math.max(s.collections.readings?.appliedLsn ?? 0, s.watermark) >= (heads.readings ?? 0);
    };
    try {
      await waitFor(
        'every outbox empty and every replica caught up',
        async () => {
          heads = await store.collectionHeads();
          return agents.every(caughtUp);
        },
        30_000,
      );
    } catch (error) {
      const state = agents.map((a) => ({ ...a.status(), caughtUp: caughtUp(a) }));
      throw new Error(
        `${(error as Error).message}\nhub heads ${JSON.stringify(heads)}\n${JSON.stringify(state, null, 1)}\n--- new leader:\n${second.output.slice(-3000)}`,
      );
    }

    // Nothing lost or duplicated: every write made is committed exactly once, under its own identity.
    const problems: string[] = [];
    for (const { agentId, receipt } of made) {
      const outcome = await store.outcomeOf(agentId, receipt.incarnation, receipt.seq);
      const logged = await store.countCommitted(agentId, receipt.incarnation, receipt.seq);
      if (outcome?.result.outcome !== 'committed' && outcome?.result.outcome !== 'conflict')
        problems.push(`${agentId}/${receipt.seq}: outcome ${JSON.stringify(outcome)}`);
      if (outcome?.result.outcome === 'committed' && logged !== 1) problems.push(`${agentId}/${receipt.seq}: ${logged} log entries`);
    }
    expect(problems, `${made.length} writes checked`).toEqual([]);

    // Nothing diverged: every replica holds exactly the hub's documents, at the hub's versions.
    const atHub = (await store.listDocuments('readings', { limit: 100_000 })).map(({ key, value, version }) => ({ key, value, version }));
    expect(atHub.length).toBeGreaterThan(300);
    for (const agent of agents) {
      const replica: Array<{ key: string; value: unknown; version: number }> = [];
      for (;;) {
        // an agent lists at most 1,000 documents at a time
        const page = await agent.list('readings', {
          confirmed: true,
          limit: 1000,
          ...(replica.length > 0 && { after: replica.at(-1)!.key }),
        });
        replica.push(...page.map(({ key, value, version }) => ({ key, value, version })));
        if (page.length < 1000) break;
      }
      expect(replica, `replica of ${agent.id}`).toEqual(atHub);
    }
    // Each takeover's epoch is above the one before (and at least the time it was taken, in ms).
    const epochOf = (output: string): number => Number(/"epoch":(\d+),"msg":"leading/.exec(output)?.[1]);
    expect(epochOf(first.output)).toBeGreaterThan(1_700_000_000_000);
    expect(epochOf(second.output)).toBeGreaterThan(epochOf(first.output));
  }

  it('a deposed hub commits nothing more and says it must stop', async () => {
    const url = await freshDatabase();
    const store = await PostgresHubStore.open(url, { epoch: 0 });
    const core = new HubCore({ store, epoch: 0, publish: () => undefined });
    closers.push(() => core.stop());
    expect(await core.write({ c: 'notes', k: 'n1', op: 'put', v: 'as leader' })).toMatchObject({ outcome: 'committed', lsn: 1 });
    const fatal = new Promise<Error>((resolve) => core.once('fatal', resolve));
    await sql(url, 'UPDATE leadership SET epoch = epoch + 1'); // another process took over
    await expect(core.write({ c: 'notes', k: 'n2', op: 'put', v: 'too late' })).rejects.toThrow(/epoch 0 but the database is at epoch 1/);
    expect((await fatal).message).toMatch(/another hub leads now/);
    expect(await store.document('notes', 'n2')).toBeUndefined();
  });

  it('an outpost hub process stops and exits 1 when it is deposed, or when it loses its leader lock', async () => {
    const url = await freshDatabase();
    const dir = tempDir('deposed');
    const start = async (name: string): Promise<{ p: OutpostProcess; api: string }> => {
      const [port, httpPort] = [await freePort(), await freePort()];
      const p = new OutpostProcess(
        ['hub', '--dev', '--host', '127.0.0.1', '--port', String(port), '--store', url].concat([
          '--data',
          join(dir, name),
          '--http',
          `127.0.0.1:${httpPort}`,
        ]),
      );
      closers.push(() => p.kill('SIGKILL'));
      await p.waitForLog('hub started');
      return { p, api: `http://127.0.0.1:${httpPort}` };
    };

    // Deposed: another process raised the epoch. The next commit is refused, and the process ends.
    const first = await start('hub-a');
    expect(await http('PUT', `${first.api}/v1/docs/notes/n1`, 'as leader')).toMatchObject({ status: 200 });
    await sql(url, 'UPDATE leadership SET epoch = epoch + 1');
    await http('PUT', `${first.api}/v1/docs/notes/n2`, 'too late').catch(() => undefined);
    expect(await first.p.exited).toBe(1);
    expect(first.p.output).toContain('the store refuses this hub as its writer; stopping');
    expect(await sql(url, "SELECT key FROM documents WHERE key = 'n2'")).toEqual([]);

    // The connection holding the lock is cut: the process cannot know it still leads, and ends.
    const second = await start('hub-b');
    await sql(url, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()");
    expect(await second.p.exited).toBe(1);
    expect(second.p.output).toContain('lost the leader lock; stopping');
  }, 60_000);

  it('takes a higher epoch than any before, even on a database restored from an older backup', async () => {
    const url = await freshDatabase();
    const log = pino({ level: 'silent' });
    const first = await LeaderLock.acquire(url, { log });
    await first.release();
    // A backup taken before that leader: its epoch is below the one agents have heard since.
    await sql(url, 'UPDATE leadership SET epoch = $1', [first.epoch - 1]);
    const second = await LeaderLock.acquire(url, { log, pollMs: 50 });
    closers.push(() => second.release());
    expect(second.epoch).toBeGreaterThan(first.epoch);
  });
});
