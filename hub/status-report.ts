import type { StatusMessage } from '../shared/messages.js';
import type { ReplicaWait } from './replication-tracker.js';

/**
 * New replica waits one status report may add. An honest writer reports the same list each
 * time, so the rest are learned from its next reports, as those first ones settle or are held.
 */
export const MAX_NEW_WAITS_PER_REPORT = 100;

/**
 * What an agent reports it has applied, each LSN at most the log's head: no agent can hold a
 * write not committed yet, and one that claims to must not count as a replica of future writes.
 */
export function clampApplied(applied: Record<string, number>, head: number): Record<string, number> {
  return Object.fromEntries(Object.entries(applied).map(([collection, lsn]) => [collection, Math.min(lsn, head)]));
}

/**
 * The writer's waits a status reports (waits the hub may not know: it restarted, or took over).
 * Only its own writes, so only collections it may write, and only of writes committed (LSN at
 * most the head): any other is made up. Returns those and how many were dropped.
 */
export function reportedWaits(
  agentId: string,
  status: StatusMessage[1],
  head: number,
  mayWrite: (collection: string) => boolean,
): { waits: ReplicaWait[]; dropped: number } {
  const list = status.waits?.list ?? [];
  const waits = list
    .filter(([, lsn, collection]) => lsn <= head && mayWrite(collection))
    .map(([seq, lsn, collection, replicas]) => ({ agentId, inc: status.waits!.inc, seq, lsn, collection, replicas }));
  return { waits, dropped: list.length - waits.length };
}
