/**
 * What content digests cost the hub per committed change: the hub's CPU time (from /proc) per
 * change while one writer agent uploads N changes (20k; quick 5k) in batches of 500, with
 * digests, against the same hub started with `OUTPOST_DIGESTS=off` (no document hashed), in the
 * same run. The baseline still writes the digest columns (zeros): the ratio is the hashing and
 * the arithmetic, which is what a change pays for digests. Each variant runs twice, alternately,
 * and the lower figure is kept (the other work on a 2-core machine only adds).
 */
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { startHubProcess } from './hub-process.js';
import { sampleProc } from './proc-stats.js';
import { until } from './stats.js';
import { tempDir } from './temp.js';

export interface DigestCostResult {
  changes: number;
  /** Hub CPU ms per committed change, with digests and without. */
  withDigests: number;
  without: number;
}

async function cpuMsPerChange(changes: number, env: Record<string, string>): Promise<number> {
  const dir = tempDir('bench-digest-cost');
  const hub = await startHubProcess(join(dir, 'hub'), [], { env });
  const writer = new Agent({
    hubUrl: hub.url,
    agentId: 'pi-writer',
    dataDir: join(dir, 'pi-writer'),
    collections: ['none'],
    reconnect: { initialMs: 20, maxMs: 200 },
    scrubBytesPerMinute: 0,
  }).start();
  try {
    await until('the writer to connect', () => writer.status().connected, 15_000);
    const before = sampleProc(hub.pid);
    for (let i = 0; i < changes; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, changes - i) }, (_, j) =>
          writer.put('readings', `r-${(i + j) % 5000}`, { celsius: 20 + j / 10, n: i + j }),
        ),
      );
    }
    await until('the hub to commit every change', async () => (await hub.head()) >= changes, 300_000, 50);
    const after = sampleProc(hub.pid);
    return ((after.cpuSeconds - before.cpuSeconds) * 1000) / changes;
  } finally {
    await writer.close();
    await hub.stop();
  }
}

export async function benchDigestCost(quick: boolean): Promise<DigestCostResult> {
  const changes = quick ? 5_000 : 20_000;
  const withDigests: number[] = [];
  const without: number[] = [];
  for (let round = 0; round < 2; round++) {
    withDigests.push(await cpuMsPerChange(changes, {}));
    without.push(await cpuMsPerChange(changes, { OUTPOST_DIGESTS: 'off' }));
  }
  return { changes, withDigests: Math.min(...withDigests), without: Math.min(...without) };
}
