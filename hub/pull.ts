import type { HybridClock } from '../shared/hlc.js';
import { limits } from '../shared/limits.js';
import type { PageMessage, PullMessage, SnapshotMessage } from '../shared/messages.js';
import type { PullSource } from './log-page-cache.js';

/** A page's changes when a pull names no limit (agents name limits.maxPullPage, the most). */
export const DEFAULT_PAGE_LIMIT = 500;

/**
 * Answers a pull. While the log reaches back to `from`, with one page of the log: a page is
 * complete up to `to`, and while `more` is set the agent asks again from `to`. When retention
 * has removed entries the agent still needs, with a snapshot page instead (see SnapshotMessage);
 * a pull that carries `snap` continues that snapshot where it stopped, unless the log no longer
 * reaches back to the snapshot's LSN, in which case a new snapshot starts.
 *
 * "The log reaches back to `from`" is checked, not assumed from `prunedThrough`: the entry after
 * `from` must really be there (or `from` be the head). A log that lost its oldest entries without
 * saying so would otherwise be paged across the hole, and the agent would believe itself caught up.
 */
export async function answerPull(
  store: PullSource,
  clock: HybridClock,
  pull: PullMessage[1],
  maxBytes: number,
  mayRead: (collection: string) => boolean = () => true,
  /** Told the bytes of rows read for the answer, the reader's or not: what it cost. */
  onRead: (bytes: number) => void = () => undefined,
): Promise<PageMessage | SnapshotMessage> {
  const limit = Math.min(pull.limit ?? DEFAULT_PAGE_LIMIT, limits.maxPullPage);
  const tailAvailable = async (lsn: number): Promise<boolean> =>
    lsn >= store.head || (lsn >= store.prunedThrough && (await store.logHolds(lsn + 1)));
  if (pull.snap && (await tailAvailable(pull.snap.lsn)))
    return snapshotPage(store, clock, pull, pull.snap.lsn, pull.snap.after, limit, maxBytes, mayRead, onRead);
  if (pull.snap || !(await tailAvailable(pull.from)))
    return snapshotPage(store, clock, pull, store.head, undefined, limit, maxBytes, mayRead, onRead);

  const head = store.head;
  const { changes, complete, through, readBytes, digests } = await store.readLog(pull.from, pull.cs, limit, maxBytes, mayRead);
  onRead(readBytes);
  // Retention may have pruned past `from` while the read was under way (a store across a network
  // reads asynchronously): the page could then start above a hole. Send a snapshot instead.
  if (pull.from < store.prunedThrough) return snapshotPage(store, clock, pull, store.head, undefined, limit, maxBytes, mayRead, onRead);
  const to = complete ? Math.max(head, pull.from) : through;
  // Each collection's digest after its last change here: the agent verifies its copy as it applies.
  const dg = Object.fromEntries([...new Set(changes.map((c) => c.c))].flatMap((c) => (c in digests ? [[c, digests[c]!]] : [])));
  return ['page', { id: pull.id, from: pull.from, to, more: !complete, hlc: clock.tick(), changes, dg }];
}

async function snapshotPage(
  store: PullSource,
  clock: HybridClock,
  pull: PullMessage[1],
  lsn: number,
  after: readonly [string, string] | undefined,
  limit: number,
  maxBytes: number,
  mayRead: (collection: string) => boolean,
  onRead: (bytes: number) => void,
): Promise<SnapshotMessage> {
  const { docs, next, readBytes } = await store.readDocuments(pull.cs, after, limit, maxBytes, mayRead);
  onRead(readBytes);
  return ['snapshot', { id: pull.id, from: pull.from, lsn, hlc: clock.tick(), docs, ...(next && { next }) }];
}
