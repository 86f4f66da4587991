/**
 * Catch-up and bootstrap, against the raw rate at which SQLite applies the same rows, measured
 * in the same run (better-sqlite3, WAL, synchronous=FULL as the agent's store, the agent's
 * documents table and upsert, 5,000 rows per transaction, values CBOR-encoded in the loop).
 *
 * - Catch-up: an agent goes offline, a writer agent uploads N changes (100k; quick 5k), the
 *   agent comes back: changes applied per second from its restart until its watermark reaches
 *   the hub's head. It pulls the log page by page (1,000 changes a page, the next asked for while one is applied).
 * - Bootstrap: a hub holding M documents (1M; quick 20k) whose log retention has run, and a new
 *   agent with an empty replica, which therefore receives a snapshot: documents per second from
 *   its start until its watermark reaches the head.
 *
 * The hub runs as its own process (the CLI), so the rate is the pull loop's, not this process's
 * event loop shared between two sides; the agents run here, as an app embeds them.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { AgentStore } from '../agent/store/agent-store.js';
import { encodeCbor } from '../shared/codec.js';
import { encodeHlc } from '../shared/hlc.js';
import type { Change } from '../shared/messages.js';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { encodeValue } from '../shared/value-bytes.js';
import { benchAgentOptions } from './agent-options.js';
import { startHubProcess } from './hub-process.js';
import { seedHub } from './seed-hub.js';
import { until } from './stats.js';
import { tempDir } from './temp.js';

export interface CatchupResult {
  changes: number;
  /** Changes applied per second while catching up, and the raw apply rate of as many rows. */
  catchup: number;
  rawCatchup: number;
  /** The replica's own apply of as many changes, in this process with no link: catch-up's ceiling. */
  replicaApply: number;
  docs: number;
  /** Documents per second while bootstrapping by snapshot, and the raw apply rate of as many rows. */
  bootstrap: number;
  rawBootstrap: number;
}

const reading = (i: number): { celsius: number; at: number; sensor: string } => ({
  celsius: 20 + (i % 50) / 10,
  at: 1_764_000_000_000 + i,
  sensor: `s-${i % 100}`,
});

const agentOptions = (url: string, dir: string, agentId: string): ConstructorParameters<typeof Agent>[0] =>
  benchAgentOptions(url, agentId, join(dir, agentId));

/** Seconds from starting `agentId` on `dir` until its watermark reaches `head`. */
async function timeToHead(url: string, dir: string, agentId: string, head: number): Promise<number> {
  const started = performance.now();
  const agent = new Agent(agentOptions(url, dir, agentId)).start();
  await until(`${agentId} to reach LSN ${head}`, () => agent.status().watermark >= head, 600_000, 20);
  const seconds = (performance.now() - started) / 1000;
  await agent.close();
  return seconds;
}

async function catchup(changes: number): Promise<number> {
  const dir = tempDir('bench-catchup');
  const hub = await startHubProcess(join(dir, 'hub'));
  // Connected once, so that it is a returning agent with a database and a watermark; then offline.
  const behind = new Agent(agentOptions(hub.url, dir, 'pi-behind')).start();
  await until('pi-behind to connect', () => behind.status().connected, 15_000);
  await behind.close();
  // The writer is a sensor: it replicates nothing, so it only uploads.
  const writer = new Agent({ ...agentOptions(hub.url, dir, 'pi-writer'), collections: ['none'] }).start();
  for (let i = 0; i < changes; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, changes - i) }, (_, j) => writer.put('readings', `r-${i + j}`, reading(i + j))));
  }
  await until("the hub to commit the writer's changes", async () => (await hub.head()) >= changes, 300_000, 100);
  await writer.close();
  const seconds = await timeToHead(hub.url, dir, 'pi-behind', await hub.head());
  await hub.stop();
  return changes / seconds;
}

async function bootstrap(docs: number): Promise<number> {
  const dir = tempDir('bench-bootstrap');
  const head = seedHub(join(dir, 'hub'), 'readings', docs, reading, { pruneLog: true });
  const hub = await startHubProcess(join(dir, 'hub'));
  const seconds = await timeToHead(hub.url, dir, 'pi-new', head);
  await hub.stop();
  return docs / seconds;
}

/**
 * The ceiling of catch-up on this machine: the agent's store applying the same changes as they
 * arrive (values as their bytes), a page of 1,000 a transaction as the replicator applies them,
 * in this process, with no link, no decoding and no hub. The gap between it and the raw apply is
 * what the replica keeps beyond the rows (each document's hash, and the digests its triggers
 * sum); the gap between it and catch-up is receiving the pages.
 */
function replicaApply(changes: number): number {
  const store = new AgentStore(tempDir('bench-replica-apply'));
  const page = (from: number): Change[] =>
    Array.from({ length: Math.min(1000, changes - from) }, (_, j) => {
      const i = from + j;
      return {
        lsn: i + 1,
        c: 'readings',
        k: `r-${i}`,
        op: 'put',
        v: encodeValue(reading(i)),
        hlc: encodeHlc(1_764_000_000_000 + i, 0),
        o: 'pi-writer',
      };
    });
  const pages = Array.from({ length: Math.ceil(changes / 1000) }, (_, n) => page(n * 1000));
  const started = performance.now();
  for (const changesOfPage of pages) store.replica.applyChanges(DEFAULT_PARTITION, changesOfPage, changesOfPage.at(-1)!.lsn);
  const seconds = (performance.now() - started) / 1000;
  store.close();
  return changes / seconds;
}

/** The reference: the same rows upserted straight into the agent's documents table. */
function rawApply(rows: number): number {
  const db = new Database(join(tempDir('bench-raw-apply'), 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE documents (collection TEXT NOT NULL, key TEXT NOT NULL, value BLOB, deleted INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL, hlc TEXT NOT NULL, origin TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID`);
  const upsert = db.prepare(`INSERT INTO documents (collection, key, value, deleted, version, hlc, origin) VALUES (?, ?, ?, 0, ?, ?, ?)
    ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted, version = excluded.version,
      hlc = excluded.hlc, origin = excluded.origin WHERE excluded.version > documents.version`);
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) upsert.run('readings', `r-${i}`, encodeCbor(reading(i)), i + 1, '0000000000000000', 'pi-writer');
  });
  const started = performance.now();
  for (let i = 0; i < rows; i += 5000) batch.immediate(i, Math.min(rows, i + 5000));
  const seconds = (performance.now() - started) / 1000;
  db.close();
  return rows / seconds;
}

export async function benchCatchup(quick: boolean): Promise<CatchupResult> {
  const changes = quick ? 5_000 : 100_000;
  const docs = quick ? 20_000 : 1_000_000;
  return {
    changes,
    catchup: await catchup(changes),
    rawCatchup: rawApply(changes),
    replicaApply: replicaApply(changes),
    docs,
    bootstrap: await bootstrap(docs),
    rawBootstrap: rawApply(docs),
  };
}
