/**
 * A device home after a long time offline: an `outpost agent` process whose outbox holds N
 * writes (1,000,000; quick 20,000) made while its hub was unreachable, replicating the collection
 * it writes (as a device does with its own readings), connects to a hub process. Figures: the
 * drain rate (writes acknowledged per second, from the agent's connection until its outbox is empty)
 * against a small backlog (60,000; quick 5,000) drained the same way in the same run, and the
 * agent's peak resident memory while draining the large one (target: 0.8× the small backlog's
 * rate, at most 160 MB).
 *
 * The outbox is filled through the public API by an in-process Agent whose hub is unreachable;
 * then the agent process opens that directory, so its memory is the drain's alone.
 *
 * Standalone: npm run build && tsx bench/backlog.ts (SMALL and LARGE in the environment set the sizes).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Agent } from '../agent/agent.js';
import { freePort } from '../test/helpers/ports.js';
import { killOnExit } from './children.js';
import { startHubProcess } from './hub-process.js';
import { sampleProc } from './proc-stats.js';
import { sleep, until } from './stats.js';
import { tempDir } from './temp.js';

export const BACKLOG_TARGET = { rateRatio: 0.8, rssBytes: 160e6 };

export interface DrainResult {
  writes: number;
  /** Writes acknowledged per second, from the agent's connection until its outbox was empty. */
  rate: number;
  peakRssBytes: number;
}

export interface BacklogResult {
  small: DrainResult;
  large: DrainResult;
}

const CLI = fileURLToPath(new URL('../dist/cli/outpost.js', import.meta.url));

/** Fills an agent data directory with `writes` queued writes, offline (its hub's port refuses). */
async function queue(dataDir: string, writes: number): Promise<void> {
  const agent = new Agent({
    hubUrl: 'mqtt://127.0.0.1:1',
    agentId: 'pi-backlog',
    dataDir,
    reconnect: { initialMs: 60_000, maxMs: 60_000 },
  });
  for (let from = 0; from < writes; from += 2_000) {
    await Promise.all(
      Array.from({ length: Math.min(2_000, writes - from) }, (_, i) =>
        agent.put('readings', `r-${from + i}`, { celsius: 20 + ((from + i) % 100) / 10, at: from + i }),
      ),
    );
  }
  await agent.close();
}

/** Queues `writes`, then times a fresh agent process draining them into a fresh hub process. */
async function drain(writes: number): Promise<DrainResult> {
  const dir = tempDir('bench-backlog');
  await queue(join(dir, 'agent'), writes);
  const hub = await startHubProcess(join(dir, 'hub'));
  const httpPort = await freePort();
  const agent = killOnExit(
    spawn(
      process.execPath,
      [CLI, 'agent', '--hub', hub.url, '--id', 'pi-backlog', '--data', join(dir, 'agent'), '--http', `127.0.0.1:${httpPort}`],
      { stdio: 'ignore' },
    ),
  );
  let peakRssBytes = 0;
  const sampler = setInterval(() => {
    try {
      peakRssBytes = Math.max(peakRssBytes, sampleProc(agent.pid!).rssBytes);
    } catch {
      // the process is gone: the drain's end is said by its status
    }
  }, 100);
  try {
    const status = async (): Promise<{ connected: boolean; outboxDepth: number } | undefined> => {
      try {
        return (await (await fetch(`http://127.0.0.1:${httpPort}/v1/status`)).json()) as { connected: boolean; outboxDepth: number };
      } catch {
        return undefined; // not listening yet
      }
    };
    // Timed from the connection, so that the process's start-up does not count against a small backlog.
    await until('the agent to connect', async () => (await status())?.connected === true, 120_000, 20);
    const connectedAt = Date.now();
    await until(`the agent to drain ${writes} writes`, async () => (await status())?.outboxDepth === 0, 900_000, 100);
    return { writes, rate: writes / ((Date.now() - connectedAt) / 1000), peakRssBytes };
  } finally {
    clearInterval(sampler);
    agent.kill('SIGTERM');
    await hub.stop();
    await sleep(100);
  }
}

export async function benchBacklog(quick: boolean, sizes?: { small: number; large: number }): Promise<BacklogResult> {
  const small = await drain(sizes?.small ?? (quick ? 5_000 : 60_000));
  const large = await drain(sizes?.large ?? (quick ? 20_000 : 1_000_000));
  return { small, large };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchBacklog(false, { small: Number(process.env.SMALL ?? 60_000), large: Number(process.env.LARGE ?? 1_000_000) });
  for (const d of [r.small, r.large]) {
    process.stdout.write(`${d.writes} writes: ${Math.round(d.rate)} writes/s, peak RSS ${(d.peakRssBytes / 1e6).toFixed(1)} MB\n`);
  }
  process.exit(0);
}
