import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { AgentStatus } from '../../agent/types.js';
import { freePort } from './ports.js';
import { http, OutpostProcess } from './processes.js';
import { waitFor } from './wait.js';

/**
 * A real agent process for the verification tests: its copy is checked every 5 s, its scrub
 * reads fast or not at all, and its SQLite file can be damaged while it is stopped.
 */
export interface VerifyingAgent {
  process: OutpostProcess;
  api: string;
}

export async function startVerifyingAgent(hubPort: number, dataDir: string, scrub: boolean): Promise<VerifyingAgent> {
  const port = await freePort();
  const process = new OutpostProcess([
    'agent',
    '--hub',
    `mqtt://127.0.0.1:${hubPort}`,
    '--id',
    'pi-1',
    '--data',
    dataDir,
    '--http',
    `127.0.0.1:${port}`,
    '--verify-interval-seconds',
    '5',
    '--scrub-kb-per-minute',
    scrub ? '60000' : '0',
  ]);
  await process.waitForLog('agent started');
  return { process, api: `http://127.0.0.1:${port}` };
}

export async function statusOf(running: VerifyingAgent): Promise<AgentStatus> {
  return (await http<AgentStatus>('GET', `${running.api}/v1/status`)).body;
}

/** Opens a stopped agent's database, as a hand with the sqlite3 tool would. */
export function editAgentDb<T>(dataDir: string, edit: (db: Database.Database) => T): T {
  const db = new Database(join(dataDir, 'agent.db'));
  try {
    return edit(db);
  } finally {
    db.close();
  }
}

/** Waits until the agent has repaired (cause `cause`), has nothing left to repair, and its copy matched since. */
export function repaired(running: VerifyingAgent, cause: string, deadlineMs: number): Promise<AgentStatus> {
  return waitFor(
    `a repair caused by ${cause}, then a match with the hub's digest`,
    async () => {
      const s = await statusOf(running);
      const v = s.verification;
      const verifiedAfterRepair = v.lastVerifiedAt !== undefined && v.lastRepairAt !== undefined && v.lastVerifiedAt >= v.lastRepairAt;
      return v.repairs >= 1 && v.lastRepairCause === cause && verifiedAfterRepair && v.repairing.length === 0 ? s : undefined;
    },
    deadlineMs,
    200,
  );
}
