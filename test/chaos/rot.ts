import Database from 'better-sqlite3';
import { join } from 'node:path';
import { encodeCbor } from '../../shared/codec.js';
import { documentHash } from '../../shared/digest.js';
import { http } from '../helpers/processes.js';
import { sleep } from '../helpers/wait.js';
import type { History } from './history.js';
import type { ProcessFleet } from './process-fleet.js';

/**
 * The "rot" fault: an agent is killed and its SQLite file damaged while it is down, as a card
 * that rots, a power cut on cheap flash or a hand with the sqlite3 tool would leave it — a value
 * changed under its version, a row lost, a phantom row, a tombstone lost — then it is started
 * again. The damage goes to `ledger`, documents written once at the start and never again, so
 * that no later write can paper over it: every rot must be reported as detected by the agent
 * itself (its `divergencesFound` rises), and the checker's diverged=0 says it was repaired.
 */

export const LEDGER = 'ledger';
const LEDGER_DOCUMENTS = 40;
/** Of which deleted again: tombstones to lose. */
const LEDGER_DELETED = 8;
/** How long an agent has to report a rot before it counts as undetected (the scrub reads every 5 s). */
const DETECT_WITHIN_MS = 30_000;

const KINDS = ['value', 'lost', 'phantom', 'tombstone'] as const;
type RotKind = (typeof KINDS)[number];

export interface Rot {
  agentId: string;
  kind: RotKind;
  key: string;
  detected: boolean;
}

interface Verification {
  divergencesFound: number;
  repairing: string[];
}

/** Writes the ledger through one agent, each write waited on at the hub, and records the writes like any other. */
export async function seedLedger(fleet: ProcessFleet, agentId: string, history: History): Promise<void> {
  for (let i = 0; i < LEDGER_DOCUMENTS + LEDGER_DELETED; i++) {
    const deleting = i >= LEDGER_DOCUMENTS;
    const key = `l-${String(deleting ? i - LEDGER_DOCUMENTS : i).padStart(2, '0')}`;
    const url = `${fleet.agentUrl(agentId)}/v1/docs/${LEDGER}/${key}?durability=hub&timeoutMs=10000`;
    const response = await http<{ incarnation: string; seq: number; lsn?: number }>(
      deleting ? 'DELETE' : 'PUT',
      url,
      deleting ? undefined : { entry: i },
    );
    if (response.status !== 200) throw new Error(`could not write the ledger (${response.status})`);
    const { incarnation, seq, lsn } = response.body;
    history.writes.push({
      agentId,
      incarnation,
      seq,
      collection: LEDGER,
      key,
      durability: 'hub',
      poison: false,
      ...(lsn !== undefined && { lsn }),
    });
  }
}

async function divergencesFound(fleet: ProcessFleet, agentId: string): Promise<number | undefined> {
  const status = (await fleet.agentStatus(agentId)) as { verification?: Verification } | undefined;
  return status?.verification?.divergencesFound;
}

/** Kills the agent, damages its ledger, starts it again and waits for it to report the damage; returns what was done. */
export async function injectRot(fleet: ProcessFleet, agentId: string, random: () => number): Promise<Rot> {
  const before = (await divergencesFound(fleet, agentId)) ?? 0;
  await fleet.killAgent(agentId);
  const { kind, key } = damage(join(fleet.dir, agentId, 'agent.db'), KINDS[Math.floor(random() * KINDS.length)]!);
  await fleet.startAgent(agentId);
  const deadline = Date.now() + DETECT_WITHIN_MS;
  let detected = false;
  while (!detected && Date.now() < deadline) {
    detected = ((await divergencesFound(fleet, agentId)) ?? 0) > before;
    if (!detected) await sleep(200);
  }
  return { agentId, kind, key, detected };
}

/** Damages one ledger row of a stopped agent's database (falling back to a phantom where the row to damage is missing). */
function damage(file: string, wanted: RotKind): { kind: RotKind; key: string } {
  const db = new Database(file);
  try {
    const rows = db
      .prepare<[string], { key: string; version: number; deleted: number }>(
        'SELECT key, version, deleted FROM documents WHERE collection = ? AND evicted = 0 ORDER BY key',
      )
      .all(LEDGER);
    const live = rows.filter((r) => !r.deleted);
    const tombstones = rows.filter((r) => r.deleted);
    const pick = <T>(list: T[]): T | undefined => list[rows.length % Math.max(1, list.length)];
    if (wanted === 'value' && live.length > 0) {
      const row = pick(live)!;
      // The bytes change, the version and the stored hash do not: only a scrub can tell.
      db.prepare('UPDATE documents SET value = ? WHERE collection = ? AND key = ?').run(encodeCbor({ rotten: true }), LEDGER, row.key);
      return { kind: 'value', key: row.key };
    }
    const gone = wanted === 'tombstone' ? pick(tombstones) : wanted === 'lost' ? pick(live) : undefined;
    if (gone) {
      db.prepare('DELETE FROM documents WHERE collection = ? AND key = ?').run(LEDGER, gone.key);
      return { kind: wanted, key: gone.key };
    }
    // A row the hub never had, consistent in itself (as a bug applying a wrong change would leave it).
    const key = `ghost-${rows.length}-${Date.now()}`;
    const version = Math.max(1, ...rows.map((r) => r.version));
    const value = encodeCbor({ ghost: true });
    db.prepare('INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, hash) VALUES (?, ?, ?, 0, ?, ?, ?, ?)').run(
      LEDGER,
      key,
      value,
      version,
      '0000000000000000',
      'hub',
      documentHash(LEDGER, key, version, false, value),
    );
    return { kind: 'phantom', key };
  } finally {
    db.close();
  }
}
