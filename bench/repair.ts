/**
 * Range repair, against a full snapshot of the same collection, in one run: a hub holding N
 * documents (100k; quick 10k) and an agent that bootstrapped them all by snapshot (the log is
 * pruned). The agent stops; 10 of its rows are damaged (5 lost, 5 holding another value under
 * their version, with a hash to match, as a bug that applied a wrong value would leave them);
 * it starts again, finds the difference by digest and repairs it by key ranges. The figure is
 * every byte on the link (both ways, as the hub counts its MQTT payloads) from its restart until
 * its copy matched the hub's again, against the bytes of its bootstrap.
 *
 * Then the scrub of that replica: bytes of rows it reads a minute at its default rate, the time
 * a full pass over the replica takes, and the CPU it costs.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import type { AgentOptions } from '../agent/types.js';
import { DEFAULT_SCRUB_BYTES_PER_MINUTE } from '../agent/scrubber.js';
import { AgentStore } from '../agent/store/agent-store.js';
import { Hub } from '../hub/hub.js';
import { encodeCbor } from '../shared/codec.js';
import { documentHash } from '../shared/digest.js';
import { seedHub } from './seed-hub.js';
import { until } from './stats.js';
import { tempDir } from './temp.js';

export interface RepairResult {
  docs: number;
  damaged: number;
  /** Link bytes of the bootstrap by snapshot, and of finding and repairing the damage. */
  snapshotBytes: number;
  repairBytes: number;
  /** Documents the repair rewrote or removed (the damaged ones, ideally). */
  repairedDocs: number;
  scrub: { bytesPerMinute: number; budgetPerMinute: number; fullPassMinutes: number; cpuMsPerMinute: number };
}

const reading = (i: number): { celsius: number; at: number; sensor: string } => ({
  celsius: 20 + (i % 50) / 10,
  at: 1_764_000_000_000 + i,
  sensor: `s-${i % 100}`,
});

export async function benchRepair(quick: boolean): Promise<RepairResult> {
  const docs = quick ? 10_000 : 100_000;
  const damaged = 10;
  const dir = tempDir('bench-repair');
  seedHub(join(dir, 'hub'), 'readings', docs, reading, { pruneLog: true });
  const hub = await Hub.start({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'hub'), dev: true });
  let linkBytes = 0;
  hub.core.on('bytes', (_direction, bytes) => (linkBytes += bytes));
  const options = {
    hubUrl: `mqtt://127.0.0.1:${hub.port}`,
    agentId: 'pi-bench',
    dataDir: join(dir, 'pi-bench'),
    reconnect: { initialMs: 20, maxMs: 200 },
    scrubBytesPerMinute: 0,
  };
  try {
    const agent = new Agent(options).start();
    await until('the bootstrap', () => agent.status().watermark >= hub.store.head, 600_000, 20);
    const snapshotBytes = linkBytes;
    await agent.close();

    const step = Math.floor(docs / damaged);
    damageReadings(
      options.dataDir,
      Array.from({ length: damaged }, (_, n) => n * step + 7),
      reading,
    );

    linkBytes = 0;
    const repairedDocs = await repairAfterRestart(options);
    const repairBytes = linkBytes;
    return { docs, damaged, snapshotBytes, repairBytes, repairedDocs, scrub: scrubFigures(options.dataDir) };
  } finally {
    await hub.stop();
  }
}

/**
 * Damages readings `r-{i}` of a stopped agent's replica, as a rotting card would leave them:
 * every other one lost, the rest holding another value under their version (with a hash to
 * match, so only the digest tells).
 */
export function damageReadings(dataDir: string, indexes: readonly number[], reading: (i: number) => Record<string, unknown>): void {
  const db = new Database(join(dataDir, 'agent.db'));
  try {
    const rows = db.prepare<[string], { version: number }>("SELECT version FROM documents WHERE collection = 'readings' AND key = ?");
    const rewrite = db.prepare("UPDATE documents SET value = ?, hash = ? WHERE collection = 'readings' AND key = ?");
    const remove = db.prepare("DELETE FROM documents WHERE collection = 'readings' AND key = ?");
    indexes.forEach((i, n) => {
      const key = `r-${i}`;
      if (n % 2 === 0) {
        remove.run(key);
        return;
      }
      const value = encodeCbor({ ...reading(i), celsius: -273 });
      rewrite.run(value, documentHash('readings', key, rows.get(key)!.version, false, value), key);
    });
  } finally {
    db.close();
  }
}

/** Starts the agent again, waits until it has repaired and its copy matched the hub's since, and stops it; returns the documents repaired. */
export async function repairAfterRestart(options: AgentOptions): Promise<number> {
  const restarted = Date.now();
  const agent = new Agent(options).start();
  try {
    await until(
      'the repair, then a match with the hub',
      () => {
        const v = agent.status().verification;
        return v.repairs >= 1 && v.lastVerifiedAt !== undefined && Date.parse(v.lastVerifiedAt) >= restarted && v.repairing.length === 0;
      },
      120_000,
      20,
    );
    return agent.status().verification.documentsRepaired;
  } finally {
    await agent.close();
  }
}

/** Runs the scrub over the replica at its default rate, step by step as its timer would (without the waits). */
function scrubFigures(dataDir: string): RepairResult['scrub'] {
  const store = new AgentStore(dataDir);
  try {
    const stepMs = 5_000;
    const budget = Math.floor((DEFAULT_SCRUB_BYTES_PER_MINUTE * stepMs) / 60_000);
    let bytes = 0;
    let steps = 0;
    let after: [string, string] | undefined;
    const cpu = process.cpuUsage();
    do {
      const result = store.replica.scrub(after, budget);
      if (result.rotten.length > 0) throw new Error(`the scrub found ${result.rotten.length} rotten rows in a repaired replica`);
      bytes += result.bytesRead;
      after = result.next;
      steps += 1;
    } while (after);
    const used = process.cpuUsage(cpu);
    const minutes = (steps * stepMs) / 60_000;
    return {
      bytesPerMinute: bytes / minutes,
      budgetPerMinute: DEFAULT_SCRUB_BYTES_PER_MINUTE,
      fullPassMinutes: minutes,
      cpuMsPerMinute: (used.user + used.system) / 1000 / minutes,
    };
  } finally {
    store.close();
  }
}
