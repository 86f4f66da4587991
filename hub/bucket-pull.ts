import type { HybridClock } from '../shared/hlc.js';
import type { PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import { limits } from '../shared/limits.js';
import { DEFAULT_PAGE_LIMIT } from './pull.js';
import type { HubStore } from './store/hub-store.js';

/** Where the pulling device joined the bucket (HubStore.bucketJoins), and which collection the bucket is of. */
export interface BucketJoin {
  /** The LSN it last joined the bucket at; undefined if it never did, as far as the store knows. */
  at(): Promise<number | undefined>;
  /** Records that it joins the bucket at an LSN, before the answer goes out. */
  record(lsn: number): Promise<void>;
  /** The bucket's collection, which keys its digest on a page (undefined: not known, no digest). */
  collection(): string | undefined;
}

/**
 * Answers a pull of one bucket of a device's scope (`pull.b`), reading only that bucket's index:
 * - `from` 0 (a bucket the device joins): a snapshot of the documents in it now, those a bucket
 *   it already holds (`held`) brought at their current version as tags (their buckets only). A
 *   device that joins a bucket is sent what it lacks, never its history, nor again what it has.
 * - otherwise the bucket's log after `from`, page by page, as for a whole partition; where
 *   retention removed what the device still needs, or `from` is below the snapshot through which
 *   the device joined the bucket (its log from before may hold versions of documents that left
 *   the bucket, which the device never held), a snapshot again.
 * A snapshot is of the head when it began (`lsn`); the device then follows the bucket's log
 * from there, which brings whatever changed while it was read (a document that left the
 * bucket meanwhile comes as `out`). A page that reaches the bucket's head carries its digest
 * (`dg`, keyed by its collection): the hub knows a bucket's digest now, not at every LSN.
 */
export async function answerBucketPull(
  store: HubStore,
  clock: HybridClock,
  pull: PullMessage[1] & { b: string },
  maxBytes: number,
  onRead: (bytes: number) => void,
  join: BucketJoin,
): Promise<PageMessage | SnapshotMessage> {
  const limit = Math.min(pull.limit ?? DEFAULT_PAGE_LIMIT, limits.maxPullPage);
  const held = new Map(Object.entries(pull.held ?? {}));
  // The bucket index above `prunedThrough` is whole: retention removes index rows with the log's.
  const logReaches = (lsn: number): boolean => lsn >= store.head || (lsn > 0 && lsn >= store.prunedThrough);
  const snapshot = async (lsn: number, after: readonly [string, string] | undefined): Promise<SnapshotMessage> => {
    const { docs, next, readBytes } = await store.readBucketDocuments(pull.b, after, limit, maxBytes, held);
    onRead(readBytes);
    return ['snapshot', { id: pull.id, from: pull.from, lsn, hlc: clock.tick(), docs, b: pull.b, ...(next && { next }) }];
  };
  // A snapshot begun now is where the device joins the bucket: it may read the log from there on.
  const fresh = async (): Promise<SnapshotMessage> => {
    const lsn = store.head;
    await join.record(lsn);
    return snapshot(lsn, undefined);
  };
  if (pull.snap && logReaches(pull.snap.lsn)) return snapshot(pull.snap.lsn, pull.snap.after);
  if (pull.snap || !logReaches(pull.from)) return fresh();
  // Below where the device joined (or with no join known), the log may hold versions of
  // documents that left the bucket before the device came, which it may not read.
  const joinedAt = pull.from === 0 ? 0 : await join.at(); // read only for a pull of the log past 0
  if (joinedAt === undefined || pull.from < joinedAt) return fresh();
  if (pull.from === 0) await join.record(0); // an empty log (head 0): the join is read as a log

  const head = store.head;
  const { changes, complete, through, readBytes } = await store.readBucketLog(pull.b, pull.from, limit, maxBytes);
  onRead(readBytes);
  // Retention may have pruned past `from` while the page was read.
  if (!logReaches(pull.from)) return fresh();
  const to = complete ? Math.max(head, pull.from) : through;
  // A page with more to come stops short of the bucket's head: only the last can carry its digest.
  const dg = complete ? await digestReached(store, pull.b, to, changes[0]?.c ?? join.collection()) : undefined;
  return ['page', { id: pull.id, from: pull.from, to, more: !complete, hlc: clock.tick(), changes, b: pull.b, ...(dg && { dg }) }];
}

/**
 * The bucket's digest keyed by its collection, if the page (through `to`) reaches the bucket's
 * head. Head and digest are read together, after the page: a change committed since the page was
 * read shows as a head past `to`, and then the page carries no digest.
 */
async function digestReached(
  store: HubStore,
  bucket: string,
  to: number,
  collection: string | undefined,
): Promise<Record<string, number> | undefined> {
  if (collection === undefined) return undefined;
  const { head, digest } = (await store.bucketDigests([bucket])).get(bucket) ?? { head: 0, digest: 0 };
  return head <= to ? { [collection]: digest } : undefined;
}
