/**
 * Footprint of an idle agent: resident memory (and CPU) of a real `outpost agent` process whose
 * replica holds 100k documents and whose outbox holds 10k pending writes (quick: 5k and 500),
 * offline (its hub unreachable), after it has settled. Reference, measured at the same moments:
 * a bare Node.js process that only keeps a timer (`node -e "setInterval(() => {}, 1000)"`), the
 * runtime's own floor. The target is 64 MB resident. The agent runs as devices run it: the bundled
 * `outpost` command (dist/cli/outpost.js, written by `npm run build`), started with no Node flags.
 *
 * The data directory is made through public paths: the hub's store is seeded (bench/seed-hub.ts),
 * an in-process Agent syncs it from a hub process and queues the pending writes once the hub is
 * gone; then the agent process opens that directory.
 *
 * Standalone: npm run build && tsx bench/footprint.ts (DOCS, PENDING and NODE_FLAGS in the
 * environment override the sizes and pass flags to the agent's node). The figure moves by a few MB
 * with the moment V8 resizes its young generation, and so with machine load: run it several times.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Agent } from '../agent/agent.js';
import { killOnExit } from './children.js';
import { benchAgentOptions } from './agent-options.js';
import { startHubProcess } from './hub-process.js';
import { coreShare, mib, sampleProc } from './proc-stats.js';
import { seedHub } from './seed-hub.js';
import { sleep, until } from './stats.js';
import { tempDir } from './temp.js';

export const TARGET_BYTES = 64e6;
/** Megabytes as the target is stated (10^6 bytes). */
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

export interface FootprintResult {
  docs: number;
  pending: number;
  databaseBytes: number;
  agentRss: number;
  /** Share of one core the idle agent used over the sampling window. */
  agentCpu: number;
  bareRss: number;
  bareCpu: number;
}

const CLI = fileURLToPath(new URL('../dist/cli/outpost.js', import.meta.url));

/** An agent data directory holding `docs` confirmed documents and `pending` queued writes. */
async function prepare(dir: string, docs: number, pending: number): Promise<void> {
  const head = seedHub(join(dir, 'hub'), 'readings', docs, (i) => ({ celsius: 20 + (i % 100) / 10, at: i }), { pruneLog: false });
  const hub = await startHubProcess(join(dir, 'hub'));
  const agent = new Agent(benchAgentOptions(hub.url, 'pi-footprint', join(dir, 'agent'))).start();
  await until('the agent to sync the seeded documents', () => agent.status().watermark >= head, 300_000, 20);
  await hub.stop();
  await until('the agent to notice the hub is gone', () => !agent.status().connected, 15_000);
  for (let from = 0; from < pending; from += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, pending - from) }, (_, i) => agent.put('telemetry', `t-${from + i}`, { v: from + i })),
    );
  }
  await agent.close();
}

export async function benchFootprint(quick: boolean, sizes?: { docs: number; pending: number }): Promise<FootprintResult> {
  const docs = sizes?.docs ?? (quick ? 5_000 : 100_000);
  const pending = sizes?.pending ?? (quick ? 500 : 10_000);
  const dir = tempDir('bench-footprint');
  await prepare(dir, docs, pending);
  const databaseBytes = readdirSync(join(dir, 'agent')).reduce((sum, f) => sum + statSync(join(dir, 'agent', f)).size, 0);

  // Port 1 refuses connections: the agent stays offline and keeps retrying with backoff, as a device whose hub is away.
  const agent = killOnExit(
    spawn(
      process.execPath,
      [
        ...(process.env.NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
        CLI,
        'agent',
        '--hub',
        'mqtt://127.0.0.1:1',
        '--id',
        'pi-footprint',
        '--data',
        join(dir, 'agent'),
        '--http',
        '127.0.0.1:0',
        '--log-level',
        'warn',
      ],
      { stdio: 'ignore' },
    ),
  );
  const bare = killOnExit(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }));
  try {
    // Settle: start-up, then V8's memory reducer, which gives back the start-up peak about 8 s in.
    await sleep(quick ? 10_000 : 15_000);
    const [a0, b0] = [sampleProc(agent.pid!), sampleProc(bare.pid!)];
    await sleep(quick ? 2_000 : 10_000);
    const [a1, b1] = [sampleProc(agent.pid!), sampleProc(bare.pid!)];
    return {
      docs,
      pending,
      databaseBytes,
      agentRss: a1.rssBytes,
      agentCpu: coreShare(a0, a1),
      bareRss: b1.rssBytes,
      bareCpu: coreShare(b0, b1),
    };
  } finally {
    agent.kill('SIGTERM');
    bare.kill('SIGTERM');
  }
}

/** One line, for the standalone run. */
export function describeFootprint(r: FootprintResult): string {
  return (
    `idle agent, ${r.docs} documents, ${r.pending} pending writes, database ${mib(r.databaseBytes)}: resident ${mb(r.agentRss)} ` +
    `(target ${mb(TARGET_BYTES)}), CPU ${(r.agentCpu * 100).toFixed(2)} % of one core; bare node ${mb(r.bareRss)}, ` +
    `ratio ${(r.agentRss / r.bareRss).toFixed(2)}×`
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchFootprint(false, { docs: Number(process.env.DOCS ?? 100_000), pending: Number(process.env.PENDING ?? 10_000) });
  process.stdout.write(`${describeFootprint(result)}\n`);
  process.exit(0);
}
