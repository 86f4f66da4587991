import type { HybridClock } from '../shared/hlc.js';
import type { Change, ChangesMessage } from '../shared/messages.js';
import type { ChangeBuckets, IngestTx } from './store/hub-store.js';

/**
 * A committed change and an upper bound of its encoded size, for splitting change sets; its
 * collection's digest right after it; a scoped one's buckets, and the digest of each bucket it is
 * in or left right after it.
 */
export interface Sized {
  change: Change;
  bytes: number;
  digest: number;
  buckets?: ChangeBuckets;
  bucketDigests?: Readonly<Record<string, number>>;
}

/**
 * Splits each collection's new changes (of one group commit, in commit order) into messages of
 * at most `maxBytes` that chain by `prev`, and advances heads. A scoped collection's go out per
 * bucket instead, each bucket with its own chain: whole to the buckets the document is in, as
 * `out` to those it left. Each set carries the digest (`dg`) of what it chains: its collection's,
 * or its bucket's, right after its last change.
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
      // A bucket's change set carries the bucket's digest, not its collection's: the device holds only part of it.
      sets.push([
        'changes',
        { c: collection, prev, hlc: clock.tick(), changes: chunk, ...(bucket !== undefined && { b: bucket }), dg: digest },
      ]);
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

/** A scoped collection's changes grouped by bucket, each as that bucket hears it, with the bucket's digest after it. */
function byBucket(changes: readonly Sized[]): Map<string, Sized[]> {
  const groups = new Map<string, Sized[]>();
  const add = (bucket: string, sized: Sized, { change, bytes }: Pick<Sized, 'change' | 'bytes'>): void => {
    const inBucket: Sized = { change, bytes, digest: sized.bucketDigests?.[bucket] ?? 0 };
    const list = groups.get(bucket);
    if (list) list.push(inBucket);
    else groups.set(bucket, [inBucket]);
  };
  for (const sized of changes) {
    for (const bucket of sized.buckets!.in) add(bucket, sized, sized);
    if (sized.buckets!.left.length === 0) continue;
    // A bucket the document left learns only that: not its new value, nor where it went.
    const { lsn, c, k, hlc, o } = sized.change;
    const out = { change: { lsn, c, k, op: 'out' as const, hlc, o }, bytes: 64 + k.length };
    for (const bucket of sized.buckets!.left) add(bucket, sized, out);
  }
  return groups;
}
