import type { Hlc } from '../../shared/hlc.js';
import { decodeCbor } from '../../shared/codec.js';
import type { JsonValue } from '../../shared/values.js';
import type { LostDocument } from './hub-store.js';

/** A row of `lost_documents` as both SQL stores read it, with its reporters as JSON text (`[{agentId, at}]`). */
export interface LostRow {
  lineage: string;
  collection: string;
  key: string;
  version: number;
  fork: number;
  op: 'put' | 'del';
  value: Buffer | null;
  hlc: string;
  origin: string;
  reported_at: number;
  reapplied_at: number | null;
  reapply_outcome: string | null;
  reapply_lsn: number | null;
  reapply_reason: string | null;
  reporters: string | null;
}

/** The columns of LostRow, `d` being `lost_documents`; `reporters` is added by each store in its own SQL dialect. */
export const LOST_COLUMNS =
  'd.lineage, d.collection, d.key, d.version, d.fork, d.op, d.value, d.hlc, d.origin, d.reported_at, ' +
  'd.reapplied_at, d.reapply_outcome, d.reapply_lsn, d.reapply_reason';

export function toLostDocument(row: LostRow): LostDocument {
  const reporters = (JSON.parse(row.reporters ?? '[]') as Array<{ agentId: string; at: number }>)
    .map(({ agentId, at }) => ({ agentId, at: Number(at) }))
    .sort((a, b) => a.at - b.at || (a.agentId < b.agentId ? -1 : 1));
  return {
    lineage: row.lineage,
    fork: Number(row.fork),
    collection: row.collection,
    key: row.key,
    version: Number(row.version),
    op: row.op,
    value: row.value === null ? undefined : (decodeCbor(row.value) as JsonValue),
    hlc: row.hlc as Hlc,
    origin: row.origin,
    reportedAt: Number(row.reported_at),
    reporters,
    ...(row.reapplied_at !== null && {
      reapplied: {
        at: Number(row.reapplied_at),
        outcome: row.reapply_outcome ?? 'unknown',
        lsn: row.reapply_lsn === null ? null : Number(row.reapply_lsn),
        reason: row.reapply_reason,
      },
    }),
  };
}
