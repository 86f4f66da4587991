import type Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { decodeCbor } from '../../shared/codec.js';
import type { RecordedOutcome } from '../helpers/hub-outcomes.js';
import type { AcknowledgedWrite, History, Received } from './history.js';
import { bucketsEverHeld, inScope, mayHoldSite, SCOPED_COLLECTIONS, sitesOfValue } from './scope-plan.js';

/**
 * How long after an operator's relabel command ends the hub may still judge a write by the old
 * labels: it reloads them within half a second; the rest is room for a loaded machine.
 */
export const RELOAD_GRACE_MS = 3000;

/**
 * What the hub must have made of an acknowledged write to a scoped collection, given what it
 * did: undefined if right, else why not.
 * - `outside`: refused as `out_of_scope`, and nothing else (committed or lost to a conflict, it
 *   would have been judged inside).
 * - `own-site`: taken; refused as `out_of_scope` only if the agent was relabelled after it was
 *   written (or just before, while the hub may not have reloaded its labels): its key names
 *   the site, its document never leaves it, so the agent's labels alone decide.
 * - any other write is never refused as `out_of_scope` (the caller judges other refusals).
 */
export function scopeOutcomeProblem(w: AcknowledgedWrite, o: RecordedOutcome, history: History): string | undefined {
  const refused = o.outcome === 'rejected' && o.reason === 'out_of_scope';
  if (w.scope === 'outside')
    return refused ? undefined : `was outside its agent's scope but its outcome is ${o.outcome} (${o.reason ?? 'no reason'})`;
  if (!refused) return undefined;
  if (w.scope === 'own-site' && history.relabelledSince(w.agentId, w.issuedAt! - RELOAD_GRACE_MS)) return undefined;
  return `was refused as out_of_scope though its agent's scope allowed it`;
}

/**
 * Every change a device ever committed to a scoped collection (the checker's archive of the log,
 * acknowledged or not) lies within the scope it may ever have: its own keys, its own sites.
 * `hub` writes are not asked (the hub may write anything anywhere).
 */
export function committedOutside(hub: Database.Database): string[] {
  const out: string[] = [];
  const rows = hub
    .prepare<string[], { lsn: number; origin: string; collection: string; key: string; value: Buffer | null }>(
      `SELECT lsn, origin, collection, key, value FROM checker_log
       WHERE origin <> 'hub' AND collection IN (${SCOPED_COLLECTIONS.map(() => '?').join(', ')}) ORDER BY lsn`,
    )
    .all(...SCOPED_COLLECTIONS);
  for (const row of rows) {
    const value = row.value === null ? undefined : decodeCbor(row.value);
    const ownKey = row.collection !== 'owned' || row.key.startsWith(`${row.origin}/`);
    const ownSites = row.collection !== 'sites' || value === undefined || sitesOfValue(value).every((s) => mayHoldSite(row.origin, s));
    if (!ownKey || !ownSites) out.push(`${row.origin} committed ${row.collection}/${row.key} at LSN ${row.lsn}, outside any scope it had`);
  }
  return out;
}

/**
 * Each agent's replica of each scoped collection holds exactly the hub's live documents in
 * its scope by its final labels (the hub's, as the CLI left them), at the hub's versions:
 * nothing missing, nothing left over (an evicted stub has deleted = 1 and is not read).
 */
export function scopedDivergence(hub: Database.Database, agent: Database.Database, agentId: string): string[] {
  const labels = hub.prepare<[string], { labels: string }>('SELECT labels FROM agent_labels WHERE agent_id = ?').get(agentId);
  const site = labels ? (JSON.parse(labels.labels) as Record<string, string>).site : undefined;
  const out: string[] = [];
  for (const collection of SCOPED_COLLECTIONS) {
    const expected = new Map<string, string>();
    for (const row of liveDocuments(hub, collection)) {
      if (inScope(collection, row.key, row.value === null ? undefined : decodeCbor(row.value), agentId, site))
        expected.set(row.key, fingerprint(row));
    }
    const held = new Map(liveDocuments(agent, collection).map((row) => [row.key, fingerprint(row)]));
    const missing = [...expected.keys()].filter((k) => !held.has(k));
    const extra = [...held.keys()].filter((k) => !expected.has(k));
    const stale = [...expected.keys()].filter((k) => held.has(k) && held.get(k) !== expected.get(k));
    if (missing.length + extra.length + stale.length === 0) continue;
    const few = (keys: string[]): string => keys.slice(0, 5).join(', ') + (keys.length > 5 ? ', …' : '');
    out.push(
      `${agentId}: scoped collection ${collection} (site ${site ?? 'none'}): ${missing.length} missing [${few(missing)}], ` +
        `${extra.length} outside its scope [${few(extra)}], ${stale.length} at another version [${few(stale)}]`,
    );
  }
  return out;
}

