import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { restoreFromBackup } from '../../hub/restore.js';
import type { LostView } from '../../hub/http-api.js';
import { TestFleet } from '../helpers/fleet.js';
import { waitFor } from '../helpers/wait.js';

/** A write some agent made and the hub acknowledged (durability `hub`). */
interface Acked {
  agent: Agent;
  key: string;
  value: unknown;
  lsn: number;
  hlc: string;
}

const C = 'docs';

/** What the hub holds of the collection, and what an agent's replica holds: key → [version, value]. */
async function hubDocs(fleet: TestFleet): Promise<Record<string, [number, unknown]>> {
  const docs = await fleet.hub!.store.listDocuments(C, { limit: 10_000 });
  return Object.fromEntries(docs.map((d) => [d.key, [d.version, d.value]]));
}
async function replicaDocs(agent: Agent): Promise<Record<string, [number, unknown]>> {
  const docs = await agent.list(C, { confirmed: true, limit: 1000 });
  return Object.fromEntries(docs.map((d) => [d.key, [d.version, d.value]]));
}

async function post<T>(url: string): Promise<T> {
  const response = await fetch(url, { method: 'POST' });
  expect(response.status).toBe(200);
  return (await response.json()) as T;
}

describe('restoring the hub from a backup', () => {
  let fleet: TestFleet | undefined;
  afterEach(async () => {
    await fleet?.close();
    fleet = undefined;
  });

  it('agents converge on the restored hub, report what it lost, and reapply brings every acknowledged write back', async () => {
    fleet = new TestFleet({ http: { host: '127.0.0.1', port: 0 } });
    await fleet.startHub();
    const a = fleet.agent('pi-a');
    const b = fleet.agent('pi-b');
    const write = async (agent: Agent, key: string, value: unknown): Promise<Acked> => {
      const receipt =
        value === undefined
          ? await agent.del(C, key, { durability: 'hub', timeoutMs: 10_000 })
          : await agent.put(C, key, value as never, { durability: 'hub', timeoutMs: 10_000 });
      return { agent, key, value, lsn: receipt.lsn!, hlc: receipt.hlc };
    };
    const converged = (what: string) =>
      waitFor(what, async () => {
        const hub = JSON.stringify(await hubDocs(fleet!));
        return (await Promise.all([a, b].map(async (agent) => JSON.stringify(await replicaDocs(agent)) === hub))).every(Boolean);
      });

    // Before the backup: ten documents, each agent writing five.
    for (let i = 0; i < 10; i++) await write(i % 2 ? b : a, `k${i}`, { v: i, phase: 'before' });
    await converged('both replicas to hold what was written before the backup');
    const backup = join(fleet.dir, 'hub-backup.db');
    const online = new Database(join(fleet.hubData, 'hub.db'), { readonly: true });
    await online.backup(backup); // SQLite's online backup, while the hub runs
    online.close();
    const fork = fleet.hub!.store.head;

    // After the backup: new documents, overwrites of older ones, deletes; each document written once.
    const after: Acked[] = [];
    after.push(await write(a, 'n0', { v: 'new', by: 'a' }));
    after.push(await write(b, 'n1', { v: 'new', by: 'b' }));
    after.push(await write(a, 'k0', { v: 0, phase: 'after' }));
    after.push(await write(b, 'k1', { v: 1, phase: 'after' }));
    after.push(await write(b, 'k2', { v: 2, phase: 'after' }));
    after.push(await write(a, 'k3', undefined));
    after.push(await write(b, 'k4', undefined));
    expect(after.every((w) => w.lsn > fork)).toBe(true);
    await converged('both replicas to hold what was written after the backup');

    // The hub is lost and restored from the backup, with the CLI's code path.
    await fleet.stopHub();
    const restored: string[] = [];
    for (const agent of [a, b]) agent.once('restored', (info) => restored.push(`${agent.id}:${info.partition}:${info.fork}`));
    const mark = await restoreFromBackup(backup, fleet.hubData);
    expect(mark.lineage.fork).toBe(fork);
    expect(mark.lineage.id).not.toBe(mark.previous.id);
    await fleet.startHub();

    // Every replica equals the restored hub: what came after the backup is gone from them too.
    await converged('both replicas to equal the restored hub');
    expect(restored.sort()).toEqual([`pi-a:default:${fork}`, `pi-b:default:${fork}`]);
    expect(Object.keys(await hubDocs(fleet))).not.toContain('n0');
    // Every write acknowledged after the backup is listed as lost, as it was committed.
    const url = fleet.hub!.httpAddress!;
    const lost = await waitFor('every acknowledged write to be reported lost', async () => {
      const view = (await (await fetch(`${url}/v1/restore/lost`)).json()) as LostView;
      const found = after.every((w) =>
        view.lost.some((d) => d.key === w.key && d.version === w.lsn && d.hlc === w.hlc && d.origin === w.agent.id),
      );
      return found && [a, b].every((agent) => agent.status().restore === undefined) ? view : undefined;
    });
    expect(lost.lineages.default).toEqual(mark.lineage);
    for (const w of after) {
      const entry = lost.lost.find((d) => d.key === w.key && d.version === w.lsn)!;
      expect(entry.op).toBe(w.value === undefined ? 'del' : 'put');
      if (w.value !== undefined) expect(entry.value).toEqual(w.value);
      expect(entry.reporters.map((r) => r.agentId).sort()).toEqual(['pi-a', 'pi-b']);
    }

    // Since the restore, pi-b wrote n0 again: a later write, which the lost one must not overwrite.
    const since = await write(b, 'n0', { v: 'since the restore' });
    const first = await post<{ partitions: Record<string, Record<string, number>> }>(`${url}/v1/restore/reapply`);
    expect(first.partitions.default).toMatchObject({ committed: after.length - 1, conflict: 1 });
    // Reapplying again commits nothing: every lost version is marked with what became of it.
    const second = await post<{ partitions: Record<string, Record<string, number>> }>(`${url}/v1/restore/reapply`);
    expect(second.partitions.default).toEqual({});

    // Every acknowledged write's final value is at the hub, or in the conflict archive if it lost to a later write.
    const store = fleet.hub!.store;
    for (const w of after) {
      const doc = await store.document(C, w.key);
      if (w.key === 'n0') {
        expect(doc?.value).toEqual({ v: 'since the restore' });
        expect(doc?.version).toBe(since.lsn);
        const [conflict] = await store.conflicts({ collection: C, key: 'n0', limit: 1 });
        expect(conflict?.loser).toMatchObject({ origin: 'pi-a', value: w.value, hlc: w.hlc });
        continue;
      }
      expect(doc).toMatchObject({ deleted: w.value === undefined, hlc: w.hlc, origin: w.agent.id });
      if (w.value !== undefined) expect(doc!.value).toEqual(w.value);
    }
    const marked = (await store.lostDocuments({ limit: 100 })).filter((d) => d.reapplied);
    expect(marked).toHaveLength(after.length);
    await converged('both replicas to hold what was reapplied');
  });
});
