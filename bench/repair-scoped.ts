/**
 * Range repair of a scoped collection, against a snapshot of the device's scope, in one run: a
 * hub holding N documents (100k; quick 10k) over 10 sites, scoped by site, and an agent labelled
 * with one site that joined its bucket by snapshot (N/10 documents). The agent stops; 10 of its
 * rows are damaged (5 lost, 5 holding another value under their version, with a hash to match);
 * it starts again, finds the difference by its bucket's digest and repairs it by the bucket's
 * key ranges. The figure is every byte on the link from its restart until its copy matched the
 * hub's again, against the bytes of its join.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { parseHubConfig } from '../hub/config.js';
import { Hub } from '../hub/hub.js';
import { damageReadings, repairAfterRestart } from './repair.js';
import { seedHub } from './seed-hub.js';
import { until } from './stats.js';
import { tempDir } from './temp.js';

export interface ScopedRepairResult {
  docs: number;
  held: number;
  damaged: number;
  /** Link bytes of the join by snapshot, and of finding and repairing the damage. */
  joinBytes: number;
  repairBytes: number;
  repairedDocs: number;
}

const SITES = 10;
const reading = (i: number): { celsius: number; at: number; site: string } => ({
  celsius: 20 + (i % 50) / 10,
  at: 1_764_000_000_000 + i,
  site: `site-${i % SITES}`,
});

export async function benchScopedRepair(quick: boolean): Promise<ScopedRepairResult> {
  const docs = quick ? 10_000 : 100_000;
  const damaged = 10;
  const dir = tempDir('bench-repair-scoped');
  seedHub(join(dir, 'hub'), 'readings', docs, reading, { pruneLog: true });
  // Scoped from its first start: the hub indexes every document into its site's bucket before it serves.
  const config = parseHubConfig({ collections: { readings: { scope: { field: 'site', equals: '{label.site}' } } } });
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'hub'), dev: true, config });
  await hub.registry.setLabels('pi-bench', { site: 'site-3' }, []);
  await until('labels loaded', () => hub.labelsOf('pi-bench').site === 'site-3', 10_000, 20);
  let linkBytes = 0;
  hub.core.on('bytes', (_direction, bytes) => (linkBytes += bytes));
  const options = {
    hubUrl: `mqtt://127.0.0.1:${hub.port}`,
    agentId: 'pi-bench',
    dataDir: join(dir, 'pi-bench'),
    reconnect: { initialMs: 20, maxMs: 200 },
    scrubBytesPerMinute: 0,
  };
  const held = docs / SITES;
  try {
    const agent = new Agent(options).start();
    const joined = (): boolean => {
      const scope = agent.status().scope;
      return (
        scope !== undefined &&
        Object.keys(scope.buckets).length > 0 &&
        scope.behind === 0 &&
        Object.values(scope.buckets).every((c) => c > 0)
      );
    };
    await until('the join', joined, 600_000, 20);
    const joinBytes = linkBytes;
    await agent.close();

    const db = new Database(join(options.dataDir, 'agent.db'));
    const heldRows = db
      .prepare<[], { n: number }>("SELECT count(*) AS n FROM documents WHERE collection = 'readings' AND evicted = 0")
      .get()!.n;
    if (heldRows !== held) throw new Error(`the agent holds ${heldRows} documents of its scope, not ${held}`);
    db.close();
    const step = Math.floor(held / damaged) * SITES;
    damageReadings(
      options.dataDir,
      Array.from({ length: damaged }, (_, n) => n * step + 3), // of site-3
      reading,
    );

    linkBytes = 0;
    const repairedDocs = await repairAfterRestart(options);
    const repairBytes = linkBytes;
    return { docs, held, damaged, joinBytes, repairBytes, repairedDocs };
  } finally {
    await hub.stop();
  }
}