function liveDocuments(db: Database.Database, collection: string): { key: string; version: number; value: Buffer | null }[] {
  return db
    .prepare<[string], { key: string; version: number; value: Buffer | null }>(
      'SELECT key, version, value FROM documents WHERE collection = ? AND deleted = 0 ORDER BY key',
    )
    .all(collection);
}

function fingerprint(row: { version: number; value: Buffer | null }): string {
  return `${row.version}:${createHash('sha256')
    .update(row.value ?? Buffer.alloc(0))
    .digest('hex')}`;
}

/**
 * What reached each agent's credentials (its own link all run long, and spies holding them
 * while it was down) against the scope it may ever have. The rule, and why it is sound whatever
 * the timing of moves and relabels: an agent is only ever labelled with its two sites
 * (scope-plan.ts), so it may legitimately hold, at some moment, exactly the buckets of those two
 * sites and of its own keys; a change set, page or snapshot of another bucket, a scope telling
 * another bucket, a document whose site is none of its two, or a document of another agent's
 * keys, is outside any scope it ever had, whichever moment it was sent at. It is not vacuous:
 * the third site is never its own, and the hub and the other agents write there all run long
 * (and a bait is written there while each spy listens). What it cannot see is a change of one of
 * its two sites sent while it held the other; the end state (scopedDivergence) and the eviction
 * it checks cover that side.
 *
 * A scoped change that travels outside any bucket's message (on a collection topic, or in a page
 * of the unscoped log) is counted too: scoped collections go per bucket only.
 *
 * Then, by order on the wire (outOfTurn): a live change set goes only between the scopes that
 * name its bucket.
 */
export function outsideScope(history: History): string[] {
  const out = outOfTurn(history);
  const ever = new Map<string, Set<string>>();
  for (const r of history.received) {
    let buckets = ever.get(r.agentId);
    if (!buckets) ever.set(r.agentId, (buckets = bucketsEverHeld(r.agentId)));
    const where = `${r.agentId} (${r.via}) ${r.kind} on ${r.topic}`;
    if (r.problem !== undefined) out.push(`${where}: could not be read, so not proven in scope: ${r.problem}`);
    for (const b of r.told ?? []) if (!buckets.has(b)) out.push(`${where}: told bucket ${b}, never in its scope`);
    if (r.bucket !== undefined && !buckets.has(r.bucket)) out.push(`${where}: of bucket ${r.bucket}, never in its scope`);
    for (const ch of r.changes) {
      const what = `${where}: ${ch.op} ${ch.c}/${ch.k}`;
      if (r.bucket === undefined) out.push(`${what} travelled outside any bucket`);
      else if (ch.c === 'owned' && !ch.k.startsWith(`${r.agentId}/`)) out.push(`${what} is another agent's document`);
      else if (ch.c === 'sites' && ch.v !== undefined && !sitesOfValue(ch.v).some((s) => mayHoldSite(r.agentId, s)))
        out.push(`${what} is of site ${JSON.stringify(sitesOfValue(ch.v))}, never this agent's`);
    }
  }
  return out;
}

/**
 * A live change set of a bucket reaches a device only while the hub has it down as holding the
 * bucket, and the hub tells a device its scope on the same topic, in order: so on each of the
 * device's streams (its link; each spy), a change set's bucket is in the scope told last before
 * it, or, when it comes just after the hub took the device's new labels and before the scope it
 * then tells arrives (the hub reads bucket heads first), in the scope told next. One that is in
 * neither was sent while the device's labels gave it another bucket, such as the site it was
 * relabelled away from. Pages and snapshots answer pulls, which may cross a relabel on the way;
 * they are held to the buckets ever held only.
 */
function outOfTurn(history: History): string[] {
  const out: string[] = [];
  const streams = new Map<string, Received[]>();
  for (const r of history.received) {
    const stream = `${r.agentId} (${r.via})`;
    const list = streams.get(stream);
    if (list) list.push(r);
    else streams.set(stream, [r]);
  }
  for (const [stream, records] of streams) {
    // The scope told last before each record, and the one told next after it.
    const before: (string[] | undefined)[] = [];
    const after: (string[] | undefined)[] = [];
    for (let i = 0, last: string[] | undefined; i < records.length; i++) [before[i], last] = [last, records[i]!.told ?? last];
    for (let i = records.length - 1, next: string[] | undefined; i >= 0; i--) [after[i], next] = [next, records[i]!.told ?? next];
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.kind !== 'changes' || r.bucket === undefined) continue;
      if (before[i]?.includes(r.bucket) || after[i]?.includes(r.bucket)) continue;
      const keys = r.changes.map((ch) => `${ch.op} ${ch.c}/${ch.k}`).join(', ');
      out.push(
        `${stream}: a change set of bucket ${r.bucket} [${keys}] came when neither the scope told before it nor the one after holds it`,
      );
    }
  }
  return out;
}
