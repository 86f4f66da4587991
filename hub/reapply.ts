import type { WriteResult } from './ingest.js';
import type { HubStore, LostDocument, ReapplyOutcome } from './store/hub-store.js';
import type { ReapplyRequest } from './ingest.js';

/** Lost versions read and reapplied per round: one group commit's worth. */
const ROUND = 500;

/** What one reapply did, by outcome (`present`: the hub already held that version again; `superseded`: a newer lost version of the document was reapplied instead). */
export type ReapplySummary = Record<string, number>;

/**
 * Commits again what restores lost (`outpost hub restore reapply`): per lineage and document,
 * the newest version agents reported, as a write that keeps its origin and timestamp (see
 * ReapplyRequest), so that a write made since the restore with a later timestamp wins and the
 * lost one lands in the conflict archive. Every lost version is marked with what became of it,
 * and a version once marked is never reapplied again: running this twice commits nothing more.
 * A document that already holds the lost version's origin and timestamp (a reapply interrupted
 * before it could mark it) is marked `present`, not committed twice.
 */
export async function reapplyLost(
  store: HubStore,
  reapply: (write: ReapplyRequest['write']) => Promise<WriteResult>,
): Promise<ReapplySummary> {
  const summary: ReapplySummary = {};
  for (;;) {
    const pending = await store.lostDocuments({ pending: true, limit: ROUND });
    if (pending.length === 0) return summary;
    const outcomes = await Promise.all([...newestOfEach(pending)].map(([, versions]) => reapplyOne(store, versions, reapply)));
    const flat = outcomes.flat();
    await store.markReapplied(flat);
    for (const o of flat) summary[o.outcome] = (summary[o.outcome] ?? 0) + 1;
  }
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
): Promise<ReapplyOutcome[]> {
  const [newest, ...older] = versions as [LostDocument, ...LostDocument[]];
  const current = await store.document(newest.collection, newest.key);
  let result: { outcome: string; lsn: number | null; reason: string | null };
  if (current && current.hlc === newest.hlc && current.origin === newest.origin) {
    result = { outcome: 'present', lsn: current.version, reason: null };
  } else {
    const written = await reapply({
      c: newest.collection,
      k: newest.key,
      op: newest.op,
      ...(newest.value !== undefined && { v: newest.value }),
      hlc: newest.hlc,
      origin: newest.origin,
      base: newest.fork,
    });
    result = { outcome: written.outcome, lsn: written.lsn ?? null, reason: written.reason ?? null };
  }
  const of = (d: LostDocument) => ({ lineage: d.lineage, collection: d.collection, key: d.key, version: d.version });
  return [
    { ...of(newest), ...result },
    ...older.map((d) => ({ ...of(d), outcome: 'superseded', lsn: result.lsn, reason: `version ${newest.version} is newer` })),
  ];
}
