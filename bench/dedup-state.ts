/**
 * How much dedup state (what the hub keeps to re-ack redelivered ops: `committed_runs` and
 * `outcomes`) a hub holds per million writes, with log retention keeping the newest 100,000
 * entries. Measured twice in the same run on the same workload, through the hub's own ingest:
 * with retention as the hub applies it (the log and the dedup state as old as it), and with the
 * log alone pruned (which is all retention did before: the dedup state grew by a row per batch
 * forever). Rows, and bytes of their tables and indexes (SQLite's dbstat), after a million writes
 * (quick: 200,000): before, they grow with every write; after, with the retention window only.
 *
 * The workload: 100 agents, each uploading batches of 100 ops, ten batches of ten agents per
 * group commit; one op in a hundred is rejected (given up on the device), which splits its
 * batch's run and leaves an outcome row.
 *
 * Standalone: tsx bench/dedup-state.ts [--quick]
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { HybridClock } from '../shared/hlc.js';
import type { WriteOp } from '../shared/messages.js';
import { encodeValue } from '../shared/value-bytes.js';
import { CollectionPolicies, DEFAULT_HUB_CONFIG } from '../hub/config.js';
import { defaultIngestOptions, Ingestor, type IngestRequest } from '../hub/ingest.js';
import { SqliteHubStore } from '../hub/store/sqlite-store.js';
import { tempDir } from './temp.js';

const AGENTS = 100;
const BATCH_OPS = 100;
const BATCHES_PER_COMMIT = 10;
const RETENTION = { maxAgeMs: 0, maxEntries: 100_000 };
/** Retention runs after about this many writes (a hub runs it on a timer). */
const PRUNE_EVERY = 50_000;
const DEDUP_OBJECTS = ['committed_runs', 'committed_runs_by_lsn', 'outcomes', 'outcomes_by_kind', 'outcomes_by_age'];

export interface DedupState {
  rows: number;
  bytes: number;
}

export interface DedupStateResult {
  writes: number;
  retainedEntries: number;
  logOnly: DedupState;
  pruned: DedupState;
}

/** Ingests `writes` ops and applies retention as `prune` does; the dedup state left. */
async function measure(writes: number, prune: (store: SqliteHubStore) => Promise<void>): Promise<DedupState> {
  const dir = tempDir('dedup');
  const store = new SqliteHubStore(dir);
  const clock = new HybridClock();
  const ingestor = new Ingestor(store, clock, new CollectionPolicies(DEFAULT_HUB_CONFIG), defaultIngestOptions);
  const nextSeq = new Array<number>(AGENTS).fill(1);
  let written = 0;
  let sincePrune = 0;
  try {
    while (written < writes) {
      const requests: IngestRequest[] = [];
      for (let b = 0; b < BATCHES_PER_COMMIT && written < writes; b++, written += BATCH_OPS) {
        const agent = (written / BATCH_OPS) % AGENTS;
        const ops: WriteOp[] = [];
        for (let i = 0; i < BATCH_OPS; i++) {
          const seq = nextSeq[agent]!++;
          const hlc = clock.tick();
          ops.push(
            seq % 100 === 50
              ? { seq, c: 'readings', k: `r${seq}`, op: 'skip', v: encodeValue('expired'), hlc }
              : { seq, c: 'readings', k: `pi-${agent}-${seq % 500}`, op: 'put', v: encodeValue({ t: seq }), hlc },
          );
        }
        requests.push({ kind: 'batch', agentId: `pi-${agent}`, batch: { inc: `${String(agent).padStart(4, '0')}`.repeat(8), ops } });
      }
      await ingestor.ingest(requests);
      sincePrune += requests.length * BATCH_OPS;
      if (sincePrune >= PRUNE_EVERY) {
        await prune(store);
        sincePrune = 0;
      }
    }
    await prune(store);
  } finally {
    store.db.close();
  }
  const db = new Database(join(dir, 'hub.db'), { readonly: true });
  try {
    const rows = db.prepare<[], { n: number }>('SELECT (SELECT count(*) FROM committed_runs) + (SELECT count(*) FROM outcomes) AS n').get()!
      .n;
    const marks = DEDUP_OBJECTS.map(() => '?').join(', ');
    const bytes = db
      .prepare<string[], { bytes: number }>(`SELECT sum(pgsize) AS bytes FROM dbstat WHERE name IN (${marks})`)
      .get(...DEDUP_OBJECTS)!.bytes;
    return { rows, bytes };
  } finally {
    db.close();
  }
}

/** What retention did before: the log alone (through a second connection, as the store no longer offers it). */
async function pruneLogOnly(store: SqliteHubStore): Promise<void> {
  const cutoff = store.db.head - RETENTION.maxEntries;
  if (cutoff <= 0) return;
  const db = new Database(store.db.path);
  try {
    db.prepare('DELETE FROM log WHERE lsn <= ?').run(cutoff);
  } finally {
    db.close();
  }
}

export async function benchDedupState(quick: boolean): Promise<DedupStateResult> {
  const writes = quick ? 200_000 : 1_000_000;
  const logOnly = await measure(writes, pruneLogOnly);
  const pruned = await measure(writes, async (store) => void (await store.prune(RETENTION)));
  return { writes, retainedEntries: RETENTION.maxEntries, logOnly, pruned };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchDedupState(process.argv.includes('--quick'));
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}
