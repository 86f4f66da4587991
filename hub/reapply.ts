import type { ReapplyRequest, WriteResult } from './ingest.js';
import type { HubStore, LostDocument, ReapplyOutcome } from './store/hub-store.js';

/** Lost versions read and reapplied per round: one group commit's worth. */
const ROUND = 500;

/**
 * What one reapply did, by outcome (`present`: the hub already held that version again;
 * `superseded`: a newer lost version of the document was reapplied instead, or its writer wrote
 * the document again since the restore; `unvouched`: left pending, see ReapplyOptions).
 */
export type ReapplySummary = Record<string, number>;

export interface ReapplyOptions {
  /**
   * Also commit versions no report came from their own writer: writes made at the hub, or
   * vouched for only by other devices. A report is taken as its device sends it, so a device
   * could claim a version by another; the operator decides, after reading the list.
   */
  unvouched?: boolean;
  /** Whether a device may write a collection: a version is committed under its origin only if so. */
  mayWrite: (agentId: string, collection: string) => boolean;
}

/** One reapply at a time per store: two at once would both find a version pending and commit it twice. */
const running = new WeakMap<HubStore, Promise<ReapplySummary>>();

/**
 * Commits again what restores lost (`outpost hub restore reapply`): per lineage and document,
 * the newest version agents reported, as a write that keeps its origin and timestamp (see
 * ReapplyRequest), so that a write made since the restore with a later timestamp wins and the
 * lost one lands in the conflict archive. Every lost version is marked with what became of it,
 * and a version once marked is never reapplied again: running this twice commits nothing more.
 * A document that already holds the lost version's origin and timestamp (a reapply interrupted
 * before it could mark it) is marked `present`, not committed twice.
 */
export function reapplyLost(
  store: HubStore,
  reapply: (write: ReapplyRequest['write']) => Promise<WriteResult>,
  options: ReapplyOptions,
): Promise<ReapplySummary> {
  const underway = running.get(store);
  if (underway) return underway;
  const run = reapplyAll(store, reapply, options).finally(() => running.delete(store));
  running.set(store, run);
  return run;
}

async function reapplyAll(
  store: HubStore,
  reapply: (write: ReapplyRequest['write']) => Promise<WriteResult>,
  options: ReapplyOptions,
): Promise<ReapplySummary> {
  const summary: ReapplySummary = {};
  const held = new Set<string>();
  for (;;) {
    // Versions left pending (unvouched) come back in every read: read past them.
    const pending = await store.lostDocuments({ pending: true, limit: ROUND + held.size });
    const fresh = pending.filter((d) => !held.has(idOf(d)));
    if (fresh.length === 0) break;
    const vouched = fresh.filter((d) => {
      if (options.unvouched || d.reporters.some((r) => r.agentId === d.origin)) return true;
      held.add(idOf(d));
      return false;
    });
    const outcomes = await Promise.all([...newestOfEach(vouched)].map(([, versions]) => reapplyOne(store, versions, reapply, options)));
    const flat = outcomes.flat();
    await store.markReapplied(flat);
    for (const o of flat) summary[o.outcome] = (summary[o.outcome] ?? 0) + 1;
  }
  if (held.size > 0) summary.unvouched = held.size;
  return summary;
}

function idOf(d: LostDocument): string {
  return JSON.stringify([d.lineage, d.collection, d.key, d.version]);
}

/** The pending versions of each (lineage, collection, key), newest first. */
function newestOfEach(pending: readonly LostDocument[]): Map<string, LostDocument[]> {
  const byDocument = new Map<string, LostDocument[]>();
  for (const d of pending) {
    const id = JSON.stringify([d.lineage, d.collection, d.key]);
    const list = byDocument.get(id) ?? [];
    list.push(d);
    byDocument.set(id, list);
  }
  for (const list of byDocument.values()) list.sort((a, b) => b.version - a.version);
  return byDocument;
}

async function reapplyOne(
  store: HubStore,
  versions: readonly LostDocument[],
  reapply: (write: ReapplyRequest['write']) => Promise<WriteResult>,
  options: ReapplyOptions,
): Promise<ReapplyOutcome[]> {
  const [newest, ...older] = versions as [LostDocument, ...LostDocument[]];
  const current = await store.document(newest.collection, newest.key);
  let result: { outcome: string; lsn: number | null; reason: string | null };
  if (current && current.hlc === newest.hlc && current.origin === newest.origin) {
    result = { outcome: 'present', lsn: current.version, reason: null };
  } else if (current && current.origin === newest.origin && current.hlc > newest.hlc) {
    // Its writer wrote the document again since (after the restore, or in an earlier round):
    // no policy would call that concurrent, and the older version must not overwrite it.
    result = { outcome: 'superseded', lsn: current.version, reason: `its writer wrote version ${current.version} later` };
  } else if (newest.origin !== 'hub' && !options.mayWrite(newest.origin, newest.collection)) {
    result = { outcome: 'rejected', lsn: null, reason: `${newest.origin} may not write ${newest.collection}` };
  } else {
    const written = await reapply({
      c: newest.collection,
      k: newest.key,
      op: newest.op,
      ...(newest.value !== undefined && { v: newest.value }),
      hlc: newest.hlc,
      origin: newest.origin,
      base: newest.fork,
      // Vouched for, unless the operator takes every report, only by its writer's own.
      vouchers: newest.reporters.map((r) => r.agentId).filter((id) => options.unvouched || id === newest.origin),
    });
    result = { outcome: written.outcome, lsn: written.lsn ?? null, reason: written.reason ?? null };
  }
  const of = (d: LostDocument) => ({ lineage: d.lineage, collection: d.collection, key: d.key, version: d.version });
  return [
    { ...of(newest), ...result },
    ...older.map((d) => ({ ...of(d), outcome: 'superseded', lsn: result.lsn, reason: `version ${newest.version} is newer` })),
  ];
}
