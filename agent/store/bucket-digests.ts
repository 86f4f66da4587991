import { adjustDigest, RangeTally } from '../../shared/digest.js';
import type { AgentDb } from './agent-db.js';
import { COUNTED_HASH, type RangeDigests } from './replica-digests.js';

/**
 * A row's stored buckets as json_each reads them: a list that is not valid JSON (a hand edit)
 * names no bucket, as the bucket_digests triggers (agent/schema.ts, migration 10) count it.
 */
export const STORED_BUCKETS = "CASE WHEN json_valid(buckets) THEN buckets ELSE '[]' END";
/** The held rows whose stored buckets name the bucket bound to `?`. */
export const IN_BUCKET = `evicted = 0 AND buckets IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(${STORED_BUCKETS}) WHERE type = 'text' AND value = ?)`;

/**
 * The replica's content digests per scope bucket, as the hub compares them with its own: per
 * bucket the sum of the stored hashes of the documents held whose stored buckets name it (kept by
 * triggers), and sums over key ranges of those documents to narrow a mismatch down. Only what the
 * device holds through the bucket counts: an evicted stub counts nowhere.
 */
export class BucketDigests {
  readonly #s;

  constructor(private readonly db: AgentDb) {
    this.#s = {
      digest: db.prepare<[string], { digest: number }>('SELECT digest FROM bucket_digests WHERE bucket = ?'),
      hashes: db.prepare<[string, string], { key: string; hash: number }>(
        `SELECT key, ${COUNTED_HASH} AS hash FROM documents WHERE collection = ? AND ${IN_BUCKET}`,
      ),
      // Every collection: a bucket is of one, but a row moved by hand still names it.
      allHashes: db.prepare<[string], { hash: number }>(`SELECT ${COUNTED_HASH} AS hash FROM documents WHERE ${IN_BUCKET}`),
      setDigest: db.prepare<[string, number]>(
        'INSERT INTO bucket_digests (bucket, digest) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest',
      ),
      collectionOf: db.prepare<[string], { collection: string }>(`SELECT collection FROM documents WHERE ${IN_BUCKET} LIMIT 1`),
      stored: db.prepare<[string, string], { buckets: string }>(
        `SELECT ${STORED_BUCKETS} AS buckets FROM documents WHERE collection = ? AND key = ? AND evicted = 0`,
      ),
    };
  }

  /** The bucket's digest: the sum of the stored hashes of the documents held through it, tombstones included (0 when none). */
  digest(bucket: string): number {
    return this.#s.digest.get(bucket)?.digest ?? 0;
  }

  /**
   * The bucket's held documents of a collection (tombstones included) summed into the `2^bits`
   * sub-ranges of each of `parents` (ranges of depth `depth`), as ReplicaDigests.rangeDigests
   * sums a collection's: from keys and stored hashes, no value read.
   */
  rangeDigests(collection: string, bucket: string, depth: number, parents: readonly number[], bits: number): RangeDigests {
    const tally = new RangeTally(depth, parents, bits);
    for (const row of this.#s.hashes.iterate(collection, bucket)) tally.add(row.key, row.hash);
    return { digests: tally.digests, counts: tally.counts };
  }

  /** Sets the bucket's digest to the sum of its held rows' stored hashes, and returns it (see ReplicaDigests.recountDigest). */
  recount(bucket: string): number {
    return this.db.transaction(() => {
      let digest = 0;
      for (const row of this.#s.allHashes.iterate(bucket)) digest = adjustDigest(digest, row.hash);
      this.#s.setDigest.run(bucket, digest);
      return digest;
    });
  }

  /**
   * The collection of a bucket, from a document held through it (a bucket is of one collection,
   * and its id does not say which); undefined when the device holds none. Scans the replica.
   */
  collectionOf(bucket: string): string | undefined {
    return this.#s.collectionOf.get(bucket)?.collection;
  }

  /** The buckets a held document is stored with (none for a stub or a document not held). */
  storedBuckets(collection: string, key: string): string[] {
    const row = this.#s.stored.get(collection, key);
    if (!row) return [];
    const parsed: unknown = JSON.parse(row.buckets);
    return Array.isArray(parsed) ? parsed.filter((b): b is string => typeof b === 'string') : [];
  }
}
