import Database from 'better-sqlite3';
import { join } from 'node:path';
import { bucketsOf } from './scope-plan.js';

/**
 * Whether an agent's scope has settled, read against the hub's own database while it runs (as
 * the hub status does not tell bucket heads): the agent holds exactly the buckets its labels at
 * the hub give now (a relabel just before the end has reached it), and has applied each up to
 * the hub's head of that bucket. A device's LSNs of scoped collections are per bucket, so the
 * collection heads the hub reports say nothing of them.
 */
export function scopeSettled(hubDir: string, agentId: string, buckets: Record<string, number> | undefined): boolean {
  const db = new Database(join(hubDir, 'hub.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare<[string], { labels: string }>('SELECT labels FROM agent_labels WHERE agent_id = ?').get(agentId);
    const site = row ? (JSON.parse(row.labels) as Record<string, string>).site : undefined;
    const expected = bucketsOf(agentId, site);
    const held = Object.keys(buckets ?? {});
    if (held.length !== expected.size || held.some((b) => !expected.has(b))) return false;
    const head = db.prepare<[string], { head_lsn: number }>('SELECT head_lsn FROM bucket_heads WHERE bucket = ?');
    return held.every((b) => buckets![b]! >= (head.get(b)?.head_lsn ?? 0));
  } finally {
    db.close();
  }
}
