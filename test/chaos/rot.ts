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
 * again. The damage goes to documents written once at the start and never again, so that no
 * later write can paper over it: `ledger` (unscoped, every agent holds it) or the agent's own
 * ledger keys of the scoped `owned` collection (held through its own bucket). Every rot must be
 * reported as detected by the agent itself (its `divergencesFound` rises), and the checker's
 * diverged=0 says it was repaired.
 */

export const LEDGER = 'ledger';
const LEDGER_DOCUMENTS = 40;
/** Each agent's own ledger in the scoped `owned` collection: keys no writer of the workload uses. */
const OWN_LEDGER_DOCUMENTS = 12;
const OWN_LEDGER_DELETED = 3;
const ownLedgerKey = (agentId: string, i: number): string => `${agentId}/ledger-${String(i).padStart(2, '0')}`;

/** Where a rot is done: a collection, and the keys of it written once. */
interface Target {
  collection: string;
  prefix: string;
}
/** Of which deleted again: tombstones to lose. */
const LEDGER_DELETED = 8;
/** How long an agent has to report a rot before it counts as undetected (the scrub reads every 5 s). */
const DETECT_WITHIN_MS = 30_000;

const KINDS = ['value', 'lost', 'phantom', 'tombstone'] as const;
type RotKind = (typeof KINDS)[number];

export interface Rot {
  agentId: string;
  collection: string;
  kind: RotKind;
  key: string;
  detected: boolean;
}

interface Verification {
  divergencesFound: number;
  repairing: string[];
}

/**
 * Writes the ledger through one agent, and each agent's own ledger through it, each write
 * waited on at the hub and recorded like any other.
 */
export async function seedLedger(fleet: ProcessFleet, agentIds: readonly string[], history: History): Promise<void> {
  for (let i = 0; i < LEDGER_DOCUMENTS + LEDGER_DELETED; i++) {
    const deleting = i >= LEDGER_DOCUMENTS;
    const key = `l-${String(deleting ? i - LEDGER_DOCUMENTS : i).padStart(2, '0')}`;
    await seedWrite(fleet, agentIds[0]!, history, LEDGER, key, deleting ? undefined : { entry: i });
  }
  for (const id of agentIds) {
    for (let i = 0; i < OWN_LEDGER_DOCUMENTS; i++) await seedWrite(fleet, id, history, 'owned', ownLedgerKey(id, i), { entry: i });
    for (let i = 0; i < OWN_LEDGER_DELETED; i++) await seedWrite(fleet, id, history, 'owned', ownLedgerKey(id, i), undefined);
  }
}

async function seedWrite(
  fleet: ProcessFleet,
  agentId: string,
  history: History,
  collection: string,
  key: string,
  value: Record<string, unknown> | undefined,
): Promise<void> {
  const url = `${fleet.agentUrl(agentId)}/v1/docs/${collection}/${encodeURIComponent(key)}?durability=hub&timeoutMs=10000`;
  const response = await http<{ incarnation: string; seq: number; lsn?: number }>(value === undefined ? 'DELETE' : 'PUT', url, value);
  if (response.status !== 200) throw new Error(`could not write ${collection}/${key} (${response.status})`);
  const { incarnation, seq, lsn } = response.body;
  history.writes.push({
    agentId,
    incarnation,
    seq,
    collection,
    key,
    durability: 'hub',
    poison: false,
    ...(lsn !== undefined && { lsn }),
  });
}

async function divergencesFound(fleet: ProcessFleet, agentId: string): Promise<number | undefined> {
  const status = (await fleet.agentStatus(agentId)) as { verification?: Verification } | undefined;
  return status?.verification?.divergencesFound;
}

/** Kills the agent, damages its ledger, starts it again and waits for it to report the damage; returns what was done. */
export async function injectRot(fleet: ProcessFleet, agentId: string, random: () => number): Promise<Rot> {
  const before = (await divergencesFound(fleet, agentId)) ?? 0;
  const target: Target =
    random() < 0.5 ? { collection: LEDGER, prefix: 'l-' } : { collection: 'owned', prefix: ownLedgerKey(agentId, 0).slice(0, -2) };
  await fleet.killAgent(agentId);
  const { kind, key } = damage(join(fleet.dir, agentId, 'agent.db'), target, KINDS[Math.floor(random() * KINDS.length)]!);
  await fleet.startAgent(agentId);
  const deadline = Date.now() + DETECT_WITHIN_MS;
  let detected = false;
  while (!detected && Date.now() < deadline) {
    detected = ((await divergencesFound(fleet, agentId)) ?? 0) > before;
    if (!detected) await sleep(200);
  }
  return { agentId, collection: target.collection, kind, key, detected };
}

/** Damages one ledger row of a stopped agent's database (falling back to a phantom where the row to damage is missing). */
function damage(file: string, { collection, prefix }: Target, wanted: RotKind): { kind: RotKind; key: string } {
  const db = new Database(file);
  try {
    const rows = db
      .prepare<[string, string], { key: string; version: number; deleted: number; buckets: string | null }>(
        "SELECT key, version, deleted, buckets FROM documents WHERE collection = ? AND key LIKE ? || '%' AND evicted = 0 ORDER BY key",
      )
      .all(collection, prefix);
    const live = rows.filter((r) => !r.deleted);
    const tombstones = rows.filter((r) => r.deleted);
    const pick = <T>(list: T[]): T | undefined => list[rows.length % Math.max(1, list.length)];
    if (wanted === 'value' && live.length > 0) {
      const row = pick(live)!;
      // The bytes change, the version and the stored hash do not: only a scrub can tell.
      db.prepare('UPDATE documents SET value = ? WHERE collection = ? AND key = ?').run(encodeCbor({ rotten: true }), collection, row.key);
      return { kind: 'value', key: row.key };
    }
    const gone = wanted === 'tombstone' ? pick(tombstones) : wanted === 'lost' ? pick(live) : undefined;
    if (gone) {
      db.prepare('DELETE FROM documents WHERE collection = ? AND key = ?').run(collection, gone.key);
      return { kind: wanted, key: gone.key };
    }
    // A row the hub never had, consistent in itself (as a bug applying a wrong change would leave
    // it); in a scoped collection, in the bucket its neighbours are in.
    const key = `${prefix}ghost-${rows.length}-${Date.now()}`;
    const version = Math.max(1, ...rows.map((r) => r.version));
    const value = encodeCbor({ ghost: true });
    db.prepare(
      'INSERT INTO documents (collection, key, value, deleted, version, hlc, origin, buckets, hash) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)',
    ).run(
      collection,
      key,
      value,
      version,
      '0000000000000000',
      'hub',
      rows[0]?.buckets ?? null,
      documentHash(collection, key, version, false, value),
    );
    return { kind: 'phantom', key };
  } finally {
    db.close();
  }
}
