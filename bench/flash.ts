/**
 * Flash wear: bytes the agent makes the device's storage write per app write, against SQLite's
 * own floor measured in the same run. The count is /proc/<pid>/io `write_bytes` (Linux): bytes
 * the process caused to be sent to the storage layer, which is what wears a device's flash.
 *
 * The workload is a device's: N small readings (about 35 bytes of JSON, `{ celsius, at }`) to
 * collection `readings`, over 500 keys (`s-0` … `s-499`) in turn, by an agent that replicates
 * every collection (the default), so its own writes come back as change sets and are applied to
 * its replica. Two modes, each with a fresh agent data directory and a fresh hub: one write at a
 * time, each put awaited before the next (a sensor loop; 20,000, quick 1,000), and 100 at a time,
 * 100 puts together before the next 100 (20,000, quick 2,000); both at the default durability,
 * `local`. Each write is counted over its whole life: from before the first put until the outbox
 * is empty (every write committed at the hub) and the agent has applied the log up to the hub's
 * head (the change sets came back and were applied). The agent runs in this process, as an app
 * embeds it, and the hub in its own, so this process's `write_bytes` are the agent's.
 *
 * The floor, in this process and run: better-sqlite3 on a fresh file in WAL mode with
 * synchronous=FULL, as the agent commits an app write (fsynced before its put resolves), one
 * table `(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID`, upserting the same readings under the
 * same keys, values CBOR-encoded as the agent stores them: N rows one a transaction, and N rows
 * 100 a transaction. Targets: the agent at most 1.5× the floor one at a time, 2× at 100 a time.
 *
 * Reported only: the hub's `write_bytes` per committed write over each run (its process's
 * /proc/<pid>/io); what the agent writes idle after the one-at-a-time run, connected and with
 * nothing written, over 60 s (quick 5 s); and one write at a time paced at one a second (60,
 * quick 10), after every key was written once, against the one-at-a-time floor: written back to
 * back, consecutive commits share the WAL's 4 KB pages between fsyncs, which a sensor's pace
 * takes away.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { encodeCbor } from '../shared/codec.js';
import { benchAgentOptions } from './agent-options.js';
import { startHubProcess } from './hub-process.js';
import { sleep, until } from './stats.js';
import { tempDir } from './temp.js';

export const FLASH_TARGET = { single: 1.5, batched: 2 };

export interface FlashResult {
  writes: { single: number; batched: number; paced: number };
  /** The agent's bytes written per app write, over each write's whole life (`paced`: one every PACE_MS). */
  agentBytesPerWrite: { single: number; batched: number; paced: number };
  /** SQLite's bytes written per row upserted, one row a commit (single) and 100 (batched). */
  floorBytesPerWrite: { single: number; batched: number };
  /** The hub process's bytes written per committed write over the same runs. */
  hubBytesPerWrite: { single: number; batched: number };
  /** The agent's bytes written over `idleSeconds`, connected and with nothing written. */
  idleAgentBytes: number;
  idleSeconds: number;
}

const KEYS = 500;
const BATCH = 100;
/** The paced run's interval: a sensor reading once a second. */
export const PACE_MS = 1_000;

const keyOf = (i: number): string => `s-${i % KEYS}`;
const reading = (i: number): { celsius: number; at: number } => ({ celsius: 20 + (i % 50) / 10, at: 1_764_000_000_000 + i * 1000 });

/**
 * Bytes `pid` has caused to be sent to the storage layer so far. The kernel counts a page of
 * the page cache when the process dirties it, so a page rewritten after an fsync counts again,
 * as it is written again; the filesystem's own journal is not counted.
 */
