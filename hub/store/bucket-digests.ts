import { adjustDigest } from '../../shared/digest.js';

/**
 * Scope buckets' digests, as both stores keep them: a bucket's digest is the sum (modulo 2^52)
 * of the hashes of the documents in it (its document_buckets rows, tombstones included: a
 * deleted document stays in the buckets it was in), stored with its head (`bucket_heads.digest`).
 * A change moves only the buckets its document was in or is in, by its old and new hash: O(1)
 * per bucket, never a recount.
 */

/** A bucket's head and digest, read together (one row: one state). */
export interface BucketDigest {
  head: number;
  digest: number;
}

/**
 * The digests after one scoped change of every bucket its document was in (`before`, as stored)
 * or is in (`after`), given each one's digest before (`digestOf`): a bucket it stays in trades
 * the old hash (`oldHash`, 0 for a new document) for the new one, a bucket it left loses the old
 * hash, a bucket it joins gains the new one.
 */
export function movedBucketDigests(
  before: readonly string[] | undefined,
  after: readonly string[],
  oldHash: number,
  newHash: number,
  digestOf: (bucket: string) => number,
): Record<string, number> {
  const was = new Set(before);
  const moved: Record<string, number> = {};
  for (const bucket of after) {
    if (bucket in moved) continue;
    const from = was.has(bucket) ? adjustDigest(digestOf(bucket), oldHash, -1) : digestOf(bucket);
    moved[bucket] = adjustDigest(from, newHash);
  }
  for (const bucket of was) if (!(bucket in moved)) moved[bucket] = adjustDigest(digestOf(bucket), oldHash, -1);
  return moved;
}

/**
 * The digests after a rebucket chunk of every bucket it moved documents out of (`removed`) or
 * into (`added`), each document by its stored hash, given each one's digest before.
 */
export function rebucketedDigests(
  writes: ReadonlyArray<{ hash: number; removed: readonly string[]; added: readonly string[] }>,
  digestOf: (bucket: string) => number,
): Map<string, number> {
  const digests = new Map<string, number>();
  const move = (bucket: string, hash: number, sign: 1 | -1): void => {
    digests.set(bucket, adjustDigest(digests.get(bucket) ?? digestOf(bucket), hash, sign));
  };
  for (const write of writes) {
    for (const bucket of write.removed) move(bucket, write.hash, -1);
    for (const bucket of write.added) move(bucket, write.hash, 1);
  }
  return digests;
}
