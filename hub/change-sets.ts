import type { HybridClock } from '../shared/hlc.js';
import type { Change, ChangesMessage } from '../shared/messages.js';
import type { ChangeBuckets, IngestTx } from './store/hub-store.js';

/**
 * A committed change and an upper bound of its encoded size, for splitting change sets; its
 * collection's digest right after it; a scoped one's buckets.
 */
export interface Sized {
  change: Change;
  bytes: number;
  digest: number;
  buckets?: ChangeBuckets;
}

/**
 * Splits each collection's new changes (of one group commit, in commit order) into messages of
 * at most `maxBytes` that chain by `prev`, and advances heads. A scoped collection's go out per
 * bucket instead, each bucket with its own chain: whole to the buckets the document is in, as
 * `out` to those it left.
 */
export function changeSetsOf(
  tx: IngestTx,
  committed: ReadonlyMap<string, Sized[]>,
  clock: HybridClock,
  maxBytes: number,
): ChangesMessage[] {
  const sets: ChangesMessage[] = [];
  const chain = (collection: string, prev: number, changes: readonly Sized[], bucket?: string): number => {
    let chunk: Change[] = [];
    let bytes = 0;
    let digest = 0;
    const flush = (): void => {
      if (chunk.length === 0) return;
      // A bucket's change set does not carry its collection's digest: the device holds only part of it.
      const dg = bucket === undefined ? { dg: digest } : { b: bucket };
      sets.push(['changes', { c: collection, prev, hlc: clock.tick(), changes: chunk, ...dg }]);
      prev = chunk[chunk.length - 1]!.lsn;
      chunk = [];
      bytes = 0;
    };
    for (const { change, bytes: size, digest: after } of changes) {
      if (bytes + size > maxBytes) flush();
      chunk.push(change);
      bytes += size;
      digest = after;
    }
    flush();
    return prev;
  };
  for (const [collection, changes] of committed) {
    if (changes[0]!.buckets) {
      for (const [bucket, inBucket] of byBucket(changes))
        tx.setBucketHead(bucket, chain(collection, tx.bucketHead(bucket), inBucket, bucket));
      tx.setCollectionHead(collection, changes.at(-1)!.change.lsn);
    } else {
      tx.setCollectionHead(collection, chain(collection, tx.collectionHead(collection), changes));
    }
  }
  return sets;
}

/** A scoped collection's changes grouped by bucket, each as that bucket hears it. */
function byBucket(changes: readonly Sized[]): Map<string, Sized[]> {
  const groups = new Map<string, Sized[]>();
  const add = (bucket: string, sized: Sized): void => {
    const list = groups.get(bucket);
    if (list) list.push(sized);
    else groups.set(bucket, [sized]);
  };
  for (const sized of changes) {
    for (const bucket of sized.buckets!.in) add(bucket, sized);
    if (sized.buckets!.left.length === 0) continue;
    // A bucket the document left learns only that: not its new value, nor where it went.
    const { lsn, c, k, hlc, o } = sized.change;
    const out: Sized = { change: { lsn, c, k, op: 'out', hlc, o }, bytes: 64 + k.length, digest: sized.digest };
    for (const bucket of sized.buckets!.left) add(bucket, out);
  }
  return groups;
}