function writeBytes(pid: number | 'self' = 'self'): number {
  return Number(/^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
}

interface AgentRun {
  agentBytes: number;
  hubBytes: number;
  /** What the agent wrote over the idle window after the run, when one was asked for. */
  idleBytes: number;
}

interface RunShape {
  writes: number;
  perTurn: number;
  /** A pause after each turn (a sensor sampling at a fixed pace); 0: the next turn at once. */
  pauseMs?: number;
  /** Every key written once before the count starts, so that each counted write updates a document the replica holds. */
  prefilled?: boolean;
  /** An idle window after the run, counted apart. */
  idleMs?: number;
}

/** Puts through an agent and a hub of their own, in the shape given. */
async function agentRun({ writes, perTurn, pauseMs = 0, prefilled = false, idleMs = 0 }: RunShape): Promise<AgentRun> {
  const dir = tempDir('bench-flash');
  const hub = await startHubProcess(join(dir, 'hub'));
  const agent = new Agent(benchAgentOptions(hub.url, 'pi-flash', join(dir, 'agent'))).start();
  // The outbox is read empty before the head is asked for, so that head holds every write. Live
  // change sets move the replica's applied LSN; the watermark moves only with pulls.
  const settled = (): Promise<void> =>
    until(
      'the hub to commit every write and the agent to apply them back',
      async () => {
        const empty = agent.status().outboxDepth === 0;
        const head = await hub.head();
        return empty && agent.status().appliedLsn >= head;
      },
      600_000,
      20,
    );
  try {
    // Creating the database and the first sync are the agent's start, not its writes' cost.
    await until('the agent to connect and catch up', () => agent.status().connected && !agent.status().catchingUp, 15_000);
    if (prefilled) {
      await Promise.all(Array.from({ length: KEYS }, (_, i) => agent.put('readings', keyOf(i), reading(i))));
      await settled();
    }
    const [agent0, hub0] = [writeBytes(), writeBytes(hub.pid)];
    for (let i = 0; i < writes; i += perTurn) {
      await Promise.all(
        Array.from({ length: Math.min(perTurn, writes - i) }, (_, j) => agent.put('readings', keyOf(i + j), reading(i + j))),
      );
      if (pauseMs > 0) await sleep(pauseMs);
    }
    await settled();
    // The last writes' rows wait for an append that does not come (agent/store/released-writes.ts):
    // their delete, one commit of a few pages, is left out, a few kB over the whole run.
    const [agent1, hub1] = [writeBytes(), writeBytes(hub.pid)];
    let idleBytes = 0;
    if (idleMs > 0) {
      await sleep(idleMs);
      idleBytes = writeBytes() - agent1;
      if (!agent.status().connected) throw new Error('flash: the agent lost its hub during the idle window');
    }
    return { agentBytes: agent1 - agent0, hubBytes: hub1 - hub0, idleBytes };
  } finally {
    await agent.close();
    await hub.stop();
  }
}

/** The floor: bytes per row upserting the same readings straight into SQLite, `perCommit` rows a transaction. */
function floor(rows: number, perCommit: number): number {
  const db = new Database(join(tempDir('bench-flash-floor'), 'floor.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE readings (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID');
  const upsert = db.prepare('INSERT INTO readings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  const commit = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) upsert.run(keyOf(i), encodeCbor(reading(i)));
  });
  const before = writeBytes();
  for (let i = 0; i < rows; i += perCommit) commit.immediate(i, Math.min(rows, i + perCommit));
  const bytes = writeBytes() - before;
  db.close(); // its checkpoint is outside the count, as the agent's close is
  return bytes / rows;
}

export async function benchFlash(quick: boolean): Promise<FlashResult> {
  const writes = { single: quick ? 1_000 : 20_000, batched: quick ? 2_000 : 20_000, paced: quick ? 10 : 60 };
  const idleSeconds = quick ? 5 : 60;
  const single = await agentRun({ writes: writes.single, perTurn: 1, idleMs: idleSeconds * 1000 });
  const batched = await agentRun({ writes: writes.batched, perTurn: BATCH });
  const paced = await agentRun({ writes: writes.paced, perTurn: 1, pauseMs: PACE_MS, prefilled: true });
  return {
    writes,
    agentBytesPerWrite: {
      single: single.agentBytes / writes.single,
      batched: batched.agentBytes / writes.batched,
      paced: paced.agentBytes / writes.paced,
    },
    floorBytesPerWrite: { single: floor(writes.single, 1), batched: floor(writes.batched, BATCH) },
    hubBytesPerWrite: { single: single.hubBytes / writes.single, batched: batched.hubBytes / writes.batched },
    idleAgentBytes: single.idleBytes,
    idleSeconds,
  };
}
