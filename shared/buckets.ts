import { createHash } from 'node:crypto';

/**
 * The id a scope bucket travels and is stored under: 96 bits of a SHA-256 of its name
 * (hub/scope-rules.ts names them). Short on the wire, the same in every process, and it shows no
 * label value in a message or a log line.
 */
export function bucketIdOf(name: string): string {
  return createHash('sha256').update(name).digest('base64url').slice(0, 16);
}

/**
 * The bucket a collection served whole was held through, by every device that read it: the prior
 * bucket of its documents when it is first scoped. A device that held the collection names it,
 * with the LSN it had applied, when it joins its first buckets, and is sent a tag for each
 * document it already has rather than the document again. (Bucket names have four parts.)
 */
export function wholeCollectionBucketId(collection: string): string {
  return bucketIdOf(`${collection}|*`);
}
