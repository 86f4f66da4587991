import type { HybridClock } from '../shared/hlc.js';
import type { PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT } from './pull.js';
import type { HubStore } from './store/hub-store.js';

/**
 * Answers a pull of one bucket of a device's scope (`pull.b`), reading only that bucket's index:
 * - `from` 0 (a bucket the device joins): a snapshot of the documents in it now, those a bucket
 *   it already holds (`held`) brought at their current version as tags (their buckets only). A
 *   device that joins a bucket is sent what it lacks, never its history, nor again what it has.
 * - otherwise the bucket's log after `from`, page by page, as for a whole partition; where
 *   retention removed what the device still needs, a snapshot again.
 * A snapshot is of the head when it began (`lsn`); the device then follows the bucket's log
 * from there, which brings whatever changed while it was read (a document that left the
 * bucket meanwhile comes as `out`).
 */
export async function answerBucketPull(
  store: HubStore,
  clock: HybridClock,
  pull: PullMessage[1] & { b: string },
  maxBytes: number,
  onRead: (bytes: number) => void,
): Promise<PageMessage | SnapshotMessage> {
  const limit = Math.min(pull.limit ?? DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT);
  const held = new Map(Object.entries(pull.held ?? {}));
  // The bucket index above `prunedThrough` is whole: retention removes index rows with the log's.
  const logReaches = (lsn: number): boolean => lsn >= store.head || (lsn > 0 && lsn >= store.prunedThrough);
  const snapshot = async (lsn: number, after: readonly [string, string] | undefined): Promise<SnapshotMessage> => {
    const { docs, next, readBytes } = await store.readBucketDocuments(pull.b, after, limit, maxBytes, held);
    onRead(readBytes);
    return ['snapshot', { id: pull.id, from: pull.from, lsn, hlc: clock.tick(), docs, b: pull.b, ...(next && { next }) }];
  };
  if (pull.snap && logReaches(pull.snap.lsn)) return snapshot(pull.snap.lsn, pull.snap.after);
  if (pull.snap || !logReaches(pull.from)) return snapshot(store.head, undefined);

  const head = store.head;
  const { changes, complete, through, readBytes } = await store.readBucketLog(pull.b, pull.from, limit, maxBytes);
  onRead(readBytes);
  // Retention may have pruned past `from` while the page was read.
  if (!logReaches(pull.from)) return snapshot(store.head, undefined);
  const to = complete ? Math.max(head, pull.from) : through;
  return ['page', { id: pull.id, from: pull.from, to, more: !complete, hlc: clock.tick(), changes, b: pull.b }];
}
